use std::{sync::Arc, time::Duration};

use axum::{body::to_bytes, routing::get};
use tower::ServiceExt;

use super::*;
use crate::{
    api::{Auth, NodeInfo},
    config::Limits,
    metrics::Metrics,
    routing::{GraphHolder, GraphService},
    storage::SledStore,
};

fn state(dir: &std::path::Path, limits: Limits) -> AppState {
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(SledStore::open(dir).unwrap());
    AppState::from(crate::api::Shared {
        graphs: Arc::new(GraphService::new(
            Arc::new(GraphHolder::default()),
            store.clone(),
            metrics.clone(),
        )),
        store,
        admission: Arc::new(crate::api::admission(&limits, &metrics)),
        profiles: Arc::new(crate::routing::profiles::Profiles::new(
            dir.join("profiles"),
        )),
        shadow: Arc::new(crate::routing::shadow::Shadow::new(
            1,
            Arc::default(),
            metrics.clone(),
        )),
        metrics,
        rate: Arc::new(RateLimiter::new(limits.rate_limit, limits.rate_burst)),
        limits: Arc::new(limits),
        auth: Arc::new(Auth::new(&[], None, true)),
        cors_origins: Arc::new(vec!["*".to_owned()]),
        node: Arc::new(NodeInfo {
            name: "n".into(),
            id: "id".into(),
            region: "r".into(),
            boot_count: 1,
            started: Instant::now(),
        }),
        window: Arc::default(),
        sync: None,
    })
}

async fn call(app: Router, path: &str) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    let request = Request::builder()
        .uri(path)
        .header(header::ORIGIN, "https://dispatch.example")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, 1 << 20).await.unwrap();
    (
        parts.status,
        parts.headers,
        serde_json::from_slice(&bytes).unwrap(),
    )
}

#[tokio::test]
async fn panics_become_500_json_with_cors() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), Limits::default());
    let router: Router = Router::new().route(
        "/boom",
        get(|| async {
            if "boom".len() == 4 {
                panic!("boom");
            }
            "unreachable"
        }),
    );
    let (status, headers, body) = call(stack(router, &state), "/boom").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["code"], "InternalError");
    assert!(
        !body["message"].as_str().unwrap().contains("boom"),
        "details stay in the log"
    );
    assert!(headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    assert!(headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn answers_and_preflights_vary_on_the_cors_request_headers() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), Limits::default());
    // Large enough to be worth compressing, so compression's layer adds its own Vary.
    let router: Router =
        Router::new().route("/work", get(|| async { axum::Json("done ".repeat(20)) }));
    let app = stack(router, &state);
    let cors = "origin, access-control-request-method, access-control-request-headers";
    let vary = |headers: &axum::http::HeaderMap| -> Vec<String> {
        headers
            .get_all(header::VARY)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };

    let (status, headers, _) = call(app.clone(), "/work").await;
    assert_eq!(status, StatusCode::OK);
    // Compression's own Vary stays, and the CORS one comes once.
    assert_eq!(vary(&headers), ["accept-encoding", cors]);

    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/work")
        .header(header::ORIGIN, "https://dispatch.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(preflight).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(vary(response.headers()), [cors]);
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
}

#[tokio::test]
async fn requests_without_an_origin_skip_cors_but_still_vary_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), Limits::default());
    let router: Router = Router::new().route("/work", get(|| async { axum::Json("done") }));
    let app = stack(router, &state);
    let cors = "origin, access-control-request-method, access-control-request-headers";

    let plain = Request::builder().uri("/work").body(Body::empty()).unwrap();
    let response = app.clone().oneshot(plain).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    assert!(!headers.contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS));
    // A cache must not hand this answer to a browser: it varies on Origin all the same.
    assert_eq!(headers[header::VARY], cors);
    assert!(headers.contains_key("x-request-id"));

    // The same request from a page on another origin gets the CORS headers.
    let (status, headers, _) = call(app.clone(), "/work").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(headers.contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS));

    // An OPTIONS without Origin is still answered by the CORS layer, as before.
    let options = Request::builder()
        .method(Method::OPTIONS)
        .uri("/work")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(options).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn slow_requests_time_out_with_504_json() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        request_timeout: Duration::from_millis(20),
        ..Limits::default()
    };
    let state = state(dir.path(), limits);
    let router: Router = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        }),
    );
    let (status, headers, body) = call(stack(router, &state), "/slow").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body["code"], "Timeout");
    assert!(headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
}

/// A router whose `/hold` keeps its first request for `hold` (the receiver hears when that
/// request is inside) and answers later ones at once.
fn holding(hold: Duration) -> (Router, tokio::sync::oneshot::Receiver<()>) {
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let entered_tx = Arc::new(std::sync::Mutex::new(Some(entered_tx)));
    let router = Router::new().route(
        "/hold",
        get(move || {
            let entered_tx = entered_tx.clone();
            async move {
                let first = entered_tx.lock().unwrap().take();
                if let Some(tx) = first {
                    let _ = tx.send(());
                    tokio::time::sleep(hold).await;
                }
                axum::Json("done")
            }
        }),
    );
    (router, entered_rx)
}

#[tokio::test]
async fn requests_beyond_the_concurrency_limit_are_shed() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        concurrency_limit: 1,
        ..Limits::default()
    };
    let state = state(dir.path(), limits);
    let (router, entered_rx) = holding(Duration::from_millis(500));
    let router = router.route("/healthz", get(|| async { axum::Json("ok") }));
    let app = stack(router, &state);
    let first = tokio::spawn(call(app.clone(), "/hold"));
    entered_rx.await.unwrap();
    let (status, headers, body) = call(app.clone(), "/hold").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["code"], "Overloaded");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    assert!(headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    let (status, _, _) = call(app, "/healthz").await;
    assert_eq!(status, StatusCode::OK, "probes are never shed");
    let text = state.metrics.encode().unwrap();
    assert!(
        text.contains("edgeroute_agent_http_shed_total{reason=\"queue_timeout\"} 1"),
        "{text}"
    );
    let _ = first.await;
}

#[tokio::test]
async fn a_queued_request_is_served_once_a_slot_frees() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        concurrency_limit: 1,
        admission_max_wait: Duration::from_secs(10),
        ..Limits::default()
    };
    let state = state(dir.path(), limits);
    let (router, entered_rx) = holding(Duration::from_millis(300));
    let app = stack(router, &state);
    let first = tokio::spawn(call(app.clone(), "/hold"));
    entered_rx.await.unwrap();
    let waited = Instant::now();
    let (status, _, body) = call(app, "/hold").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        waited.elapsed() >= Duration::from_millis(200),
        "answered after {:?}, while the only slot was taken",
        waited.elapsed()
    );
    assert_eq!(first.await.unwrap().0, StatusCode::OK);
    // Both slots given back: a third request is admitted at once.
    assert_eq!(state.admission.requests.queued(), 0);
    assert!(state.admission.requests.try_enter().is_some());
}

#[tokio::test(flavor = "current_thread")]
async fn a_lagging_runtime_refuses_before_any_other_work_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_runtime_lag: Some(Duration::from_millis(5)),
        ..Limits::default()
    };
    let state = state(dir.path(), limits);
    tokio::spawn(state.admission.lag.clone().run());
    tokio::task::yield_now().await;
    let router: Router = Router::new()
        .route("/work", get(|| async { axum::Json("done") }))
        .route("/healthz", get(|| async { axum::Json("ok") }));
    let app = stack(router, &state);
    // No lag yet. The probe ticks every 2 ms, so a test thread descheduled for a few
    // milliseconds on a busy machine (CI runs tests on two loaded cores) finds it overdue
    // and is refused, rightly: let the probe run again and retry, counting the refusals.
    let mut refused_early = 0;
    loop {
        let (status, _, _) = call(app.clone(), "/work").await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        refused_early += 1;
        assert!(refused_early < 100, "refused 100 times without any lag");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Hold the only worker, as a queue of ready requests would: the probe is overdue.
    std::thread::sleep(Duration::from_millis(30));
    let (status, headers, body) = call(app.clone(), "/work").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "Overloaded");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    assert!(
        !headers.contains_key("x-request-id"),
        "refused before the request id and span layers"
    );
    assert_eq!(
        headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "*",
        "a browser on another origin can read the refusal"
    );
    assert!(
        headers[header::ACCESS_CONTROL_EXPOSE_HEADERS]
            .to_str()
            .unwrap()
            .contains("retry-after")
    );
    let (status, _, _) = call(app, "/healthz").await;
    assert_eq!(status, StatusCode::OK, "probes are never shed");
    let text = state.metrics.encode().unwrap();
    let refused = refused_early + 1;
    assert!(
        text.contains(&format!(
            "edgeroute_agent_http_shed_total{{reason=\"runtime_lag\"}} {refused}"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "edgeroute_agent_http_requests_total{{endpoint=\"/work\",method=\"GET\",code=\"503\"}} {refused}"
        )),
        "a refusal still counts as a request: {text}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn requests_are_refused_while_connections_queue_for_a_worker() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_queue_delay: Some(Duration::from_millis(5)),
        ..Limits::default()
    };
    let state = state(dir.path(), limits);
    let router: Router = Router::new()
        .route("/work", get(|| async { axum::Json("done") }))
        .route("/healthz", get(|| async { axum::Json("ok") }));
    let app = stack(router, &state);
    let (status, _, _) = call(app.clone(), "/work").await;
    assert_eq!(status, StatusCode::OK, "no queue yet");
    // What the server's connection tasks report when many wait 30 ms for a worker.
    let queued = edgeroute_server::queue_delay::MIN_QUEUED;
    state
        .admission
        .queue_delay
        .record(Duration::from_millis(30), queued);
    let (status, headers, body) = call(app.clone(), "/work").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    let (status, _, _) = call(app.clone(), "/healthz").await;
    assert_eq!(status, StatusCode::OK, "probes are never shed");
    let text = state.metrics.encode().unwrap();
    assert!(
        text.contains("edgeroute_agent_http_shed_total{reason=\"queue_delay\"} 1"),
        "{text}"
    );
    // The queue drains: connections are picked up at once again.
    for _ in 0..30 {
        state.admission.queue_delay.record(Duration::ZERO, queued);
    }
    let (status, _, _) = call(app, "/work").await;
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn token_bucket_refills() {
    let limiter = RateLimiter::new(1000.0, 2);
    assert!(limiter.check("k").is_ok());
    assert!(limiter.check("k").is_ok());
    assert_eq!(limiter.check("k"), Err(1));
    assert!(limiter.check("other").is_ok(), "buckets are per key");
    std::thread::sleep(Duration::from_millis(5));
    assert!(limiter.check("k").is_ok());
    assert!(RateLimiter::new(0.0, 1).check("k").is_ok(), "0 disables");
}

#[test]
fn refusals_name_only_an_allowed_origin() {
    let refusal = || ApiError::overloaded("busy").into_response();
    let from = |origin: &str| {
        Request::builder()
            .uri("/route")
            .header(header::ORIGIN, origin)
            .body(Body::empty())
            .unwrap()
    };
    let listed = vec!["https://dispatch.example".to_owned()];
    let mut response = refusal();
    allow_origin(&mut response, &listed, &from("https://dispatch.example"));
    assert_eq!(
        response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://dispatch.example"
    );
    assert_eq!(response.headers()[header::VARY], "origin");
    let mut response = refusal();
    allow_origin(&mut response, &listed, &from("https://evil.example"));
    assert!(
        !response
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    );
    let mut response = refusal();
    allow_origin(&mut response, &[], &from("https://dispatch.example"));
    assert!(
        !response
            .headers()
            .contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS),
        "CORS off: nothing added"
    );
}

/// A request id is unique, so HTTP/2 header compression gains nothing from indexing it and
/// loses the entries it pushes out of the table: echoed ids, made here or sent by the
/// client, are marked never to be indexed, and the header's text is unchanged.
#[tokio::test]
async fn echoed_request_ids_are_never_indexed_by_header_compression() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), Limits::default());
    let router: Router = Router::new().route("/work", get(|| async { axum::Json("done") }));
    let app = stack(router, &state);

    let made = Request::builder().uri("/work").body(Body::empty()).unwrap();
    let response = app.clone().oneshot(made).await.unwrap();
    let id = &response.headers()["x-request-id"];
    assert_eq!(id.len(), 36, "a UUID: {id:?}");
    assert!(id.is_sensitive());

    let sent = Request::builder()
        .uri("/work")
        .header("x-request-id", "dispatch-42")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(sent).await.unwrap();
    let id = &response.headers()["x-request-id"];
    assert_eq!(id, "dispatch-42");
    assert!(id.is_sensitive());
}

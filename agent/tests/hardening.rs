//! Hardening (issue 16), in process and without a graph: keys are exactly the configured
//! ones across restarts, metric labels come from fixed sets, `/optimize` takes JSON only,
//! and the `Bearer` scheme is case-insensitive.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::{client, metrics_text, start_in_process};
use reqwest::{Method, header::HeaderValue};
use serde_json::Value;

#[tokio::test]
async fn a_key_removed_from_the_configuration_is_refused_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let client = client();
    let status = |agent: &common::InProcess, key: &str| {
        client
            .get(format!("{}/v1/status", agent.url))
            .bearer_auth(key)
            .send()
    };

    let agent = start_in_process(&db, &["--api-key", "k1"]).await;
    assert_eq!(status(&agent, "k1").await.unwrap().status(), 200);
    agent.stop().await.unwrap();

    let agent = start_in_process(&db, &["--api-key", "k2"]).await;
    assert_eq!(status(&agent, "k1").await.unwrap().status(), 401);
    assert_eq!(status(&agent, "k2").await.unwrap().status(), 200);
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn client_chosen_methods_do_not_become_metric_labels() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(&dir.path().join("db"), &["--api-key", "k1"]).await;
    let client = client();
    for i in 0..50 {
        let method = Method::from_bytes(format!("RANDOMXX{i:02}").as_bytes()).unwrap();
        for path in ["/v1/status", "/no/such/path"] {
            client
                .request(method.clone(), format!("{}{path}", agent.url))
                .bearer_auth("k1")
                .send()
                .await
                .unwrap();
        }
    }
    let text = metrics_text(&client, &agent.url).await;
    let methods: BTreeSet<&str> = text
        .split("method=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    let fixed = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "other",
    ];
    assert!(methods.contains("other"), "{methods:?}");
    assert!(
        methods.iter().all(|m| fixed.contains(m)),
        "method labels outside the fixed set: {methods:?}"
    );
}

#[tokio::test]
async fn optimize_takes_json_only() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(&dir.path().join("db"), &["--no-auth"]).await;
    let client = client();
    let url = format!("{}/optimize", agent.url);
    // A body that is not a valid problem: a JSON content type gets past the check (400),
    // anything else is refused before the body is read (415), in VROOM's shape.
    let post = |content_type: Option<&'static str>| {
        let request = client.post(&url).body("{}");
        match content_type {
            Some(ct) => request.header("content-type", ct),
            None => request,
        }
        .send()
    };
    for refused in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
    ] {
        let response = post(refused).await.unwrap();
        assert_eq!(response.status(), 415, "{refused:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], 2, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("application/json"),
            "{body}"
        );
    }
    for accepted in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.vroom+json",
    ] {
        let response = post(Some(accepted)).await.unwrap();
        assert_eq!(response.status(), 400, "{accepted}");
    }
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive_and_bad_bytes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(&dir.path().join("db"), &["--api-key", "k1"]).await;
    let client = client();
    let url = format!("{}/v1/status", agent.url);
    let with = |value: HeaderValue| client.get(&url).header("authorization", value).send();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = with(HeaderValue::from_str(&format!("{scheme} k1")).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let r = with(HeaderValue::from_bytes(b"Bearer k\xff1").unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(!message.contains("Missing"), "{message}");
    assert!(message.contains("UTF-8"), "{message}");
    // Another scheme is still a missing key.
    let r = with(HeaderValue::from_static("Basic azE6")).await.unwrap();
    assert_eq!(r.status(), 401);
}

/// A problem small enough to solve at once, on a custom matrix (no graph needed).
fn tiny_problem() -> Value {
    serde_json::json!({
        "vehicles": [{"id": 1, "start_index": 0, "end_index": 0}],
        "jobs": [{"id": 10, "location_index": 1}],
        "matrices": {"car": {"durations": [[0, 10], [10, 0]]}}
    })
}

#[tokio::test]
async fn plans_belong_to_the_key_that_made_them() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(
        &dir.path().join("db"),
        &["--api-key", "k1,k2", "--admin-key", "root"],
    )
    .await;
    let client = client();
    let make = |key: &'static str| {
        client
            .post(format!("{}/optimize?time_limit_ms=50", agent.url))
            .bearer_auth(key)
            .json(&tiny_problem())
            .send()
    };
    let id_of = |body: Value| body["plan_id"].as_str().unwrap().to_owned();
    let r1 = make("k1").await.unwrap();
    assert_eq!(r1.status(), 200);
    let p1 = id_of(r1.json().await.unwrap());
    let p2 = id_of(make("k2").await.unwrap().json().await.unwrap());

    let list = |key: &'static str| {
        let request = client.get(format!("{}/plans", agent.url)).bearer_auth(key);
        async move {
            let body: Value = request.send().await.unwrap().json().await.unwrap();
            body["plans"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list("k1").await, std::slice::from_ref(&p1));
    assert_eq!(list("k2").await, std::slice::from_ref(&p2));
    assert_eq!(
        list("root").await,
        [p1.clone(), p2.clone()],
        "admin sees all"
    );

    let one = |key: &'static str, id: &str| {
        client
            .get(format!("{}/plans/{id}", agent.url))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(one("k1", &p1).await.unwrap().status(), 200);
    let other = one("k2", &p1).await.unwrap();
    assert_eq!(other.status(), 404, "another key's plan is not there");
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["code"], "NotFound");
    assert_eq!(one("root", &p1).await.unwrap().status(), 200);
    agent.stop().await.unwrap();

    // Under --no-auth everyone is one tenant, and sees plans made with keys before.
    let agent = start_in_process(&dir.path().join("db"), &["--no-auth"]).await;
    let body: Value = client
        .get(format!("{}/plans", agent.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["plans"].as_array().unwrap().len(), 2, "{body}");
}

/// Send the head of a `PUT /admin/graph` announcing `content_length` bytes, then `body`,
/// and return what the agent answers without sending the rest.
async fn partial_upload(url: &str, content_length: u64, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /admin/graph HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer root\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {content_length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // The answer must come while most of the announced body is still unsent.
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                break;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("no answer before the body was complete");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn junk_uploads_are_refused_before_the_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let agent = start_in_process(&db, &["--no-auth", "--admin-key", "root"]).await;
    // 300 MB announced, 64 KiB of it sent.
    let answer = partial_upload(&agent.url, 300 << 20, &[b'j'; 64 << 10]).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"code\":\"InvalidValue\""), "{answer}");
    assert!(answer.contains("magic"), "{answer}");
    // A good header announcing more than the limit: 413 from the header alone.
    let mut header = common::artifact_b()[..20].to_vec();
    header[12..20].copy_from_slice(&(2u64 << 30).to_le_bytes());
    let answer = partial_upload(&agent.url, 500 << 20, &header).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let spool = db.join("uploads");
    let left = std::fs::read_dir(&spool).map_or(0, Iterator::count);
    assert_eq!(left, 0, "nothing is left in {}", spool.display());
}

#[tokio::test]
async fn uploads_over_the_limit_get_413_with_or_without_a_length() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(
        &dir.path().join("db"),
        &[
            "--no-auth",
            "--admin-key",
            "root",
            "--max-graph-bytes",
            "4096",
        ],
    )
    .await;
    let client = client();
    let url = format!("{}/admin/graph", agent.url);
    let with_length = common::client()
        .put(&url)
        .bearer_auth("root")
        .body(common::artifact_b().to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(with_length.status(), 413);
    // Chunked: no Content-Length, so the artifact's header is what tells.
    let chunks = common::artifact_b()
        .chunks(1024)
        .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
        .collect::<Vec<_>>();
    let chunked = client
        .put(&url)
        .bearer_auth("root")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), 413);
    let body: Value = chunked.json().await.unwrap();
    assert_eq!(body["code"], "PayloadTooLarge");
}

// A current-thread runtime: every task of the agent runs on this thread, under the
// subscriber set here.
#[tokio::test(flavor = "current_thread")]
async fn readiness_503s_are_not_logged_as_warnings() {
    let logs = edgeroute_tests::logs::Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // No graph: /readyz stays 503.
    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(&dir.path().join("db"), &["--no-auth"]).await;
    let client = client();
    for _ in 0..3 {
        let r = client
            .get(format!("{}/readyz", agent.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
    }
    let after_readyz = logs.text();
    assert!(
        !after_readyz.contains("response failed"),
        "readiness 503s were logged as failures:\n{after_readyz}"
    );
    // Other 503s still are: the capture works.
    let r = client
        .get(format!("{}/route/v1/driving/7.4,43.7;7.5,43.8", agent.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(logs.text().contains("response failed"), "{}", logs.text());
}

#[tokio::test]
async fn metrics_are_openmetrics_only_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(&dir.path().join("db"), &["--no-auth"]).await;
    let client = client();
    let scrape = |accept: Option<&'static str>| {
        let mut request = client.get(format!("{}/metrics", agent.url));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        async move {
            let response = request.send().await.unwrap();
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            (content_type, response.text().await.unwrap())
        }
    };
    for accept in [None, Some("text/plain"), Some("*/*")] {
        let (content_type, text) = scrape(accept).await;
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{accept:?}: {content_type}"
        );
        assert!(!text.contains("# EOF"), "{accept:?}");
        assert!(text.contains("# TYPE edgeroute_agent_graph_swaps_total counter"));
        assert!(text.contains("# TYPE process_open_fds gauge"), "{text}");
    }
    let (content_type, text) = scrape(Some("application/openmetrics-text")).await;
    assert!(content_type.starts_with("application/openmetrics-text"));
    assert!(text.ends_with("# EOF\n"));
}

/// Sends `request` on a raw socket and returns the status and the parsed JSON body.
async fn raw(url: &str, request: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before it has read everything: ignore write errors.
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut out),
    )
    .await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let json = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, json)
}

#[tokio::test]
async fn errors_raised_below_the_router_are_json() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start_in_process(&dir.path().join("db"), &["--no-auth"]).await;
    let coordinates = vec!["7.4197,43.7314"; 10_000].join(";");
    let long = format!("GET /route/v1/driving/{coordinates} HTTP/1.1\r\nhost: x\r\n\r\n");
    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(600 * 1024)
    );
    let cases: [(&[u8], u16, &str); 4] = [
        (long.as_bytes(), 414, "InvalidUrl"),
        (big_header.as_bytes(), 431, "TooBig"),
        (
            b"GET /route/v1/\x01bad HTTP/1.1\r\nhost: x\r\n\r\n",
            400,
            "InvalidUrl",
        ),
        (
            b"POST /optimize HTTP/1.1\r\nhost: x\r\ncontent-length: 12x\r\n\r\n",
            400,
            "InvalidUrl",
        ),
    ];
    for (request, status, code) in cases {
        let (got, body) = raw(&agent.url, request).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(body["code"], code, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

//! The HTTP judge against a tiny in-process center: what it sends, what it reads, and how
//! each failure is named.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use edgeroute_control_plane::controller::judge::{HttpJudge, Judge, JudgeError};
use edgeroute_protocol::rollout::{AnalysisRequest, ArmFigures, Verdict, VerdictKind};
use serde_json::json;
use tokio::task::JoinHandle;

/// A center answering every analysis with `status` and `body`.
async fn fake_center(status: StatusCode, body: &'static str) -> (String, JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/api/v1/regions/{region}/analysis",
        post(move || async move { (status, body) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

fn request() -> AnalysisRequest {
    AnalysisRequest {
        target: edgeroute_protocol::rollout::RolloutTarget::Agent,
        canary_nodes: vec!["edge-1".into()],
        since_ms: 1_000,
        policy: edgeroute_protocol::crd::RolloutSpec::default(),
    }
}

#[tokio::test]
async fn http_judge_posts_the_request_with_the_admin_key_and_reads_the_verdict() {
    let seen: Arc<Mutex<Vec<(String, AnalysisRequest)>>> = Arc::default();
    let log = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/api/v1/regions/{region}/analysis",
        post(
            move |axum::extract::Path(region): axum::extract::Path<String>,
                  headers: HeaderMap,
                  Json(req): Json<AnalysisRequest>| async move {
                if headers["authorization"] != "Bearer adm" {
                    return (StatusCode::UNAUTHORIZED, Json(json!({"error": "bad key"})));
                }
                log.lock().unwrap().push((region, req));
                let verdict = Verdict {
                    kind: VerdictKind::Inconclusive,
                    reason: "3 canary requests < 100".into(),
                    at_ms: 2_000,
                    canary: ArmFigures::default(),
                    stable: ArmFigures::default(),
                };
                (StatusCode::OK, Json(serde_json::to_value(verdict).unwrap()))
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let verdict = HttpJudge::new(&url, "adm")
        .unwrap()
        .judge("porto", &request())
        .await
        .unwrap();
    assert_eq!(verdict.kind, VerdictKind::Inconclusive);
    assert_eq!(seen.lock().unwrap()[0], ("porto".to_owned(), request()));
    let err = HttpJudge::new(&url, "wrong")
        .unwrap()
        .judge("porto", &request())
        .await
        .unwrap_err();
    assert!(
        matches!(err, JudgeError::Status { status: 401, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("bad key"));
    task.abort();
}

#[tokio::test]
async fn http_judge_errors_name_what_went_wrong() {
    let (url, task) = fake_center(StatusCode::OK, r#"{"kind": "Maybe"}"#).await;
    let err = HttpJudge::new(&url, "adm")
        .unwrap()
        .judge("porto", &request())
        .await
        .unwrap_err();
    assert!(matches!(err, JudgeError::Decode(_)), "{err}");
    assert_eq!(err.metric_label(), "decode");
    task.abort();

    let (url, task) = fake_center(StatusCode::SERVICE_UNAVAILABLE, "overloaded").await;
    let err = HttpJudge::new(&url, "adm")
        .unwrap()
        .judge("porto", &request())
        .await
        .unwrap_err();
    assert!(
        matches!(err, JudgeError::Status { status: 503, .. }),
        "{err}"
    );
    task.abort();

    // Nothing listens on a port we bound and released.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = HttpJudge::new(&format!("http://{addr}"), "adm")
        .unwrap()
        .judge("porto", &request())
        .await
        .unwrap_err();
    assert!(matches!(err, JudgeError::Unreachable(_)), "{err}");
    assert_eq!(err.metric_label(), "unreachable");
}

//! The controller's small HTTP server: Prometheus metrics and health probes.
//!
//! Every replica answers the probes, leader or not: a follower is healthy, it just waits.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use edgeroute_server::exposition::{Format, open_metrics_to_text};

use crate::metrics::Metrics;

/// Routes `/metrics`, `/healthz` and `/readyz`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(metrics)
}

/// OpenMetrics to a scraper that asks for it (Prometheus does), the Prometheus text format
/// 0.0.4 to everyone else (curl, `promtool check metrics`).
async fn metrics_handler(State(metrics): State<Arc<Metrics>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    match metrics.encode() {
        Ok(open_metrics) => {
            let body = match format {
                Format::OpenMetrics => open_metrics,
                Format::Text => open_metrics_to_text(&open_metrics),
            };
            ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "encoding metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(serde_json::json!({"error": "encoding metrics failed"})),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[tokio::test]
    async fn serves_metrics_and_health() {
        let metrics = Arc::new(Metrics::default());
        drop(metrics.count_and_measure());
        let app = router(metrics);
        let health = app
            .clone()
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        for (accept, content_type, eof) in [
            (None, "text/plain; version=0.0.4", false),
            (
                Some("application/openmetrics-text; version=1.0.0"),
                "application/openmetrics-text",
                true,
            ),
        ] {
            let mut request = Request::get("/metrics");
            if let Some(accept) = accept {
                request = request.header(header::ACCEPT, accept);
            }
            let res = app
                .clone()
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let served = res.headers()[header::CONTENT_TYPE].to_str().unwrap();
            assert!(served.starts_with(content_type), "{served}");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8(body.to_vec()).unwrap();
            assert!(text.contains("edgeroute_controller_reconciliations_total 1"));
            assert_eq!(text.contains("# EOF"), eof, "{text}");
            if !eof {
                assert!(text.contains("# TYPE edgeroute_controller_reconciliations_total counter"));
            }
        }
    }
}

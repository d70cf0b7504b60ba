//! The open endpoints: liveness, readiness and Prometheus metrics.
//!
//! A 503 from `/readyz` is an answer, not a failure: it is how a starting agent says "not
//! yet", and probes ask many times a minute. [`ExpectedStatus`] tells the request span's
//! layer so, which would otherwise log each one as a warning.

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::{error::ApiError, metrics::Format};

/// Liveness / readiness body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: &'static str,
    /// Graph version served, when ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph_version: Option<String>,
}

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        graph_version: None,
    })
}

/// Marks an error response that answers the question asked (`/readyz`'s 503), or a
/// deliberate refusal counted elsewhere (load shedding's 503): it is not logged as a failure.
#[derive(Debug, Clone, Copy)]
pub struct ExpectedStatus;

/// A graph is loaded and requests can be answered.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "A graph is loaded", body = Health),
    (status = 503, description = "No graph yet", body = edgeroute_protocol::osrm::ErrorResponse)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.graph() {
        Ok(graph) => Json(Health {
            status: "ready",
            graph_version: Some(graph.info().version.clone()),
        })
        .into_response(),
        Err(not_ready) => {
            let mut response = not_ready.into_response();
            response.extensions_mut().insert(ExpectedStatus);
            response
        }
    }
}

/// Prometheus metrics: OpenMetrics when the `Accept` header asks for
/// `application/openmetrics-text`, else the Prometheus text format 0.0.4.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "The metrics exposition",
        content(
            (String = "text/plain"),
            (String = "application/openmetrics-text"),
        ))))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let text = state
        .metrics
        .encode_as(format)
        .map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], text).into_response())
}

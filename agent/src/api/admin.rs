//! Graph management, behind the admin key: upload (verified, stored, swapped atomically),
//! rollback to the previous version, and the list of stored versions.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    routing::{post, put},
};
use edgeroute_protocol::{
    admin::{GraphChange, GraphVersions},
    osrm::ErrorCode,
};
use tower_http::limit::RequestBodyLimitLayer;

use super::AppState;
use crate::{
    error::ApiError,
    routing::{Activated, Error as GraphError},
};

/// Routes of this module; the upload route alone accepts large bodies.
pub fn router(state: &AppState) -> Router<AppState> {
    let limit = state.limits.max_graph_bytes;
    let graph = Router::new()
        .route("/admin/graph", put(upload).get(versions))
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestBodyLimitLayer::new(limit));
    let rollback = Router::new()
        .route("/admin/graph/rollback", post(rollback))
        .layer(RequestBodyLimitLayer::new(state.limits.max_body_bytes));
    graph.merge(rollback)
}

impl From<Activated> for GraphChange {
    fn from(a: Activated) -> Self {
        Self {
            version: a.version,
            checksum: a.sha256,
            previous: a.previous,
        }
    }
}

fn graph_error(err: GraphError) -> ApiError {
    match &err {
        GraphError::InvalidArtifact(inner) => {
            let detail = match inner {
                edgeroute_engine::Error::Artifact(a) => a.to_string(),
                other => other.to_string(),
            };
            ApiError::invalid_value(format!("Invalid graph artifact: {detail}"))
        }
        GraphError::VersionConflict(_) => ApiError::new(ErrorCode::Conflict, err.to_string()),
        GraphError::NoPrevious => ApiError::new(ErrorCode::Conflict, err.to_string()),
        _ => ApiError::internal_chain(&err),
    }
}

/// Upload a graph artifact: verified, stored and swapped in while requests continue.
#[utoipa::path(put, path = "/admin/graph", tag = "admin", security(("bearer" = [])),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "A graph artifact (`edgeroute-engine` format)"),
    responses(
        (status = 200, description = "Now served", body = GraphChange),
        (status = 400, description = "Artifact rejected (InvalidValue)", body = edgeroute_protocol::osrm::ErrorResponse),
        (status = 401, description = "Missing or wrong admin key", body = edgeroute_protocol::osrm::ErrorResponse),
        (status = 409, description = "Version already stored with other content", body = edgeroute_protocol::osrm::ErrorResponse),
        (status = 413, description = "Artifact too large", body = edgeroute_protocol::osrm::ErrorResponse),
    ))]
pub async fn upload(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<GraphChange>, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid_value(
            "Empty body: send the graph artifact bytes",
        ));
    }
    let activated = state
        .graphs
        .upload(body, "upload")
        .await
        .map_err(graph_error)?;
    Ok(Json(activated.into()))
}

/// Swap back to the previously served version.
#[utoipa::path(post, path = "/admin/graph/rollback", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "Now served", body = GraphChange),
        (status = 409, description = "No previous version", body = edgeroute_protocol::osrm::ErrorResponse),
    ))]
pub async fn rollback(State(state): State<AppState>) -> Result<Json<GraphChange>, ApiError> {
    let activated = state.graphs.rollback().await.map_err(graph_error)?;
    Ok(Json(activated.into()))
}

/// Stored graph versions and pointers.
#[utoipa::path(get, path = "/admin/graph", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Stored versions", body = GraphVersions)))]
pub async fn versions(State(state): State<AppState>) -> Result<Json<GraphVersions>, ApiError> {
    let (pointers, versions) = state.graphs.versions().await.map_err(graph_error)?;
    Ok(Json(GraphVersions {
        active: pointers.active,
        previous: pointers.previous,
        versions,
    }))
}

//! Graph management, behind the admin key: upload (verified, stored, swapped atomically),
//! rollback to the previous version, and the list of stored versions and served profiles.
//!
//! An upload is streamed: its header is checked from the first bytes, so junk is refused
//! before the rest of it is read, and the artifact is spooled to a file under the data
//! directory rather than held in memory while it arrives (see `routing::spool`).

use axum::{
    Json, Router,
    body::Body,
    extract::{Query, State},
    http::{HeaderMap, header},
    routing::{post, put},
};
use edgeroute_protocol::{
    admin::{GraphChange, GraphVersions, ProfileGraph},
    osrm::ErrorCode,
};
use tower_http::limit::RequestBodyLimitLayer;

use super::AppState;
use crate::{
    error::ApiError,
    routing::{
        Activated, Error as GraphError,
        spool::{SpoolError, spool},
    },
};

/// Routes of this module; the upload route alone accepts large bodies, and enforces its
/// limit itself (from `Content-Length` and from the artifact's header) as it streams.
pub fn router(state: &AppState) -> Router<AppState> {
    let graph = Router::new().route("/admin/graph", put(upload).get(versions));
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
        GraphError::Read { .. } => ApiError::internal_chain(&err),
        GraphError::NoPrevious => ApiError::new(ErrorCode::Conflict, err.to_string()),
        GraphError::ProfileName(_) | GraphError::ProfileMismatch { .. } => {
            ApiError::invalid_value(err.to_string())
        }
        _ => ApiError::internal_chain(&err),
    }
}

/// Which graph an upload replaces.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct UploadTarget {
    /// `car` (default) for the default graph; another name installs an extra profile's
    /// graph (`truck`), which must have been built for that profile.
    pub profile: Option<String>,
}

/// Upload a graph artifact: verified, stored and swapped in while requests continue.
#[utoipa::path(put, path = "/admin/graph", tag = "admin", security(("bearer" = [])),
    params(UploadTarget),
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
    target: Result<Query<UploadTarget>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<GraphChange>, ApiError> {
    let Query(target) = target.map_err(|e| ApiError::invalid_query(e.body_text()))?;
    let profile = target
        .profile
        .filter(|p| !crate::routing::profiles::is_default(p));
    if let Some(name) = &profile
        && !crate::routing::profiles::valid_name(name)
    {
        return Err(graph_error(GraphError::ProfileName(name.clone())));
    }
    let max = u64::try_from(state.limits.max_graph_bytes).unwrap_or(u64::MAX);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(0) => {
            return Err(ApiError::invalid_value(
                "Empty body: send the graph artifact bytes",
            ));
        }
        Some(size) if size > max => return Err(too_large(size, max)),
        _ => {}
    }
    let spooled = spool(body.into_data_stream(), state.graphs.spool_dir(), max)
        .await
        .map_err(|err| match err {
            SpoolError::Invalid(inner) => {
                ApiError::invalid_value(format!("Invalid graph artifact: {inner}"))
            }
            SpoolError::TooLarge { size, max } => too_large(size, max),
            SpoolError::Stream(_) => {
                ApiError::invalid_value("The upload was cut before the artifact was complete")
            }
            err @ SpoolError::Io { .. } => ApiError::internal_chain(&err),
        })?;
    if let Some(name) = profile {
        let profiles = state.profiles.clone();
        let graph = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(spooled.path()).map_err(|source| GraphError::Read {
                path: spooled.path().to_owned(),
                source,
            })?;
            drop(spooled);
            profiles.install(&name, &bytes)
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(graph_error)?;
        return Ok(Json(GraphChange {
            version: graph.info().version.clone(),
            checksum: graph.sha256().to_owned(),
            previous: None,
        }));
    }
    let activated = state
        .graphs
        .upload_spooled(spooled, "upload")
        .await
        .map_err(graph_error)?;
    Ok(Json(activated.into()))
}

fn too_large(size: u64, max: u64) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "The artifact is {size} bytes; this agent accepts at most {max} (--max-graph-bytes)"
        ),
    )
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

/// Stored graph versions and pointers, and the graph of every extra profile served.
#[utoipa::path(get, path = "/admin/graph", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Stored versions", body = GraphVersions)))]
pub async fn versions(State(state): State<AppState>) -> Result<Json<GraphVersions>, ApiError> {
    let (pointers, versions) = state.graphs.versions().await.map_err(graph_error)?;
    let profiles = state.profiles.clone();
    // `directed` looks at marker files: off the async threads.
    let profiles = tokio::task::spawn_blocking(move || {
        let directed = profiles.directed();
        profiles
            .all()
            .into_iter()
            .map(|(name, g)| {
                let graph = ProfileGraph {
                    version: g.info().version.clone(),
                    checksum: g.sha256().to_owned(),
                    directed: directed.contains(&name),
                };
                (name, graph)
            })
            .collect()
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(GraphVersions {
        active: pointers.active,
        previous: pointers.previous,
        versions,
        profiles,
    }))
}

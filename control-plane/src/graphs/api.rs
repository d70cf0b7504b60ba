//! The registry's API (admin key): `PUT /api/v1/graphs/{version}` uploads an artifact,
//! verified before it is listed; `GET /api/v1/graphs` lists them;
//! `PUT /api/v1/regions/{region}/graph` picks a region's graph where no Kubernetes is used.

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, State, rejection::JsonRejection},
    http::{HeaderMap, StatusCode},
    routing::{get, put},
};
use edgeroute_protocol::sync::{GraphList, RegionGraph, RegisteredGraph, rfc3339};

use super::registry::RegistryError;
use crate::{
    serve::{
        Center,
        error::{ApiError, json_rejection},
    },
    sync::store::GraphMeta,
};

/// Routes of the registry API.
pub fn router() -> Router<Center> {
    Router::new()
        .route(
            "/api/v1/graphs/{version}",
            // The registry enforces --max-graph-bytes while streaming to disk.
            put(upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/api/v1/graphs", get(list))
        .route(
            "/api/v1/regions/{region}/graph",
            put(set_region).get(region),
        )
}

fn registered(meta: GraphMeta) -> RegisteredGraph {
    RegisteredGraph {
        uploaded_at: rfc3339(meta.uploaded_at_ms),
        version: meta.version,
        sha256: meta.sha256,
        size_bytes: meta.size_bytes,
        node_count: meta.node_count,
        bbox: meta.bbox,
    }
}

fn registry_error(err: RegistryError) -> ApiError {
    match err {
        RegistryError::InvalidVersion(_) | RegistryError::Invalid(_) => {
            ApiError::invalid(err.to_string())
        }
        RegistryError::TooLarge(_) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            err.to_string(),
        ),
        RegistryError::Interrupted => ApiError::invalid(err.to_string()),
        RegistryError::Io(e) => ApiError::storage(e),
    }
}

async fn upload(
    State(center): State<Center>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<RegisteredGraph>), ApiError> {
    center.auth.admin(&headers)?;
    let existing = center
        .store
        .graph(&version)
        .await
        .map_err(ApiError::storage)?;
    let received = center
        .registry
        .receive(
            &version,
            body.into_data_stream(),
            center.settings.max_graph_bytes,
        )
        .await
        .map_err(registry_error)?;
    if let Some(existing) = existing {
        // Versions are immutable, so a resumed download never splices two artifacts: the
        // same bytes again is a no-op, other bytes a conflict.
        let same = existing.sha256 == received.meta.sha256;
        received.discard().await;
        if same {
            return Ok((StatusCode::OK, Json(registered(existing))));
        }
        return Err(ApiError::conflict(format!(
            "graph version {version:?} is registered with sha256 {}; upload other bytes under a new version",
            existing.sha256
        )));
    }
    let meta = received.commit().await.map_err(registry_error)?;
    center
        .store
        .put_graph(meta.clone())
        .await
        .map_err(ApiError::storage)?;
    tracing::info!(version = %meta.version, sha256 = %meta.sha256, bytes = meta.size_bytes, "graph registered");
    Ok((StatusCode::CREATED, Json(registered(meta))))
}

async fn list(
    State(center): State<Center>,
    headers: HeaderMap,
) -> Result<Json<GraphList>, ApiError> {
    center.auth.admin(&headers)?;
    let graphs = center
        .store
        .graphs()
        .await
        .map_err(ApiError::storage)?
        .into_iter()
        .map(registered)
        .collect();
    Ok(Json(GraphList { graphs }))
}

async fn set_region(
    State(center): State<Center>,
    Path(region): Path<String>,
    headers: HeaderMap,
    body: Result<Json<RegionGraph>, JsonRejection>,
) -> Result<Json<RegionGraph>, ApiError> {
    center.auth.admin(&headers)?;
    let Json(wanted) = body.map_err(json_rejection)?;
    if center
        .store
        .graph(&wanted.version)
        .await
        .map_err(ApiError::storage)?
        .is_none()
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "UnknownGraph",
            format!(
                "graph version {:?} is not registered: PUT /api/v1/graphs/{{version}} first",
                wanted.version
            ),
        ));
    }
    // A region that already serves a graph on nodes gets the new one as a rollout.
    let outcome = crate::rollout::graph::request_graph(&center, &region, &wanted.version, true)
        .await
        .map_err(crate::rollout::api::rollout_error)?;
    tracing::info!(%region, version = %wanted.version, ?outcome, "region graph requested");
    Ok(Json(wanted))
}

async fn region(
    State(center): State<Center>,
    Path(region): Path<String>,
    headers: HeaderMap,
) -> Result<Json<RegionGraph>, ApiError> {
    center.auth.admin(&headers)?;
    match center
        .store
        .region_graph(&region)
        .await
        .map_err(ApiError::storage)?
    {
        Some(version) => Ok(Json(RegionGraph { version })),
        None => Err(ApiError::not_found(format!(
            "region {region:?} has no graph set"
        ))),
    }
}

//! The registry's API (admin key): `PUT /api/v1/graphs/{version}` uploads an artifact,
//! verified before it is listed; `GET /api/v1/graphs` lists them;
//! `PUT /api/v1/regions/{region}/graph` picks a region's graph where no Kubernetes is used,
//! and with `?profile=truck` the graph of one of its extra profiles (see [`super::profiles`];
//! `DELETE` with `?profile=` stops the region's agents serving that profile).

use axum::{
    Json, Router,
    body::Body,
    extract::{
        Path, Query, State,
        rejection::{JsonRejection, QueryRejection},
    },
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
            put(set_region).get(region).delete(delete_region_profile),
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

/// `?profile=`: which of a region's graphs a request is about (absent, `car` or `driving`:
/// the default one).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileQuery {
    /// An extra profile's name (`truck`).
    pub profile: Option<String>,
}

/// The extra profile a query names, `None` for the default graph; a name that cannot be a
/// profile, or a region that cannot have profiles, is a 400.
fn extra_profile(
    region: &str,
    query: Result<Query<ProfileQuery>, QueryRejection>,
) -> Result<Option<String>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let Some(profile) = query
        .profile
        .filter(|p| !super::profiles::DEFAULT_ALIASES.contains(&p.as_str()))
    else {
        return Ok(None);
    };
    if !super::profiles::valid_name(&profile) {
        return Err(ApiError::invalid(format!(
            "{profile:?} is not a profile name: use 1 to 32 of a-z, 0-9, _ and - (car and driving name the default graph)"
        )));
    }
    if !super::profiles::valid_region(region) {
        return Err(ApiError::invalid(format!(
            "region {region:?} cannot have profiles: a region name has no '/'"
        )));
    }
    Ok(Some(profile))
}

async fn set_region(
    State(center): State<Center>,
    Path(region): Path<String>,
    query: Result<Query<ProfileQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Json<RegionGraph>, JsonRejection>,
) -> Result<Json<RegionGraph>, ApiError> {
    center.auth.admin(&headers)?;
    let profile = extra_profile(&region, query)?;
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
    if let Some(profile) = profile {
        // No canary for extra profiles: rollouts move the default graph only.
        super::profiles::set_region_profile(
            center.store.as_ref(),
            &region,
            &profile,
            Some(&wanted.version),
        )
        .await
        .map_err(ApiError::storage)?;
        tracing::info!(%region, %profile, version = %wanted.version, "region profile graph set");
        return Ok(Json(wanted));
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
    query: Result<Query<ProfileQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<RegionGraph>, ApiError> {
    center.auth.admin(&headers)?;
    let version = match extra_profile(&region, query)? {
        Some(profile) => super::profiles::region_profiles(center.store.as_ref(), &region)
            .await
            .map_err(ApiError::storage)?
            .remove(&profile),
        None => center
            .store
            .region_graph(&region)
            .await
            .map_err(ApiError::storage)?,
    };
    match version {
        Some(version) => Ok(Json(RegionGraph { version })),
        None => Err(ApiError::not_found(format!(
            "region {region:?} has no graph set for that profile"
        ))),
    }
}

/// `DELETE /api/v1/regions/{region}/graph?profile=truck`: the region's agents stop serving
/// the profile (the default graph cannot be removed this way).
async fn delete_region_profile(
    State(center): State<Center>,
    Path(region): Path<String>,
    query: Result<Query<ProfileQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    center.auth.admin(&headers)?;
    let Some(profile) = extra_profile(&region, query)? else {
        return Err(ApiError::invalid(
            "only an extra profile's graph can be removed: add ?profile=<name>",
        ));
    };
    let removed =
        super::profiles::set_region_profile(center.store.as_ref(), &region, &profile, None)
            .await
            .map_err(ApiError::storage)?;
    if !removed {
        return Err(ApiError::not_found(format!(
            "region {region:?} has no graph for profile {profile:?}"
        )));
    }
    tracing::info!(%region, %profile, "region profile graph removed");
    Ok(StatusCode::NO_CONTENT)
}

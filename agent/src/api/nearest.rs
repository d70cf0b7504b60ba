//! `GET /nearest/v1/{profile}/{coordinate}`: the nearest roads to a point.

use axum::{Router, routing::get};
use edgeroute_protocol::osrm::NearestResponse;

use super::{
    AppState,
    json::Json,
    osrm::{OsrmRequest, shape},
    params,
};
use crate::error::{ApiError, from_engine};

/// Routes of this module. No body-limit layer: the service reads no body, and [`OsrmRequest`]
/// refuses one announced over the limit.
pub fn router() -> Router<AppState> {
    Router::new().route("/nearest/{version}/{profile}/{coordinates}", get(nearest))
}

/// Snap a coordinate to the `number` nearest distinct roads (OSRM nearest service).
#[utoipa::path(get, path = "/nearest/{version}/{profile}/{coordinates}", tag = "osrm",
    security(("bearer" = [])),
    params(
        ("version" = String, Path, description = "Protocol version: `v1`"),
        ("profile" = String, Path, description = "Profile name"),
        ("coordinates" = String, Path, description = "Exactly one `lon,lat`"),
        ("number" = Option<usize>, Query, description = "How many roads (default 1)"),
        ("radiuses" = Option<String>, Query, description = "Snapping radius in metres"),
    ),
    responses(
        (status = 200, description = "Nearest waypoints, nearest first", body = NearestResponse),
        (status = 400, description = "OSRM error", body = edgeroute_protocol::osrm::ErrorResponse),
    ))]
pub async fn nearest(request: OsrmRequest) -> Result<Json<NearestResponse>, ApiError> {
    let coords = &request.coordinates;
    if coords.len() != 1 {
        return Err(ApiError::invalid_options(
            "The nearest service takes exactly one coordinate",
        ));
    }
    let limits = request.limits();
    let options = request.options(params::nearest_options)?;
    if options.number > limits.max_nearest {
        return Err(ApiError::too_big(format!(
            "number {} exceeds the maximum of {}",
            options.number, limits.max_nearest
        )));
    }
    let graph = request.graph()?;
    let radius = options
        .radiuses
        .first()
        .copied()
        .flatten()
        .unwrap_or(limits.snap_radius_m);
    let snaps = graph
        .nearest(coords[0], options.number, radius)
        .map_err(|e| from_engine(e, Some(0)))?;
    if snaps.is_empty() {
        return Err(from_engine(
            edgeroute_engine::Error::NoSegment {
                lon: coords[0].lon,
                lat: coords[0].lat,
                radius_m: radius,
            },
            Some(0),
        ));
    }
    Ok(Json(NearestResponse {
        code: "Ok".to_owned(),
        waypoints: snaps.iter().map(shape::waypoint).collect(),
    }))
}

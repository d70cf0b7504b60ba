//! `GET /table/v1/{profile}/{coordinates}`: duration and distance matrices.

use axum::{Router, extract::State, routing::get};
use edgeroute_engine::{Coord, Graph};
use edgeroute_protocol::osrm::{TableAnnotation, TableOptions, TableResponse};
use edgeroute_server::telemetry::count;

use super::{
    AppState,
    json::Json,
    osrm::{OsrmRequest, shape, snap_all},
    params,
};
use crate::error::ApiError;

/// Routes of this module. No body-limit layer: the service reads no body, and [`OsrmRequest`]
/// refuses one announced over the limit.
pub fn router() -> Router<AppState> {
    Router::new().route("/table/{version}/{profile}/{coordinates}", get(table))
}

/// Durations (and distances) between sources and destinations (OSRM table service).
#[utoipa::path(get, path = "/table/{version}/{profile}/{coordinates}", tag = "osrm",
    security(("bearer" = [])),
    params(
        ("version" = String, Path, description = "Protocol version: `v1`"),
        ("profile" = String, Path, description = "Profile name"),
        ("coordinates" = String, Path, description = "`lon,lat;lon,lat[;...]` or `polyline(...)`"),
        ("sources" = Option<String>, Query, description = "`all` or `;` separated coordinate indices"),
        ("destinations" = Option<String>, Query, description = "`all` or `;` separated coordinate indices"),
        ("annotations" = Option<String>, Query, description = "`duration` (default), `distance` or `duration,distance`"),
        ("radiuses" = Option<String>, Query, description = "Snapping radius per coordinate in metres"),
    ),
    responses(
        (status = 200, description = "Matrices; unreachable pairs are null", body = TableResponse),
        (status = 400, description = "OSRM error (TooBig above the configured size)", body = edgeroute_protocol::osrm::ErrorResponse),
    ))]
pub async fn table(
    State(state): State<AppState>,
    request: OsrmRequest,
) -> Result<Json<TableResponse>, ApiError> {
    let coords = &request.coordinates;
    let limits = request.limits();
    if coords.len() > 2 * limits.max_table_size {
        return Err(ApiError::too_big(format!(
            "Too many table coordinates: {} (at most {} sources and {} destinations)",
            coords.len(),
            limits.max_table_size,
            limits.max_table_size
        )));
    }
    let options = request.options(params::table_options)?;
    let sources = options
        .sources
        .clone()
        .unwrap_or_else(|| (0..coords.len()).collect());
    let destinations = options
        .destinations
        .clone()
        .unwrap_or_else(|| (0..coords.len()).collect());
    if sources.len() > limits.max_table_size || destinations.len() > limits.max_table_size {
        return Err(ApiError::too_big(format!(
            "Table of {}x{} exceeds the maximum of {}x{}",
            sources.len(),
            destinations.len(),
            limits.max_table_size,
            limits.max_table_size
        )));
    }
    if coords.is_empty() || sources.is_empty() || destinations.is_empty() {
        return Err(ApiError::invalid_options(
            "A table needs at least one source and one destination",
        ));
    }
    let graph = request.graph()?;
    let radius = limits.snap_radius_m;
    let coords = request.coordinates;
    let span = tracing::info_span!("table", edgeroute.coordinates = count(coords.len()));
    let response = crate::compute::offload(&state, move || {
        span.in_scope(|| compute(&graph, &coords, &sources, &destinations, &options, radius))
    })
    .await??;
    Ok(Json(response))
}

/// Snap, compute the matrix and shape the OSRM response.
pub fn compute(
    graph: &Graph,
    coords: &[Coord],
    sources: &[usize],
    destinations: &[usize],
    options: &TableOptions,
    default_radius_m: f64,
) -> Result<TableResponse, ApiError> {
    let snaps = snap_all(graph, coords, &options.radiuses, default_radius_m)?;
    let src: Vec<_> = sources.iter().map(|&i| snaps[i].clone()).collect();
    let dst: Vec<_> = destinations.iter().map(|&i| snaps[i].clone()).collect();
    let table = graph.table(&src, &dst);
    let matrix = |value: &dyn Fn(usize, usize) -> Option<f64>| {
        (0..src.len())
            .map(|i| {
                (0..dst.len())
                    .map(|j| value(i, j).map(shape::round1))
                    .collect()
            })
            .collect()
    };
    let wants = |a| options.annotations.contains(&a);
    Ok(TableResponse {
        code: "Ok".to_owned(),
        durations: wants(TableAnnotation::Duration).then(|| matrix(&|i, j| table.duration_s(i, j))),
        distances: wants(TableAnnotation::Distance).then(|| matrix(&|i, j| table.distance_m(i, j))),
        sources: src.iter().map(shape::waypoint).collect(),
        destinations: dst.iter().map(shape::waypoint).collect(),
    })
}

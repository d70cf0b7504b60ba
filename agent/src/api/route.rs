//! `GET /route/v1/{profile}/{coordinates}`: fastest route through the waypoints in order.

use axum::{Router, extract::State, routing::get};
use edgeroute_engine::{Coord, Detail, Graph};
use edgeroute_protocol::osrm::{ErrorCode, Overview, RouteAnnotation, RouteOptions, RouteResponse};
use edgeroute_server::telemetry::count;

use super::{
    AppState,
    json::Json,
    osrm::{OsrmRequest, shape, snap_all},
    params,
};
use crate::{
    error::{ApiError, from_engine},
    routing::shadow::Served,
};

/// Routes with more waypoints than this run on the compute pool.
const INLINE_WAYPOINTS: usize = 16;

/// Routes of this module. No body-limit layer: the service reads no body, and [`OsrmRequest`]
/// refuses one announced over the limit.
pub fn router() -> Router<AppState> {
    Router::new().route("/route/{version}/{profile}/{coordinates}", get(route))
}

/// Fastest route visiting the coordinates in order (OSRM route service).
#[utoipa::path(get, path = "/route/{version}/{profile}/{coordinates}", tag = "osrm",
    security(("bearer" = [])),
    params(
        ("version" = String, Path, description = "Protocol version: `v1`"),
        ("profile" = String, Path, description = "`car` or `driving` (the default graph), or an extra profile the agent serves (`truck`)"),
        ("coordinates" = String, Path, description = "`lon,lat;lon,lat[;...]`, `polyline(...)` or `polyline6(...)`, optionally followed by `.json`"),
        ("alternatives" = Option<String>, Query, description = "`true`, `false` or a number; at most one route is returned"),
        ("steps" = Option<bool>, Query, description = "Return turn-by-turn steps"),
        ("geometries" = Option<String>, Query, description = "`polyline` (default), `polyline6` or `geojson`"),
        ("overview" = Option<String>, Query, description = "`simplified` (default), `full` or `false`"),
        ("annotations" = Option<String>, Query, description = "`true`, `false` or a list of `duration,distance,weight,speed`"),
        ("radiuses" = Option<String>, Query, description = "Snapping radius per coordinate in metres, `;` separated"),
        ("continue_straight" = Option<String>, Query, description = "Accepted for compatibility"),
    ),
    responses(
        (status = 200, description = "A route", body = RouteResponse),
        (status = 400, description = "OSRM error: InvalidUrl, InvalidQuery, InvalidValue, InvalidOptions, NoSegment, NoRoute, TooBig", body = edgeroute_protocol::osrm::ErrorResponse),
        (status = 401, description = "Missing or wrong API key", body = edgeroute_protocol::osrm::ErrorResponse),
        (status = 503, description = "No graph loaded yet, or overloaded", body = edgeroute_protocol::osrm::ErrorResponse),
    ))]
pub async fn route(
    State(state): State<AppState>,
    request: OsrmRequest,
) -> Result<Json<RouteResponse>, ApiError> {
    params::waypoint_count(
        request.coordinates.len(),
        request.limits().max_route_waypoints,
    )?;
    let options = request.options(params::route_options)?;
    let graph = request.graph()?;
    let radius = request.limits().snap_radius_m;
    let default_profile = request.is_default_profile();
    let coords = request.coordinates;
    // During a graph canary the request may be re-answered on the shadow graph after this
    // answer is ready: keep what that needs (only then, it costs a copy).
    let for_shadow = (default_profile && state.shadow.is_active())
        .then(|| (coords.clone(), options.radiuses.clone()));
    let response = if coords.len() <= INLINE_WAYPOINTS {
        // Inline, the computation is nearly all of the request span's own time, and a
        // child span of it cost 7% of a short route's CPU: debug level, as `snap`.
        let span = tracing::debug_span!("route", edgeroute.coordinates = count(coords.len()));
        span.in_scope(|| compute(&graph, &coords, &options, radius))
    } else {
        // On the compute pool the span shows the computation apart from the wait for it.
        let span = tracing::info_span!("route", edgeroute.coordinates = count(coords.len()));
        crate::compute::offload(&state, move || {
            span.in_scope(|| compute(&graph, &coords, &options, radius))
        })
        .await?
    };
    if let Some((coords, radiuses)) = for_shadow {
        let served = match &response {
            Ok(r) => r.routes.first().map(|r| Served::Route {
                duration_s: r.duration,
            }),
            Err(e) if matches!(e.code(), ErrorCode::NoRoute | ErrorCode::NoSegment) => {
                Some(Served::NoRoute)
            }
            // A request the served graph refused for its own sake (bad radius, ...) says
            // nothing about the graphs.
            Err(_) => None,
        };
        if let Some(served) = served {
            state.shadow.offer(&coords, &radiuses, radius, served);
        }
    }
    Ok(Json(response?))
}

/// Snap, route each leg and shape the OSRM response.
pub fn compute(
    graph: &Graph,
    coords: &[Coord],
    options: &RouteOptions,
    default_radius_m: f64,
) -> Result<RouteResponse, ApiError> {
    let snaps = snap_all(graph, coords, &options.radiuses, default_radius_m)?;
    let detail = detail_needed(options);
    let legs = snaps
        .windows(2)
        .map(|pair| {
            graph
                .route_with(&pair[0], &pair[1], detail)
                .map_err(|e| from_engine(e, None))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RouteResponse {
        code: "Ok".to_owned(),
        routes: vec![shape::route(&legs, options)],
        waypoints: snaps.iter().map(shape::waypoint).collect(),
    })
}

/// Geometry is built only when the answer carries some: an overview, steps (each has its
/// geometry) or annotations (per pair of points). Without them (dispatch clients asking for
/// times and distances) the shape is not copied at all. OSM node ids only when asked for
/// (`annotations=nodes`): they are a third of the bytes copied per shape point.
fn detail_needed(options: &RouteOptions) -> Detail {
    if options.annotations.contains(&RouteAnnotation::Nodes) {
        Detail::Full
    } else if options.overview == Overview::False
        && !options.steps
        && options.annotations.is_empty()
    {
        Detail::Summary
    } else {
        Detail::Geometry
    }
}

//! Nearest-edge discovery: which agents a client at a point should call.
//!
//! [`rank`] is the pure part: the online, ready agents with an advertise URL whose graph
//! covers the point, nearest first, then least loaded, then by name. Two HTTP faces use it:
//! `GET /api/v1/endpoints?lat=&lon=` lists them, and the OSRM paths on the center
//! (`/route/v1/...`, `/table/v1/...`, `/nearest/v1/...`, `/trip/v1/...`) answer
//! `307 Temporary Redirect` to the best agent for the first coordinate, so an OSRM client
//! pointed at the center follows to its edge.

use std::cmp::Ordering;

use axum::{
    Json, Router,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{StatusCode, Uri},
    response::Redirect,
    routing::get,
};
use edgeroute_protocol::sync::{Endpoint, EndpointList, Location, NodeState};
use serde::Deserialize;

use super::state_of;
use crate::{
    graphs::registry::now_ms,
    serve::{Center, Settings, error::ApiError},
    sync::store::NodeRecord,
};

/// Mean Earth radius in metres (the usual haversine constant).
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Endpoints `GET /api/v1/endpoints` lists without `limit`.
pub const DEFAULT_ENDPOINTS: usize = 3;
/// The most endpoints one answer lists.
pub const MAX_ENDPOINTS: usize = 100;

/// Routes of discovery (no credentials: dispatch clients call them).
pub fn router() -> Router<Center> {
    let mut router = Router::new().route("/api/v1/endpoints", get(endpoints));
    for service in OSRM_SERVICES {
        router = router.route(
            &format!("/{service}/{{version}}/{{profile}}/{{coordinates}}"),
            get(redirect),
        );
    }
    router
}

/// OSRM services the center redirects to an agent.
pub const OSRM_SERVICES: [&str; 4] = ["route", "table", "nearest", "trip"];

/// Great-circle distance in metres between two points (haversine).
pub fn haversine_m(a: Location, b: Location) -> f64 {
    let (lat1, lat2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// Whether `[min_lon, min_lat, max_lon, max_lat]` contains the point (edges included; a box
/// with `min_lon > max_lon` crosses the antimeridian).
pub fn bbox_contains(bbox: [f64; 4], point: Location) -> bool {
    let [min_lon, min_lat, max_lon, max_lat] = bbox;
    let lat_ok = min_lat <= point.lat && point.lat <= max_lat;
    let lon_ok = if min_lon <= max_lon {
        min_lon <= point.lon && point.lon <= max_lon
    } else {
        point.lon >= min_lon || point.lon <= max_lon
    };
    lat_ok && lon_ok
}

/// Requests per second of a record's last metrics window.
fn load_rps(record: &NodeRecord) -> f64 {
    let m = &record.report.metrics;
    m.requests() as f64 * 1000.0 / m.window_ms.max(1) as f64
}

/// The agents a client at `point` should call, best first: only online (neither stale nor
/// offline at `now_ms`), ready agents with an advertise URL whose graph's bbox contains the
/// point; ranked by distance from the agent's location (agents without one last), then by
/// request rate of their last window (lower first), then by node name.
pub fn rank(
    records: impl IntoIterator<Item = NodeRecord>,
    point: Location,
    now_ms: u64,
    settings: &Settings,
) -> Vec<Endpoint> {
    let mut candidates: Vec<(Endpoint, f64)> = records
        .into_iter()
        .filter_map(|record| {
            let age = now_ms.saturating_sub(record.received_at_ms);
            if state_of(age, settings) != NodeState::Online || !record.report.health.ready {
                return None;
            }
            let load = load_rps(&record);
            let r = record.report;
            let graph = r.graph?;
            if !bbox_contains(graph.bbox?, point) {
                return None;
            }
            let url = r.advertise_url.filter(|u| !u.is_empty())?;
            let endpoint = Endpoint {
                node: r.node,
                url,
                region: r.region,
                distance_m: r.location.map(|at| haversine_m(at, point)),
                graph_version: graph.version,
                p99_ms: r.metrics.latency.quantile_ms(0.99),
            };
            Some((endpoint, load))
        })
        .collect();
    candidates.sort_by(|(a, load_a), (b, load_b)| {
        by_distance(a.distance_m, b.distance_m)
            .then(load_a.total_cmp(load_b))
            .then_with(|| a.node.cmp(&b.node))
    });
    candidates.into_iter().map(|(e, _)| e).collect()
}

/// Known distances first, nearest first.
fn by_distance(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// `GET /api/v1/endpoints` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointsQuery {
    /// Latitude in degrees, -90 to 90.
    pub lat: f64,
    /// Longitude in degrees, -180 to 180.
    pub lon: f64,
    /// At most this many (1..=100, default 3).
    pub limit: Option<usize>,
}

/// A point checked to be on the map.
fn point(lat: f64, lon: f64) -> Result<Location, &'static str> {
    if !(-90.0..=90.0).contains(&lat) {
        return Err("lat must be a number from -90 to 90");
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err("lon must be a number from -180 to 180");
    }
    Ok(Location { lat, lon })
}

/// The ranked agents for a point, from the fleet view (the last reports, in memory).
async fn ranked(center: &Center, at: Location) -> Result<Vec<Endpoint>, ApiError> {
    Ok(rank(center.fleet.records(), at, now_ms(), &center.settings))
}

/// `GET /api/v1/endpoints?lat=&lon=[&limit=k]`: the healthy agents covering the point, best
/// first. This is what dispatch apps call to find their edge, so unlike the rest of
/// `/api/v1/` it needs no admin key: it only reveals the advertise URLs clients are meant
/// to call. 404 when no healthy agent covers the point.
async fn endpoints(
    State(center): State<Center>,
    query: Result<Query<EndpointsQuery>, QueryRejection>,
) -> Result<Json<EndpointList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_ENDPOINTS);
    if !(1..=MAX_ENDPOINTS).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to {MAX_ENDPOINTS}"
        )));
    }
    let at = point(q.lat, q.lon).map_err(ApiError::invalid)?;
    let mut endpoints = ranked(&center, at).await?;
    if endpoints.is_empty() {
        return Err(no_agent(at, "NotFound"));
    }
    endpoints.truncate(limit);
    Ok(Json(EndpointList { endpoints }))
}

fn no_agent(at: Location, code: &'static str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        code,
        format!("no healthy agent covers lat {}, lon {}", at.lat, at.lon),
    )
}

/// The first coordinate of an OSRM `{coordinates}` segment: `lon,lat;lon,lat...` (an
/// optional `.json` suffix), or `polyline(...)` / `polyline6(...)`.
pub fn first_coordinate(raw: &str) -> Result<Location, String> {
    let raw = raw.strip_suffix(".json").unwrap_or(raw);
    for (prefix, precision) in [("polyline6(", 6), ("polyline(", 5)] {
        if let Some(rest) = raw.strip_prefix(prefix) {
            let encoded = rest
                .strip_suffix(')')
                .ok_or_else(|| format!("URL string malformed: missing ')' after {prefix}"))?;
            // The engine's decoder, the one the agents use: same alphabet, same checks.
            let first = edgeroute_engine::polyline::decode(encoded, precision)
                .ok()
                .and_then(|coords| coords.first().copied())
                .ok_or("URL string malformed: invalid polyline")?;
            return point(first.lat, first.lon).map_err(str::to_owned);
        }
    }
    let first = raw.split(';').next().unwrap_or_default();
    let malformed = || "URL string malformed close to position 0: expected lon,lat".to_owned();
    let (lon, lat) = first.split_once(',').ok_or_else(malformed)?;
    let lon: f64 = lon.trim().parse().map_err(|_| malformed())?;
    let lat: f64 = lat.trim().parse().map_err(|_| malformed())?;
    point(lat, lon).map_err(str::to_owned)
}

/// `GET /{service}/{version}/{profile}/{coordinates}` on the center: `307` to the best agent
/// for the first coordinate, same path and query, so OSRM clients follow to their edge.
async fn redirect(
    State(center): State<Center>,
    Path((_version, _profile, coordinates)): Path<(String, String, String)>,
    uri: Uri,
) -> Result<Redirect, ApiError> {
    let at = first_coordinate(&coordinates)
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, "InvalidUrl", message))?;
    let best = ranked(&center, at)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| no_agent(at, "NoSegment"))?;
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path(), |p| p.as_str());
    Ok(Redirect::temporary(&format!(
        "{}{path}",
        best.url.trim_end_matches('/')
    )))
}

#[cfg(test)]
mod tests;

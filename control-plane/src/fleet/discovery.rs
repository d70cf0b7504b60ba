//! Nearest-edge discovery: which agents a client at a point should call.
//!
//! [`rank`] is the pure part: the online, ready agents with an advertise URL whose graph
//! covers the point, nearest first, then least loaded, then by name. Two HTTP faces use it:
//! `GET /api/v1/endpoints?lat=&lon=` lists them, and the OSRM paths on the center
//! (`/route/v1/...`, `/table/v1/...`, `/nearest/v1/...`, `/trip/v1/...`) answer
//! `307 Temporary Redirect` to the best agent for the first coordinate, so an OSRM client
//! pointed at the center follows to its edge.

use std::cmp::Ordering;

use edgeroute_protocol::sync::{Endpoint, Location, NodeState};

use super::state_of;
use crate::{serve::Settings, sync::store::NodeRecord};

/// Mean Earth radius in metres (the usual haversine constant).
const EARTH_RADIUS_M: f64 = 6_371_008.8;

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

#[cfg(test)]
mod tests;

//! What the OSRM services (route, table, nearest, trip) share: the request preamble
//! ([`OsrmRequest`]), snapping every coordinate ([`snap_all`]) and the shaping of engine
//! results into OSRM response objects ([`shape`]).

pub mod shape;

use std::sync::Arc;

use axum::{
    extract::{FromRequestParts, Path},
    http::request::Parts,
    response::{IntoResponse, Response},
};
use edgeroute_engine::{Coord, Graph, Snap};

use super::{AppState, params};
use crate::{
    config::Limits,
    error::{ApiError, from_engine},
};

/// The preamble of `/{service}/{version}/{profile}/{coordinates}?{options}`: the protocol
/// version checked, the coordinates parsed, the query split into pairs and the served graph
/// looked up.
///
/// A handler then checks the number of coordinates its service takes, parses its options
/// with [`OsrmRequest::options`] and asks for [`OsrmRequest::graph`], in that order: a bad
/// request is refused with its OSRM code even before a graph is loaded.
///
/// The profile picks the graph: `car` and `driving` (OSRM's name) the default graph, any
/// other name an extra profile's graph (`truck`); an unknown one is refused with
/// `InvalidUrl` naming the profiles served.
#[derive(Debug)]
pub struct OsrmRequest {
    /// The coordinates, in order.
    pub coordinates: Vec<Coord>,
    /// The query's pairs.
    pairs: params::Pairs,
    graph: Option<Arc<Graph>>,
    default_profile: bool,
    limits: Arc<Limits>,
}

impl FromRequestParts<AppState> for OsrmRequest {
    /// Path rejections keep axum's response (the JSON-errors middleware rewrites it);
    /// everything else is an [`ApiError`].
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if announces_more_than(&parts.headers, state.limits.max_body_bytes) {
            return Err(ApiError::new(
                edgeroute_protocol::osrm::ErrorCode::PayloadTooLarge,
                "Request body too large (the OSRM services take none)",
            )
            .into_response());
        }
        let Path((version, profile, coordinates)) =
            Path::<(String, String, String)>::from_request_parts(parts, state)
                .await
                .map_err(IntoResponse::into_response)?;
        params::check_version(&version).map_err(IntoResponse::into_response)?;
        let picked = state
            .graph_for_profile(&profile)
            .map_err(IntoResponse::into_response)?;
        let coordinates = params::coordinates(&coordinates).map_err(IntoResponse::into_response)?;
        record_request(&profile, picked.graph.as_deref(), coordinates.len());
        let pairs = params::pairs(parts.uri.query());
        Ok(Self {
            coordinates,
            pairs,
            graph: picked.graph,
            default_profile: picked.default,
            limits: state.limits.clone(),
        })
    }
}

impl OsrmRequest {
    /// The agent's request limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Parse the query options with a service's parser, which is given the pairs, the
    /// number of coordinates (for per-coordinate lists) and the largest snapping radius.
    pub fn options<T>(
        &self,
        parse: impl FnOnce(&params::Pairs, usize, f64) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        parse(
            &self.pairs,
            self.coordinates.len(),
            self.limits.snap_radius_m,
        )
    }

    /// Whether the URL's profile picked the default graph.
    pub fn is_default_profile(&self) -> bool {
        self.default_profile
    }

    /// The graph to answer with, or 503 before the first load.
    pub fn graph(&self) -> Result<Arc<Graph>, ApiError> {
        self.graph.clone().ok_or_else(ApiError::not_ready)
    }
}

/// Whether a request's `Content-Length` is over `limit`: refused with 413 before anything
/// else, as tower-http's `RequestBodyLimitLayer` refuses it on the routes that read a body.
/// The OSRM services read none, so a body without a length is never read either (hyper
/// closes the connection rather than drain it). A layer here cost each request a boxed
/// service copy and a body wrapper, 1.5k instructions of a two-point `/route`
/// (docs/agent-benchmarks.md).
fn announces_more_than(headers: &axum::http::HeaderMap, limit: usize) -> bool {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|length| length > limit as u64)
}

/// Puts what a routing request asks for on its span: the profile, the graph version and
/// how many coordinates (never the coordinates themselves).
pub fn record_request(profile: &str, graph: Option<&Graph>, coordinates: usize) {
    let span = tracing::Span::current();
    // One record, not three: each goes through every layer, and the log and OpenTelemetry
    // layers look the span up and write its fields each time.
    tracing::record_all!(
        span,
        edgeroute.profile = profile,
        edgeroute.coordinates = edgeroute_server::telemetry::count(coordinates),
        edgeroute.graph.version = graph.map(|g| g.info().version.as_str()),
    );
}

/// Snap every coordinate, reporting the index of the first that fails. A coordinate
/// without a radius of its own uses `default_radius_m`.
pub fn snap_all(
    graph: &Graph,
    coords: &[Coord],
    radiuses: &[Option<f64>],
    default_radius_m: f64,
) -> Result<Vec<Snap>, ApiError> {
    // Debug level: at info a third of a short route's tracing cost, and its time is inside
    // the `route` or `table` span anyway (docs/observability.md says how to turn it on).
    let _span = tracing::debug_span!(
        "snap",
        edgeroute.coordinates = edgeroute_server::telemetry::count(coords.len())
    )
    .entered();
    coords
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let radius = radiuses
                .get(i)
                .copied()
                .flatten()
                .unwrap_or(default_radius_m);
            graph.snap(c, radius).map_err(|e| from_engine(e, Some(i)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use edgeroute_engine::{BuildOptions, RoadNetwork, profile::Direction};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// The `span` object of a JSON line logged inside a request span after
    /// `record_request(profile, graph, 3)`.
    fn recorded(profile: &str, graph: Option<&Graph>) -> serde_json::Value {
        let out = edgeroute_tests::logs::Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                edgeroute.profile = tracing::field::Empty,
                edgeroute.graph.version = tracing::field::Empty,
                edgeroute.coordinates = tracing::field::Empty,
            );
            let _entered = span.enter();
            record_request(profile, graph, 3);
            tracing::info!("inside");
        });
        let line: serde_json::Value = serde_json::from_str(out.text().trim()).unwrap();
        line["span"].clone()
    }

    #[test]
    fn a_request_span_gets_the_profile_the_count_and_the_graph_version() {
        let mut b = RoadNetwork::builder();
        let a = b.add_node(Coord::new(7.42, 43.70).unwrap());
        let c = b.add_node(Coord::new(7.42, 43.71).unwrap());
        b.add_road(a, c, &[], 36.0, Direction::Both, "main");
        let graph = Graph::from_network(b.build().unwrap(), &BuildOptions::default()).unwrap();
        let span = recorded("truck", Some(&graph));
        assert_eq!(span["edgeroute.profile"], "truck", "{span}");
        assert_eq!(span["edgeroute.coordinates"], 3, "{span}");
        assert_eq!(
            span["edgeroute.graph.version"],
            graph.info().version.as_str(),
            "{span}"
        );
        // Before the first graph loads there is no version to record, and none is made up.
        let span = recorded("car", None);
        assert_eq!(span["edgeroute.profile"], "car", "{span}");
        assert!(span.get("edgeroute.graph.version").is_none(), "{span}");
    }
}

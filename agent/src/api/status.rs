//! `GET /v1/status`: what this node is and serves.

use axum::{Json, Router, extract::State, routing::get};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;

/// The graph being served.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GraphStatus {
    /// Version label.
    pub version: String,
    /// SHA-256 of the artifact.
    pub checksum: String,
    /// Graph nodes.
    pub node_count: usize,
    /// Graph edges.
    pub edge_count: usize,
    /// Roads.
    pub road_count: usize,
    /// `[min_lon, min_lat, max_lon, max_lat]`.
    pub bbox: [f64; 4],
}

/// `GET /v1/status` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusResponse {
    /// Node name.
    pub node: String,
    /// Stable node id.
    pub node_id: String,
    /// Region served.
    pub region: String,
    /// Agent version.
    pub agent_version: String,
    /// Whether a graph is loaded.
    pub ready: bool,
    /// The graph served, if any.
    pub graph: Option<GraphStatus>,
    /// Seconds since the process started.
    pub uptime_s: u64,
    /// Starts on this database, this one included.
    pub boot_count: u64,
}

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/status", get(status))
}

/// Node, region, graph version and checksum, uptime.
#[utoipa::path(get, path = "/v1/status", tag = "ops", security(("bearer" = [])),
    responses((status = 200, description = "Node status", body = StatusResponse)))]
pub async fn status(State(state): State<AppState>) -> Json<StatusResponse> {
    let graph = state.graphs.holder().get().map(|g| {
        let i = g.info();
        GraphStatus {
            version: i.version.clone(),
            checksum: g.sha256().to_owned(),
            node_count: i.node_count,
            edge_count: i.edge_count,
            road_count: i.road_count,
            bbox: i.bbox,
        }
    });
    Json(StatusResponse {
        node: state.node.name.clone(),
        node_id: state.node.id.clone(),
        region: state.node.region.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        ready: graph.is_some(),
        graph,
        uptime_s: state.node.started.elapsed().as_secs(),
        boot_count: state.node.boot_count,
    })
}

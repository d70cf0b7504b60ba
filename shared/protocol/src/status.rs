//! `GET /v1/status`: what an agent is and serves.

use serde::{Deserialize, Serialize};

/// The graph being served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

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
    /// The link to the control plane; absent on a standalone agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatus>,
    /// Every profile served and its graph (`car` is the default graph, also reached as
    /// `driving`; the others are extra profiles such as `truck`).
    #[serde(default)]
    pub profiles: std::collections::BTreeMap<String, GraphStatus>,
}

/// The agent's side of the link to the control plane.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncStatus {
    /// The control plane's URL.
    pub control_plane: String,
    /// The last report was acknowledged.
    pub connected: bool,
    /// RFC 3339 time of the last acknowledged report.
    pub last_ack_at: Option<String>,
    /// RFC 3339 time since which every report failed (`null` while connected).
    pub unreachable_since: Option<String>,
    /// The last failure, while not connected.
    pub last_error: Option<String>,
    /// Events waiting for the control plane.
    pub outbox_depth: u64,
    /// The control plane's watermark: every event up to it is stored there.
    pub acked_seq: u64,
    /// A graph download in progress (its version).
    pub downloading: Option<String>,
    /// The last graph download or verification failure.
    pub graph_error: Option<String>,
    /// Reports acknowledged since start.
    pub reports: u64,
    /// Reports that failed since start.
    pub report_failures: u64,
    /// The shadow graph loaded beside the served one during a graph canary (its version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<String>,
    /// The last failure to load the shadow graph a directive named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_error: Option<String>,
}

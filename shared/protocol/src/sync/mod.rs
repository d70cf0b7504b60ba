//! The agent <-> control-plane sync protocol, and the center's fleet API shapes built on it.
//!
//! An agent sends a [`Report`] to `POST /sync/v1/report` every few seconds: who it is, what it
//! serves, a [`MetricsWindow`] of the requests it answered since its last accepted report,
//! and a batch of outbox [`Event`]s, each numbered by a per-node sequence. The center stores
//! the events idempotently by (node stream, seq), makes them durable, and only then answers
//! with a [`ReportAck`]: the highest *contiguous* sequence number it holds for that stream
//! (the watermark) and the [`Directives`] for the agent. The agent deletes events at or below
//! the watermark and nothing else, so every event reaches the center exactly once whatever
//! is lost, repeated or reordered on the way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plans::Plan;

mod window;

pub use window::{EndpointCounts, Histogram, LATENCY_BUCKETS_MS, MetricsWindow, ShadowCounts};

/// How timestamps appear on the wire: RFC 3339 in UTC, from Unix milliseconds (an
/// out-of-range time gives an empty string rather than a panic).
pub fn rfc3339(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `POST /sync/v1/report`: everything an agent tells the center in one round.
///
/// Generic over how events are held: typed [`Event`]s by default, or raw JSON
/// ([`RawEvent`]) where events only pass through. Both sides move large backlogs that way
/// without decoding and re-encoding every plan; the wire format is the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report<E = Event> {
    /// Node name (the Kubernetes node, or the `--node-name`).
    pub node: String,
    /// Identity of the agent's database, created on its first start. A node whose data
    /// directory was wiped starts a new event stream under a new id, so its fresh sequence
    /// numbers are never mistaken for duplicates of the old ones.
    pub stream: String,
    /// Region served.
    pub region: String,
    /// Changes at every start of the process.
    pub boot_id: String,
    /// Agent version.
    pub agent_version: String,
    /// The graph served, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<GraphRef>,
    /// The graphs of the profiles served beside the default one, by profile name (absent
    /// from an agent that serves none, or that predates profiles).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub profiles: BTreeMap<String, GraphRef>,
    /// Health and what is going on with graphs.
    pub health: Health,
    /// Where clients reach this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_url: Option<String>,
    /// Where the agent stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Requests answered since the last report the center accepted.
    pub metrics: MetricsWindow,
    /// Events in the outbox when the report was built, this batch included.
    pub outbox_depth: u64,
    /// Outbox events in sequence order, each at most once per report.
    #[serde(default = "Vec::new")]
    pub events: Vec<E>,
}

/// An empty report: no names, no graph, no events. Fill in what matters with struct update
/// syntax (`Report { node, region, ..Report::default() }`); for any event type.
impl<E> Default for Report<E> {
    fn default() -> Self {
        Self {
            node: String::new(),
            stream: String::new(),
            region: String::new(),
            boot_id: String::new(),
            agent_version: String::new(),
            graph: None,
            profiles: BTreeMap::new(),
            health: Health::default(),
            advertise_url: None,
            location: None,
            metrics: MetricsWindow::default(),
            outbox_depth: 0,
            events: Vec::new(),
        }
    }
}

/// An event as raw JSON (an [`Event`] object), for the paths that store or forward it.
pub type RawEvent = Box<serde_json::value::RawValue>;

impl<E> Report<E> {
    /// The same report without its events (what the center keeps of the last report).
    pub fn without_events<F>(self) -> Report<F> {
        Report {
            node: self.node,
            stream: self.stream,
            region: self.region,
            boot_id: self.boot_id,
            agent_version: self.agent_version,
            graph: self.graph,
            profiles: self.profiles,
            health: self.health,
            advertise_url: self.advertise_url,
            location: self.location,
            metrics: self.metrics,
            outbox_depth: self.outbox_depth,
            events: Vec::new(),
        }
    }
}

/// What the center reads of a raw event to index it: its sequence number and, for a plan,
/// the plan's own sequence number. The rest is skipped without being decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct EventHeader {
    /// Per-stream sequence number.
    pub seq: u64,
    /// The plan's header, for plan events.
    #[serde(default)]
    pub plan: Option<PlanHeader>,
}

/// See [`EventHeader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct PlanHeader {
    /// The node's plan sequence number.
    pub seq: u64,
}

impl EventHeader {
    /// Read the header of a raw event.
    pub fn of(raw: &RawEvent) -> Result<EventHeader, serde_json::Error> {
        serde_json::from_str(raw.get())
    }
}

/// A graph version and the SHA-256 of its artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphRef {
    /// Version label.
    pub version: String,
    /// Lowercase hex SHA-256 of the artifact.
    pub sha256: String,
    /// `[min_lon, min_lat, max_lon, max_lat]` of the graph's nodes: what it covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f64; 4]>,
}

/// An agent's health as it sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// A graph is loaded and the routing API answers.
    pub ready: bool,
    /// The last graph download or verification failure, until a download succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_error: Option<String>,
    /// Unix milliseconds of the last report the center acknowledged before this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ack_at_ms: Option<u64>,
}

/// A point on the map.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
}

/// One outbox event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Per-stream sequence number, from 1, without gaps.
    pub seq: u64,
    /// Unix milliseconds when the agent recorded it.
    pub at_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What an event records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A plan was stored and answered (`POST /optimize`, `GET /trip`).
    Plan {
        /// The stored plan, as `GET /plans/{id}` returns it.
        plan: Box<Plan>,
    },
    /// The served graph changed.
    GraphActivated {
        /// The version now served.
        version: String,
        /// Its SHA-256.
        sha256: String,
        /// The version served before, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<String>,
        /// Why: `directive`, `upload`, `rollback`, `map`, `startup`.
        reason: String,
    },
    /// A graph the center asked for could not be installed; the current one stays.
    GraphFailed {
        /// The version asked for.
        version: String,
        /// What went wrong.
        error: String,
    },
}

/// The center's answer to a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportAck {
    /// Every event of the stream up to this sequence number is durable at the center.
    pub acked_seq: u64,
    /// What the agent should do.
    pub directives: Directives,
}

/// What the center wants from an agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Directives {
    /// The graph to serve; `None` leaves the choice to the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<GraphDirective>,
    /// How often to report, in milliseconds; `None` keeps the agent's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_interval_ms: Option<u64>,
    /// During a graph rollout's canary step: keep this (previous) graph loaded beside the
    /// served one and re-answer a sample of requests on it; `None` unloads any shadow graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowDirective>,
    /// The graphs of the profiles served beside the default one (`truck`, ...), by profile
    /// name. A profile the agent got from an earlier directive and that is missing here is
    /// no longer served; profiles installed on the agent by hand are left alone. Empty (and
    /// absent on the wire) from a center without profiles, so old agents and centers
    /// understand each other: an old agent ignores the field, an old center never sends it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub profile_graphs: BTreeMap<String, GraphDirective>,
}

/// Compare the served graph's answers with another graph's on a sample of requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowDirective {
    /// The graph to compare against (usually the previous version, still stored).
    pub graph: GraphDirective,
    /// Share (0 to 1) of route requests to re-answer on it.
    pub sample_rate: f64,
    /// Relative duration change (0.1 = 10%) above which two routes differ materially.
    pub duration_tolerance: f64,
}

/// Serve this graph version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphDirective {
    /// Version label.
    pub version: String,
    /// SHA-256 the download must have.
    pub sha256: String,
    /// Size of the artifact in bytes.
    pub size_bytes: u64,
    /// Where to download it: absolute, or a path relative to the control plane's URL.
    pub url: String,
}

/// Liveness of a node, by the age of its last report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Reported within the stale threshold.
    Online,
    /// Silent for longer than the stale threshold.
    Stale,
    /// Silent for longer than the offline threshold.
    Offline,
}

impl NodeState {
    /// Every state, in order.
    pub const ALL: [NodeState; 3] = [NodeState::Online, NodeState::Stale, NodeState::Offline];

    /// The lowercase name used on the wire and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Online => "online",
            NodeState::Stale => "stale",
            NodeState::Offline => "offline",
        }
    }
}

/// One node of `GET /api/v1/nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node name.
    pub node: String,
    /// Region served.
    pub region: String,
    /// Where clients reach it.
    pub advertise_url: Option<String>,
    /// Where it stands.
    pub location: Option<Location>,
    /// RFC 3339 time of its last report.
    pub last_report_at: String,
    /// Milliseconds since its last report.
    pub last_report_age_ms: u64,
    /// Online, stale or offline.
    pub state: NodeState,
    /// Events of its current stream held by the center, contiguously from 1.
    pub acked_seq: u64,
    /// Its outbox depth at its last report.
    pub outbox_depth: u64,
    /// Graph version served.
    pub graph_version: Option<String>,
    /// SHA-256 of that graph.
    pub graph_sha256: Option<String>,
    /// The graphs of the profiles it serves beside the default one, by profile name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub profiles: BTreeMap<String, GraphRef>,
    /// Agent version.
    pub agent_version: String,
    /// Whether it said it was ready.
    pub ready: bool,
    /// Its last graph failure, if any.
    pub graph_error: Option<String>,
    /// Its event stream (database identity).
    pub stream: String,
    /// Its boot id at the last report.
    pub boot_id: String,
    /// Its last metrics window.
    pub metrics: MetricsWindow,
}

/// `GET /api/v1/nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeList {
    /// Nodes by name.
    pub nodes: Vec<NodeStatus>,
}

/// One agent of `GET /api/v1/endpoints?lat=&lon=`: a healthy agent whose graph covers the
/// point, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Node name.
    pub node: String,
    /// Where clients reach it (its advertise URL).
    pub url: String,
    /// Region served.
    pub region: String,
    /// Great-circle distance in metres from the agent's location to the point; `None` when
    /// the agent reports no location (those rank after the ones that do).
    pub distance_m: Option<f64>,
    /// Graph version it serves.
    pub graph_version: String,
    /// p99 latency of its last metrics window in milliseconds (the upper bound of the
    /// histogram bucket), `None` when it answered nothing in that window.
    pub p99_ms: Option<f64>,
}

/// `GET /api/v1/endpoints?lat=&lon=[&limit=]`: what a dispatch client calls to find its edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointList {
    /// Best first: nearest, then least loaded, then by node name.
    pub endpoints: Vec<Endpoint>,
}

/// One plan of `GET /api/v1/plans`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// Node that made it.
    pub node: String,
    /// The node's plan sequence number.
    pub seq: u64,
    /// Its id on the node (`GET /plans/{id}` there).
    pub plan_id: String,
    /// RFC 3339 time the node stored it.
    pub created_at: String,
    /// Graph version the matrices came from.
    pub graph_version: Option<String>,
    /// Solver that made it.
    pub solver_version: String,
    /// The VROOM `summary` of the answer.
    pub summary: serde_json::Value,
    /// The trace the plan was made in (32 hex digits), when the agent traced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// `GET /api/v1/plans`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanList {
    /// Plans in (node, seq) order.
    pub plans: Vec<PlanSummary>,
}

/// One artifact of the graph registry (`GET /api/v1/graphs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredGraph {
    /// Version label.
    pub version: String,
    /// SHA-256 of the artifact.
    pub sha256: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// RFC 3339 time of the upload.
    pub uploaded_at: String,
    /// Graph nodes.
    pub node_count: u64,
    /// `[min_lon, min_lat, max_lon, max_lat]`.
    pub bbox: [f64; 4],
}

/// `GET /api/v1/graphs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphList {
    /// Artifacts by version.
    pub graphs: Vec<RegisteredGraph>,
}

/// `PUT /api/v1/regions/{region}/graph` body, and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionGraph {
    /// The graph version the region's agents should serve.
    pub version: String,
}

#[cfg(test)]
mod tests;

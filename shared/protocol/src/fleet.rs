//! The center's fleet view: `GET /api/v1/nodes` with paging, filters and counts, and
//! `GET /api/v1/nodes/{node}` with a node's recent history. What the fleet dashboard reads.
//!
//! [`NodePage`] is a superset of [`crate::sync::NodeList`]: each entry of `nodes` is a
//! [`crate::sync::NodeStatus`] with derived fields added beside it, so a client written
//! against the older answer still reads it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sync::{NodeState, NodeStatus};

/// What a node served in one stretch of time (its last metrics window, or one history
/// point), with the rates the dashboard shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    /// Length of the stretch in milliseconds.
    pub window_ms: u64,
    /// Requests answered.
    pub requests: u64,
    /// Requests per second.
    pub request_rate: f64,
    /// Answers with a 4xx status (client mistakes: not counted as errors).
    pub client_errors: u64,
    /// Answers with a 5xx status.
    pub server_errors: u64,
    /// `server_errors / requests`, 0 without requests.
    pub error_rate: f64,
    /// Median latency in milliseconds (upper bound of its histogram bucket); `None`
    /// without requests.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds, read the same way.
    pub p99_ms: Option<f64>,
}

/// One node of [`NodePage`]: its status plus what the dashboard derives from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetNode {
    /// Everything `GET /api/v1/nodes` always listed.
    #[serde(flatten)]
    pub status: NodeStatus,
    /// RFC 3339 time the node entered its current state. For an online node this is the
    /// first report after it was last silent past the stale threshold (or the first report
    /// this center process saw).
    pub state_since: String,
    /// Milliseconds in its current state.
    pub state_for_ms: u64,
    /// Its last metrics window, summarised.
    pub last_window: WindowStats,
    /// Whether an operator should look at it: errors in its last window, a graph error,
    /// or not ready.
    pub attention: bool,
}

/// Node counts by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    /// Online nodes.
    pub online: usize,
    /// Stale nodes.
    pub stale: usize,
    /// Offline nodes.
    pub offline: usize,
    /// Nodes needing attention (see [`FleetNode::attention`]), whatever their state.
    pub attention: usize,
}

impl StateCounts {
    /// Count one node.
    pub fn add(&mut self, state: NodeState, attention: bool) {
        match state {
            NodeState::Online => self.online += 1,
            NodeState::Stale => self.stale += 1,
            NodeState::Offline => self.offline += 1,
        }
        self.attention += usize::from(attention);
    }

    /// Nodes counted.
    pub fn total(&self) -> usize {
        self.online + self.stale + self.offline
    }
}

/// The whole fleet at a glance, whatever the filters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetCounts {
    /// Every node.
    pub all: StateCounts,
    /// By region name.
    pub regions: BTreeMap<String, StateCounts>,
}

/// `GET /api/v1/nodes?region=&state=&q=&sort=&offset=&limit=`: one page of the nodes that
/// match the filters, and counts of the whole fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodePage {
    /// The page, in the requested order.
    pub nodes: Vec<FleetNode>,
    /// Nodes matching the filters (the page is `offset..offset + limit` of them).
    pub total: usize,
    /// Index of the page's first node among the matching ones.
    pub offset: usize,
    /// The page size asked for.
    pub limit: usize,
    /// Counts of every node, unfiltered, so filter buttons can show them.
    pub counts: FleetCounts,
}

/// One point of a node's history: the reports received in one stretch of time, merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// Unix milliseconds of the last report merged into the point.
    pub at_ms: u64,
    /// Reports merged into it.
    pub reports: u32,
    /// What the node served in those reports' windows.
    pub window: WindowStats,
    /// Outbox depth at the last of them.
    pub outbox_depth: u64,
    /// The center's watermark after the last of them.
    pub acked_seq: u64,
}

/// `GET /api/v1/nodes/{node}`: a node's status and its recent history, oldest first.
///
/// History lives in the center's memory: it starts empty when the center restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeDetail {
    /// The node as [`NodePage`] lists it.
    pub node: FleetNode,
    /// Reports merged per point, oldest first; the last point may still be filling.
    pub history: Vec<HistoryPoint>,
    /// How much time one history point covers at most, in milliseconds.
    pub history_point_ms: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::sync::{MetricsWindow, NodeList};

    fn status() -> NodeStatus {
        NodeStatus {
            node: "edge-1".into(),
            region: "monaco".into(),
            advertise_url: None,
            location: None,
            last_report_at: "2026-12-03T00:00:00Z".into(),
            last_report_age_ms: 10,
            state: NodeState::Online,
            acked_seq: 3,
            outbox_depth: 0,
            graph_version: None,
            graph_sha256: None,
            profiles: Default::default(),
            agent_version: "0.1.0".into(),
            ready: true,
            graph_error: None,
            stream: "s".into(),
            boot_id: "b".into(),
            metrics: MetricsWindow::default(),
        }
    }

    #[test]
    fn a_node_page_still_reads_as_the_older_node_list() {
        let page = NodePage {
            nodes: vec![FleetNode {
                status: status(),
                state_since: "2026-12-03T00:00:00Z".into(),
                state_for_ms: 5,
                last_window: WindowStats::default(),
                attention: false,
            }],
            total: 1,
            offset: 0,
            limit: 50,
            counts: FleetCounts::default(),
        };
        let json = serde_json::to_string(&page).unwrap();
        let old: NodeList = serde_json::from_str(&json).unwrap();
        assert_eq!(old.nodes, [status()]);
        let back: NodePage = serde_json::from_str(&json).unwrap();
        assert_eq!(back, page);
    }

    #[test]
    fn state_counts_add_up() {
        let mut c = StateCounts::default();
        c.add(NodeState::Online, false);
        c.add(NodeState::Stale, true);
        c.add(NodeState::Offline, false);
        c.add(NodeState::Online, true);
        assert_eq!((c.online, c.stale, c.offline, c.attention), (2, 1, 1, 2));
        assert_eq!(c.total(), 4);
    }
}

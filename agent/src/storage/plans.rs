//! VRP plans: every successful `POST /optimize` result, numbered by a per-node sequence.
//!
//! Plans live in the [`super::PLANS`] tree keyed by their sequence number (big-endian, so
//! key order is sequence order); the last number handed out is kept under a meta key and
//! updated in the same transaction as the plan, so numbers never repeat, survive restarts
//! and have no gaps.

use serde::{Deserialize, Serialize};

/// A plan to store; the store assigns its sequence number, id and timestamp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewPlan {
    /// This node's id: plan ids are `<node>-<seq>`.
    pub node: String,
    /// Version of the graph the matrices came from (`None` with custom matrices).
    pub graph_version: Option<String>,
    /// Checksum of that graph.
    pub graph_checksum: Option<String>,
    /// Solver that computed it (`edgeroute-engine <version>`).
    pub solver_version: String,
    /// Request summary: number of jobs.
    pub jobs: usize,
    /// Request summary: number of shipments.
    pub shipments: usize,
    /// Request summary: number of vehicles.
    pub vehicles: usize,
    /// The full VROOM output.
    pub output: serde_json::Value,
}

/// A stored plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// `<node>-<seq>`.
    pub id: String,
    /// Per-node sequence number, from 1, strictly increasing.
    pub seq: u64,
    /// Unix milliseconds when it was stored.
    pub created_at_ms: u64,
    /// Everything the caller gave.
    #[serde(flatten)]
    pub plan: NewPlan,
}

/// The sequence number of a plan id (`<node>-<seq>`), if it has that shape.
pub fn seq_of(id: &str) -> Option<u64> {
    id.rsplit_once('-')?.1.parse().ok()
}

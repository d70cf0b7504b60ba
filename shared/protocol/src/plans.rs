//! VRP plans: every successful `POST /optimize` result, as stored by the agent and served
//! by `GET /plans/{id}` and `GET /plans?since=<seq>&limit=<n>`.

use serde::{Deserialize, Serialize};

/// A plan to store; the store assigns its sequence number, id and timestamp.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// The full VROOM output, kept as the JSON it was answered with: a stored plan stays
    /// readable even if [`crate::vroom::Output`] gains fields later.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::vroom::Output))]
    pub output: serde_json::Value,
    /// The W3C `traceparent` of the span that stored the plan, when traced: the center's
    /// ingest of the plan joins that trace, and its plans API shows the trace id. Absent in
    /// plans of agents before traces (and then never sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A stored plan.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// A page of plans (`GET /plans`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanList {
    /// Plans with `seq > since`, in sequence order.
    pub plans: Vec<Plan>,
    /// The `since` to ask for the next page with (the last `seq`, or the given `since`).
    pub next_since: u64,
}

//! The fleet JSON API operators read: `GET /api/v1/nodes` (paged, filtered, counted),
//! `GET /api/v1/nodes/{node}` (with its recent history; `DELETE` forgets a decommissioned
//! node) and the plans collected from the
//! agents, `GET /api/v1/plans` and `GET /api/v1/plans/{node}/{seq}`; and nearest-edge
//! [`discovery`] for clients, `GET /api/v1/endpoints` and the OSRM redirects.
//!
//! # Layout
//! - [`view`]: the fleet in memory (last reports and history), what the node API reads.
//! - [`discovery`]: nearest-edge ranking and redirects.

pub mod discovery;
pub mod view;

use axum::{
    Json, Router,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{HeaderMap, StatusCode},
    routing::get,
};
use edgeroute_protocol::{
    fleet::{NodeDetail, NodePage},
    plans::Plan,
    sync::{NodeState, NodeStatus, PlanList, PlanSummary, rfc3339},
};
use serde::Deserialize;

use crate::{
    graphs::registry::now_ms,
    serve::{Center, Settings, error::ApiError},
    sync::store::{NodeRecord, StoredPlan},
};

/// Routes of the fleet API.
pub fn router() -> Router<Center> {
    Router::new()
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/nodes/{node}", get(node).delete(forget))
        .route("/api/v1/plans", get(plans))
        .route("/api/v1/plans/{node}/{seq}", get(plan))
        .merge(discovery::router())
}

/// A node's state from the age of its last report.
pub fn state_of(age_ms: u64, settings: &Settings) -> NodeState {
    if age_ms > settings.offline_after_ms {
        NodeState::Offline
    } else if age_ms > settings.stale_after_ms {
        NodeState::Stale
    } else {
        NodeState::Online
    }
}

/// The API view of a stored node record at `now_ms`.
pub fn node_status(record: NodeRecord, now_ms: u64, settings: &Settings) -> NodeStatus {
    let age = now_ms.saturating_sub(record.received_at_ms);
    let r = record.report;
    NodeStatus {
        state: state_of(age, settings),
        last_report_at: rfc3339(record.received_at_ms),
        last_report_age_ms: age,
        acked_seq: record.acked_seq,
        outbox_depth: r.outbox_depth,
        graph_version: r.graph.as_ref().map(|g| g.version.clone()),
        graph_sha256: r.graph.map(|g| g.sha256),
        profiles: r.profiles,
        agent_version: r.agent_version,
        ready: r.health.ready,
        graph_error: r.health.graph_error,
        advertise_url: r.advertise_url,
        location: r.location,
        node: r.node,
        region: r.region,
        stream: r.stream,
        boot_id: r.boot_id,
        metrics: r.metrics,
    }
}

/// `GET /api/v1/nodes` query. Empty values (`region=`) mean no filter.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodesQuery {
    /// Only this region.
    pub region: Option<String>,
    /// Only these states, comma-separated (`stale,offline`).
    pub state: Option<String>,
    /// Only nodes whose name contains this, case-insensitive.
    pub q: Option<String>,
    /// Only nodes needing attention (errors, a graph error, not ready).
    #[serde(default)]
    pub attention: bool,
    /// Order: `node` (default), `region`, `state`, `age`, `rate`, `errors`, `p99`, `outbox`;
    /// a leading `-` reverses it.
    pub sort: Option<String>,
    /// Skip this many matching nodes.
    #[serde(default)]
    pub offset: usize,
    /// At most this many (1..=10000, default 10000).
    pub limit: Option<usize>,
}

/// The most nodes one page lists, and the default page size: without `limit` the answer
/// stays what it was before paging (every node) for any fleet up to this size.
pub const MAX_NODES_PAGE: usize = 10_000;

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl NodesQuery {
    /// The view's filter, or why the query is wrong.
    pub fn filter(self) -> Result<view::NodeFilter, String> {
        let limit = self.limit.unwrap_or(MAX_NODES_PAGE);
        if !(1..=MAX_NODES_PAGE).contains(&limit) {
            return Err(format!("limit must be 1 to {MAX_NODES_PAGE}"));
        }
        let states = match non_empty(self.state) {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|name| {
                    NodeState::ALL
                        .into_iter()
                        .find(|s| s.as_str() == name.trim())
                        .ok_or_else(|| {
                            format!("unknown state {name:?}: expected online, stale or offline")
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        let (sort, descending) = match non_empty(self.sort) {
            None => (view::SortKey::Node, false),
            Some(raw) => view::SortKey::parse(&raw).ok_or_else(|| {
                format!("unknown sort {raw:?}: expected {}", view::SortKey::NAMES)
            })?,
        };
        Ok(view::NodeFilter {
            region: non_empty(self.region),
            states,
            name_contains: non_empty(self.q),
            attention: self.attention,
            sort,
            descending,
            offset: self.offset,
            limit,
        })
    }
}

async fn nodes(
    State(center): State<Center>,
    headers: HeaderMap,
    query: Result<Query<NodesQuery>, QueryRejection>,
) -> Result<Json<NodePage>, ApiError> {
    center.auth.admin(&headers)?;
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let filter = q.filter().map_err(ApiError::invalid)?;
    Ok(Json(center.fleet.page(&filter, now_ms())))
}

async fn node(
    State(center): State<Center>,
    headers: HeaderMap,
    Path(node): Path<String>,
) -> Result<Json<NodeDetail>, ApiError> {
    center.auth.admin(&headers)?;
    center
        .fleet
        .detail(&node, now_ms())
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("node {node:?} never reported to this center")))
}

/// `DELETE /api/v1/nodes/{node}`: forget a decommissioned node, so it no longer counts as
/// offline (nor in alerts, discovery or the dashboard). Its plans stay. A node that
/// reports again is recorded again: stop its agent first.
async fn forget(
    State(center): State<Center>,
    headers: HeaderMap,
    Path(node): Path<String>,
) -> Result<StatusCode, ApiError> {
    center.auth.admin(&headers)?;
    // The store first: a replica that fails here has changed nothing, and the answer says
    // so; the view follows what is stored.
    let stored = center
        .store
        .forget_node(&node)
        .await
        .map_err(ApiError::storage)?;
    let held = center.fleet.forget(&node);
    if !(stored || held) {
        return Err(ApiError::not_found(format!(
            "node {node:?} is not known to this center"
        )));
    }
    tracing::info!(node = %node, "node forgotten");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/plans` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlansQuery {
    /// Only this node's plans.
    pub node: Option<String>,
    /// Plans with a sequence number above this one.
    #[serde(default)]
    pub since: u64,
    /// At most this many (1..=1000, default 100).
    pub limit: Option<usize>,
    /// `asc` (default) or `desc`: newest first, which needs `node`.
    pub order: Option<String>,
}

/// The most plans one page lists.
pub const MAX_PLANS_PAGE: usize = 1000;

fn summary(stored: StoredPlan) -> PlanSummary {
    let Plan {
        id,
        seq,
        created_at_ms,
        plan,
        ..
    } = stored.plan;
    PlanSummary {
        node: stored.node,
        seq,
        plan_id: id,
        created_at: rfc3339(created_at_ms),
        trace_id: plan
            .traceparent
            .as_deref()
            .and_then(edgeroute_server::telemetry::trace_id_of),
        graph_version: plan.graph_version,
        solver_version: plan.solver_version,
        summary: plan
            .output
            .get("summary")
            .cloned()
            .unwrap_or(serde_json::Value::Null),
    }
}

async fn plans(
    State(center): State<Center>,
    headers: HeaderMap,
    query: Result<Query<PlansQuery>, QueryRejection>,
) -> Result<Json<PlanList>, ApiError> {
    center.auth.admin(&headers)?;
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PLANS_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to {MAX_PLANS_PAGE}"
        )));
    }
    let newest_first = match q.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "unknown order {other:?}: expected asc or desc"
            )));
        }
    };
    let stored = match (&q.node, newest_first) {
        (Some(node), true) => center.store.latest_plans(node, q.since, limit).await,
        (None, true) => return Err(ApiError::invalid("order=desc needs node=")),
        (node, false) => center.store.plans(node.as_deref(), q.since, limit).await,
    };
    let plans = stored
        .map_err(ApiError::storage)?
        .into_iter()
        .map(summary)
        .collect();
    Ok(Json(PlanList { plans }))
}

async fn plan(
    State(center): State<Center>,
    headers: HeaderMap,
    Path((node, seq)): Path<(String, String)>,
) -> Result<Json<Plan>, ApiError> {
    center.auth.admin(&headers)?;
    let seq: u64 = seq
        .parse()
        .map_err(|_| ApiError::invalid(format!("plan sequence number {seq:?} is not a number")))?;
    match center
        .store
        .plan(&node, seq)
        .await
        .map_err(ApiError::storage)?
    {
        Some(stored) => Ok(Json(stored.plan)),
        None => Err(ApiError::not_found(format!(
            "no plan {seq} of node {node:?} at the center"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_state_follows_report_age() {
        let s = Settings {
            stale_after_ms: 15_000,
            offline_after_ms: 60_000,
            ..Settings::default()
        };
        assert_eq!(state_of(0, &s), NodeState::Online);
        assert_eq!(state_of(15_000, &s), NodeState::Online);
        assert_eq!(state_of(15_001, &s), NodeState::Stale);
        assert_eq!(state_of(60_001, &s), NodeState::Offline);
    }
}

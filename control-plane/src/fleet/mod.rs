//! The fleet JSON API operators read: `GET /api/v1/nodes` and the plans collected from the
//! agents, `GET /api/v1/plans` and `GET /api/v1/plans/{node}/{seq}`; and nearest-edge
//! [`discovery`] for clients, `GET /api/v1/endpoints` and the OSRM redirects.

pub mod discovery;

use axum::{
    Json, Router,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::HeaderMap,
    routing::get,
};
use edgeroute_protocol::{
    plans::Plan,
    sync::{NodeList, NodeState, NodeStatus, PlanList, PlanSummary, rfc3339},
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

async fn nodes(
    State(center): State<Center>,
    headers: HeaderMap,
) -> Result<Json<NodeList>, ApiError> {
    center.auth.admin(&headers)?;
    let now = now_ms();
    let nodes = center
        .store
        .nodes()
        .await
        .map_err(ApiError::storage)?
        .into_iter()
        .map(|r| node_status(r, now, &center.settings))
        .collect();
    Ok(Json(NodeList { nodes }))
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
    let plans = center
        .store
        .plans(q.node.as_deref(), q.since, limit)
        .await
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

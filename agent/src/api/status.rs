//! `GET /v1/status`: what this node is and serves.

use axum::{Json, Router, extract::State, routing::get};
use edgeroute_protocol::status::{GraphStatus, StatusResponse, SyncStatus};

use super::AppState;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/status", get(status))
}

/// Node, region, graph version and checksum, uptime.
#[utoipa::path(get, path = "/v1/status", tag = "ops", security(("bearer" = [])),
    responses((status = 200, description = "Node status", body = StatusResponse)))]
pub async fn status(State(state): State<AppState>) -> Json<StatusResponse> {
    // The live depth: the one of the last report is stale during a partition, which is
    // when an operator asks.
    let depth = match &state.sync {
        Some(_) => {
            let store = state.store.clone();
            tokio::task::spawn_blocking(move || store.outbox_depth())
                .await
                .ok()
                .and_then(Result::ok)
        }
        None => None,
    };
    let graph = state.graphs.holder().get().map(|g| graph_status(&g));
    let mut profiles: std::collections::BTreeMap<String, GraphStatus> = state
        .profiles
        .all()
        .iter()
        .map(|(name, g)| (name.clone(), graph_status(g)))
        .collect();
    if let Some(g) = &graph {
        profiles.insert(
            crate::routing::profiles::DEFAULT_ALIASES[0].to_owned(),
            g.clone(),
        );
    }
    Json(StatusResponse {
        node: state.node.name.clone(),
        node_id: state.node.id.clone(),
        region: state.node.region.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        ready: graph.is_some(),
        graph,
        uptime_s: state.node.started.elapsed().as_secs(),
        boot_count: state.node.boot_count,
        sync: state.sync.as_ref().map(|link| {
            let s = link.state.get();
            let outbox_depth = depth.unwrap_or(s.outbox_depth);
            SyncStatus {
                control_plane: link.control_plane.clone(),
                connected: s.last_ack_at_ms.is_some() && s.unreachable_since_ms.is_none(),
                last_ack_at: s.last_ack_at_ms.map(crate::sync::rfc3339),
                unreachable_since: s.unreachable_since_ms.map(crate::sync::rfc3339),
                last_error: s.last_error,
                outbox_depth,
                acked_seq: s.acked_seq,
                downloading: s.downloading,
                graph_error: s.graph_error.or(s.profile_error),
                reports: s.reports,
                report_failures: s.failures,
                shadow: state.shadow.current().map(|g| g.version().to_owned()),
                shadow_error: s.shadow_error,
            }
        }),
        profiles,
    })
}

fn graph_status(g: &edgeroute_engine::Graph) -> GraphStatus {
    let i = g.info();
    GraphStatus {
        version: i.version.clone(),
        checksum: g.sha256().to_owned(),
        node_count: i.node_count,
        edge_count: i.edge_count,
        road_count: i.road_count,
        bbox: i.bbox,
    }
}

//! In a cluster, the `EdgeRegion` is the desired state: `serve --regions-namespace <ns>`
//! watches the EdgeRegions there and makes each one's `spec.graph.version` its region's
//! graph at the center, which every report's directive then carries to the agents. Without
//! Kubernetes the same setting comes from `PUT /api/v1/regions/{region}/graph`.
//!
//! [`follow_center`] (what `serve` runs) also takes each EdgeRegion's `spec.rollout` as its
//! region's rollout policy, and a changed version of a region that already serves a graph
//! on nodes becomes a graph rollout ([`crate::rollout::graph`]); `spec.paused` pauses a
//! running rollout and holds back new versions. [`follow`] only writes the store (no
//! rollouts).

use std::{sync::Arc, time::Duration};

use edgeroute_protocol::crd::EdgeRegion;
use futures::TryStreamExt;
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};

use super::store::CenterStore;

/// What a region's desired graph becomes: `Some(version)` when the store must change.
pub fn graph_update(region: &EdgeRegion, current: Option<&str>) -> Option<String> {
    let wanted = region.spec.graph.version.trim();
    (!wanted.is_empty() && current != Some(wanted)).then(|| wanted.to_owned())
}

/// Follow the EdgeRegions of `namespace` until the stream ends (it does not: the watcher
/// re-lists with backoff after errors, and a store failure is retried on the next event
/// or re-list).
pub async fn follow(client: Client, namespace: String, store: Arc<dyn CenterStore>) {
    let api: Api<EdgeRegion> = Api::namespaced(client, &namespace);
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(stream);
    loop {
        match stream.try_next().await {
            Ok(Some(region)) => {
                let name = region.name_any();
                let current = match store.region_graph(&name).await {
                    Ok(current) => current,
                    Err(err) => {
                        tracing::warn!(region = %name, error = %err, "cannot read the region's graph");
                        continue;
                    }
                };
                if let Some(version) = graph_update(&region, current.as_deref()) {
                    match store.set_region_graph(&name, &version).await {
                        Ok(()) => {
                            tracing::info!(region = %name, %version, "region graph follows its EdgeRegion")
                        }
                        Err(err) => {
                            tracing::warn!(region = %name, error = %err, "cannot set the region's graph")
                        }
                    }
                }
            }
            Ok(None) => return,
            Err(err) => {
                // default_backoff already spaces re-lists; this only keeps logs readable.
                tracing::warn!(error = %err, "EdgeRegion watch failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Follow the EdgeRegions of `namespace` for the center: policies, and versions as
/// rollouts. Runs until the stream ends (it does not; see [`follow`]).
pub async fn follow_center(client: Client, namespace: String, center: crate::serve::Center) {
    let api: Api<EdgeRegion> = Api::namespaced(client, &namespace);
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(stream);
    loop {
        match stream.try_next().await {
            Ok(Some(region)) => {
                let name = region.name_any();
                center
                    .rollouts
                    .set_policy(&name, region.spec.rollout.clone());
                watch_agent_rollout(&center, &name, &region);
                if region.spec.paused {
                    // A frozen region changes no node: its running rollout pauses, and a
                    // new version waits until it is unfrozen.
                    pause_running(&center, &name).await;
                    continue;
                }
                let wanted = region.spec.graph.version.trim();
                if wanted.is_empty() {
                    continue;
                }
                match crate::rollout::graph::request_graph(&center, &name, wanted, false).await {
                    Ok(outcome) => {
                        tracing::debug!(region = %name, version = %wanted, ?outcome, "EdgeRegion graph followed")
                    }
                    Err(err) => {
                        tracing::warn!(region = %name, error = %err, "cannot follow the region's graph")
                    }
                }
            }
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(error = %err, "EdgeRegion watch failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// While the controller runs an agent-version rollout in `region`, keep its agents' windows:
/// the controller asks for a verdict only when a window ends, and without recording from the
/// step's start that first question would find no data. The controller writes the status
/// at every step and verdict, so each write extends the watch by two windows.
fn watch_agent_rollout(center: &crate::serve::Center, name: &str, region: &EdgeRegion) {
    use edgeroute_protocol::rollout::RolloutTarget;
    let active = region
        .status
        .as_ref()
        .and_then(|s| s.rollout.as_ref())
        .is_some_and(|r| r.target == RolloutTarget::Agent && !r.phase.is_terminal());
    if active {
        let window_ms = u64::from(region.spec.rollout.analysis_window_seconds.max(1)) * 1000;
        let until = center
            .rollouts
            .clock
            .now_ms()
            .saturating_add(2 * window_ms + 60_000);
        center.rollouts.windows.watch_at_least(name, until);
    }
}

async fn pause_running(center: &crate::serve::Center, region: &str) {
    use edgeroute_protocol::rollout::{RolloutAction, RolloutPhase};
    let running = match crate::rollout::graph::record(center, region).await {
        Ok(Some(r)) => matches!(
            r.status.phase,
            RolloutPhase::Progressing | RolloutPhase::Holding
        ),
        Ok(None) => false,
        Err(err) => {
            tracing::warn!(%region, error = %err, "cannot read the region's rollout");
            false
        }
    };
    if running
        && let Err(err) = crate::rollout::graph::act(center, region, RolloutAction::Pause).await
    {
        tracing::warn!(%region, error = %err, "cannot pause the frozen region's rollout");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(version: &str) -> EdgeRegion {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "edgeroute.io/v1alpha1", "kind": "EdgeRegion",
            "metadata": {"name": "porto", "namespace": "edgeroute"},
            "spec": {
                "nodeSelector": {"matchLabels": {"zone": "porto"}},
                "agent": {"image": "ghcr.io/edgeroute/agent", "version": "0.1.0"},
                "graph": {"source": "porto.osm.pbf", "version": version}
            }
        }))
        .unwrap()
    }

    #[test]
    fn only_a_changed_version_is_written() {
        assert_eq!(graph_update(&region("v2"), None).as_deref(), Some("v2"));
        assert_eq!(
            graph_update(&region("v2"), Some("v1")).as_deref(),
            Some("v2")
        );
        assert_eq!(graph_update(&region("v2"), Some("v2")), None);
        assert_eq!(graph_update(&region(" "), Some("v1")), None);
    }
}

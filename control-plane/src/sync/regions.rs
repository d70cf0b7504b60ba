//! In a cluster, the `EdgeRegion` is the desired state: `serve --regions-namespace <ns>`
//! watches the EdgeRegions there and makes each one's `spec.graph.version` its region's
//! graph at the center, which every report's directive then carries to the agents. Without
//! Kubernetes the same setting comes from `PUT /api/v1/regions/{region}/graph`.
//!
//! [`follow_center`] (what `serve` runs) also takes each EdgeRegion's `spec.rollout` as its
//! region's rollout policy, and a changed version of a region that already serves a graph
//! on nodes becomes a graph rollout ([`crate::rollout::graph`]); `spec.paused` pauses a
//! running rollout and holds back new versions.

use std::time::Duration;

use edgeroute_protocol::crd::EdgeRegion;
use futures::TryStreamExt;
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};

/// Follow the EdgeRegions of `namespace` for the center: policies, and versions as
/// rollouts. Runs until the stream ends, which it does not: the watcher re-lists with backoff
/// after errors, and a failed store write is retried on the next event or re-list.
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

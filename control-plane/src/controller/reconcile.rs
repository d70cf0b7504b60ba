//! One reconcile of a region: [`reconcile`] adds the finalizer, then `apply` labels the
//! region's nodes, ensures its children and patches its status; on deletion `cleanup`
//! releases its nodes. [`error_policy`] requeues failures with backoff.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edgeroute_protocol::crd::{
    CANARY_TRACK, ConditionStatus, ConditionType, EdgeRegion, MANAGED_ANNOTATION, REGION_LABEL,
    ROLLOUT_ACTION_ANNOTATION, TRACK_LABEL,
};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{debug, info, instrument, warn};

use super::judge::JudgeError;
use super::nodes::{self, NodePlan};
use super::rollout::{self, Judgment, RolloutInput, RolloutPlan, StableObserved};
use super::workload::Track;
use super::{Context, Error, FIELD_MANAGER, FINALIZER, Result, region_key, status, workload};

/// Reconciles one region: adds the finalizer, then converges nodes, children and status;
/// on deletion releases the region's nodes.
#[instrument(skip(region, ctx), fields(region = %region.name_any()))]
pub async fn reconcile(region: Arc<EdgeRegion>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.count_and_measure();
    let namespace = region
        .namespace()
        .ok_or(Error::MissingField("a namespace"))?;
    let key = region_key(&region);
    let api = Api::<EdgeRegion>::namespaced(ctx.client.clone(), &namespace);
    let ctx_ref = ctx.as_ref();
    let action = finalizer(&api, FINALIZER, region, |event| async move {
        match event {
            Finalizer::Apply(region) => apply(&region, ctx_ref).await,
            Finalizer::Cleanup(region) => cleanup(&region, ctx_ref).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.reset_backoff(&key);
    Ok(action)
}

/// Requeues a failed region with exponential backoff and counts the failure by variant.
pub fn error_policy(region: Arc<EdgeRegion>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(region = %region.name_any(), error = %error, source = ?std::error::Error::source(error), "reconcile failed");
    ctx.metrics.reconcile_failure(error.metric_label());
    Action::requeue(ctx.next_backoff(region_key(&region)))
}

/// Merge patch that sets or clears a node's region label and our marker annotation (a
/// released node also loses any canary label: it no longer belongs to the rollout). The
/// resourceVersion makes it conditional: if another region labelled the node since we read
/// it, the API server answers 409 and the next reconcile sees the new claim.
fn node_label_patch(node: &Node, region: Option<&str>) -> serde_json::Value {
    let mut patch = json!({
        "metadata": {
            "resourceVersion": node.resource_version(),
            "labels": { REGION_LABEL: region },
            "annotations": { MANAGED_ANNOTATION: region },
        }
    });
    if region.is_none() && node.labels().contains_key(TRACK_LABEL) {
        patch["metadata"]["labels"][TRACK_LABEL] = serde_json::Value::Null;
    }
    patch
}

async fn patch_node(api: &Api<Node>, node: &Node, region: Option<&str>) -> Result<()> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let patch = node_label_patch(node, region);
    api.patch(&node.name_any(), &params, &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Server-side applies `desired` unless the observed object already contains it, so an
/// unchanged region makes no write. Returns the object as the API server has it and whether
/// it was written.
async fn ensure<K>(api: &Api<K>, desired: &K) -> Result<(K, bool)>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = desired
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingField("a child name"))?;
    if let Some(observed) = api.get_opt(&name).await?
        && workload::is_subset(
            &serde_json::to_value(desired)?,
            &serde_json::to_value(&observed)?,
        )
    {
        return Ok((observed, false));
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api.patch(&name, &params, &Patch::Apply(desired)).await?;
    Ok((applied, true))
}

fn now() -> Time {
    // Kubernetes serializes times with second precision; stamping with seconds keeps what we
    // wrote equal to what we read back.
    let secs = Timestamp::now().as_second();
    Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Converges a live region: decides its rollout (asking the center when a canary window
/// has ended) and records that decision, then (unless paused) its nodes and children, then
/// its status. See [`rollout`] for the order of the workload changes.
async fn apply(region: &EdgeRegion, ctx: &Context) -> Result<Action> {
    let name = region.name_any();
    let namespace = region
        .namespace()
        .ok_or(Error::MissingField("a namespace"))?;
    let node_api = Api::<Node>::all(ctx.client.clone());
    let nodes = node_api.list(&ListParams::default()).await?.items;
    let plan = nodes::plan_nodes(&name, &region.spec.node_selector, &nodes)?;
    let ds_api = Api::<DaemonSet>::namespaced(ctx.client.clone(), &namespace);
    let observed = ds_api.get_opt(&workload::child_name(region)).await?;
    let now_ms = now_ms();
    let rollout_plan = decide_rollout(region, ctx, &plan, observed.as_ref(), now_ms).await;
    // The decision is written before it is carried out: a controller that stops half-way
    // (crash, lost lease) resumes from it instead of deciding again.
    let region = &record_rollout(region, ctx, &namespace, &rollout_plan).await?;
    let ds = if region.spec.paused {
        observed
    } else {
        label_nodes(region, ctx, &node_api, &nodes, &plan).await?;
        Some(ensure_children(region, ctx, &namespace, &rollout_plan).await?)
    };
    if !region.spec.paused {
        let region_nodes: BTreeSet<String> =
            plan.held.iter().chain(&plan.to_label).cloned().collect();
        label_canaries(region, ctx, &node_api, &nodes, &region_nodes, &rollout_plan).await?;
        if rollout_plan.canary_version.is_none() {
            delete_canary(region, ctx, &ds_api).await?;
        }
    }
    patch_status(region, ctx, &namespace, &plan, ds.as_ref(), &rollout_plan).await?;
    ctx.metrics.observe_rollout(
        &region_key(region),
        rollout_plan.status.as_ref().map(|s| s.phase),
    );
    let mut requeue = ctx.settings.resync;
    if let Some(at) = rollout::wake_at(&rollout_plan, &region.spec.rollout) {
        // Back at the end of the analysis window (or of the allowed hold), not a resync later.
        let wait = Duration::from_millis(at.saturating_sub(now_ms).max(100));
        requeue = requeue.min(wait);
    }
    Ok(Action::requeue(requeue))
}

fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// What the stable DaemonSet runs, as observed.
fn stable_observed(ds: &DaemonSet) -> StableObserved {
    let from_image = || {
        ds.spec
            .template
            .spec
            .as_ref()
            .and_then(|p| p.containers.first())
            .and_then(|c| c.image.as_deref())
            .and_then(|i| i.rsplit_once(':'))
            .map(|(_, tag)| tag.to_owned())
    };
    StableObserved {
        version: ds
            .labels()
            .get(workload::VERSION_LABEL)
            .cloned()
            .or_else(from_image)
            .unwrap_or_default(),
        complete: status::daemon_set_complete(ds),
    }
}

/// Decides the region's rollout, asking the center for a verdict if a window has ended.
/// A judge that fails counts as silence (the rollout holds), never as a verdict.
async fn decide_rollout(
    region: &EdgeRegion,
    ctx: &Context,
    plan: &NodePlan,
    observed: Option<&DaemonSet>,
    now_ms: u64,
) -> RolloutPlan {
    let name = region.name_any();
    let status = region.status.clone().unwrap_or_default();
    let mut region_nodes: Vec<String> = plan.held.iter().chain(&plan.to_label).cloned().collect();
    region_nodes.sort();
    let stable = observed.map(stable_observed);
    let action = region
        .annotations()
        .get(ROLLOUT_ACTION_ANNOTATION)
        .map(String::as_str)
        .filter(|a| status.rollout_action_ack.as_deref() != Some(*a));
    let mut input = RolloutInput {
        region: &name,
        spec_version: &region.spec.agent.version,
        policy: &region.spec.rollout,
        paused: region.spec.paused,
        previous: status.rollout.as_ref(),
        next_analysis_at_ms: status.rollout_next_analysis_at_ms,
        action,
        nodes: &region_nodes,
        stable: stable.as_ref(),
        judgment: None,
        now_ms,
    };
    if let Some(request) = rollout::analysis_due(&input) {
        let judgment = match &ctx.judge {
            None => {
                ctx.metrics
                    .judge_error(JudgeError::NotConfigured.metric_label());
                Judgment::Unavailable(JudgeError::NotConfigured.to_string())
            }
            Some(judge) => match judge.judge(&name, &request).await {
                Ok(verdict) => {
                    info!(kind = verdict.kind.as_str(), reason = %verdict.reason, "canary verdict");
                    ctx.metrics.verdict(verdict.kind);
                    Judgment::Verdict(verdict)
                }
                Err(e) => {
                    warn!(error = %e, "no verdict from the center; holding the rollout");
                    ctx.metrics.judge_error(e.metric_label());
                    Judgment::Unavailable(e.to_string())
                }
            },
        };
        input.judgment = Some(judgment);
    }
    rollout::decide(&input)
}

/// Writes the rollout part of the status when the decision changed it, and publishes the
/// decision's events. Returns the region as it is now.
async fn record_rollout(
    region: &EdgeRegion,
    ctx: &Context,
    namespace: &str,
    plan: &RolloutPlan,
) -> Result<EdgeRegion> {
    let old = region.status.clone().unwrap_or_default();
    let ack = plan.acknowledged.clone().or(old.rollout_action_ack.clone());
    let unchanged = old.rollout == plan.status
        && old.rollout_next_analysis_at_ms == plan.next_analysis_at_ms
        && old.rollout_action_ack == ack;
    if unchanged {
        return Ok(region.clone());
    }
    let api = Api::<EdgeRegion>::namespaced(ctx.client.clone(), namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    // Conditional on the version we decided from: a reconcile that ran on a stale copy of
    // the region (its own previous write not yet seen) gets a 409 and retries, instead of
    // acting twice on one window or undoing a step.
    let patch = json!({
        "metadata": { "resourceVersion": region.resource_version() },
        "status": {
        "rollout": plan.status,
        "rolloutNextAnalysisAtMs": plan.next_analysis_at_ms,
        "rolloutActionAck": ack,
    }});
    let patched = api
        .patch_status(&region.name_any(), &params, &Patch::Merge(&patch))
        .await?;
    for event in &plan.events {
        let type_ = if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.publish(region, type_, event.reason, event.note.clone())
            .await;
    }
    Ok(patched)
}

/// Merge patch that sets or clears a node's canary label.
fn track_patch(canary: bool) -> serde_json::Value {
    json!({ "metadata": { "labels": { TRACK_LABEL: canary.then_some(CANARY_TRACK) } } })
}

/// Puts the canary label on the plan's canary nodes and takes it off the region's other
/// nodes. Unconditional patches: only this controller writes the label on a region's nodes.
async fn label_canaries(
    region: &EdgeRegion,
    ctx: &Context,
    node_api: &Api<Node>,
    nodes: &[Node],
    region_nodes: &BTreeSet<String>,
    plan: &RolloutPlan,
) -> Result<()> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let want: BTreeSet<&str> = plan.canary_nodes.iter().map(String::as_str).collect();
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for node in nodes
        .iter()
        .filter(|n| region_nodes.contains(&n.name_any()))
    {
        let name = node.name_any();
        let is_canary = node.labels().get(TRACK_LABEL).map(String::as_str) == Some(CANARY_TRACK);
        let should = want.contains(name.as_str());
        if is_canary == should {
            continue;
        }
        node_api
            .patch(&name, &params, &Patch::Merge(track_patch(should)))
            .await?;
        if should {
            added.push(name);
        } else {
            removed.push(name);
        }
    }
    if !added.is_empty() {
        let note = format!("canary label on {}", added.join(", "));
        ctx.publish(region, EventType::Normal, "CanaryNodesLabelled", note)
            .await;
    }
    if !removed.is_empty() {
        let note = format!("canary label removed from {}", removed.join(", "));
        ctx.publish(region, EventType::Normal, "CanaryNodesUnlabelled", note)
            .await;
    }
    Ok(())
}

/// Deletes the region's canary DaemonSet if it exists (called once no node is a canary).
async fn delete_canary(region: &EdgeRegion, ctx: &Context, ds_api: &Api<DaemonSet>) -> Result<()> {
    let name = workload::canary_name(region);
    if ds_api.get_opt(&name).await?.is_none() {
        return Ok(());
    }
    match ds_api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    ctx.publish(
        region,
        EventType::Normal,
        "CanaryDaemonSetDeleted",
        format!("deleted {name}"),
    )
    .await;
    Ok(())
}

/// Labels the nodes the plan claims for the region, releases the ones it gives up, and
/// records both as events.
async fn label_nodes(
    region: &EdgeRegion,
    ctx: &Context,
    node_api: &Api<Node>,
    nodes: &[Node],
    plan: &NodePlan,
) -> Result<()> {
    let name = region.name_any();
    for node in nodes
        .iter()
        .filter(|n| plan.to_label.contains(&n.name_any()))
    {
        patch_node(node_api, node, Some(&name)).await?;
    }
    for node in nodes
        .iter()
        .filter(|n| plan.to_unlabel.contains(&n.name_any()))
    {
        patch_node(node_api, node, None).await?;
    }
    if !plan.to_label.is_empty() {
        let note = format!("labelled {}", plan.to_label.join(", "));
        ctx.publish(region, EventType::Normal, "NodesAssigned", note)
            .await;
    }
    if !plan.to_unlabel.is_empty() {
        let note = format!("released {}", plan.to_unlabel.join(", "));
        ctx.publish(region, EventType::Normal, "NodesReleased", note)
            .await;
    }
    Ok(())
}

/// Applies the region's ConfigMap, Service, canary DaemonSet (when the rollout wants one;
/// before any node is labelled canary) and stable DaemonSet where they differ from the
/// desired ones; returns the stable DaemonSet as the API server has it.
async fn ensure_children(
    region: &EdgeRegion,
    ctx: &Context,
    namespace: &str,
    rollout_plan: &RolloutPlan,
) -> Result<DaemonSet> {
    let client = ctx.client.clone();
    let owner = workload::owner_ref(region).ok_or(Error::MissingField("a uid"))?;
    let cm = workload::config_map(region, &owner);
    let (_, cm_written) = ensure(
        &Api::<ConfigMap>::namespaced(client.clone(), namespace),
        &cm,
    )
    .await?;
    let svc = workload::service(region, &owner);
    let (_, svc_written) =
        ensure(&Api::<Service>::namespaced(client.clone(), namespace), &svc).await?;
    let ds_api = Api::<DaemonSet>::namespaced(client, namespace);
    let env = &ctx.settings.agent_env;
    if let Some(version) = &rollout_plan.canary_version {
        let canary = workload::agent_daemon_set(region, &owner, &cm, env, version, Track::Canary);
        let (_, written) = ensure(&ds_api, &canary).await?;
        if written {
            let note = format!("applied canary agent {version}");
            ctx.publish(region, EventType::Normal, "CanaryApplied", note)
                .await;
        }
    }
    let stable_version = &rollout_plan.stable_version;
    let desired_ds =
        workload::agent_daemon_set(region, &owner, &cm, env, stable_version, Track::Stable);
    let (ds, ds_written) = ensure(&ds_api, &desired_ds).await?;
    if cm_written || svc_written || ds_written {
        let note = format!("applied agent {stable_version}");
        ctx.publish(region, EventType::Normal, "WorkloadApplied", note)
            .await;
    }
    Ok(ds)
}

/// Writes the region's status when it changed, publishing an event per condition
/// transition (a warning when a bad condition turns true).
async fn patch_status(
    region: &EdgeRegion,
    ctx: &Context,
    namespace: &str,
    plan: &NodePlan,
    ds: Option<&DaemonSet>,
    rollout_plan: &RolloutPlan,
) -> Result<()> {
    let new_status = status::compute_status(region, plan, ds, &now(), rollout_plan);
    if region.status.as_ref() == Some(&new_status) {
        return Ok(());
    }
    for c in status::transitions(region.status.as_ref(), &new_status) {
        let bad = matches!(
            (c.type_, c.status),
            (
                ConditionType::Degraded
                    | ConditionType::NodeConflict
                    | ConditionType::RolloutStalled,
                ConditionStatus::True
            )
        );
        let type_ = if bad {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let note = format!("{:?}={:?}: {}", c.type_, c.status, c.message);
        ctx.publish(region, type_, &c.reason, note).await;
    }
    let api = Api::<EdgeRegion>::namespaced(ctx.client.clone(), namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch_status(
        &region.name_any(),
        &params,
        &Patch::Merge(json!({ "status": new_status })),
    )
    .await?;
    debug!("status updated");
    Ok(())
}

async fn cleanup(region: &EdgeRegion, ctx: &Context) -> Result<Action> {
    let name = region.name_any();
    let node_api = Api::<Node>::all(ctx.client.clone());
    let selector = format!("{REGION_LABEL}={name}");
    let nodes = node_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let managed = nodes::managed_by(&name, &nodes);
    for node in &managed {
        patch_node(&node_api, node, None).await?;
    }
    let names: Vec<_> = managed.iter().map(|n| n.name_any()).collect();
    info!(nodes = ?names, "region deleted; released its nodes");
    ctx.metrics.observe_rollout(&region_key(region), None);
    ctx.publish(
        region,
        EventType::Normal,
        "NodesReleased",
        format!("region deleted; released {}", names.join(", ")),
    )
    .await;
    // The DaemonSet, Service and ConfigMap go with the region through their owner references.
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_patches_are_conditional_and_clear_both_markers() {
        let mut node = crate::fixtures::node("a", &[], Some("porto"));
        node.metadata.resource_version = Some("7".into());
        let release = node_label_patch(&node, None);
        assert_eq!(release["metadata"]["resourceVersion"], "7");
        assert!(release["metadata"]["labels"][REGION_LABEL].is_null());
        assert!(release["metadata"]["annotations"][MANAGED_ANNOTATION].is_null());
        let claim = node_label_patch(&node, Some("north"));
        assert_eq!(claim["metadata"]["labels"][REGION_LABEL], "north");
        assert!(claim["metadata"]["labels"].get(TRACK_LABEL).is_none());
    }

    #[test]
    fn a_released_canary_loses_its_track_label_too() {
        let node = crate::fixtures::node("a", &[(TRACK_LABEL, CANARY_TRACK)], Some("porto"));
        let release = node_label_patch(&node, None);
        let labels = release["metadata"]["labels"].as_object().unwrap();
        assert!(labels.contains_key(TRACK_LABEL) && labels[TRACK_LABEL].is_null());
        assert_eq!(
            track_patch(true)["metadata"]["labels"][TRACK_LABEL],
            CANARY_TRACK
        );
        assert!(track_patch(false)["metadata"]["labels"][TRACK_LABEL].is_null());
    }
}

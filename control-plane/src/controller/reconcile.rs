//! One reconcile of a region: [`reconcile`] adds the finalizer, then `apply` labels the
//! region's nodes, ensures its children and patches its status; on deletion `cleanup`
//! releases its nodes. [`error_policy`] requeues failures with backoff.

use std::fmt::Debug;
use std::sync::Arc;

use edgeroute_protocol::crd::{
    ConditionStatus, ConditionType, EdgeRegion, MANAGED_ANNOTATION, REGION_LABEL,
};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{debug, info, instrument, warn};

use super::nodes::{self, NodePlan};
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

/// Merge patch that sets or clears a node's region label and our marker annotation. The
/// resourceVersion makes it conditional: if another region labelled the node since we read
/// it, the API server answers 409 and the next reconcile sees the new claim.
fn node_label_patch(node: &Node, region: Option<&str>) -> serde_json::Value {
    json!({
        "metadata": {
            "resourceVersion": node.resource_version(),
            "labels": { REGION_LABEL: region },
            "annotations": { MANAGED_ANNOTATION: region },
        }
    })
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

/// Converges a live region: its nodes, then (unless paused) its children, then its status.
async fn apply(region: &EdgeRegion, ctx: &Context) -> Result<Action> {
    let name = region.name_any();
    let namespace = region
        .namespace()
        .ok_or(Error::MissingField("a namespace"))?;
    let node_api = Api::<Node>::all(ctx.client.clone());
    let nodes = node_api.list(&ListParams::default()).await?.items;
    let plan = nodes::plan_nodes(&name, &region.spec.node_selector, &nodes)?;
    let ds = if region.spec.paused {
        Api::<DaemonSet>::namespaced(ctx.client.clone(), &namespace)
            .get_opt(&workload::child_name(region))
            .await?
    } else {
        label_nodes(region, ctx, &node_api, &nodes, &plan).await?;
        Some(ensure_children(region, ctx, &namespace).await?)
    };
    patch_status(region, ctx, &namespace, &plan, ds.as_ref()).await?;
    Ok(Action::requeue(ctx.settings.resync))
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

/// Applies the region's ConfigMap, Service and DaemonSet where they differ from the desired
/// ones; returns the DaemonSet as the API server has it.
async fn ensure_children(region: &EdgeRegion, ctx: &Context, namespace: &str) -> Result<DaemonSet> {
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
    let desired_ds = workload::daemon_set(region, &owner, &cm, &ctx.settings.agent_env);
    let (ds, ds_written) = ensure(
        &Api::<DaemonSet>::namespaced(client, namespace),
        &desired_ds,
    )
    .await?;
    if cm_written || svc_written || ds_written {
        let note = format!("applied agent {}", region.spec.agent.version);
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
) -> Result<()> {
    let new_status = status::compute_status(region, plan, ds, &now());
    if region.status.as_ref() == Some(&new_status) {
        return Ok(());
    }
    for c in status::transitions(region.status.as_ref(), &new_status) {
        let bad = matches!(
            (c.type_, c.status),
            (
                ConditionType::Degraded | ConditionType::NodeConflict,
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
    }
}

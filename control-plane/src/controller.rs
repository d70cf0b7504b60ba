//! The `EdgeRegion` controller: labels each region's nodes and runs its agents.
//!
//! # Layout
//! - this module: [`Error`], [`Context`], [`reconcile`], [`error_policy`] and the runners
//!   ([`run`] for the `controller` subcommand, [`run_elected`] and [`run_controller`] for
//!   tests and embedding).
//! - [`nodes`]: which nodes to label, release, or report as conflicts (pure).
//! - [`workload`]: the DaemonSet, Service and ConfigMap a region owns (pure).
//! - [`status`]: the status and condition transitions (pure).
//! - [`leader`]: leader election on a Lease.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`.

pub mod http;
pub mod leader;
pub mod nodes;
pub mod status;
pub mod workload;

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use edgeroute_protocol::crd::{EdgeRegion, MANAGED_ANNOTATION, REGION_LABEL};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::watch;
use tracing::{debug, info, instrument, warn};

use crate::metrics::Metrics;
use leader::{LeaderElector, LeaseSettings};
use nodes::SelectorError;
use workload::AgentEnv;

/// Field manager of every write the controller makes.
pub const FIELD_MANAGER: &str = "edgeroute-controller";
/// Finalizer that makes deletion wait until the region's node labels are removed.
pub const FINALIZER: &str = "edgeroute.io/node-labels";

/// Errors of a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API request failed.
    #[error("kubernetes API request failed")]
    Kube(#[from] kube::Error),
    /// Adding or removing the finalizer, or the reconcile wrapped by it, failed.
    #[error("finalizer step failed")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The region's node selector uses an operator the controller does not know.
    #[error("invalid node selector")]
    Selector(#[from] SelectorError),
    /// The region has no namespace or uid (it was not read from the API server).
    #[error("region lacks {0}")]
    MissingField(&'static str),
    /// A desired object could not be serialized for comparison.
    #[error("serializing a desired object failed")]
    Serialize(#[from] serde_json::Error),
}

/// Result of the controller's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Metric label of the error: the innermost variant, in snake case.
    pub fn metric_label(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match self {
            Self::Kube(_) => "kube",
            Self::Finalizer(inner) => match inner.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.metric_label(),
                F::AddFinalizer(_) | F::RemoveFinalizer(_) => "finalizer",
                F::UnnamedObject | F::InvalidFinalizer => "finalizer_invalid",
            },
            Self::Selector(_) => "selector",
            Self::MissingField(_) => "missing_field",
            Self::Serialize(_) => "serialize",
        }
    }
}

/// Tunables of the controller (the CLI fills them; tests shorten the delays).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespace whose EdgeRegions (and their children) this controller manages.
    pub namespace: String,
    /// What agents are told about the control plane.
    pub agent_env: AgentEnv,
    /// Periodic resync of a healthy region.
    pub resync: Duration,
    /// First retry delay after a failed reconcile; doubles per consecutive failure.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Name reported on Events (the pod name).
    pub instance: Option<String>,
    /// First pause of the watches after a watch error; doubles per consecutive error.
    pub watch_backoff_base: Duration,
    /// Longest pause of the watches after watch errors.
    pub watch_backoff_max: Duration,
}

/// Exponential backoff of the controller's watches. kube's default pauses the merged watch
/// stream for up to minutes after a burst of errors (one per watch); ours is bounded by
/// settings, so a short API outage does not cost a long reconcile blackout.
#[derive(Debug, Clone)]
struct WatchBackoff {
    base: Duration,
    max: Duration,
    next: Duration,
}

impl WatchBackoff {
    fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            next: base,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let current = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        Some(current)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = self.base;
    }
}

/// State shared by every reconcile.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Publishes Kubernetes Events about regions.
    pub recorder: Recorder,
    /// Reconcile metrics.
    pub metrics: Arc<Metrics>,
    /// Tunables.
    pub settings: Settings,
    /// Consecutive failures per region, for the error backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context for `client`.
    pub fn new(client: Client, settings: Settings, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: settings.instance.clone(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            settings,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn next_backoff(&self, key: String) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key).or_insert(0);
        let delay = self.settings.backoff_base.saturating_mul(1 << (*n).min(16));
        *n = n.saturating_add(1);
        delay.min(self.settings.backoff_max)
    }

    fn reset_backoff(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    async fn publish(&self, region: &EdgeRegion, type_: EventType, reason: &str, note: String) {
        let event = KubeEvent {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        // Events are best effort: a reconcile must not fail because one was not recorded.
        if let Err(e) = self.recorder.publish(&event, &region.object_ref(&())).await {
            warn!(error = %e, reason, "publishing an event failed");
        }
    }
}

fn region_key(region: &EdgeRegion) -> String {
    format!(
        "{}/{}",
        region.namespace().unwrap_or_default(),
        region.name_any()
    )
}

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

async fn apply(region: &EdgeRegion, ctx: &Context) -> Result<Action> {
    let name = region.name_any();
    let namespace = region
        .namespace()
        .ok_or(Error::MissingField("a namespace"))?;
    let client = ctx.client.clone();
    let node_api = Api::<Node>::all(client.clone());
    let nodes = node_api.list(&ListParams::default()).await?.items;
    let plan = nodes::plan_nodes(&name, &region.spec.node_selector, &nodes)?;

    let ds_api = Api::<DaemonSet>::namespaced(client.clone(), &namespace);
    let ds = if region.spec.paused {
        ds_api.get_opt(&workload::child_name(region)).await?
    } else {
        for node in nodes
            .iter()
            .filter(|n| plan.to_label.contains(&n.name_any()))
        {
            patch_node(&node_api, node, Some(&name)).await?;
        }
        for node in nodes
            .iter()
            .filter(|n| plan.to_unlabel.contains(&n.name_any()))
        {
            patch_node(&node_api, node, None).await?;
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

        let owner = workload::owner_ref(region).ok_or(Error::MissingField("a uid"))?;
        let cm = workload::config_map(region, &owner);
        let (_, cm_written) = ensure(
            &Api::<ConfigMap>::namespaced(client.clone(), &namespace),
            &cm,
        )
        .await?;
        let svc = workload::service(region, &owner);
        let (_, svc_written) = ensure(
            &Api::<Service>::namespaced(client.clone(), &namespace),
            &svc,
        )
        .await?;
        let desired_ds = workload::daemon_set(region, &owner, &cm, &ctx.settings.agent_env);
        let (ds, ds_written) = ensure(&ds_api, &desired_ds).await?;
        if cm_written || svc_written || ds_written {
            let note = format!("applied agent {}", region.spec.agent.version);
            ctx.publish(region, EventType::Normal, "WorkloadApplied", note)
                .await;
        }
        Some(ds)
    };

    let new_status = status::compute_status(region, &plan, ds.as_ref(), &now());
    if region.status.as_ref() != Some(&new_status) {
        for c in status::transitions(region.status.as_ref(), &new_status) {
            let bad = matches!(
                (c.type_, c.status),
                (
                    edgeroute_protocol::crd::ConditionType::Degraded
                        | edgeroute_protocol::crd::ConditionType::NodeConflict,
                    edgeroute_protocol::crd::ConditionStatus::True
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
        let api = Api::<EdgeRegion>::namespaced(client, &namespace);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        api.patch_status(
            &name,
            &params,
            &Patch::Merge(json!({ "status": new_status })),
        )
        .await?;
        debug!("status updated");
    }
    Ok(Action::requeue(ctx.settings.resync))
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

/// Runs the controller until `shutdown` turns true. Returns when the controller has stopped
/// (dropping the returned future also stops it, cancelling in-flight reconciles).
pub async fn run_controller(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let client = ctx.client.clone();
    let ns = ctx.settings.namespace.clone();
    let regions = Api::<EdgeRegion>::namespaced(client.clone(), &ns);
    let owned = watcher::Config::default().labels(&format!(
        "app.kubernetes.io/managed-by={}",
        workload::MANAGED_BY
    ));
    // graceful_shutdown_on wants a Sync future; a oneshot receiver is one. The relay task ends
    // with the controller (when the receiver is dropped) or on shutdown.
    let (stop_tx, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut stop_tx = stop_tx;
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => {
                let _ = stop_tx.send(());
            }
            () = stop_tx.closed() => {}
        }
    });
    let controller =
        Controller::new(regions, watcher::Config::default()).trigger_backoff(WatchBackoff::new(
            ctx.settings.watch_backoff_base,
            ctx.settings.watch_backoff_max,
        ));
    let store = controller.store();
    controller
        .owns(
            Api::<DaemonSet>::namespaced(client.clone(), &ns),
            owned.clone(),
        )
        .owns(
            Api::<Service>::namespaced(client.clone(), &ns),
            owned.clone(),
        )
        .owns(Api::<ConfigMap>::namespaced(client.clone(), &ns), owned)
        .watches(
            Api::<Node>::all(client),
            watcher::Config::default(),
            move |node| nodes::regions_for_node(&store.state(), &node),
        )
        .graceful_shutdown_on(async move {
            let _ = stopped.await;
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => debug!(region = %obj.name, "reconciled"),
                Err(e) => warn!(error = %e, "controller stream error"),
            }
        })
        .await;
}

/// Runs the controller only while this replica holds the lease: follows until it acquires
/// the lease, reconciles while renewing it, stops reconciling when the lease is lost and
/// tries again. On shutdown it releases the lease.
pub async fn run_elected(
    ctx: Arc<Context>,
    lease: LeaseSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let elector = LeaderElector::new(ctx.client.clone(), lease);
    loop {
        if !elector.acquire(&mut shutdown).await {
            return;
        }
        ctx.metrics.leader.set(1);
        let lost = tokio::select! {
            () = run_controller(Arc::clone(&ctx), shutdown.clone()) => false,
            () = elector.hold() => true,
        };
        ctx.metrics.leader.set(0);
        if !lost || *shutdown.borrow() {
            elector.release().await;
            return;
        }
        warn!("lost the leader lease; stopped reconciling");
    }
}

/// Command-line arguments of `edgeroute-control-plane controller`.
#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Address of the `/metrics`, `/healthz` and `/readyz` endpoints.
    #[arg(
        long,
        env = "EDGEROUTE_CONTROLLER_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub listen: SocketAddr,
    /// Namespace whose EdgeRegions are managed (and where the Lease lives).
    #[arg(long, env = "EDGEROUTE_NAMESPACE", default_value = "edgeroute")]
    pub namespace: String,
    /// Control-plane URL handed to the agents.
    #[arg(
        long,
        env = "EDGEROUTE_CONTROL_PLANE_URL",
        default_value = "http://edgeroute-control-plane.edgeroute.svc:8080"
    )]
    pub control_plane_url: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "edgeroute-controller")]
    pub lease_name: String,
    /// Identity in the Lease; defaults to the pod name (`POD_NAME`) or the hostname.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Lease duration in seconds.
    #[arg(long, default_value_t = 15)]
    pub lease_duration_secs: u64,
    /// Periodic resync of every region, in seconds.
    #[arg(long, default_value_t = 300)]
    pub resync_secs: u64,
}

async fn wait_for_signal(tx: watch::Sender<bool>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    info!("shutting down");
    let _ = tx.send(true);
}

/// Runs the `controller` subcommand: the metrics/health server, leader election and the
/// controller, against the cluster of the current kube context, until SIGTERM or Ctrl-C.
pub async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let identity = match args.identity {
        Some(id) => id,
        None => std::env::var("HOSTNAME")
            .unwrap_or_else(|_| format!("edgeroute-{}", std::process::id())),
    };
    let metrics = Arc::new(Metrics::default());
    let settings = Settings {
        namespace: args.namespace.clone(),
        agent_env: AgentEnv {
            control_plane_url: args.control_plane_url,
        },
        resync: Duration::from_secs(args.resync_secs),
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(300),
        instance: Some(identity.clone()),
        watch_backoff_base: Duration::from_millis(500),
        watch_backoff_max: Duration::from_secs(30),
    };
    let lease_duration = Duration::from_secs(args.lease_duration_secs.max(3));
    let lease = LeaseSettings {
        name: args.lease_name,
        namespace: args.namespace,
        identity,
        lease_duration,
        renew_interval: lease_duration / 3,
        retry_interval: lease_duration / 5,
    };
    let (tx, rx) = watch::channel(false);
    tokio::spawn(wait_for_signal(tx));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    info!(addr = %args.listen, "serving /metrics and /healthz");
    let mut server_stop = rx.clone();
    let server = tokio::spawn(
        axum::serve(listener, http::router(Arc::clone(&metrics)))
            .with_graceful_shutdown(async move {
                let _ = server_stop.wait_for(|stop| *stop).await;
            })
            .into_future(),
    );
    let ctx = Arc::new(Context::new(client, settings, metrics));
    run_elected(ctx, lease, rx).await;
    server
        .await
        .context("metrics server task")?
        .context("metrics server")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff;

    #[test]
    fn watch_backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = WatchBackoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let first: Vec<_> = b.by_ref().take(4).map(|d| d.as_millis()).collect();
        assert_eq!(first, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(100)));
    }

    #[test]
    fn metric_labels_name_the_innermost_variant() {
        let inner = Error::Selector(SelectorError {
            key: "zone".into(),
            operator: "Gt".into(),
        });
        assert_eq!(inner.metric_label(), "selector");
        let wrapped = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(
            inner,
        )));
        assert_eq!(wrapped.metric_label(), "selector");
        // Display names the step only; the cause is in source(), not repeated.
        assert_eq!(wrapped.to_string(), "finalizer step failed");
    }

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

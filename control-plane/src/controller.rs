//! The `EdgeRegion` controller: labels each region's nodes and runs its agents.
//!
//! # Layout
//! - this module: [`Error`], [`Settings`] and [`Context`], the state every reconcile shares.
//! - [`reconcile`](mod@reconcile): [`reconcile()`] and [`error_policy`]; a reconcile labels
//!   nodes, ensures the region's children and patches its status, one function each.
//! - [`runner`]: [`run_controller`] (watches and reconciles) and [`run_elected`] (the same
//!   while this replica holds the lease); the `controller` subcommand wires them in
//!   [`crate::cli`].
//! - [`nodes`]: which nodes to label, release, or report as conflicts (pure).
//! - [`rollout`]: the canary rollout of agent versions, a state machine (pure); which nodes
//!   are canaries is [`canaries`].
//! - [`judge`]: the center's verdicts on canary windows ([`judge::Judge`], over HTTP).
//! - [`workload`]: the DaemonSets, Service and ConfigMap a region owns (pure).
//! - [`status`]: the status and condition transitions (pure).
//! - [`leader`]: leader election on a Lease.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`.

pub mod canaries;
pub mod http;
pub mod judge;
pub mod leader;
pub mod nodes;
pub mod reconcile;
pub mod rollout;
pub mod runner;
pub mod status;
pub mod workload;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgeroute_protocol::crd::EdgeRegion;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use tracing::warn;

use crate::metrics::Metrics;
use nodes::SelectorError;
use workload::AgentEnv;

pub use reconcile::{error_policy, reconcile};
pub use runner::{run_controller, run_elected};

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
    /// Judges canary windows; `None` when no center is configured, in which case rollouts
    /// hold and then pause: they are never promoted unjudged.
    pub judge: Option<Arc<dyn judge::Judge>>,
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
            judge: None,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The same context, asking `judge` for verdicts on canary windows.
    pub fn with_judge(mut self, judge: Arc<dyn judge::Judge>) -> Self {
        self.judge = Some(judge);
        self
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! The controller's runners: [`run_controller`] watches regions, their children and nodes
//! and reconciles; [`run_elected`] does so only while this replica holds the lease.

use std::sync::Arc;
use std::time::Duration;

use edgeroute_protocol::crd::EdgeRegion;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use kube::Api;
use kube::runtime::{Controller, watcher};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::leader::{LeaderElector, LeaseSettings};
use super::{Context, error_policy, nodes, reconcile, workload};

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
}

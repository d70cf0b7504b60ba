//! Controller replicas for the controller scenarios: the real controller, elected through a
//! lease in the fake API server, with test-sized timings.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeroute_control_plane::controller::judge::Judge;
use edgeroute_control_plane::controller::leader::LeaseSettings;
use edgeroute_control_plane::controller::workload::AgentEnv;
use edgeroute_control_plane::controller::{Context, Settings, run_elected};
use edgeroute_control_plane::metrics::Metrics;
use edgeroute_protocol::crd::{
    ConditionStatus, ConditionType, EdgeRegion, MANAGED_ANNOTATION, REGION_LABEL,
};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::fake_apiserver::FakeApiServer;

/// The namespace the controller watches.
pub const NS: &str = "edgeroute";
/// Resource paths of the fake API server.
pub const NODES: &str = "v1/nodes";
pub const DAEMONSETS: &str = "apps/v1/daemonsets";
pub const SERVICES: &str = "v1/services";
pub const CONFIGMAPS: &str = "v1/configmaps";
pub const LEASES: &str = "coordination.k8s.io/v1/leases";
pub const REGIONS: &str = "edgeroute.io/v1alpha1/edgeregions";
pub const EVENTS: &str = "events.k8s.io/v1/events";

/// How long the leader lease lasts, and how often it is renewed and retried.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    pub duration: Duration,
    pub renew: Duration,
    pub retry: Duration,
}

/// One controller replica running in the test.
pub struct Replica {
    pub metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Replica {
    /// Start a replica named `identity`, with a canary judge when agent rollouts are tested.
    pub fn start(
        server: &FakeApiServer,
        identity: &str,
        lease: LeaseTiming,
        judge: Option<Arc<dyn Judge>>,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        let settings = Settings {
            namespace: NS.into(),
            agent_env: AgentEnv {
                control_plane_url: "http://cp.edgeroute.svc:8080".into(),
            },
            resync: Duration::from_secs(600),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            instance: Some(identity.into()),
            watch_backoff_base: Duration::from_millis(50),
            watch_backoff_max: Duration::from_millis(500),
        };
        let lease = LeaseSettings {
            name: "edgeroute-controller".into(),
            namespace: NS.into(),
            identity: identity.into(),
            lease_duration: lease.duration,
            renew_interval: lease.renew,
            retry_interval: lease.retry,
        };
        let mut ctx = Context::new(server.client(), settings, Arc::clone(&metrics));
        if let Some(judge) = judge {
            ctx = ctx.with_judge(judge);
        }
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(run_elected(Arc::new(ctx), lease, rx));
        Self {
            metrics,
            stop,
            task,
        }
    }

    /// Die without releasing the lease, as a killed process would.
    pub fn kill(&self) {
        self.task.abort();
    }

    /// Reconciles this replica started.
    pub fn reconciles(&self) -> u64 {
        self.metrics.reconciliations.get()
    }

    /// Stop the replica and wait (at most `timeout`) for it to end.
    pub async fn shutdown(self, timeout: Duration) {
        let _ = self.stop.send(true);
        tokio::time::timeout(timeout, self.task)
            .await
            .expect("controller stops on shutdown")
            .unwrap();
    }
}

/// Poll `check` every 50 ms until it holds; fail the test after `timeout`.
pub async fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node labelled `zone=<zone>`.
pub fn add_node(server: &FakeApiServer, name: &str, zone: &str) {
    server.put(
        NODES,
        "",
        json!({"apiVersion": "v1", "kind": "Node",
               "metadata": {"name": name, "labels": {"zone": zone}}}),
    );
}

// What the scenarios read back from the fake API server.

pub fn node(server: &FakeApiServer, name: &str) -> Value {
    server.object(NODES, "", name).expect("node exists")
}

pub fn region_of(server: &FakeApiServer, name: &str) -> Option<String> {
    let node = node(server, name);
    node["metadata"]["labels"][REGION_LABEL]
        .as_str()
        .map(str::to_owned)
}

pub fn managed(server: &FakeApiServer, name: &str) -> bool {
    !node(server, name)["metadata"]["annotations"][MANAGED_ANNOTATION].is_null()
}

pub fn region_json(name: &str, zone: &str, version: &str) -> Value {
    json!({
        "apiVersion": "edgeroute.io/v1alpha1", "kind": "EdgeRegion",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "nodeSelector": {"matchLabels": {"zone": zone}},
            "agent": {"image": "ghcr.io/edgeroute/agent", "version": version},
            "graph": {"source": format!("{zone}.osm.pbf"), "version": "v1"}
        }
    })
}

pub async fn create_region(client: &Client, name: &str, zone: &str) {
    let api = Api::<EdgeRegion>::namespaced(client.clone(), NS);
    let region: EdgeRegion = serde_json::from_value(region_json(name, zone, "0.1.0")).unwrap();
    api.create(&PostParams::default(), &region).await.unwrap();
}

pub fn status(server: &FakeApiServer, name: &str) -> Option<Value> {
    server
        .object(REGIONS, NS, name)
        .map(|r| r["status"].clone())
        .filter(|s| !s.is_null())
}

pub fn condition(server: &FakeApiServer, region: &str, type_: ConditionType) -> Option<String> {
    let status = status(server, region)?;
    let type_ = serde_json::to_value(type_).unwrap();
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["status"].as_str().map(str::to_owned))
}

pub fn is(status: ConditionStatus) -> Option<String> {
    Some(
        serde_json::to_value(status)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

pub fn child(server: &FakeApiServer, resource: &str, region: &str) -> Option<Value> {
    server.object(resource, NS, &format!("edgeroute-agent-{region}"))
}

pub fn lease_holder(server: &FakeApiServer) -> Option<String> {
    server
        .object(LEASES, NS, "edgeroute-controller")
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
}

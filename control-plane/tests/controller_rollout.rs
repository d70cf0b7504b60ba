//! Agent-version rollouts: the real controller, through a real `kube::Client`, against the
//! in-process fake API server, with a simulated DaemonSet controller and a judge computing
//! verdicts from simulated agent report figures (the center's real analysis is tested at
//! the center); plus the HTTP judge against a tiny in-process center.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use edgeroute_control_plane::controller::judge::{HttpJudge, Judge, JudgeError};
use edgeroute_control_plane::controller::leader::LeaseSettings;
use edgeroute_control_plane::controller::workload::AgentEnv;
use edgeroute_control_plane::controller::{Context, Settings, run_elected};
use edgeroute_control_plane::metrics::Metrics;
use edgeroute_protocol::crd::{
    CANARY_TRACK, EdgeRegion, REGION_LABEL, ROLLOUT_ACTION_ANNOTATION, TRACK_LABEL,
};
use edgeroute_protocol::rollout::{AnalysisRequest, ArmFigures, Verdict, VerdictKind};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::fake_apiserver::FakeApiServer;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const NS: &str = "edgeroute";
const NODES: &str = "v1/nodes";
const DAEMONSETS: &str = "apps/v1/daemonsets";
const REGIONS: &str = "edgeroute.io/v1alpha1/edgeregions";
const EVENTS: &str = "events.k8s.io/v1/events";
const LEASES: &str = "coordination.k8s.io/v1/leases";
const STABLE: &str = "edgeroute-agent-porto";
const CANARY: &str = "edgeroute-agent-porto-canary";
const TIMEOUT: Duration = Duration::from_secs(20);

/// How the simulated agents behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Canary {
    /// Serves like the stable nodes.
    Healthy,
    /// Answers 8% errors where stable answers 0.5%.
    Erroring,
    /// Answers as often as stable, but with a p99 of 900 ms.
    Slow,
    /// Gets almost no traffic.
    Idle,
    /// Stopped reporting (a partition).
    Partitioned,
}

/// A judge computing verdicts from simulated report figures with a simple rule (the real,
/// statistical analysis lives at the center): silent canaries are Silent, arms below the
/// minimum sample are Inconclusive, a canary error rate above stable's plus the allowed rate
/// fails, anything else passes.
struct SimJudge {
    canary: Mutex<Canary>,
    requests: Mutex<Vec<AnalysisRequest>>,
}

impl SimJudge {
    fn new(canary: Canary) -> Arc<Self> {
        Arc::new(Self {
            canary: Mutex::new(canary),
            requests: Mutex::new(Vec::new()),
        })
    }

    fn set(&self, canary: Canary) {
        *self.canary.lock().unwrap() = canary;
    }

    fn requests(&self) -> Vec<AnalysisRequest> {
        self.requests.lock().unwrap().clone()
    }
}

fn arm(nodes: u32, reporting: u32, requests_per_node: u64, error_permille: u64) -> ArmFigures {
    let requests = requests_per_node * u64::from(reporting);
    ArmFigures {
        nodes,
        reporting_nodes: reporting,
        requests,
        errors: requests * error_permille / 1000,
        p99_ms: (requests > 0).then_some(40.0),
        shadow_compared: 0,
        shadow_differ: 0,
    }
}

#[async_trait]
impl Judge for SimJudge {
    async fn judge(&self, region: &str, req: &AnalysisRequest) -> Result<Verdict, JudgeError> {
        assert_eq!(region, "porto");
        self.requests.lock().unwrap().push(req.clone());
        let n = u32::try_from(req.canary_nodes.len()).unwrap();
        let behaviour = *self.canary.lock().unwrap();
        let canary = match behaviour {
            Canary::Healthy => arm(n, n, 500, 5),
            Canary::Erroring => arm(n, n, 500, 80),
            Canary::Slow => ArmFigures {
                p99_ms: Some(900.0),
                ..arm(n, n, 500, 5)
            },
            Canary::Idle => arm(n, n, 2, 0),
            Canary::Partitioned => arm(n, 0, 0, 0),
        };
        let stable = arm(8 - n.min(8), 8 - n.min(8), 500, 5);
        let rate = |a: &ArmFigures| a.errors as f64 / a.requests.max(1) as f64;
        let min = u64::from(req.policy.min_requests);
        let (kind, reason) = if canary.reporting_nodes < canary.nodes {
            (
                VerdictKind::Silent,
                "canary nodes stopped reporting".to_owned(),
            )
        } else if canary.requests < min {
            (
                VerdictKind::Inconclusive,
                format!("{} canary requests < {min}", canary.requests),
            )
        } else if rate(&canary) > rate(&stable) + req.policy.max_error_rate {
            (
                VerdictKind::Fail,
                format!(
                    "canary error rate {:.3} vs stable {:.3}",
                    rate(&canary),
                    rate(&stable)
                ),
            )
        } else if canary.p99_ms.unwrap_or(0.0) > f64::from(req.policy.max_p99_latency_ms) {
            (
                VerdictKind::Fail,
                format!(
                    "canary p99 {:?} ms above {} ms",
                    canary.p99_ms, req.policy.max_p99_latency_ms
                ),
            )
        } else {
            (VerdictKind::Pass, "canary within bounds".to_owned())
        };
        Ok(Verdict {
            kind,
            reason,
            at_ms: req.since_ms,
            canary,
            stable,
        })
    }
}

struct Replica {
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Replica {
    fn start(server: &FakeApiServer, identity: &str, judge: Option<Arc<dyn Judge>>) -> Self {
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
            lease_duration: Duration::from_secs(2),
            renew_interval: Duration::from_millis(200),
            retry_interval: Duration::from_millis(150),
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

    async fn shutdown(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("controller stops on shutdown")
            .unwrap();
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn add_node(server: &FakeApiServer, name: &str) {
    server.put(
        NODES,
        "",
        json!({"apiVersion": "v1", "kind": "Node",
               "metadata": {"name": name, "labels": {"zone": "porto"}}}),
    );
}

/// Whether a DaemonSet's pods belong on a node, from its nodeSelector and the stable
/// DaemonSet's "not canary" affinity.
fn places_on(ds: &Value, node: &Value) -> bool {
    let pod = &ds["spec"]["template"]["spec"];
    let labels = &node["metadata"]["labels"];
    let selected = pod["nodeSelector"]
        .as_object()
        .is_some_and(|sel| sel.iter().all(|(k, v)| &labels[k] == v));
    let terms = &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    let affine = terms.as_array().is_none_or(|terms| {
        terms.iter().any(|t| {
            t["matchExpressions"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|e| {
                    let value = labels[e["key"].as_str().unwrap()].as_str();
                    let values: Vec<&str> = e["values"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    match e["operator"].as_str().unwrap() {
                        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
                        "In" => value.is_some_and(|v| values.contains(&v)),
                        other => panic!("unexpected operator {other}"),
                    }
                })
        })
    });
    selected && affine
}

/// Plays the DaemonSet controller: every DaemonSet reports its current template updated
/// and ready on every node it places pods on.
fn simulate_daemon_sets(server: &Arc<FakeApiServer>) -> JoinHandle<()> {
    let server = Arc::clone(server);
    tokio::spawn(async move {
        loop {
            let nodes = server.objects(NODES);
            for ds in server.objects(DAEMONSETS) {
                let n = nodes.iter().filter(|node| places_on(&ds, node)).count();
                let status = json!({
                    "observedGeneration": ds["metadata"]["generation"],
                    "desiredNumberScheduled": n, "currentNumberScheduled": n,
                    "updatedNumberScheduled": n, "numberReady": n, "numberAvailable": n,
                    "numberMisscheduled": 0,
                });
                let current = &ds["status"];
                let same = status
                    .as_object()
                    .unwrap()
                    .iter()
                    .all(|(k, v)| &current[k] == v);
                if !same {
                    let name = ds["metadata"]["name"].as_str().unwrap().to_owned();
                    // The controller may have deleted it since the list.
                    if server.object(DAEMONSETS, NS, &name).is_some() {
                        server.merge(DAEMONSETS, NS, &name, json!({ "status": status }), true);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

fn region_json(version: &str) -> Value {
    json!({
        "apiVersion": "edgeroute.io/v1alpha1", "kind": "EdgeRegion",
        "metadata": {"name": "porto", "namespace": NS},
        "spec": {
            "nodeSelector": {"matchLabels": {"zone": "porto"}},
            "agent": {"image": "ghcr.io/edgeroute/agent", "version": version},
            "graph": {"source": "porto.osm.pbf", "version": "v1"},
            // Seconds-long windows keep the scenarios fast (the CRD's minimum is for
            // production; the fake API server does not enforce it).
            "rollout": {"steps": [5, 25, 50, 100], "analysisWindowSeconds": 1,
                        "maxInconclusiveSeconds": 3, "minRequests": 100, "maxErrorRate": 0.01}
        }
    })
}

fn canaries(server: &FakeApiServer) -> BTreeSet<String> {
    server
        .objects(NODES)
        .iter()
        .filter(|n| n["metadata"]["labels"][TRACK_LABEL] == CANARY_TRACK)
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

fn image(server: &FakeApiServer, name: &str) -> Option<String> {
    server.object(DAEMONSETS, NS, name).map(|ds| {
        ds["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_owned()
    })
}

fn rollout(server: &FakeApiServer) -> Value {
    server.object(REGIONS, NS, "porto").unwrap()["status"]["rollout"].clone()
}

fn phase(server: &FakeApiServer) -> Option<String> {
    rollout(server)["phase"].as_str().map(str::to_owned)
}

fn event(server: &FakeApiServer, reason: &str) -> bool {
    server
        .objects(EVENTS)
        .iter()
        .any(|e| e["reason"] == reason && e["regarding"]["name"] == "porto")
}

async fn patch_region(server: &FakeApiServer, patch: Value) {
    Api::<EdgeRegion>::namespaced(server.client(), NS)
        .patch("porto", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// A region on 0.1.0 over `nodes` nodes, settled (stable DaemonSet complete), then asked
/// to run 0.2.0.
async fn region_rolling_out(server: &FakeApiServer, nodes: usize) {
    for i in 0..nodes {
        add_node(server, &format!("edge-{i}"));
    }
    let region: EdgeRegion = serde_json::from_value(region_json("0.1.0")).unwrap();
    Api::<EdgeRegion>::namespaced(server.client(), NS)
        .create(&PostParams::default(), &region)
        .await
        .unwrap();
    eventually("the first version runs everywhere", || {
        server.object(REGIONS, NS, "porto").is_some_and(|r| {
            r["status"]["currentVersion"] == "0.1.0" && r["status"]["matchedNodes"] == json!(nodes)
        })
    })
    .await;
    assert!(
        rollout(server).is_null(),
        "the first version is not a rollout"
    );
    assert!(server.object(DAEMONSETS, NS, CANARY).is_none());
    patch_region(server, json!({"spec": {"agent": {"version": "0.2.0"}}})).await;
}

const OLD: &str = "ghcr.io/edgeroute/agent:0.1.0";
const NEW: &str = "ghcr.io/edgeroute/agent:0.2.0";

/// The end state of a rollback: no canary label, no canary DaemonSet, stable on 0.1.0.
async fn rolled_back(server: &FakeApiServer) {
    eventually("rolled back and cleaned up", || {
        phase(server).as_deref() == Some("RolledBack")
            && canaries(server).is_empty()
            && server.object(DAEMONSETS, NS, CANARY).is_none()
    })
    .await;
    assert_eq!(image(server, STABLE).as_deref(), Some(OLD));
}

#[tokio::test]
async fn a_healthy_canary_promotes_through_every_step() {
    let server = Arc::new(FakeApiServer::start().await);
    let sim = simulate_daemon_sets(&server);
    let judge = SimJudge::new(Canary::Healthy);
    let replica = Replica::start(&server, "one", Some(judge.clone()));
    region_rolling_out(&server, 8).await;
    let writes_before = server.requests().len();

    // Record the canary set of each step (as decided in the status; the labels follow one
    // node at a time) until the rollout is over.
    let mut sizes: Vec<usize> = Vec::new();
    eventually("promoted and cleaned up", || {
        let r = rollout(&server);
        let n = r["canaryNodes"].as_array().map_or(0, Vec::len);
        if r["phase"] == "Progressing" && n > 0 && sizes.last() != Some(&n) {
            sizes.push(n);
        }
        r["phase"] == "Promoted"
            && canaries(&server).is_empty()
            && server.object(DAEMONSETS, NS, CANARY).is_none()
    })
    .await;
    assert_eq!(sizes, [1, 2, 4, 8], "5%, 25%, 50%, 100% of 8 nodes");
    assert_eq!(image(&server, STABLE).as_deref(), Some(NEW));
    eventually("status reports the new version", || {
        server.object(REGIONS, NS, "porto").unwrap()["status"]["currentVersion"] == "0.2.0"
    })
    .await;
    let r = rollout(&server);
    assert_eq!(r["fromVersion"], "0.1.0");
    assert_eq!(r["toVersion"], "0.2.0");
    assert_eq!(r["lastVerdict"]["kind"], "Pass");
    let mut asked: Vec<(usize, u64)> = judge
        .requests()
        .iter()
        .map(|r| (r.canary_nodes.len(), r.since_ms))
        .collect();
    asked.dedup();
    let counts: Vec<usize> = asked.iter().map(|a| a.0).collect();
    assert_eq!(counts, [1, 2, 4, 8], "one window per step");
    assert!(
        asked.windows(2).all(|w| w[0].1 < w[1].1),
        "each step has its own window"
    );
    for reason in [
        "RolloutStarted",
        "RolloutStepAdvanced",
        "RolloutPromoted",
        "CanaryRemoved",
    ] {
        eventually(reason, || event(&server, reason)).await;
    }
    let metrics = replica.metrics.encode().unwrap();
    assert!(metrics.contains(r#"edgeroute_controller_rollout_verdicts_total{kind="Pass"} 4"#));
    assert!(metrics.contains(r#"edgeroute_controller_rollouts{phase="Promoted"} 1"#));

    // Ordering: the canary DaemonSet exists before any canary label; the stable DaemonSet
    // moves to the new version before the labels go; the canary DaemonSet goes last.
    let writes: Vec<_> = server.requests()[writes_before..]
        .iter()
        .filter(|r| r.is_write() && r.resource != "leases" && r.resource != "events")
        .cloned()
        .collect();
    let pos = |f: &dyn Fn(&support::fake_apiserver::Recorded) -> bool| writes.iter().position(f);
    let rpos = |f: &dyn Fn(&support::fake_apiserver::Recorded) -> bool| writes.iter().rposition(f);
    let is_node = |r: &support::fake_apiserver::Recorded| r.resource == "nodes";
    let first_canary_ds = pos(&|r| r.resource == "daemonsets" && r.name.as_deref() == Some(CANARY));
    let first_label = pos(&is_node);
    assert!(first_canary_ds < first_label, "{writes:?}");
    let last_stable = rpos(&|r| {
        r.resource == "daemonsets" && r.name.as_deref() == Some(STABLE) && r.method == "PATCH"
    });
    let last_label = rpos(&is_node);
    let delete = pos(&|r| r.method == "DELETE" && r.name.as_deref() == Some(CANARY));
    assert!(last_stable < last_label, "{writes:?}");
    assert!(last_label < delete, "{writes:?}");
    replica.shutdown().await;
    sim.abort();
}

#[tokio::test]
async fn a_failing_canary_rolls_back_within_one_window() {
    let server = Arc::new(FakeApiServer::start().await);
    let sim = simulate_daemon_sets(&server);
    let judge = SimJudge::new(Canary::Erroring);
    let replica = Replica::start(&server, "one", Some(judge.clone()));
    region_rolling_out(&server, 8).await;
    eventually("a canary is labelled", || canaries(&server).len() == 1).await;
    assert_eq!(image(&server, CANARY).as_deref(), Some(NEW));
    assert_eq!(image(&server, STABLE).as_deref(), Some(OLD));
    let started = Instant::now();
    rolled_back(&server).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "rolled back after {:?}",
        started.elapsed()
    );
    let r = rollout(&server);
    assert!(
        r["reason"].as_str().unwrap().contains("canary error rate"),
        "{r}"
    );
    assert_eq!(r["lastVerdict"]["kind"], "Fail");
    eventually("a RolloutRolledBack event", || {
        event(&server, "RolloutRolledBack")
    })
    .await;
    // The spec still says 0.2.0, but the rollout is over: nothing moves any more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(canaries(&server).is_empty());
    assert_eq!(image(&server, STABLE).as_deref(), Some(OLD));
    assert!(judge.requests().iter().all(|r| r.canary_nodes.len() == 1));
    replica.shutdown().await;
    sim.abort();
}

#[tokio::test]
async fn a_slow_canary_rolls_back() {
    let server = Arc::new(FakeApiServer::start().await);
    let sim = simulate_daemon_sets(&server);
    let judge = SimJudge::new(Canary::Healthy);
    let replica = Replica::start(&server, "one", Some(judge.clone()));
    region_rolling_out(&server, 8).await;
    // The first step is fine; the canary turns slow during the second.
    eventually("second step", || canaries(&server).len() == 2).await;
    judge.set(Canary::Slow);
    rolled_back(&server).await;
    let r = rollout(&server);
    assert!(r["reason"].as_str().unwrap().contains("p99"), "{r}");
    assert_eq!(r["step"], 1);
    replica.shutdown().await;
    sim.abort();
}

#[tokio::test]
async fn an_idle_canary_holds_then_pauses_and_is_not_rolled_back() {
    let server = Arc::new(FakeApiServer::start().await);
    let sim = simulate_daemon_sets(&server);
    let judge = SimJudge::new(Canary::Idle);
    let replica = Replica::start(&server, "one", Some(judge.clone()));
    region_rolling_out(&server, 8).await;
    eventually("holding", || phase(&server).as_deref() == Some("Holding")).await;
    let held = canaries(&server);
    assert_eq!(held.len(), 1);
    // The rollout decision is written first, the conditions right after.
    eventually("the RolloutStalled condition", || {
        let status = server.object(REGIONS, NS, "porto").unwrap()["status"].clone();
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "RolloutStalled" && c["status"] == "True")
    })
    .await;
    eventually("paused after maxInconclusiveSeconds", || {
        phase(&server).as_deref() == Some("Paused")
    })
    .await;
    assert!(
        rollout(&server)["reason"]
            .as_str()
            .unwrap()
            .contains("without a verdict")
    );
    assert!(judge.requests().len() >= 2, "asked again while holding");
    assert_eq!(canaries(&server), held, "not rolled back");
    assert_eq!(image(&server, CANARY).as_deref(), Some(NEW));
    eventually("a RolloutPaused event", || event(&server, "RolloutPaused")).await;
    // Paused: no more questions.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = judge.requests().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(judge.requests().len(), asked);

    // Traffic arrives and an operator resumes: the rollout moves on.
    judge.set(Canary::Healthy);
    patch_region(
        &server,
        json!({"metadata": {"annotations": {ROLLOUT_ACTION_ANNOTATION: "resume:1"}}}),
    )
    .await;
    eventually("second step", || canaries(&server).len() == 2).await;
    assert_eq!(
        server.object(REGIONS, NS, "porto").unwrap()["status"]["rolloutActionAck"],
        "resume:1"
    );
    replica.shutdown().await;
    sim.abort();
}

#[tokio::test]
async fn a_partitioned_canary_holds_without_rolling_either_way() {
    let server = Arc::new(FakeApiServer::start().await);
    let sim = simulate_daemon_sets(&server);
    let judge = SimJudge::new(Canary::Partitioned);
    let replica = Replica::start(&server, "one", Some(judge.clone()));
    region_rolling_out(&server, 8).await;
    eventually("holding", || phase(&server).as_deref() == Some("Holding")).await;
    assert_eq!(rollout(&server)["lastVerdict"]["kind"], "Silent");
    eventually("asked twice", || judge.requests().len() >= 2).await;
    assert_eq!(phase(&server).as_deref(), Some("Holding"));
    assert_eq!(canaries(&server).len(), 1);
    assert_eq!(image(&server, STABLE).as_deref(), Some(OLD));
    // The partition heals: the next window passes.
    judge.set(Canary::Healthy);
    eventually("second step", || canaries(&server).len() == 2).await;
    replica.shutdown().await;
    sim.abort();
}

#[tokio::test]
async fn operators_promote_and_abort_through_the_annotation() {
    let server = Arc::new(FakeApiServer::start().await);
    let sim = simulate_daemon_sets(&server);
    // Idle canaries: without the operator the rollout would only hold.
    let judge = SimJudge::new(Canary::Idle);
    let replica = Replica::start(&server, "one", Some(judge.clone()));
    region_rolling_out(&server, 8).await;
    eventually("a canary", || canaries(&server).len() == 1).await;
    patch_region(
        &server,
        json!({"metadata": {"annotations": {ROLLOUT_ACTION_ANNOTATION: "promote:a"}}}),
    )
    .await;
    eventually("promoted by hand and cleaned up", || {
        phase(&server).as_deref() == Some("Promoted")
            && canaries(&server).is_empty()
            && server.object(DAEMONSETS, NS, CANARY).is_none()
    })
    .await;
    assert_eq!(image(&server, STABLE).as_deref(), Some(NEW));
    assert_eq!(rollout(&server)["reason"], "promoted by an operator");

    // The next version is aborted by hand.
    patch_region(&server, json!({"spec": {"agent": {"version": "0.3.0"}}})).await;
    eventually("a canary on 0.3.0", || {
        canaries(&server).len() == 1
            && image(&server, CANARY).as_deref() == Some("ghcr.io/edgeroute/agent:0.3.0")
    })
    .await;
    assert_eq!(rollout(&server)["fromVersion"], "0.2.0");
    patch_region(
        &server,
        json!({"metadata": {"annotations": {ROLLOUT_ACTION_ANNOTATION: "abort:b"}}}),
    )
    .await;
    eventually("aborted", || {
        phase(&server).as_deref() == Some("RolledBack")
            && canaries(&server).is_empty()
            && server.object(DAEMONSETS, NS, CANARY).is_none()
    })
    .await;
    assert_eq!(image(&server, STABLE).as_deref(), Some(NEW));
    assert_eq!(rollout(&server)["reason"], "aborted by an operator");
    replica.shutdown().await;
    sim.abort();
}

#[tokio::test]
async fn a_restart_and_a_leader_change_resume_from_status() {
    let server = Arc::new(FakeApiServer::start().await);
    let sim = simulate_daemon_sets(&server);
    let judge = SimJudge::new(Canary::Healthy);
    let first = Replica::start(&server, "first", Some(judge.clone()));
    region_rolling_out(&server, 8).await;
    eventually("second step", || canaries(&server).len() == 2).await;
    let step_before = rollout(&server)["step"].clone();
    let started = rollout(&server)["startedAtMs"].clone();
    // A clean restart: the new process resumes the same rollout.
    first.shutdown().await;
    let second = Replica::start(&server, "second", Some(judge.clone()));
    eventually("third step after the restart", || {
        canaries(&server).len() == 4
    })
    .await;
    assert_eq!(rollout(&server)["startedAtMs"], started, "same rollout");
    assert!(rollout(&server)["step"].as_u64() > step_before.as_u64());
    // A leader that dies without releasing the lease: a follower takes over and finishes.
    let third = Replica::start(&server, "third", Some(judge.clone()));
    second.task.abort();
    eventually("third holds the lease", || {
        server
            .object(LEASES, NS, "edgeroute-controller")
            .is_some_and(|l| l["spec"]["holderIdentity"] == "third")
    })
    .await;
    eventually("promoted by the new leader", || {
        phase(&server).as_deref() == Some("Promoted") && canaries(&server).is_empty()
    })
    .await;
    assert_eq!(
        rollout(&server)["startedAtMs"],
        started,
        "still the same rollout"
    );
    assert_eq!(image(&server, STABLE).as_deref(), Some(NEW));
    let sizes: Vec<usize> = judge
        .requests()
        .iter()
        .map(|r| r.canary_nodes.len())
        .collect();
    assert!(
        sizes.windows(2).all(|w| w[0] <= w[1]),
        "never went back a step: {sizes:?}"
    );
    third.shutdown().await;
    sim.abort();
}

#[tokio::test]
async fn a_node_joining_mid_rollout_gets_the_stable_version() {
    let server = Arc::new(FakeApiServer::start().await);
    let sim = simulate_daemon_sets(&server);
    // Holding keeps the step (and its canary set) fixed while the node joins.
    let judge = SimJudge::new(Canary::Partitioned);
    let replica = Replica::start(&server, "one", Some(judge.clone()));
    region_rolling_out(&server, 4).await;
    eventually("holding", || phase(&server).as_deref() == Some("Holding")).await;
    let before = canaries(&server);
    add_node(&server, "late");
    eventually("late joins the region", || {
        server.object(NODES, "", "late").unwrap()["metadata"]["labels"][REGION_LABEL] == "porto"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(canaries(&server), before, "the joiner is not a canary");
    let late = server.object(NODES, "", "late").unwrap();
    let stable = server.object(DAEMONSETS, NS, STABLE).unwrap();
    assert!(
        places_on(&stable, &late),
        "the stable DaemonSet runs on the joiner"
    );
    assert_eq!(image(&server, STABLE).as_deref(), Some(OLD));
    replica.shutdown().await;
    sim.abort();
}

/// A center answering every analysis with `status` and `body`.
async fn fake_center(status: StatusCode, body: &'static str) -> (String, JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/api/v1/regions/{region}/analysis",
        post(move || async move { (status, body) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

#[tokio::test]
async fn judge_failures_hold_the_rollout_and_are_counted() {
    let server = Arc::new(FakeApiServer::start().await);
    let sim = simulate_daemon_sets(&server);
    let (url, center) = fake_center(StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":"boom"}"#).await;
    let judge: Arc<dyn Judge> = Arc::new(HttpJudge::new(&url, "adm").unwrap());
    let replica = Replica::start(&server, "one", Some(judge));
    region_rolling_out(&server, 8).await;
    eventually("holding on a 500", || {
        phase(&server).as_deref() == Some("Holding")
    })
    .await;
    assert!(
        rollout(&server)["reason"]
            .as_str()
            .unwrap()
            .contains("HTTP 500")
    );
    // The center goes away entirely: still holding, then paused, never promoted.
    center.abort();
    eventually("paused", || phase(&server).as_deref() == Some("Paused")).await;
    assert_eq!(canaries(&server).len(), 1);
    assert_eq!(image(&server, STABLE).as_deref(), Some(OLD));
    let metrics = replica.metrics.encode().unwrap();
    assert!(metrics.contains(r#"edgeroute_controller_judge_errors_total{error="status"}"#));
    replica.shutdown().await;
    sim.abort();
}

#[tokio::test]
async fn without_a_center_a_rollout_holds_then_pauses() {
    let server = Arc::new(FakeApiServer::start().await);
    let sim = simulate_daemon_sets(&server);
    let replica = Replica::start(&server, "one", None);
    region_rolling_out(&server, 8).await;
    eventually("holding", || phase(&server).as_deref() == Some("Holding")).await;
    assert!(
        rollout(&server)["reason"]
            .as_str()
            .unwrap()
            .contains("no center configured")
    );
    eventually("paused", || phase(&server).as_deref() == Some("Paused")).await;
    assert_eq!(canaries(&server).len(), 1);
    assert_eq!(image(&server, STABLE).as_deref(), Some(OLD));
    replica.shutdown().await;
    sim.abort();
}

fn request() -> AnalysisRequest {
    AnalysisRequest {
        target: edgeroute_protocol::rollout::RolloutTarget::Agent,
        canary_nodes: vec!["edge-1".into()],
        since_ms: 1_000,
        policy: edgeroute_protocol::crd::RolloutSpec::default(),
    }
}

#[tokio::test]
async fn http_judge_posts_the_request_with_the_admin_key_and_reads_the_verdict() {
    let seen: Arc<Mutex<Vec<(String, AnalysisRequest)>>> = Arc::default();
    let log = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/api/v1/regions/{region}/analysis",
        post(
            move |axum::extract::Path(region): axum::extract::Path<String>,
                  headers: HeaderMap,
                  Json(req): Json<AnalysisRequest>| async move {
                if headers["authorization"] != "Bearer adm" {
                    return (StatusCode::UNAUTHORIZED, Json(json!({"error": "bad key"})));
                }
                log.lock().unwrap().push((region, req));
                let verdict = Verdict {
                    kind: VerdictKind::Inconclusive,
                    reason: "3 canary requests < 100".into(),
                    at_ms: 2_000,
                    canary: ArmFigures::default(),
                    stable: ArmFigures::default(),
                };
                (StatusCode::OK, Json(serde_json::to_value(verdict).unwrap()))
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let verdict = HttpJudge::new(&url, "adm")
        .unwrap()
        .judge("porto", &request())
        .await
        .unwrap();
    assert_eq!(verdict.kind, VerdictKind::Inconclusive);
    assert_eq!(seen.lock().unwrap()[0], ("porto".to_owned(), request()));
    let err = HttpJudge::new(&url, "wrong")
        .unwrap()
        .judge("porto", &request())
        .await
        .unwrap_err();
    assert!(
        matches!(err, JudgeError::Status { status: 401, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("bad key"));
    task.abort();
}

#[tokio::test]
async fn http_judge_errors_name_what_went_wrong() {
    let (url, task) = fake_center(StatusCode::OK, r#"{"kind": "Maybe"}"#).await;
    let err = HttpJudge::new(&url, "adm")
        .unwrap()
        .judge("porto", &request())
        .await
        .unwrap_err();
    assert!(matches!(err, JudgeError::Decode(_)), "{err}");
    assert_eq!(err.metric_label(), "decode");
    task.abort();

    let (url, task) = fake_center(StatusCode::SERVICE_UNAVAILABLE, "overloaded").await;
    let err = HttpJudge::new(&url, "adm")
        .unwrap()
        .judge("porto", &request())
        .await
        .unwrap_err();
    assert!(
        matches!(err, JudgeError::Status { status: 503, .. }),
        "{err}"
    );
    task.abort();

    // Nothing listens on a port we bound and released.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = HttpJudge::new(&format!("http://{addr}"), "adm")
        .unwrap()
        .judge("porto", &request())
        .await
        .unwrap_err();
    assert!(matches!(err, JudgeError::Unreachable(_)), "{err}");
    assert_eq!(err.metric_label(), "unreachable");
}

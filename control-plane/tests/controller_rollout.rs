//! Agent-version rollouts: the real controller, through a real `kube::Client`, against the
//! in-process fake API server, with a simulated DaemonSet controller and a judge computing
//! verdicts from simulated agent report figures (the center's real analysis is tested at
//! the center; the HTTP judge alone in `controller_judge.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "controller_rollout/sim.rs"]
mod sim;
mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use edgeroute_control_plane::controller::judge::{HttpJudge, Judge};
use edgeroute_protocol::crd::{
    CANARY_TRACK, EdgeRegion, REGION_LABEL, ROLLOUT_ACTION_ANNOTATION, TRACK_LABEL,
};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sim::{Canary, SimJudge, places_on, simulate_daemon_sets};
use support::controller::{DAEMONSETS, EVENTS, LEASES, LeaseTiming, NODES, NS, REGIONS, Replica};
use support::fake_apiserver::FakeApiServer;
use tokio::task::JoinHandle;

const STABLE: &str = "edgeroute-agent-porto";
const CANARY: &str = "edgeroute-agent-porto-canary";
const TIMEOUT: Duration = Duration::from_secs(20);
const LEASE: LeaseTiming = LeaseTiming {
    duration: Duration::from_secs(2),
    renew: Duration::from_millis(200),
    retry: Duration::from_millis(150),
};

async fn eventually(what: &str, check: impl FnMut() -> bool) {
    support::controller::eventually(TIMEOUT, what, check).await;
}

fn add_node(server: &FakeApiServer, name: &str) {
    server.put(
        NODES,
        "",
        json!({"apiVersion": "v1", "kind": "Node",
               "metadata": {"name": name, "labels": {"zone": "porto"}}}),
    );
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
    let replica = Replica::start(&server, "one", LEASE, Some(judge.clone()));
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
    replica.shutdown(TIMEOUT).await;
    sim.abort();
}

#[tokio::test]
async fn a_failing_canary_rolls_back_within_one_window() {
    let server = Arc::new(FakeApiServer::start().await);
    let sim = simulate_daemon_sets(&server);
    let judge = SimJudge::new(Canary::Erroring);
    let replica = Replica::start(&server, "one", LEASE, Some(judge.clone()));
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
    replica.shutdown(TIMEOUT).await;
    sim.abort();
}

#[tokio::test]
async fn a_slow_canary_rolls_back() {
    let server = Arc::new(FakeApiServer::start().await);
    let sim = simulate_daemon_sets(&server);
    let judge = SimJudge::new(Canary::Healthy);
    let replica = Replica::start(&server, "one", LEASE, Some(judge.clone()));
    region_rolling_out(&server, 8).await;
    // The first step is fine; the canary turns slow during the second.
    eventually("second step", || canaries(&server).len() == 2).await;
    judge.set(Canary::Slow);
    rolled_back(&server).await;
    let r = rollout(&server);
    assert!(r["reason"].as_str().unwrap().contains("p99"), "{r}");
    assert_eq!(r["step"], 1);
    replica.shutdown(TIMEOUT).await;
    sim.abort();
}

#[tokio::test]
async fn an_idle_canary_holds_then_pauses_and_is_not_rolled_back() {
    let server = Arc::new(FakeApiServer::start().await);
    let sim = simulate_daemon_sets(&server);
    let judge = SimJudge::new(Canary::Idle);
    let replica = Replica::start(&server, "one", LEASE, Some(judge.clone()));
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
    replica.shutdown(TIMEOUT).await;
    sim.abort();
}

#[tokio::test]
async fn a_partitioned_canary_holds_without_rolling_either_way() {
    let server = Arc::new(FakeApiServer::start().await);
    let sim = simulate_daemon_sets(&server);
    let judge = SimJudge::new(Canary::Partitioned);
    let replica = Replica::start(&server, "one", LEASE, Some(judge.clone()));
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
    replica.shutdown(TIMEOUT).await;
    sim.abort();
}

#[tokio::test]
async fn operators_promote_and_abort_through_the_annotation() {
    let server = Arc::new(FakeApiServer::start().await);
    let sim = simulate_daemon_sets(&server);
    // Idle canaries: without the operator the rollout would only hold.
    let judge = SimJudge::new(Canary::Idle);
    let replica = Replica::start(&server, "one", LEASE, Some(judge.clone()));
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
    replica.shutdown(TIMEOUT).await;
    sim.abort();
}

#[tokio::test]
async fn spec_paused_freezes_a_rollout_until_cleared() {
    let server = Arc::new(FakeApiServer::start().await);
    let sim = simulate_daemon_sets(&server);
    let judge = SimJudge::new(Canary::Partitioned);
    let replica = Replica::start(&server, "one", LEASE, Some(judge.clone()));
    region_rolling_out(&server, 8).await;
    eventually("holding", || phase(&server).as_deref() == Some("Holding")).await;
    patch_region(&server, json!({"spec": {"paused": true}})).await;
    eventually("paused by the spec", || {
        phase(&server).as_deref() == Some("Paused")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = judge.requests().len();
    // Frozen: no verdicts asked for, no step taken, even once the canary is healthy again.
    judge.set(Canary::Healthy);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(judge.requests().len(), asked);
    assert_eq!(canaries(&server).len(), 1);
    assert_eq!(phase(&server).as_deref(), Some("Paused"));
    patch_region(&server, json!({"spec": {"paused": false}})).await;
    eventually("resumed and on to the second step", || {
        canaries(&server).len() == 2
    })
    .await;
    replica.shutdown(TIMEOUT).await;
    sim.abort();
}

#[tokio::test]
async fn a_restart_and_a_leader_change_resume_from_status() {
    let server = Arc::new(FakeApiServer::start().await);
    let sim = simulate_daemon_sets(&server);
    let judge = SimJudge::new(Canary::Healthy);
    let first = Replica::start(&server, "first", LEASE, Some(judge.clone()));
    region_rolling_out(&server, 8).await;
    eventually("second step", || canaries(&server).len() == 2).await;
    let step_before = rollout(&server)["step"].clone();
    let started = rollout(&server)["startedAtMs"].clone();
    // A clean restart: the new process resumes the same rollout.
    first.shutdown(TIMEOUT).await;
    let second = Replica::start(&server, "second", LEASE, Some(judge.clone()));
    eventually("third step after the restart", || {
        canaries(&server).len() == 4
    })
    .await;
    assert_eq!(rollout(&server)["startedAtMs"], started, "same rollout");
    assert!(rollout(&server)["step"].as_u64() > step_before.as_u64());
    // A leader that dies without releasing the lease: a follower takes over and finishes.
    let third = Replica::start(&server, "third", LEASE, Some(judge.clone()));
    second.kill();
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
    third.shutdown(TIMEOUT).await;
    sim.abort();
}

#[tokio::test]
async fn a_node_joining_mid_rollout_gets_the_stable_version() {
    let server = Arc::new(FakeApiServer::start().await);
    let sim = simulate_daemon_sets(&server);
    // Holding keeps the step (and its canary set) fixed while the node joins.
    let judge = SimJudge::new(Canary::Partitioned);
    let replica = Replica::start(&server, "one", LEASE, Some(judge.clone()));
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
    replica.shutdown(TIMEOUT).await;
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
    let replica = Replica::start(&server, "one", LEASE, Some(judge));
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
    replica.shutdown(TIMEOUT).await;
    sim.abort();
}

#[tokio::test]
async fn without_a_center_a_rollout_holds_then_pauses() {
    let server = Arc::new(FakeApiServer::start().await);
    let sim = simulate_daemon_sets(&server);
    let replica = Replica::start(&server, "one", LEASE, None);
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
    replica.shutdown(TIMEOUT).await;
    sim.abort();
}

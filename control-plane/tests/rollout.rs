//! Graph rollouts at the center, in process, with simulated agents that report windows
//! and obey their directives, on a hand-moved clock: a healthy canary promotes through
//! every step; raised errors or a slow p99 roll back within one window; an idle canary
//! holds, then pauses, and is never rolled back; a partitioned canary holds; operators
//! steer it; a restarted center resumes; the controller's analysis endpoint answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use axum::http::StatusCode;
use edgeroute_control_plane::{
    rollout::{Clock, graph},
    serve::Settings,
    sync::store::GraphMeta,
};
use edgeroute_protocol::{
    crd::RolloutSpec,
    sync::{EndpointCounts, GraphRef, Health, MetricsWindow, Report},
};
use serde_json::{Value, json};

mod support;

use support::center::TestCenter;

const REGION: &str = "monaco";
const T0: u64 = 1_764_700_000_000;

fn settings(clock: &Clock) -> Settings {
    Settings {
        rollout_policy: RolloutSpec {
            steps: vec![25, 50, 100],
            analysis_window_seconds: 60,
            min_requests: 100,
            max_inconclusive_seconds: 300,
            ..RolloutSpec::default()
        },
        clock: clock.clone(),
        // The fleet view judges states on the system clock; keep every node online.
        stale_after_ms: u64::MAX / 4,
        offline_after_ms: u64::MAX / 2,
        ..Settings::default()
    }
}

/// What a simulated node serves in one report interval.
#[derive(Clone, Copy)]
struct Traffic {
    requests: u64,
    errors: u64,
    ms: f64,
}

const HEALTHY: Traffic = Traffic {
    requests: 60,
    errors: 0,
    ms: 3.0,
};

/// A region of simulated agents: each reports the graph its last directive named.
struct Region {
    c: TestCenter,
    clock: Clock,
    serving: BTreeMap<String, String>,
}

impl Region {
    /// Four nodes on v1, v2 registered.
    async fn start() -> Region {
        let clock = Clock::manual(T0);
        let c = TestCenter::new(settings(&clock));
        for v in ["v1", "v2", "v3"] {
            c.center
                .store
                .put_graph(GraphMeta {
                    version: v.into(),
                    sha256: format!("{v:0>64}"),
                    size_bytes: 10,
                    uploaded_at_ms: T0,
                    node_count: 1,
                    bbox: [7.4, 43.7, 7.5, 43.8],
                })
                .await
                .unwrap();
        }
        let (status, body) = c
            .admin_json(
                "PUT",
                "/api/v1/regions/monaco/graph",
                Some(json!({"version": "v1"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut r = Region {
            c,
            clock,
            serving: BTreeMap::new(),
        };
        for i in 1..=4 {
            r.serving.insert(format!("edge-{i}"), "v1".into());
        }
        r.round(|_| Some(HEALTHY)).await;
        r
    }

    /// One report from `node` serving `traffic`; returns the graph its directive names.
    async fn report(&mut self, node: &str, traffic: Traffic) -> (String, Option<String>) {
        let mut metrics = MetricsWindow {
            window_ms: 10_000,
            ..MetricsWindow::default()
        };
        metrics.endpoints.insert(
            "route".into(),
            EndpointCounts {
                requests: traffic.requests,
                server_errors: traffic.errors,
                ..EndpointCounts::default()
            },
        );
        for _ in 0..traffic.requests {
            metrics.latency.observe(traffic.ms);
        }
        let graph = self
            .serving
            .get(node)
            .cloned()
            .unwrap_or_else(|| "v1".into());
        let report = Report {
            node: node.into(),
            stream: format!("stream-{node}"),
            region: REGION.into(),
            boot_id: "boot".into(),
            agent_version: "0.1.0".into(),
            graph: Some(GraphRef {
                version: graph,
                sha256: String::new(),
                bbox: None,
            }),
            health: Health {
                ready: true,
                ..Health::default()
            },
            advertise_url: None,
            location: None,
            metrics,
            outbox_depth: 0,
            events: Vec::new(),
        };
        let ack = self.c.ack(&report).await;
        let next = ack.directives.graph.map(|g| g.version).unwrap();
        self.serving.insert(node.into(), next.clone());
        (next, ack.directives.shadow.map(|s| s.graph.version))
    }

    /// Ten seconds: every node reports what `traffic` says (`None`: it stays silent),
    /// then the driver judges what is due.
    async fn round(&mut self, traffic: impl Fn(&str) -> Option<Traffic>) {
        self.clock.advance(10_000);
        let nodes: Vec<String> = self.serving.keys().cloned().collect();
        for node in nodes {
            if let Some(t) = traffic(&node) {
                self.report(&node, t).await;
            }
        }
        graph::tick(&self.c.center).await.unwrap();
    }

    async fn rollout(&self) -> Value {
        let (status, body) = self
            .c
            .admin_json("GET", "/api/v1/regions/monaco/rollout", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn canaries(&self) -> Vec<String> {
        serde_json::from_value(self.rollout().await["canaryNodes"].clone()).unwrap()
    }

    async fn put_graph(&self, version: &str) {
        let (status, body) = self
            .c
            .admin_json(
                "PUT",
                "/api/v1/regions/monaco/graph",
                Some(json!({ "version": version })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Rounds with `traffic` until the phase is one of `phases` (at most `max` rounds).
    async fn until(
        &mut self,
        phases: &[&str],
        max: usize,
        traffic: impl Fn(&str, bool) -> Option<Traffic>,
    ) -> Value {
        for _ in 0..max {
            let canaries = self.canaries().await;
            self.round(|n| traffic(n, canaries.iter().any(|c| c == n)))
                .await;
            let r = self.rollout().await;
            if phases.iter().any(|p| r["phase"] == *p) {
                return r;
            }
        }
        panic!("never reached {phases:?}: {}", self.rollout().await);
    }
}

#[tokio::test]
async fn a_healthy_canary_promotes_through_every_step() {
    let mut r = Region::start().await;
    r.put_graph("v2").await;
    let s = r.rollout().await;
    assert_eq!(s["phase"], "Progressing");
    assert_eq!(s["fromVersion"], "v1");
    assert_eq!(s["toVersion"], "v2");
    let canary = r.canaries().await;
    assert_eq!(canary.len(), 1, "25% of 4 nodes");
    // The canary is sent v2 with v1 as shadow; the others stay on v1, without shadow.
    let (graph, shadow) = r.report(&canary[0], HEALTHY).await;
    assert_eq!((graph.as_str(), shadow.as_deref()), ("v2", Some("v1")));
    let other = r.serving.keys().find(|n| **n != canary[0]).unwrap().clone();
    assert_eq!(r.report(&other, HEALTHY).await, ("v1".to_owned(), None));
    // The region's graph stays v1 until promotion.
    let (_, g) = r.c.admin_get("/api/v1/regions/monaco/graph").await;
    assert_eq!(g["version"], "v1");

    let mut steps = Vec::new();
    for _ in 0..40 {
        let canaries = r.canaries().await;
        r.round(|_| Some(HEALTHY)).await;
        let s = r.rollout().await;
        steps.push((s["step"].as_u64().unwrap(), canaries.len()));
        if s["phase"] == "Promoted" {
            break;
        }
        assert_eq!(s["phase"], "Progressing", "{s}");
    }
    let s = r.rollout().await;
    assert_eq!(s["phase"], "Promoted", "{s}");
    assert_eq!(s["lastVerdict"]["kind"], "Pass");
    steps.dedup();
    assert_eq!(steps.first(), Some(&(0, 1)));
    assert!(steps.contains(&(1, 2)), "{steps:?}");
    assert!(steps.contains(&(2, 4)), "{steps:?}");
    let (_, g) = r.c.admin_get("/api/v1/regions/monaco/graph").await;
    assert_eq!(g["version"], "v2");
    for node in ["edge-1", "edge-2", "edge-3", "edge-4"] {
        assert_eq!(r.report(node, HEALTHY).await, ("v2".to_owned(), None));
    }
    let (_, _, metrics) = r.c.get("/metrics").await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("edgeroute_center_rollouts{phase=\"Promoted\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("edgeroute_center_rollout_verdicts_total{kind=\"Pass\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_raised_error_rate_rolls_back_within_one_window() {
    let mut r = Region::start().await;
    r.put_graph("v2").await;
    let bad = Traffic {
        requests: 60,
        errors: 12,
        ms: 3.0,
    };
    let started = r.clock.now_ms();
    let s = r
        .until(&["RolledBack"], 8, |_, canary| {
            Some(if canary { bad } else { HEALTHY })
        })
        .await;
    assert!(
        r.clock.now_ms() - started <= 70_000,
        "one window and a round"
    );
    assert_eq!(s["lastVerdict"]["kind"], "Fail");
    let reason = s["reason"].as_str().unwrap();
    assert!(reason.contains("error rate canary 20.00%"), "{reason}");
    assert!(reason.contains("rolled back to v1"), "{reason}");
    assert!(s["canaryNodes"].as_array().unwrap().is_empty());
    for node in ["edge-1", "edge-2", "edge-3", "edge-4"] {
        assert_eq!(r.report(node, HEALTHY).await, ("v1".to_owned(), None));
    }
    // A rolled-back rollout takes no actions.
    let (status, body) =
        r.c.admin_json("POST", "/api/v1/regions/monaco/rollout/promote", None)
            .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "Conflict");
}

#[tokio::test]
async fn a_slow_canary_rolls_back() {
    let mut r = Region::start().await;
    r.put_graph("v2").await;
    let slow = Traffic {
        requests: 60,
        errors: 0,
        ms: 800.0,
    };
    let s = r
        .until(&["RolledBack"], 8, |_, canary| {
            Some(if canary { slow } else { HEALTHY })
        })
        .await;
    assert!(
        s["reason"].as_str().unwrap().contains("p99 canary 1000 ms"),
        "{s}"
    );
}

#[tokio::test]
async fn an_idle_canary_holds_then_pauses_and_is_not_rolled_back() {
    let mut r = Region::start().await;
    r.put_graph("v2").await;
    let idle = Traffic {
        requests: 0,
        errors: 0,
        ms: 1.0,
    };
    let s = r
        .until(&["Holding"], 8, |_, canary| {
            Some(if canary { idle } else { HEALTHY })
        })
        .await;
    assert_eq!(s["lastVerdict"]["kind"], "Inconclusive");
    assert!(
        s["reason"].as_str().unwrap().contains("too few requests"),
        "{s}"
    );
    let s = r
        .until(&["Paused", "RolledBack", "Promoted"], 60, |_, canary| {
            Some(if canary { idle } else { HEALTHY })
        })
        .await;
    assert_eq!(s["phase"], "Paused", "{s}");
    // Paused: windows are no longer judged, whatever they show.
    let verdict = s["lastVerdict"].clone();
    for _ in 0..10 {
        r.round(|_| Some(HEALTHY)).await;
    }
    assert_eq!(r.rollout().await["lastVerdict"], verdict);
    // A human resumes; the canary has traffic now and the rollout goes on.
    let (status, body) =
        r.c.admin_json("POST", "/api/v1/regions/monaco/rollout/resume", None)
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["phase"], "Progressing");
    let s = r.until(&["Progressing"], 8, |_, _| Some(HEALTHY)).await;
    assert_eq!(s["step"], 0);
    let s = r
        .until(&["Promoted", "RolledBack"], 40, |_, _| Some(HEALTHY))
        .await;
    assert_eq!(s["phase"], "Promoted");
}

#[tokio::test]
async fn a_partitioned_canary_holds() {
    let mut r = Region::start().await;
    r.put_graph("v2").await;
    // The canary takes its directive, then falls silent.
    let canary = r.canaries().await[0].clone();
    r.report(&canary, HEALTHY).await;
    for _ in 0..12 {
        r.round(|n| (n != canary).then_some(HEALTHY)).await;
    }
    let s = r.rollout().await;
    assert_eq!(s["phase"], "Holding", "{s}");
    assert_eq!(s["lastVerdict"]["kind"], "Silent");
    assert_eq!(s["lastVerdict"]["canary"]["reportingNodes"], 0);
    // Back from the partition with healthy traffic: the rollout goes on.
    let s = r.until(&["Progressing"], 12, |_, _| Some(HEALTHY)).await;
    assert_eq!(s["step"], 1, "{s}");
}

#[tokio::test]
async fn operators_pause_resume_promote_and_abort() {
    let mut r = Region::start().await;
    let (status, body) =
        r.c.admin_json("GET", "/api/v1/regions/monaco/rollout", None)
            .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) =
        r.c.admin_json("POST", "/api/v1/regions/monaco/rollout/abort", None)
            .await;
    assert_eq!(status, StatusCode::CONFLICT);
    r.put_graph("v2").await;
    for (action, phase) in [
        ("pause", "Paused"),
        ("pause", "Paused"),
        ("resume", "Progressing"),
        ("promote", "Promoted"),
    ] {
        let (status, body) =
            r.c.admin_json(
                "POST",
                &format!("/api/v1/regions/monaco/rollout/{action}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{action}: {body}");
        assert_eq!(body["phase"], phase, "{action}");
    }
    assert_eq!(r.report("edge-1", HEALTHY).await.0, "v2");
    let (status, body) =
        r.c.admin_json("POST", "/api/v1/regions/monaco/rollout/explode", None)
            .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) =
        r.c.json(
            axum::http::Request::post("/api/v1/regions/monaco/rollout/abort")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the admin key is required"
    );

    // Abort: every node back on the stable version.
    r.put_graph("v3").await;
    let (status, body) =
        r.c.admin_json("POST", "/api/v1/regions/monaco/rollout/abort", None)
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["phase"], "RolledBack");
    for node in ["edge-1", "edge-2", "edge-3", "edge-4"] {
        assert_eq!(r.report(node, HEALTHY).await.0, "v2");
    }
}

#[tokio::test]
async fn a_new_version_supersedes_and_a_node_joining_gets_stable() {
    let mut r = Region::start().await;
    r.put_graph("v2").await;
    // A node that joins mid-rollout serves the stable graph.
    r.serving.insert("edge-5".into(), "v1".into());
    assert_eq!(r.report("edge-5", HEALTHY).await, ("v1".to_owned(), None));
    r.put_graph("v3").await;
    let s = r.rollout().await;
    assert_eq!(
        (s["fromVersion"].as_str(), s["toVersion"].as_str()),
        (Some("v1"), Some("v3"))
    );
    assert_eq!(s["phase"], "Progressing");
    // Asking for the stable version again aborts the rollout.
    r.put_graph("v1").await;
    let s = r.rollout().await;
    assert_eq!(s["phase"], "RolledBack");
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains("superseded by version v1"),
        "{s}"
    );
}

#[tokio::test]
async fn a_restarted_center_resumes_the_rollout_where_it_was() {
    let mut r = Region::start().await;
    r.put_graph("v2").await;
    for _ in 0..8 {
        if r.rollout().await["step"] == 1 {
            break;
        }
        r.round(|_| Some(HEALTHY)).await;
    }
    assert_eq!(r.rollout().await["step"], 1);
    let before = r.rollout().await;
    let Region { c, clock, serving } = r;
    let c = c.restart(settings(&clock));
    let mut r = Region { c, clock, serving };
    assert_eq!(
        r.rollout().await,
        before,
        "the record is read back as it was"
    );
    let canary = before["canaryNodes"][0].as_str().unwrap().to_owned();
    assert_eq!(r.report(&canary, HEALTHY).await.0, "v2");
    let s = r
        .until(&["Promoted", "RolledBack"], 40, |_, _| Some(HEALTHY))
        .await;
    assert_eq!(s["phase"], "Promoted", "{s}");
    assert_eq!(s["startedAtMs"], before["startedAtMs"]);
}

#[tokio::test]
async fn the_controller_gets_verdicts_on_the_reports() {
    let mut r = Region::start().await;
    let request = json!({
        "target": "Agent",
        "canaryNodes": ["edge-1"],
        "sinceMs": T0,
        "policy": RolloutSpec::default(),
    });
    // The first question starts keeping the region's reports: nothing to judge yet.
    let (status, v) =
        r.c.admin_json(
            "POST",
            "/api/v1/regions/monaco/analysis",
            Some(request.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["kind"], "Silent", "{v}");
    for _ in 0..3 {
        r.round(|n| {
            Some(if n == "edge-1" {
                Traffic {
                    requests: 60,
                    errors: 30,
                    ms: 3.0,
                }
            } else {
                HEALTHY
            })
        })
        .await;
    }
    let (status, v) =
        r.c.admin_json(
            "POST",
            "/api/v1/regions/monaco/analysis",
            Some(request.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["kind"], "Fail", "{v}");
    assert_eq!(v["canary"]["nodes"], 1);
    assert_eq!(v["stable"]["nodes"], 3);
    let mut bad = request;
    bad["canaryNodes"] = json!([]);
    let (status, body) =
        r.c.admin_json("POST", "/api/v1/regions/monaco/analysis", Some(bad))
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) =
        r.c.admin_json(
            "POST",
            "/api/v1/regions/monaco/analysis",
            Some(json!({"x": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "InvalidRequest");
}

#[tokio::test]
async fn an_edgeregion_version_rolls_out_under_its_policy_and_pauses_when_frozen() {
    use support::fake_apiserver::FakeApiServer;
    const NS: &str = "edgeroute";
    const REGIONS: &str = "edgeroute.io/v1alpha1/edgeregions";
    let r = Region::start().await;
    let server = FakeApiServer::start().await;
    server.put(
        REGIONS,
        NS,
        json!({
            "apiVersion": "edgeroute.io/v1alpha1", "kind": "EdgeRegion",
            "metadata": {"name": REGION, "namespace": NS},
            "spec": {
                "nodeSelector": {"matchLabels": {"zone": REGION}},
                "agent": {"image": "ghcr.io/edgeroute/agent", "version": "0.1.0"},
                "graph": {"source": "monaco.osm.pbf", "version": "v1"},
                "rollout": {
                    "steps": [50, 100], "analysisWindowSeconds": 30, "maxErrorRate": 0.01,
                    "maxP99LatencyMs": 250, "minRequests": 10, "maxInconclusiveSeconds": 60,
                    "shadowSampleRate": 0.1, "shadowDurationTolerance": 0.1,
                    "maxShadowDiffRate": 0.02
                }
            }
        }),
    );
    let task = tokio::spawn(edgeroute_control_plane::sync::regions::follow_center(
        server.client(),
        NS.into(),
        r.c.center.clone(),
    ));
    let wait = |what: &'static str, check: fn(&Value) -> bool| {
        let c = &r.c;
        async move {
            for _ in 0..500 {
                let (status, body) = c
                    .admin_json("GET", "/api/v1/regions/monaco/rollout", None)
                    .await;
                if status == StatusCode::OK && check(&body) {
                    return body;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            panic!("never: {what}");
        }
    };
    server.merge(
        REGIONS,
        NS,
        REGION,
        json!({"spec": {"graph": {"version": "v2"}}}),
        false,
    );
    let s = wait("a rollout of v2", |s| s["toVersion"] == "v2").await;
    assert_eq!(s["stepPercent"], 50, "the EdgeRegion's policy: {s}");
    assert_eq!(s["canaryNodes"].as_array().unwrap().len(), 2);
    let (_, g) = r.c.admin_get("/api/v1/regions/monaco/graph").await;
    assert_eq!(g["version"], "v1", "stable until promoted");
    server.merge(
        REGIONS,
        NS,
        REGION,
        json!({"spec": {"paused": true}}),
        false,
    );
    let s = wait("paused", |s| s["phase"] == "Paused").await;
    assert_eq!(s["reason"], "paused by an operator");
    task.abort();
}

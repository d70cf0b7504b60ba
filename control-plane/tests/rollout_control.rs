//! Steering graph rollouts at the center, in process (see `rollout.rs`): operators'
//! actions, a superseding version, a node joining, a restart mid-rollout, the
//! controller's analysis endpoint, and an EdgeRegion's version and freeze.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use edgeroute_protocol::crd::RolloutSpec;
use serde_json::{Value, json};

mod support;

use support::rollout::{HEALTHY, REGION, Region, T0, Traffic, settings};

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

#[tokio::test]
async fn an_agent_rollout_in_an_edgeregion_status_is_recorded_from_its_start() {
    use support::fake_apiserver::FakeApiServer;
    const NS: &str = "edgeroute";
    const REGIONS: &str = "edgeroute.io/v1alpha1/edgeregions";
    let mut r = Region::start().await;
    let server = FakeApiServer::start().await;
    // The controller wrote this status when the canary step began; the center only sees the
    // EdgeRegion, not the controller.
    server.put(
        REGIONS,
        NS,
        json!({
            "apiVersion": "edgeroute.io/v1alpha1", "kind": "EdgeRegion",
            "metadata": {"name": REGION, "namespace": NS},
            "spec": {
                "nodeSelector": {"matchLabels": {"zone": REGION}},
                "agent": {"image": "ghcr.io/edgeroute/agent", "version": "0.2.0"},
                "graph": {"source": "monaco.osm.pbf", "version": "v1"}
            },
            "status": {"rollout": {
                "target": "Agent", "fromVersion": "0.1.0", "toVersion": "0.2.0",
                "phase": "Progressing", "step": 0, "stepPercent": 25,
                "canaryNodes": ["edge-1"], "startedAtMs": T0, "stepStartedAtMs": T0,
                "reason": "new agent version", "updatedAtMs": T0
            }}
        }),
    );
    let task = tokio::spawn(edgeroute_control_plane::sync::regions::follow_center(
        server.client(),
        NS.into(),
        r.c.center.clone(),
    ));
    let watched = |c: &support::center::TestCenter| {
        c.center
            .rollouts
            .windows
            .is_watched(REGION, c.center.rollouts.clock.now_ms())
    };
    for _ in 0..500 {
        if watched(&r.c) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        watched(&r.c),
        "the center never started keeping the region's windows"
    );
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
    // The controller's first question, at the window's end, already has the whole window.
    let (status, v) =
        r.c.admin_json(
            "POST",
            "/api/v1/regions/monaco/analysis",
            Some(json!({
                "target": "Agent",
                "canaryNodes": ["edge-1"],
                "sinceMs": T0,
                "policy": RolloutSpec::default(),
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["kind"], "Fail", "{v}");
    task.abort();
}

#[tokio::test]
async fn the_rollout_cli_steers_an_agent_rollout_through_the_edgeregion() {
    use edgeroute_control_plane::rollout::cli::{RolloutVerb, steer_agent_rollout};
    use support::fake_apiserver::FakeApiServer;
    const NS: &str = "edgeroute";
    const REGIONS: &str = "edgeroute.io/v1alpha1/edgeregions";
    let server = FakeApiServer::start().await;
    let region = |phase: &str| {
        json!({
            "apiVersion": "edgeroute.io/v1alpha1", "kind": "EdgeRegion",
            "metadata": {"name": REGION, "namespace": NS},
            "spec": {
                "nodeSelector": {"matchLabels": {"zone": REGION}},
                "agent": {"image": "ghcr.io/edgeroute/agent", "version": "0.2.0"},
                "graph": {"source": "monaco.osm.pbf", "version": "v1"}
            },
            "status": {"rollout": {
                "target": "Agent", "fromVersion": "0.1.0", "toVersion": "0.2.0",
                "phase": phase, "step": 1, "stepPercent": 25,
                "canaryNodes": ["edge-1"], "startedAtMs": T0, "stepStartedAtMs": T0,
                "reason": "new agent version", "updatedAtMs": T0
            }}
        })
    };
    let missing = steer_agent_rollout(server.client(), NS, REGION, RolloutVerb::Status).await;
    assert!(
        missing.unwrap_err().to_string().contains("no EdgeRegion"),
        "a missing region is named"
    );
    server.put(REGIONS, NS, region("Progressing"));
    let status = steer_agent_rollout(server.client(), NS, REGION, RolloutVerb::Status)
        .await
        .unwrap();
    assert_eq!(status.to_version, "0.2.0");
    let annotation = |s: &FakeApiServer| {
        s.object(REGIONS, NS, REGION).unwrap()["metadata"]["annotations"]
            ["edgeroute.io/rollout-action"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(annotation(&server), None, "status changes nothing");
    steer_agent_rollout(server.client(), NS, REGION, RolloutVerb::Promote)
        .await
        .unwrap();
    let first = annotation(&server).unwrap();
    assert!(first.starts_with("promote:"), "{first}");
    // Asking again is a new request the controller acts on: a new nonce.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    steer_agent_rollout(server.client(), NS, REGION, RolloutVerb::Abort)
        .await
        .unwrap();
    let second = annotation(&server).unwrap();
    assert!(second.starts_with("abort:") && second != first, "{second}");
    server.put(REGIONS, NS, region("RolledBack"));
    let over = steer_agent_rollout(server.client(), NS, REGION, RolloutVerb::Promote).await;
    assert!(over.unwrap_err().to_string().contains("is over"));
}

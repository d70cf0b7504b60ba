//! Graph rollouts at the center, in process, with simulated agents that report windows
//! and obey their directives, on a hand-moved clock: a healthy canary promotes through
//! every step; raised errors or a slow p99 roll back within one window; an idle canary
//! holds, then pauses, and is never rolled back; a partitioned canary holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;

mod support;

use support::rollout::{HEALTHY, Region, Traffic};

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

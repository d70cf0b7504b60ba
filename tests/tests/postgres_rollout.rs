//! A graph rollout with two center replicas on one PostgreSQL: one replica drives it (the
//! holder of the region's lease), its verdict sums both replicas' windows, and when the
//! holder stops, the other takes over within the lease time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use edgeroute_control_plane::{
    rollout::{
        Clock,
        graph::{self, GraphRequest},
    },
    serve::Settings,
    sync::store::{CenterStore, GraphMeta},
};
use edgeroute_protocol::{
    crd::RolloutSpec,
    rollout::VerdictKind,
    sync::{EndpointCounts, GraphRef, Health, MetricsWindow, Report, ReportAck},
};
use edgeroute_tests::pg::{self, Replica};

const REGION: &str = "porto";
const LEASE_MS: u64 = 1_500;
const NODES: [&str; 4] = ["n1", "n2", "n3", "n4"];

fn settings(clock: &Clock, replica: &str) -> Settings {
    Settings {
        rollout_policy: RolloutSpec {
            steps: vec![50, 100],
            analysis_window_seconds: 60,
            min_requests: 100,
            max_inconclusive_seconds: 3_600,
            shadow_sample_rate: 0.0,
            ..RolloutSpec::default()
        },
        clock: clock.clone(),
        stale_after_ms: u64::MAX / 4,
        offline_after_ms: u64::MAX / 2,
        replica: replica.into(),
        rollout_lease_ms: LEASE_MS,
        ..Settings::default()
    }
}

async fn report(replica: &Replica, node: &str, graph: &str, requests: u64) -> ReportAck {
    let mut metrics = MetricsWindow {
        window_ms: 10_000,
        ..MetricsWindow::default()
    };
    metrics.endpoints.insert(
        "route".into(),
        EndpointCounts {
            requests,
            ..EndpointCounts::default()
        },
    );
    for _ in 0..requests {
        metrics.latency.observe(3.0);
    }
    let report = Report::<edgeroute_protocol::sync::Event> {
        node: node.into(),
        stream: format!("stream-{node}"),
        region: REGION.into(),
        graph: Some(GraphRef {
            version: graph.into(),
            sha256: String::new(),
            bbox: None,
        }),
        health: Health {
            ready: true,
            ..Health::default()
        },
        metrics,
        ..Report::default()
    };
    let response = reqwest::Client::new()
        .post(format!("{}/sync/v1/report", replica.url()))
        .bearer_auth(pg::TOKEN)
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn meta(version: &str) -> GraphMeta {
    GraphMeta {
        version: version.into(),
        sha256: "0".repeat(64),
        size_bytes: 1,
        uploaded_at_ms: 1,
        node_count: 1,
        bbox: [0.0, 0.0, 1.0, 1.0],
    }
}

#[tokio::test]
async fn one_replica_drives_judging_every_replicas_windows_and_the_other_takes_over() {
    let Some(base) = pg::env_or_skip(pg::URL_VAR) else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = pg::fresh_database(&base, "rollout_two").await.unwrap();
    let clock = Clock::manual(1_764_700_000_000);
    let a = Replica::start_with(&url, settings(&clock, "replica-a"))
        .await
        .unwrap();
    let b = Replica::start_with(&url, settings(&clock, "replica-b"))
        .await
        .unwrap();
    for v in ["v1", "v2"] {
        a.store.put_graph(meta(v)).await.unwrap();
    }
    a.store.set_region_graph(REGION, "v1").await.unwrap();
    // Both replicas know every node (their fleet views follow each other within 5 s in
    // production; here each node reports to both).
    for node in NODES {
        report(&a, node, "v1", 0).await;
        report(&b, node, "v1", 0).await;
    }
    let GraphRequest::Started(status) = graph::request_graph(&a.center, REGION, "v2", true)
        .await
        .unwrap()
    else {
        panic!("no rollout started");
    };
    let canaries = status.canary_nodes.clone();
    assert_eq!(canaries.len(), 2);
    // B learns of the rollout from the store (and starts keeping the region's windows).
    assert_eq!(graph::tick(&b.center).await.unwrap(), 0);
    assert_eq!(graph::tick(&a.center).await.unwrap(), 0);

    // Canaries report only to A, stable nodes only to B: neither replica alone holds
    // both arms.
    clock.advance(30_000);
    for node in NODES {
        if canaries.iter().any(|c| c == node) {
            let ack = report(&a, node, "v2", 150).await;
            assert_eq!(ack.directives.graph.unwrap().version, "v2");
        } else {
            let ack = report(&b, node, "v1", 150).await;
            assert_eq!(
                ack.directives.graph.unwrap().version,
                "v1",
                "B directs stable nodes to the stable graph"
            );
        }
    }
    // Not due yet: the ticks only share windows (and take the lease).
    let first = graph::tick(&a.center).await.unwrap() + graph::tick(&b.center).await.unwrap();
    assert_eq!(first, 0);

    clock.advance(31_000);
    let judged = [
        graph::tick(&a.center).await.unwrap(),
        graph::tick(&b.center).await.unwrap(),
    ];
    assert_eq!(
        judged,
        [0, 1],
        "B, the first to tick once the rollout existed, holds the lease: only B drives"
    );
    let record = a.store.rollout(REGION).await.unwrap().unwrap();
    let verdict = record.status.last_verdict.clone().unwrap();
    assert_eq!(verdict.kind, VerdictKind::Pass, "{}", verdict.reason);
    assert_eq!(verdict.canary.requests, 300, "A's windows, judged by B");
    assert_eq!(verdict.stable.requests, 300, "B's own windows");
    assert_eq!(record.status.step, 1, "the next step started");

    // B stops driving (its tick loop ends); A takes over once the lease expires.
    let stopped = Instant::now();
    clock.advance(61_000);
    while graph::tick(&a.center).await.unwrap() == 0 {
        assert!(
            stopped.elapsed() < Duration::from_millis(LEASE_MS + 1_500),
            "A did not take over within the lease time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stopped.elapsed() >= Duration::from_millis(LEASE_MS - 200),
        "A took over while B's lease was valid"
    );
    let record = b.store.rollout(REGION).await.unwrap().unwrap();
    // Nobody reported in the new step: A judged it (and held it) itself.
    let verdict = record.status.last_verdict.unwrap();
    assert_eq!(verdict.at_ms, clock.now_ms(), "A judged the due window");
    assert_ne!(verdict.kind, VerdictKind::Pass);
    assert!(!record.status.phase.is_terminal());
    // And B, back, does not drive while A holds the lease.
    clock.advance(61_000);
    assert_eq!(graph::tick(&b.center).await.unwrap(), 0);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

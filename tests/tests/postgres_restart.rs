//! The database restarting as after a crash (`pg_ctl restart -m immediate`) while agents
//! report to a replica on it: the agents get 503 with a JSON body meanwhile (never a
//! hang, never an ack for something not committed), the replica keeps running, and once
//! the database is back everything acknowledged is there and every agent drains.
//!
//! Its own test binary: the restart would break tests running beside it on the server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use edgeroute_control_plane::sync::{
    postgres::connect::{PoolOptions, connect},
    store::CenterStore,
};
use edgeroute_protocol::sync::{Event, EventKind, Health, MetricsWindow, Report, ReportAck};
use edgeroute_tests::pg::{self, Replica, TOKEN};
use serde_json::Value;

fn report(node: &str, events: Vec<Event>) -> Report {
    Report {
        node: node.into(),
        stream: format!("{node}-stream"),
        region: "porto".into(),
        boot_id: "b".into(),
        agent_version: "0.1.0".into(),
        profiles: Default::default(),
        graph: None,
        health: Health::default(),
        advertise_url: None,
        location: None,
        metrics: MetricsWindow::default(),
        outbox_depth: events.len() as u64,
        events,
    }
}

const AGENTS: usize = 6;
const EVENTS: u64 = 400;

/// One agent: a new event every few ms, its outbox sent until all `EVENTS` are acked.
/// Returns the highest watermark it was told and how many 503s it got.
async fn agent(
    client: reqwest::Client,
    url: String,
    node: String,
    restarted: Arc<AtomicBool>,
    unavailable: Arc<AtomicU64>,
) -> u64 {
    let mut acked = 0u64;
    let mut produced = 0u64;
    let deadline = Instant::now() + Duration::from_secs(90);
    while acked < EVENTS {
        assert!(Instant::now() < deadline, "{node} stuck at {acked}");
        // Keep producing until the restart is over, so some reports meet it.
        if produced < EVENTS && (produced < EVENTS / 2 || restarted.load(Ordering::Relaxed)) {
            produced = (produced + 5).min(EVENTS);
        }
        let events: Vec<Event> = (acked + 1..=produced)
            .map(|seq| Event {
                seq,
                at_ms: 1,
                kind: EventKind::GraphFailed {
                    version: "v1".into(),
                    error: format!("event {seq}"),
                },
            })
            .collect();
        match client
            .post(format!("{url}/sync/v1/report"))
            .bearer_auth(TOKEN)
            .json(&report(&node, events))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                let ack: ReportAck = r.json().await.unwrap();
                assert!(ack.acked_seq <= produced && ack.acked_seq >= acked);
                acked = ack.acked_seq;
            }
            Ok(r) => {
                assert_eq!(r.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["code"], "StorageUnavailable", "{body}");
                unavailable.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("the replica did not answer: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_mid_ingest_loses_nothing_acked() {
    let (Some(base), Some(restart)) = (
        pg::env_or_skip(pg::URL_VAR),
        pg::env_or_skip(pg::RESTART_VAR),
    ) else {
        return;
    };
    let url = pg::fresh_database(&base, "restart").await.unwrap();
    let replica = Replica::start(&url).await.unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let restarted = Arc::new(AtomicBool::new(false));
    let unavailable = Arc::new(AtomicU64::new(0));
    let mut agents = tokio::task::JoinSet::new();
    for i in 0..AGENTS {
        agents.spawn(agent(
            client.clone(),
            replica.url(),
            format!("edge-{i}"),
            restarted.clone(),
            unavailable.clone(),
        ));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    pg::restart_server(&restart).await.unwrap();
    restarted.store(true, Ordering::Relaxed);
    while let Some(acked) = agents.join_next().await {
        assert_eq!(acked.unwrap(), EVENTS);
    }
    assert!(replica.running(), "the replica died with its database");
    assert!(
        unavailable.load(Ordering::Relaxed) > 0,
        "no report met the restart"
    );
    // Everything acknowledged is committed: read back through a fresh connection.
    let store = connect(&url, &PoolOptions::default()).await.unwrap();
    for i in 0..AGENTS {
        let events = store
            .events(&format!("edge-{i}-stream"), 0, 10_000)
            .await
            .unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=EVENTS).collect::<Vec<_>>(), "edge-{i}");
        assert_eq!(
            store
                .node(&format!("edge-{i}"))
                .await
                .unwrap()
                .unwrap()
                .acked_seq,
            EVENTS
        );
    }
    replica.stop().await.unwrap();
}

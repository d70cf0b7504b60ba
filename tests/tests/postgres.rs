//! Two center replicas on one PostgreSQL database, behind the fault proxy: an agent's
//! retries alternate between them while acknowledgements are lost and connections reset,
//! and the center still holds every plan exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use edgeroute_control_plane::sync::store::CenterStore;
use edgeroute_protocol::sync::{Event, Health, MetricsWindow, Report, ReportAck};
use edgeroute_tests::{
    events::plan_event,
    fault_proxy::{FaultProxy, Mode},
    pg::{self, ADMIN, Replica, TOKEN},
};
use serde_json::Value;

fn report(events: Vec<Event>) -> Report {
    Report {
        node: "edge-1".into(),
        stream: "stream-1".into(),
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

/// A client that opens a connection per request, so every retry goes wherever the proxy
/// points at that moment.
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn post(client: &reqwest::Client, base: &str, report: &Report) -> Result<ReportAck, String> {
    let r = client
        .post(format!("{base}/sync/v1/report"))
        .bearer_auth(TOKEN)
        .json(report)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(r.status().to_string());
    }
    r.json().await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_alternating_between_two_replicas_store_every_plan_once() {
    let Some(base) = pg::env_or_skip(pg::URL_VAR) else {
        return;
    };
    let url = pg::fresh_database(&base, "replicas").await.unwrap();
    let (a, b) = tokio::join!(Replica::start(&url), Replica::start(&url));
    let replicas = [a.unwrap(), b.unwrap()];
    let proxy = FaultProxy::start(replicas[0].addr).await.unwrap();
    let client = client();
    const EVENTS: u64 = 120;
    let outbox: Vec<Event> = (1..=EVENTS).map(|s| plan_event("edge-1", s)).collect();
    let (mut acked, mut attempt, mut lost) = (0u64, 0usize, 0usize);
    while acked < EVENTS {
        attempt += 1;
        assert!(attempt < 1000, "no progress: acked {acked}");
        // Every attempt reaches the other replica; every third one loses its answer after
        // the center committed, every seventh is reset.
        proxy.set_upstream(replicas[attempt % 2].addr);
        proxy.set_mode(match attempt % 7 {
            0 => Mode::Reset,
            n if n % 3 == 0 => Mode::DropResponses,
            _ => Mode::Pass,
        });
        let batch: Vec<Event> = outbox
            .iter()
            .filter(|e| e.seq > acked)
            .take(5)
            .cloned()
            .collect();
        let report = report(batch);
        // Every fourth batch also races through the other replica directly, as a retry
        // overtaking its original would.
        let (other, through) = (replicas[(attempt + 1) % 2].url(), proxy.url());
        let race = async {
            if attempt % 4 == 0 {
                post(&client, &other, &report).await
            } else {
                Err("not raced".into())
            }
        };
        let (through_proxy, direct) = tokio::join!(post(&client, &through, &report), race);
        for ack in [&through_proxy, &direct].into_iter().flatten() {
            assert!(ack.acked_seq <= EVENTS);
            acked = acked.max(ack.acked_seq);
        }
        if through_proxy.is_err() {
            lost += 1;
        }
    }
    assert!(lost >= 10, "the proxy lost only {lost} answers");
    proxy.set_mode(Mode::Pass);
    // Exactly once, whichever replica is asked.
    for r in &replicas {
        let events = r.store.events("stream-1", 0, 1000).await.unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=EVENTS).collect::<Vec<_>>());
        let plans: Value = client
            .get(format!("{}/api/v1/plans?node=edge-1&limit=1000", r.url()))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids: Vec<&str> = plans["plans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["plan_id"].as_str().unwrap())
            .collect();
        let want: Vec<String> = (1..=EVENTS).map(|s| format!("edge-1-{s}")).collect();
        assert_eq!(ids, want);
    }
    proxy.shutdown().await;
    for r in replicas {
        r.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_sees_the_nodes_the_other_ingested_and_forgot() {
    let Some(base) = pg::env_or_skip(pg::URL_VAR) else {
        return;
    };
    let url = pg::fresh_database(&base, "fleetview").await.unwrap();
    let a = Replica::start(&url).await.unwrap();
    let b = Replica::start(&url).await.unwrap();
    let client = client();
    post(&client, &a.url(), &report(vec![plan_event("edge-1", 1)]))
        .await
        .unwrap();
    // The refresher folds the other replica's records into b's in-memory fleet view.
    let fleet = b.fleet.clone();
    let refresher = tokio::spawn(edgeroute_control_plane::sync::postgres::refresh::follow(
        b.store.clone(),
        fleet,
        Duration::from_millis(100),
    ));
    let nodes = listed(&client, &b.url(), 1, "b lists edge-1").await;
    assert_eq!(nodes["nodes"][0]["node"], "edge-1");
    assert_eq!(nodes["nodes"][0]["acked_seq"], 1);
    // Forgotten through a, it leaves b's view too.
    let r = client
        .delete(format!("{}/api/v1/nodes/edge-1", a.url()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    listed(&client, &b.url(), 0, "b forgets edge-1").await;
    refresher.abort();
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// Wait until the replica at `url` lists `count` nodes; its answer.
async fn listed(client: &reqwest::Client, url: &str, count: usize, what: &str) -> Value {
    edgeroute_tests::procs::eventually(Duration::from_secs(15), what, || {
        let request = client.get(format!("{url}/api/v1/nodes")).bearer_auth(ADMIN);
        async move {
            let v: Value = request.send().await.ok()?.json().await.ok()?;
            (v["nodes"].as_array()?.len() == count).then_some(v)
        }
    })
    .await
    .unwrap()
}

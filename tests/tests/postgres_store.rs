//! The [`CenterStore`] contract, run against both stores: the embedded sled store and the
//! PostgreSQL store (on a database of its own, see `edgeroute_tests::pg`). Then what only a
//! shared store must do: two replicas (two pools on one database) racing on one stream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeSet, sync::Arc};

use edgeroute_control_plane::sync::{
    postgres::connect::{PoolOptions, connect},
    sled_store::SledCenterStore,
    store::{CenterStore, GraphMeta},
};
use edgeroute_protocol::{
    plans::{NewPlan, Plan},
    sync::{Event, EventHeader, EventKind, Health, MetricsWindow, RawEvent, Report},
};
use edgeroute_tests::pg;
use serde_json::json;

fn plan_event(node: &str, seq: u64, plan_seq: u64) -> Event {
    Event {
        seq,
        at_ms: 1,
        kind: EventKind::Plan {
            plan: Box::new(Plan {
                id: format!("{node}-{plan_seq}"),
                seq: plan_seq,
                created_at_ms: 1_764_700_000_000,
                plan: NewPlan {
                    node: node.into(),
                    graph_version: Some("monaco".into()),
                    graph_checksum: None,
                    solver_version: "test".into(),
                    jobs: 1,
                    shipments: 0,
                    vehicles: 1,
                    output: json!({"code": 0, "summary": {"cost": plan_seq}}),
                    traceparent: None,
                },
            }),
        },
    }
}

/// A report as the sync handler hands it to the store: raw events and their headers.
fn report(node: &str, stream: &str, events: Vec<Event>) -> (Report<RawEvent>, Vec<EventHeader>) {
    let typed = Report {
        node: node.into(),
        stream: stream.into(),
        region: "monaco".into(),
        boot_id: "boot".into(),
        agent_version: "0.1.0".into(),
        profiles: Default::default(),
        graph: None,
        health: Health::default(),
        advertise_url: None,
        location: None,
        metrics: MetricsWindow::default(),
        outbox_depth: events.len() as u64,
        events,
    };
    let raw: Report<RawEvent> =
        serde_json::from_str(&serde_json::to_string(&typed).unwrap()).unwrap();
    let headers = raw
        .events
        .iter()
        .map(|e| EventHeader::of(e).unwrap())
        .collect();
    (raw, headers)
}

/// The watermark the report found and the one it left.
async fn found_left(store: &dyn CenterStore, node: &str, stream: &str, seqs: &[u64]) -> (u64, u64) {
    let events = seqs.iter().map(|&s| plan_event(node, s, s)).collect();
    let (r, h) = report(node, stream, events);
    let ingested = store.ingest(r, h, 1_000).await.unwrap();
    (ingested.held, ingested.watermark)
}

/// The watermark the report left.
async fn ingest(store: &dyn CenterStore, node: &str, stream: &str, seqs: &[u64]) -> u64 {
    found_left(store, node, stream, seqs).await.1
}

/// Everything the sync API relies on, through the trait only.
async fn contract(store: Arc<dyn CenterStore>) {
    let s = store.as_ref();
    assert_eq!(found_left(s, "edge-1", "a", &[1, 2]).await, (0, 2));
    // A retry of a batch whose ack was lost, plus a new event: stored once.
    assert_eq!(found_left(s, "edge-1", "a", &[1, 2, 3]).await, (2, 3));
    // A gap holds the watermark until it is filled; then the held events count.
    assert_eq!(found_left(s, "edge-1", "a", &[5, 6]).await, (3, 3));
    assert_eq!(found_left(s, "edge-1", "a", &[4]).await, (3, 6));
    // Duplicates within one report and seq 0 are ignored.
    assert_eq!(found_left(s, "edge-1", "a", &[7, 7, 8]).await, (6, 8));
    let events = s.events("a", 0, 100).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(s.events("a", 6, 1).await.unwrap()[0].seq, 7);
    assert!(s.events("a", u64::MAX, 10).await.unwrap().is_empty());
    assert!(s.events("nope", 0, 10).await.unwrap().is_empty());

    // Plans: by node in seq order, pages, newest first, one by one.
    let plans = s.plans(Some("edge-1"), 0, 100).await.unwrap();
    let seqs: Vec<u64> = plans.iter().map(|p| p.plan.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(plans[0].plan.id, "edge-1-1");
    assert_eq!(plans[0].event_seq, 1);
    let page = s.plans(Some("edge-1"), 3, 2).await.unwrap();
    assert_eq!(page.iter().map(|p| p.plan.seq).collect::<Vec<_>>(), [4, 5]);
    let latest = s.latest_plans("edge-1", 5, 2).await.unwrap();
    assert_eq!(
        latest.iter().map(|p| p.plan.seq).collect::<Vec<_>>(),
        [8, 7]
    );
    assert_eq!(
        s.plan("edge-1", 2).await.unwrap().unwrap().plan.id,
        "edge-1-2"
    );
    assert!(s.plan("edge-1", 99).await.unwrap().is_none());
    assert!(
        s.plans(Some("edge-1"), u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Another node, and a plan sequence number at the top of u64: all nodes in (node,
    // seq) order, byte order for names.
    let (r, h) = report("Edge-0", "b", vec![plan_event("Edge-0", 1, u64::MAX)]);
    assert_eq!(s.ingest(r, h, 2_000).await.unwrap().watermark, 1);
    let all = s.plans(None, 0, 100).await.unwrap();
    assert_eq!(all.len(), 9);
    assert_eq!(all[0].node, "Edge-0");
    assert_eq!(all[0].plan.seq, u64::MAX);
    assert_eq!(all[1].node, "edge-1");
    assert_eq!(s.plans(None, 7, 100).await.unwrap().len(), 2);
    assert_eq!(
        s.plan("Edge-0", u64::MAX).await.unwrap().unwrap().plan.id,
        format!("Edge-0-{}", u64::MAX)
    );

    // A new stream under the same node name starts from 0 again; the node record follows
    // the last report.
    assert_eq!(ingest(s, "edge-1", "a2", &[1]).await, 1);
    let node = s.node("edge-1").await.unwrap().unwrap();
    assert_eq!(node.report.stream, "a2");
    assert_eq!(node.acked_seq, 1);
    assert!(node.report.events.is_empty());
    let nodes = s.nodes().await.unwrap();
    let names: BTreeSet<_> = nodes.iter().map(|n| n.report.node.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["Edge-0", "edge-1"]));
    assert!(s.node("nope").await.unwrap().is_none());

    // A forgotten node loses its record, not its plans.
    let plans_before = s.plans(Some("Edge-0"), 0, 100).await.unwrap();
    assert!(s.forget_node("Edge-0").await.unwrap());
    assert!(!s.forget_node("Edge-0").await.unwrap());
    assert!(s.node("Edge-0").await.unwrap().is_none());
    let names: Vec<String> = s
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.report.node)
        .collect();
    assert_eq!(names, ["edge-1"]);
    assert_eq!(s.plans(Some("Edge-0"), 0, 100).await.unwrap(), plans_before);

    // The graph registry's metadata and the regions' graphs.
    let meta = GraphMeta {
        version: "v1".into(),
        sha256: "ab".repeat(32),
        size_bytes: 10,
        uploaded_at_ms: 5,
        node_count: 3,
        bbox: [7.4, 43.7, 7.5, 43.8],
    };
    s.put_graph(meta.clone()).await.unwrap();
    s.put_graph(GraphMeta {
        version: "v0".into(),
        ..meta.clone()
    })
    .await
    .unwrap();
    assert_eq!(s.graph("v1").await.unwrap(), Some(meta.clone()));
    assert!(s.graph("v9").await.unwrap().is_none());
    let versions: Vec<String> = s
        .graphs()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.version)
        .collect();
    assert_eq!(versions, ["v0", "v1"]);
    assert_eq!(s.region_graph("monaco").await.unwrap(), None);
    s.set_region_graph("monaco", "v0").await.unwrap();
    s.set_region_graph("monaco", "v1").await.unwrap();
    assert_eq!(
        s.region_graph("monaco").await.unwrap().as_deref(),
        Some("v1")
    );
}

/// Many tasks sending overlapping batches of one stream at once (an agent's retries
/// reaching different replicas): every event once, watermarks never beyond what is held.
async fn racing_retries(stores: Vec<Arc<dyn CenterStore>>) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16u64 {
        let store = stores[i as usize % stores.len()].clone();
        tasks.spawn(async move {
            // Batches [1..=k] for growing k, each sent by several tasks.
            let k = 1 + i / 2;
            let seqs: Vec<u64> = (1..=k).collect();
            ingest(store.as_ref(), "race", "r", &seqs).await
        });
    }
    while let Some(w) = tasks.join_next().await {
        let w = w.unwrap();
        assert!((1..=8).contains(&w), "watermark {w}");
    }
    let events = stores[0].events("r", 0, 100).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    let plans = stores[0].plans(Some("race"), 0, 100).await.unwrap();
    assert_eq!(plans.len(), 8);
    assert_eq!(ingest(stores[0].as_ref(), "race", "r", &[]).await, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sled_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CenterStore> = Arc::new(SledCenterStore::open(dir.path()).unwrap());
    contract(store.clone()).await;
    racing_retries(vec![store]).await;
}

#[tokio::test]
async fn the_postgres_store_keeps_the_contract() {
    let Some(base) = pg::env_or_skip(pg::URL_VAR) else {
        return;
    };
    let url = pg::fresh_database(&base, "contract").await.unwrap();
    let store: Arc<dyn CenterStore> =
        Arc::new(connect(&url, &PoolOptions::default()).await.unwrap());
    contract(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_database_store_racing_retries_once() {
    let Some(base) = pg::env_or_skip(pg::URL_VAR) else {
        return;
    };
    let url = pg::fresh_database(&base, "race").await.unwrap();
    // Two pools started at once: the migrations must not collide either.
    let options = PoolOptions::default();
    let (a, b) = tokio::join!(connect(&url, &options), connect(&url, &options));
    let (a, b): (Arc<dyn CenterStore>, Arc<dyn CenterStore>) =
        (Arc::new(a.unwrap()), Arc::new(b.unwrap()));
    racing_retries(vec![a, b]).await;
}

#[tokio::test]
async fn a_bad_url_or_an_unreachable_database_is_a_clear_error() {
    let err = connect("postgres://h:notaport/db", &PoolOptions::default())
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("invalid --store PostgreSQL URL"),
        "{err:#}"
    );
    // Nothing listens on port 1.
    let options = PoolOptions {
        timeout: std::time::Duration::from_secs(2),
        ..PoolOptions::default()
    };
    let err = connect("postgres://u@127.0.0.1:1/db?sslmode=disable", &options)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("cannot connect"), "{err:#}");
}

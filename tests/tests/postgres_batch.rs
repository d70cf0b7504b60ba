//! Group commit in the PostgreSQL store, against a real PostgreSQL: concurrent reports of
//! many nodes share transactions and stay exactly-once with contiguous watermarks; a
//! report the database refuses fails alone; connections killed mid-batch lose nothing
//! that was acknowledged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use edgeroute_control_plane::sync::{
    postgres::{
        PgCenterStore,
        batch::BatchOptions,
        connect::{PoolOptions, connect},
    },
    store::CenterStore,
};
use edgeroute_protocol::sync::{Event, EventHeader, RawEvent, Report};
use edgeroute_tests::{events::plan_event, pg};

fn report(node: &str, seqs: impl IntoIterator<Item = u64>) -> (Report<RawEvent>, Vec<EventHeader>) {
    let events: Vec<Event> = seqs.into_iter().map(|s| plan_event(node, s)).collect();
    let typed = Report {
        node: node.into(),
        stream: format!("{node}-stream"),
        region: "r".into(),
        outbox_depth: events.len() as u64,
        events,
        ..Report::default()
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

async fn store(test: &str, batch: BatchOptions) -> Option<(PgCenterStore, String)> {
    let base = pg::env_or_skip(pg::URL_VAR)?;
    let url = pg::fresh_database(&base, test).await.unwrap();
    let options = PoolOptions {
        max_size: 8,
        timeout: Duration::from_secs(2),
        batch: Some(batch),
        ..PoolOptions::default()
    };
    Some((connect(&url, &options).await.unwrap(), url))
}

/// What `node`'s stream holds, in order.
async fn stored(store: &PgCenterStore, node: &str) -> Vec<u64> {
    store
        .events(&format!("{node}-stream"), 0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect()
}

#[tokio::test]
async fn concurrent_reports_of_many_nodes_share_commits_exactly_once() {
    let batch = BatchOptions {
        max_reports: 64,
        window: Duration::from_millis(5),
        committers: 2,
    };
    let Some((store, _)) = store("batch_many", batch).await else {
        return;
    };
    const NODES: usize = 40;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..NODES {
        let store = store.clone();
        tasks.spawn(async move {
            let node = format!("edge-{n:02}");
            let mut acks = Vec::new();
            // Each report resends the previous one's events (an ack lost in transit).
            for step in 0..6u64 {
                let (r, h) = report(&node, step.saturating_sub(1) * 3 + 1..=step * 3 + 3);
                acks.push(store.ingest(r, h, 1_000 + step).await.unwrap());
            }
            // Out of order: a gap holds the watermark until it is filled.
            let (r, h) = report(&node, [20, 21]);
            acks.push(store.ingest(r, h, 2_000).await.unwrap());
            let (r, h) = report(&node, [19]);
            acks.push(store.ingest(r, h, 2_001).await.unwrap());
            (node, acks)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (node, acks) = done.unwrap();
        let watermarks: Vec<u64> = acks.iter().map(|a| a.watermark).collect();
        assert_eq!(watermarks, [3, 6, 9, 12, 15, 18, 18, 21], "{node}");
        // Each report found the watermark the one before it left, in whichever batch
        // either went: what the center's event counter counts from.
        let found: Vec<u64> = acks.iter().map(|a| a.held).collect();
        assert_eq!(found, [0, 3, 6, 9, 12, 15, 18, 18], "{node}");
        assert_eq!(
            stored(&store, &node).await,
            (1..=21).collect::<Vec<_>>(),
            "{node}"
        );
        let plans = store.plans(Some(&node), 0, 100).await.unwrap();
        assert_eq!(plans.len(), 21, "{node}: every plan once");
        let record = store.node(&node).await.unwrap().unwrap();
        assert_eq!(record.acked_seq, 21);
    }
    let counts = store.batch_counts();
    assert!(
        counts.batches > 0 && counts.reports > 2 * counts.batches,
        "reports shared transactions: {counts:?}"
    );
    assert_eq!(counts.fallbacks, 0);
}

#[tokio::test]
async fn a_report_the_database_refuses_fails_alone() {
    let batch = BatchOptions {
        max_reports: 64,
        window: Duration::from_millis(50),
        committers: 1,
    };
    let Some((store, url)) = store("batch_poison", batch).await else {
        return;
    };
    // A real refusal by the database, for one node only, in the batch's last statement.
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.node = 'poison' THEN RAISE EXCEPTION 'refused'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON nodes \
             FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
        )
        .await
        .unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(21));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..21 {
        let (store, start) = (store.clone(), start.clone());
        tasks.spawn(async move {
            let node = if n == 0 {
                "poison".to_owned()
            } else {
                format!("edge-{n:02}")
            };
            let (r, h) = report(&node, 1..=4);
            start.wait().await;
            (node, store.ingest(r, h, 1_000).await)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (node, result) = done.unwrap();
        if node == "poison" {
            assert!(result.is_err(), "the refused report is not acknowledged");
            assert!(
                stored(&store, &node).await.is_empty(),
                "its transaction left nothing"
            );
        } else {
            assert_eq!(result.unwrap().watermark, 4, "{node}");
            assert_eq!(stored(&store, &node).await, [1, 2, 3, 4], "{node}");
        }
    }
    assert!(
        store.batch_counts().fallbacks >= 1,
        "{:?}",
        store.batch_counts()
    );
}

#[tokio::test]
async fn connections_killed_mid_batch_lose_nothing_acknowledged() {
    let batch = BatchOptions {
        max_reports: 64,
        window: Duration::from_millis(2),
        committers: 3,
    };
    let Some((store, url)) = store("batch_killed", batch).await else {
        return;
    };
    const NODES: usize = 24;
    // Bounds what one node sends, so its stream fits one read; far more than the fault
    // needs on any machine here.
    const MAX_EVENTS: u64 = 4_000;
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    // The fault: every connection of the store's database killed, again and again,
    // whatever statement (or COMMIT) it is in.
    let killer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            let mut killed = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let rows = client
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname = current_database() AND pid <> pg_backend_pid()",
                        &[],
                    )
                    .await
                    .unwrap();
                killed += rows.len() as u64;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            killed
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..NODES {
        let (store, errors, stop) = (store.clone(), errors.clone(), stop.clone());
        tasks.spawn(async move {
            let node = format!("edge-{n:02}");
            let (mut acked, mut sent) = (0u64, 0u64);
            // Until the fault ends: send what is above the watermark, a few at a time,
            // paced like an agent draining its outbox, so that the writers are still busy
            // when the killer strikes however fast the machine is.
            while acked < MAX_EVENTS && !stop.load(Ordering::SeqCst) {
                let last = MAX_EVENTS.min(acked + 4);
                sent = sent.max(last);
                let (r, h) = report(&node, acked + 1..=last);
                match store.ingest(r, h, 1_000).await {
                    Ok(ingested) => {
                        let w = ingested.watermark;
                        assert!(w >= acked);
                        acked = w;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (node, acked, sent)
        });
    }
    // The fault lasts until several ingests have failed on it (and at least a moment),
    // so that a fast machine cannot finish its work between two kills.
    let began = std::time::Instant::now();
    while (errors.load(Ordering::Relaxed) < 5 || began.elapsed() < Duration::from_millis(500))
        && began.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let killed = killer.await.unwrap();
    let mut acked_during_fault = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (node, acked, sent) = done.unwrap();
        acked_during_fault.insert(node, (acked, sent));
    }
    assert!(killed > 0, "the fault hit no connection");
    assert!(
        errors.load(Ordering::Relaxed) > 0,
        "no ingest saw the fault"
    );
    for (node, &(acked, sent)) in &acked_during_fault {
        let held = stored(&store, node).await;
        // Everything acknowledged is there, contiguous from 1, and nothing twice.
        assert!(
            held.len() as u64 >= acked && held[..acked as usize] == (1..=acked).collect::<Vec<_>>(),
            "{node}: acked {acked}, stored {held:?}"
        );
        // The rest drains once the database is left alone, resent from the start as an
        // agent that lost its acks would.
        for first in (1..=sent).step_by(500) {
            let last = sent.min(first + 499);
            let (r, h) = report(node, first..=last);
            let watermark = store.ingest(r, h, 2_000).await.unwrap().watermark;
            // Above `last` only when an unacknowledged report had committed after all.
            assert!(
                watermark >= last && watermark <= sent,
                "{node}: {watermark}"
            );
        }
        assert_eq!(stored(&store, node).await, (1..=sent).collect::<Vec<_>>());
    }
}

//! The center's bound on concurrent ingests: beyond `max_concurrent_ingests` a report is
//! answered at once with 503, `Retry-After` and the JSON error, and agents that retry
//! lose nothing that was acknowledged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::{
    body::{Body, Bytes},
    http::{Request, StatusCode, header},
};
use edgeroute_control_plane::serve::Settings;
use edgeroute_protocol::sync::{Event, EventKind, Health, Report};
use http_body_util::BodyExt;
use tower::ServiceExt;

mod support;

use support::center::{TOKEN, TestCenter};

fn event(seq: u64) -> Event {
    Event {
        seq,
        at_ms: seq,
        kind: EventKind::GraphFailed {
            version: format!("v{seq}"),
            error: "test".into(),
        },
    }
}

fn report(node: &str, events: Vec<Event>) -> Report {
    Report {
        node: node.into(),
        stream: format!("{node}-stream"),
        region: "r".into(),
        health: Health {
            ready: true,
            ..Health::default()
        },
        outbox_depth: events.len() as u64,
        events,
        ..Report::default()
    }
}

fn post(body: Body) -> Request<Body> {
    Request::post("/sync/v1/report")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap()
}

fn limited(max: usize) -> TestCenter {
    TestCenter::new(Settings {
        max_concurrent_ingests: max,
        ingest_retry_after_s: 2,
        ..Settings::default()
    })
}

async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 5 s");
}

#[tokio::test]
async fn a_saturated_center_sheds_at_once_with_retry_after() {
    let c = limited(1);
    // A report whose body is still arriving holds the only permit.
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let slow = serde_json::to_vec(&report("slow", vec![event(1)])).unwrap();
    let body = Body::from_stream(futures::stream::once(async move {
        let _ = held.await;
        Ok::<_, std::io::Error>(Bytes::from(slow))
    }));
    let first = tokio::spawn(c.app.clone().oneshot(post(body)));
    until(|| c.center.ingests.available_permits() == 0).await;

    let started = std::time::Instant::now();
    let (status, headers, body) = c
        .call(post(Body::from(
            serde_json::to_vec(&report("fast", vec![event(1)])).unwrap(),
        )))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "shed, not queued"
    );
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "2");
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["code"], "Overloaded", "{error}");
    assert!(error["message"].as_str().unwrap().contains("retry"));
    // Nothing of the shed report was stored.
    assert!(c.center.store.node("fast").await.unwrap().is_none());

    // Credentials are checked before a permit is looked at.
    let (status, _, _) = c
        .call(
            Request::post("/sync/v1/report")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    release.send(()).unwrap();
    let response = first.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let ack: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(ack["acked_seq"], 1);
    assert_eq!(
        c.center.ingests.available_permits(),
        1,
        "the permit came back"
    );

    let (_, _, metrics) = c.get("/metrics").await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics
            .contains(r#"edgeroute_center_sync_errors_total{call="report",reason="overloaded"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"edgeroute_center_sync_errors_total{call="report",reason="storage"} 0"#)
    );
}

#[tokio::test]
async fn agents_that_retry_after_being_shed_lose_nothing() {
    const AGENTS: usize = 12;
    const EVENTS: u64 = 40;
    const BATCH: u64 = 7;
    let c = limited(2);
    // Every permit taken: each agent's first report is shed, whatever the scheduling.
    let all = c
        .center
        .ingests
        .clone()
        .acquire_many_owned(2)
        .await
        .unwrap();
    let shed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut agents = tokio::task::JoinSet::new();
    for a in 0..AGENTS {
        let (app, shed) = (c.app.clone(), shed.clone());
        agents.spawn(async move {
            let node = format!("edge-{a}");
            let mut acked = 0u64;
            let mut sheds = 0;
            while acked < EVENTS {
                // Like the agent: resend everything above the watermark, a batch at a time.
                let events = (acked + 1..=EVENTS.min(acked + BATCH)).map(event).collect();
                let body = serde_json::to_vec(&report(&node, events)).unwrap();
                let response = app.clone().oneshot(post(Body::from(body))).await.unwrap();
                match response.status() {
                    StatusCode::OK => {
                        let bytes = response.into_body().collect().await.unwrap().to_bytes();
                        let ack: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                        let w = ack["acked_seq"].as_u64().unwrap();
                        assert!(w >= acked, "the watermark never goes back");
                        acked = w;
                    }
                    StatusCode::SERVICE_UNAVAILABLE => {
                        assert!(response.headers().contains_key(header::RETRY_AFTER));
                        sheds += 1;
                        if sheds == 1 {
                            shed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        // The test does not wait the advertised seconds; the jitter keeps
                        // the retries apart.
                        let jitter = (a as u64 * 7 + sheds) % 5;
                        tokio::time::sleep(Duration::from_millis(1 + jitter)).await;
                    }
                    other => panic!("{node}: unexpected {other}"),
                }
            }
            (node, acked)
        });
    }
    until(|| shed.load(std::sync::atomic::Ordering::SeqCst) == AGENTS).await;
    drop(all);
    while let Some(done) = agents.join_next().await {
        let (node, acked) = done.unwrap();
        assert_eq!(acked, EVENTS, "{node}");
        let stored = c
            .center
            .store
            .events(&format!("{node}-stream"), 0, 1000)
            .await
            .unwrap();
        let seqs: Vec<u64> = stored.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=EVENTS).collect::<Vec<_>>(), "{node}");
        assert_eq!(
            c.center.store.node(&node).await.unwrap().unwrap().acked_seq,
            EVENTS
        );
    }
    assert_eq!(c.center.ingests.available_permits(), 2);
}

//! The edge-to-center link under real faults: the real `edgeroute-control-plane serve` and
//! `edgeroute-agent` binaries on loopback, a TCP fault proxy between them, and clients that
//! keep calling the agents. Each scenario ends by checking that the center holds every plan
//! the agents answered with 200 exactly once (same ids, no duplicates, no gaps) and that no
//! request to a running agent failed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeSet, time::Duration};

use edgeroute_tests::{
    fault_proxy::Mode,
    fleet::{Fleet, Workload, optimize_body},
    procs::eventually,
};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_partitions_lose_and_duplicate_nothing() {
    let fleet = Fleet::start(&["edge-1"], &[]).await;
    let work = Workload::start(&fleet.client, &fleet.agents[0].url);
    let mut rng = SmallRng::seed_from_u64(10);
    let faults = [Mode::Cut, Mode::Stall, Mode::Reset, Mode::DropResponses];
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
        fleet.proxy.set_mode(faults[i % faults.len()]);
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1500))).await;
        fleet.proxy.set_mode(Mode::Pass);
    }
    let answered = work.finish().await;
    assert!(answered.len() >= 10, "only {} plans", answered.len());
    fleet.drained(0).await;
    fleet.assert_exactly_once("edge-1", &answered).await;
    // Cut, stalled and lost answers are not a disagreement between the two histories: the
    // agent kept its stream throughout.
    for reason in ["center_ahead", "center_behind", "node_renamed"] {
        assert_eq!(fleet.rotations(0, reason).await, 0, "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_acks_are_not_lost_plans() {
    let fleet = Fleet::start(&["edge-1"], &[]).await;
    fleet.proxy.set_mode(Mode::DropResponses);
    let work = Workload::start(&fleet.client, &fleet.agents[0].url);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let answered = work.finish().await;
    // The center made the batches durable although the agent never heard back.
    let held = fleet.center_plans("edge-1").await;
    assert!(
        !held.is_empty(),
        "the center received nothing through lost acks"
    );
    fleet.proxy.set_mode(Mode::Pass);
    fleet.drained(0).await;
    fleet.assert_exactly_once("edge-1", &answered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_agent_during_a_sync_loses_nothing() {
    let mut fleet = Fleet::start(&["edge-1"], &[]).await;
    fleet.proxy.set_mode(Mode::Cut);
    let work = Workload::start(&fleet.client, &fleet.agents[0].url);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answered = work.finish().await;
    // Heal and kill while the backlog drains.
    fleet.proxy.set_mode(Mode::Pass);
    tokio::time::sleep(Duration::from_millis(150)).await;
    fleet.agents[0].kill9().await;
    fleet.agents[0].restart().await.unwrap();
    fleet.drained(0).await;
    fleet.assert_exactly_once("edge-1", &answered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_center_loses_nothing() {
    let mut fleet = Fleet::start(&["edge-1"], &[]).await;
    let work = Workload::start(&fleet.client, &fleet.agents[0].url);
    tokio::time::sleep(Duration::from_secs(1)).await;
    fleet.center.kill9().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    fleet.center.restart().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answered = work.finish().await;
    fleet.drained(0).await;
    fleet.assert_exactly_once("edge-1", &answered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_refuses_plans_and_keeps_routing() {
    let fleet = Fleet::start(&["edge-1"], &["--outbox-max-events", "3"]).await;
    fleet.proxy.set_mode(Mode::Cut);
    let url = fleet.agents[0].url.clone();
    let mut answered = BTreeSet::new();
    let mut refused = 0;
    for i in 0..6 {
        let r = fleet
            .client
            .post(format!("{url}/optimize?time_limit_ms=20"))
            .json(&optimize_body(i))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => {
                let body: Value = r.json().await.unwrap();
                answered.insert(body["plan_id"].as_str().unwrap().to_owned());
            }
            503 => {
                let body: Value = r.json().await.unwrap();
                assert!(
                    body["error"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("outbox"),
                    "{body}"
                );
                refused += 1;
            }
            s => panic!("unexpected {s}"),
        }
    }
    // The agent's own startup graph event takes one slot.
    assert!(
        answered.len() <= 3 && refused >= 3,
        "{answered:?} {refused}"
    );
    let route = fleet
        .client
        .get(format!(
            "{url}/route/v1/driving/7.4197,43.7314;7.4246,43.7384"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(route.status(), 200, "routing goes on with a full outbox");
    // The agent says since when it has not reached the center, and how much waits.
    let status_url = format!("{url}/v1/status");
    let client = fleet.client.clone();
    let status = eventually(Duration::from_secs(10), "unreachable in /v1/status", || {
        let (client, status_url) = (client.clone(), status_url.clone());
        async move {
            let status: Value = client
                .get(status_url)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            status["sync"]["unreachable_since"]
                .is_string()
                .then_some(status)
        }
    })
    .await
    .unwrap();
    assert_eq!(status["sync"]["connected"], false, "{status}");
    assert_eq!(status["sync"]["outbox_depth"], 3, "{status}");
    fleet.proxy.set_mode(Mode::Pass);
    fleet.drained(0).await;
    let r = fleet
        .client
        .post(format!("{url}/optimize?time_limit_ms=20"))
        .json(&optimize_body(99))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "plans are accepted again once the outbox drains"
    );
    let body: Value = r.json().await.unwrap();
    answered.insert(body["plan_id"].as_str().unwrap().to_owned());
    fleet.drained(0).await;
    fleet.assert_exactly_once("edge-1", &answered).await;
}

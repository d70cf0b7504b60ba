//! When the center's record of a node's events and the agent's database disagree: the
//! center lost its database, the agent's data directory was restored from a backup, or it
//! was copied to another node. The real binaries on loopback; each scenario ends with every
//! plan answered after the disagreement held by the center once, under its own id.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeSet, path::Path, time::Duration};

use edgeroute_tests::fleet::{Fleet, get_json, optimize_body, wait_ready};
use serde_json::Value;

/// `count` plans from agent `agent`; their ids.
async fn plans(fleet: &Fleet, agent: usize, count: u64, seed: u64) -> BTreeSet<String> {
    let url = &fleet.agents[agent].url;
    let mut ids = BTreeSet::new();
    for i in 0..count {
        let r = fleet
            .client
            .post(format!("{url}/optimize?time_limit_ms=20"))
            .json(&optimize_body(seed + i))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        ids.insert(body["plan_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len() as u64, count, "plan ids repeat: {ids:?}");
    ids
}

/// The plan ids the center holds for `node`, checking none is there twice.
async fn center_ids(fleet: &Fleet, node: &str) -> BTreeSet<String> {
    let plans = fleet.center_plans(node).await;
    let ids: BTreeSet<String> = plans
        .iter()
        .map(|p| p["plan_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids.len(),
        plans.len(),
        "a plan twice at the center: {plans:?}"
    );
    ids
}

/// Stop agent `i` cleanly (its database flushed), for copying its data directory.
async fn stop(fleet: &mut Fleet, i: usize) {
    fleet.agents[i]
        .terminate(Duration::from_secs(20))
        .await
        .unwrap();
}

async fn start_again(fleet: &mut Fleet, i: usize) {
    fleet.agents[i].restart().await.unwrap();
    wait_ready(&fleet.agents[i]).await;
}

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_center_that_lost_its_database_still_gets_every_later_plan() {
    let mut fleet = Fleet::start(&["edge-1"], &[]).await;
    let before = plans(&fleet, 0, 3, 0).await;
    fleet.drained(0).await;
    assert_eq!(center_ids(&fleet, "edge-1").await, before);
    // The center's database is gone (a wiped volume, a move to another store): it knows
    // nothing of the events it acknowledged, which the agent has deleted.
    fleet.center.kill9().await;
    std::fs::remove_dir_all(fleet.dir.path().join("center")).unwrap();
    fleet.center.restart().await.unwrap();
    let after = plans(&fleet, 0, 4, 100).await;
    fleet.drained(0).await;
    assert_eq!(
        center_ids(&fleet, "edge-1").await,
        after,
        "the center holds what came after its loss"
    );
    assert_eq!(fleet.rotations(0, "center_behind").await, 1);
    assert_eq!(fleet.rotations(0, "center_ahead").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restored_from_a_backup_loses_no_later_plan() {
    let mut fleet = Fleet::start(&["edge-1"], &[]).await;
    let data = fleet.dir.path().join("edge-1");
    let backup = fleet.dir.path().join("edge-1.backup");
    let first = plans(&fleet, 0, 2, 0).await;
    fleet.drained(0).await;
    stop(&mut fleet, 0).await;
    copy_dir(&data, &backup);
    start_again(&mut fleet, 0).await;
    let second = plans(&fleet, 0, 3, 100).await;
    fleet.drained(0).await;
    // The disk is restored from the backup: the center holds a history this copy lacks.
    stop(&mut fleet, 0).await;
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::rename(&backup, &data).unwrap();
    start_again(&mut fleet, 0).await;
    let third = plans(&fleet, 0, 2, 200).await;
    fleet.drained(0).await;
    assert!(
        third.is_disjoint(&second),
        "the restored copy reused the lost history's plan ids: {third:?} {second:?}"
    );
    let all: BTreeSet<String> = first.iter().chain(&second).chain(&third).cloned().collect();
    assert_eq!(center_ids(&fleet, "edge-1").await, all);
    assert_eq!(fleet.rotations(0, "center_ahead").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_copied_to_another_node_is_a_stream_of_its_own() {
    let mut fleet = Fleet::start(&["edge-1"], &[]).await;
    let first = plans(&fleet, 0, 2, 0).await;
    fleet.drained(0).await;
    stop(&mut fleet, 0).await;
    // A disk image cloned with the agent's database on it.
    copy_dir(
        &fleet.dir.path().join("edge-1"),
        &fleet.dir.path().join("edge-2"),
    );
    start_again(&mut fleet, 0).await;
    fleet.add_agent("edge-2", &[]).await;
    let mut one = first.clone();
    let mut two = BTreeSet::new();
    for round in 0..3 {
        one.extend(plans(&fleet, 0, 1, 100 + round).await);
        two.extend(plans(&fleet, 1, 1, 200 + round).await);
    }
    fleet.drained(0).await;
    fleet.drained(1).await;
    assert!(
        one.is_disjoint(&two),
        "the copies share plan ids: {one:?} {two:?}"
    );
    assert_eq!(center_ids(&fleet, "edge-1").await, one);
    assert_eq!(center_ids(&fleet, "edge-2").await, two);
    assert_eq!(fleet.rotations(1, "node_renamed").await, 1);
    let status = get_json(
        &fleet.client,
        &format!("{}/v1/status", fleet.agents[1].url),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status["sync"]["outbox_depth"], 0, "{status}");
}

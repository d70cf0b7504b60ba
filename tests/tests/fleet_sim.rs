//! The `fleet-sim` binary, whose figures docs/scale.md reports, checked against the real
//! center it drives: what the simulator says it got acknowledged is what the center holds,
//! every plan once, and its storm and partition accounting ends with every watermark
//! current.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeMap, process::Stdio, time::Duration};

use edgeroute_tests::{
    fleet::{ADMIN, TOKEN, client, start_center},
    procs::binary,
};
use serde_json::Value;

/// Runs `fleet-sim` against `center` with `args`; its stdout, which must say it succeeded.
async fn simulate(center: &str, args: &[&str]) -> String {
    let run = tokio::process::Command::new(binary("fleet-sim").unwrap())
        .args(["--center", center, "--token", TOKEN, "--print-s", "1"])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("fleet-sim finished within two minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "fleet-sim failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The number after `label` in the simulator's summary.
fn figure(stdout: &str, label: &str) -> u64 {
    let rest = stdout
        .split_once(label)
        .unwrap_or_else(|| panic!("no {label:?} in {stdout}"))
        .1;
    rest.trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {label:?} in {stdout}"))
}

/// `GET` of the center's admin API.
async fn admin_get(center: &str, path: &str) -> Value {
    client()
        .get(format!("{center}{path}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Every simulated node the center lists, with its watermark.
async fn watermarks(center: &str) -> BTreeMap<String, u64> {
    admin_get(center, "/api/v1/nodes").await["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_owned(),
                n["acked_seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The sequence numbers of `node`'s plans the center holds, in order.
async fn plan_seqs(center: &str, node: &str) -> Vec<u64> {
    admin_get(
        center,
        &format!("/api/v1/plans?node={node}&since=0&limit=1000"),
    )
    .await["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_storm_drains_and_the_center_holds_every_plan_the_simulator_counted() {
    let dir = tempfile::tempdir().unwrap();
    let center = start_center(dir.path(), &[]).await;
    const AGENTS: u64 = 30;
    const BACKLOG: u64 = 40;
    // No new plans during the run: the backlog is every event, so the counts are exact.
    // Batches of 15 make each agent drain over several reports.
    let out = simulate(
        &center.url,
        &[
            "--agents",
            &AGENTS.to_string(),
            "--backlog",
            &BACKLOG.to_string(),
            "--batch",
            "15",
            "--plans-per-interval",
            "0",
            "--interval-ms",
            "200",
            "--duration-s",
            "60",
            "--storm",
            "--until-drained",
            "--admin-key",
            ADMIN,
        ],
    )
    .await;
    assert!(out.contains("every watermark current"), "{out}");
    assert_eq!(figure(&out, "events acked"), AGENTS * BACKLOG, "{out}");
    assert_eq!(figure(&out, "backlog at end"), 0, "{out}");
    assert_eq!(figure(&out, "failed"), 0, "{out}");
    let held = watermarks(&center.url).await;
    assert_eq!(held.len() as u64, AGENTS, "{held:?}");
    assert!(held.values().all(|&w| w == BACKLOG), "{held:?}");
    for node in ["sim-000000", "sim-000017", "sim-000029"] {
        assert_eq!(
            plan_seqs(&center.url, node).await,
            (1..=BACKLOG).collect::<Vec<_>>(),
            "{node}"
        );
    }
}

#[tokio::test]
async fn after_a_partition_the_simulator_and_the_center_agree_on_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let center = start_center(dir.path(), &[]).await;
    // Half the agents are cut off from 1 s to 3 s while every agent keeps planning; the run
    // ends once the cut-off half has caught up.
    let out = simulate(
        &center.url,
        &[
            "--agents",
            "40",
            "--plans-per-interval",
            "2",
            "--interval-ms",
            "100",
            "--partition-share",
            "0.5",
            "--partition-at-s",
            "1",
            "--partition-for-s",
            "2",
            "--duration-s",
            "60",
            "--until-drained",
        ],
    )
    .await;
    assert!(out.contains("40 agents (20 partitioned)"), "{out}");
    assert!(out.contains("every watermark current"), "{out}");
    let held = watermarks(&center.url).await;
    assert_eq!(held.len(), 40, "{held:?}");
    // The simulator counts what each ack newly covered. The center holds at least that: a
    // report in flight when the run stopped may have been stored with its ack unread.
    // Each node's plans are 1..=watermark, with no gap or repeat.
    let acked = figure(&out, "events acked");
    assert!(
        held.values().sum::<u64>() >= acked && acked > 0,
        "{out}\n{held:?}"
    );
    for (node, &watermark) in held.iter().step_by(7) {
        let seqs = plan_seqs(&center.url, node).await;
        assert!(
            seqs.len() as u64 >= watermark
                && seqs[..watermark as usize] == (1..=watermark).collect::<Vec<_>>(),
            "{node}: watermark {watermark}, plans {seqs:?}"
        );
    }
}

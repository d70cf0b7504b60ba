//! Sync benchmarks on loopback with the real release binaries (`cargo build --release
//! --bins` first). Figures and the commands that produced them are in docs/sync.md.
//!
//! - `catchup [EVENTS]`: an agent whose outbox holds EVENTS plan events (written straight
//!   into its database before it starts, as a long partition would leave it) drains them to
//!   a center; prints the time until the center's watermark covers them all.
//! - `wan`: a dispatch workload (10,000 `/route` calls and 200 `/optimize` calls of 50 jobs)
//!   sent through a byte-counting proxy to an agent playing a central routing service,
//!   against the bytes the same workload costs an edge agent's sync link to the center.
//! - `idle [SECONDS]`: the sync bytes an idle agent exchanges per minute at the default
//!   5 s interval, and the center's CPU time per report.
//!
//! `cargo bench -p edgeroute-agent --bench sync -- catchup 100000`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    path::Path,
    time::{Duration, Instant},
};

use edgeroute_agent::storage::{NewPlan, SledStore, Store};
use edgeroute_protocol::sync::{Health, MetricsWindow, Report};
use edgeroute_tests::{
    fault_proxy::FaultProxy,
    fleet::{ADMIN, TOKEN, client, get_json, optimize_body, start_agent, start_center},
    procs::{Proc, eventually},
};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde_json::{Value, json};

async fn center(dir: &Path) -> Proc {
    start_center(dir, &[]).await
}

async fn agent(dir: &Path, name: &str, control_plane: Option<&str>) -> Proc {
    let mut args = vec!["--rate-limit", "0"];
    if let Some(url) = control_plane {
        args.extend(["--control-plane", url, "--sync-token", TOKEN]);
    }
    start_agent(dir, name, &args, true).await
}

async fn node_acked(center: &str, node: &str) -> Option<u64> {
    let nodes = get_json(&client(), &format!("{center}/api/v1/nodes"), Some(ADMIN)).await?;
    nodes["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["node"] == node)?["acked_seq"]
        .as_u64()
}

/// A plan as `/optimize` stores it for a 10-job, 2-vehicle problem (about 3 KB of JSON).
fn plan(node: &str, i: u64) -> NewPlan {
    let steps: Vec<Value> = (0..6)
        .map(|s| json!({"type": "job", "id": s + i, "location": [7.42, 43.73], "arrival": 100 * s, "duration": 100 * s, "load": [s], "distance": 1000 * s, "service": 300, "waiting_time": 0}))
        .collect();
    NewPlan {
        node: node.into(),
        graph_version: Some("monaco-a".into()),
        graph_checksum: Some(
            "c0d2a8d9d346f94dbffe006884684aec1f291672c0951e2cf8770c730ffd293e".into(),
        ),
        solver_version: "edgeroute-engine 0.1.0".into(),
        jobs: 10,
        shipments: 0,
        vehicles: 2,
        output: json!({"code": 0, "summary": {"cost": 1234, "routes": 2, "unassigned": 0, "duration": 3600, "distance": 24000},
            "unassigned": [], "routes": [{"vehicle": 1, "cost": 600, "steps": steps.clone()}, {"vehicle": 2, "cost": 634, "steps": steps}]}),
        traceparent: None,
    }
}

async fn catchup(events: u64) {
    let dir = tempfile::tempdir().unwrap();
    let node = "edge-backlog";
    let data = dir.path().join(node);
    let started = Instant::now();
    let prefill = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || {
            let store = SledStore::open(&data)
                .unwrap()
                .with_outbox(events + 10)
                .unwrap();
            store.boot(Some(node)).unwrap();
            for i in 0..events {
                store.put_plan(&plan(node, i), None).unwrap();
            }
            store.flush().unwrap();
            let sample = store.outbox_batch(node, 100, usize::MAX).unwrap().events;
            let bytes: usize = sample.iter().map(|e| e.get().len()).sum();
            (store.outbox_depth().unwrap(), bytes / sample.len().max(1))
        })
        .await
        .unwrap()
    };
    let (prefill, event_bytes) = prefill;
    println!(
        "prefilled {prefill} events of {event_bytes} bytes of JSON each in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let center = center(dir.path()).await;
    // The partition: the agent starts and serves while the link is down, then it heals.
    let link = FaultProxy::start(center.url.trim_start_matches("http://").parse().unwrap())
        .await
        .unwrap();
    link.set_mode(edgeroute_tests::fault_proxy::Mode::Cut);
    let agent = agent(dir.path(), node, Some(&link.url())).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The agent's own startup graph event comes after the backlog.
    let target = prefill + 1;
    link.set_mode(edgeroute_tests::fault_proxy::Mode::Pass);
    let t0 = Instant::now();
    let url = center.url.clone();
    eventually(Duration::from_secs(600), "the backlog drained", || {
        let url = url.clone();
        async move { (node_acked(&url, node).await? >= target).then_some(()) }
    })
    .await
    .unwrap();
    let took = t0.elapsed();
    println!(
        "catch-up: {target} events drained in {:.2} s ({:.0} events/s), from the heal to the last ack",
        took.as_secs_f64(),
        target as f64 / took.as_secs_f64()
    );
    drop(agent);
}

/// Runs the dispatch workload against `url`; returns (route calls, optimize calls).
async fn dispatch_workload(url: &str, routes: usize, optimizes: usize) -> (usize, usize) {
    let c = client();
    let mut rng = SmallRng::seed_from_u64(7);
    let mut point = move || {
        format!(
            "{:.5},{:.5}",
            7.415 + rng.random::<f64>() * 0.012,
            43.731 + rng.random::<f64>() * 0.008
        )
    };
    let mut ok = (0, 0);
    for _ in 0..routes {
        let r = c
            .get(format!(
                "{url}/route/v1/driving/{};{}?overview=full",
                point(),
                point()
            ))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            ok.0 += 1;
        }
        let _ = r.bytes().await;
    }
    for i in 0..optimizes {
        let mut body = optimize_body(i as u64);
        let jobs: Vec<Value> = (1..=50)
            .map(|id| {
                let p = point();
                let (lon, lat) = p.split_once(',').unwrap();
                json!({"id": id, "location": [lon.parse::<f64>().unwrap(), lat.parse::<f64>().unwrap()], "delivery": [1]})
            })
            .collect();
        body["jobs"] = Value::Array(jobs);
        body["vehicles"][0]["capacity"] = json!([50]);
        let r = c
            .post(format!("{url}/optimize?time_limit_ms=50"))
            .json(&body)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            ok.1 += 1;
        }
        let _ = r.bytes().await;
    }
    ok
}

async fn wan() {
    let dir = tempfile::tempdir().unwrap();
    let (routes, optimizes) = (10_000, 200);
    // Central: clients talk to a routing service across the WAN (here: through a proxy).
    let central = agent(dir.path(), "central", None).await;
    let front = FaultProxy::start(central.url.trim_start_matches("http://").parse().unwrap())
        .await
        .unwrap();
    let ok = dispatch_workload(&front.url(), routes, optimizes).await;
    let s = front.stats();
    let central_bytes = s.bytes_to_client + s.bytes_to_upstream;
    println!(
        "central: {} route + {} optimize answered, {} bytes over the WAN",
        ok.0, ok.1, central_bytes
    );
    // Edge: clients talk to the local agent; only sync crosses the WAN.
    let center = center(dir.path()).await;
    let link = FaultProxy::start(center.url.trim_start_matches("http://").parse().unwrap())
        .await
        .unwrap();
    let started = Instant::now();
    let edge = agent(dir.path(), "edge", Some(&link.url())).await;
    let ok = dispatch_workload(&edge.url, routes, optimizes).await;
    let url = center.url.clone();
    let node_acked_target = 1 + optimizes as u64; // the startup graph event and the plans
    eventually(Duration::from_secs(120), "plans at the center", || {
        let url = url.clone();
        async move { (node_acked(&url, "edge").await? >= node_acked_target).then_some(()) }
    })
    .await
    .unwrap();
    let s = link.stats();
    let edge_bytes = s.bytes_to_client + s.bytes_to_upstream;
    println!(
        "edge: {} route + {} optimize answered locally in {:.0} s; sync link carried {} bytes (every plan included)",
        ok.0,
        ok.1,
        started.elapsed().as_secs_f64(),
        edge_bytes
    );
    println!(
        "WAN bytes saved: {:.1}% ({} vs {})",
        100.0 * (1.0 - edge_bytes as f64 / central_bytes as f64),
        edge_bytes,
        central_bytes
    );
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

async fn idle(seconds: u64) {
    let dir = tempfile::tempdir().unwrap();
    let center = center(dir.path()).await;
    let link = FaultProxy::start(center.url.trim_start_matches("http://").parse().unwrap())
        .await
        .unwrap();
    let _edge = agent(dir.path(), "idle", Some(&link.url())).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = link.stats();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after = link.stats();
    let bytes = (after.bytes_to_client + after.bytes_to_upstream)
        - (before.bytes_to_client + before.bytes_to_upstream);
    println!(
        "idle agent, 5 s interval: {} bytes in {seconds} s = {:.0} bytes/min ({} connections)",
        bytes,
        bytes as f64 * 60.0 / seconds as f64,
        after.accepted - before.accepted
    );
    // Center CPU per report: many reports from a tight client loop, CPU ticks from /proc.
    let c = client();
    let pid = center.pid().unwrap();
    let hz = 100.0; // USER_HZ on Linux
    for (label, with_event) in [
        ("empty report", false),
        ("report with one plan event", true),
    ] {
        let n = 2_000u64;
        let t0 = cpu_ticks(pid);
        let started = Instant::now();
        for i in 0..n {
            let mut report = Report {
                node: "bench".into(),
                stream: format!("bench-{label}"),
                region: "monaco".into(),
                boot_id: "b".into(),
                agent_version: "0.1.0".into(),
                profiles: Default::default(),
                graph: None,
                health: Health::default(),
                advertise_url: None,
                location: None,
                metrics: MetricsWindow::default(),
                outbox_depth: 0,
                events: vec![],
            };
            if with_event {
                report.events.push(edgeroute_protocol::sync::Event {
                    seq: i + 1,
                    at_ms: 0,
                    kind: edgeroute_protocol::sync::EventKind::Plan {
                        plan: Box::new(edgeroute_protocol::plans::Plan {
                            id: format!("bench-{}", i + 1),
                            seq: i + 1,
                            created_at_ms: 0,
                            plan: plan("bench", i),
                        }),
                    },
                });
            }
            let r = c
                .post(format!("{}/sync/v1/report", center.url))
                .bearer_auth(TOKEN)
                .json(&report)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let wall = started.elapsed();
        let cpu_s = (cpu_ticks(pid) - t0) as f64 / hz;
        println!(
            "center, {label}: {:.0} µs CPU per report, {:.0} reports/s from one sequential client",
            cpu_s * 1e6 / n as f64,
            n as f64 / wall.as_secs_f64()
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let what = args.first().map(String::as_str).unwrap_or("all");
    let number = |d: u64| args.get(1).and_then(|a| a.parse().ok()).unwrap_or(d);
    runtime.block_on(async {
        match what {
            "catchup" => catchup(number(100_000)).await,
            "wan" => wan().await,
            "idle" => idle(number(60)).await,
            "all" => {
                catchup(100_000).await;
                wan().await;
                idle(60).await;
            }
            other => {
                eprintln!("unknown benchmark {other:?}: catchup [EVENTS] | wan | idle [SECONDS]")
            }
        }
    });
}

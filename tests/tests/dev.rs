//! `edgeroute-control-plane dev` end to end, with the real binaries: three agents come
//! online with the center's graph, a client finds its edge through discovery and through
//! the center's OSRM redirect, a `kill -9`ed agent goes stale then offline while dev keeps
//! the others, SIGTERM leaves no child and no bound port behind, and a second run on the
//! same data directory works.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

use edgeroute_tests::{
    fleet::{self, client, free_port, get_json},
    procs::{Proc, eventually},
};
use serde_json::Value;

const ADMIN: &str = "k";

async fn start_dev(data_dir: &Path, port: u16, log: &str) -> Proc {
    let extra = ["--stale-after-s", "2", "--offline-after-s", "4"];
    fleet::start_dev(data_dir, port, ADMIN, &extra, log).await
}

/// `agent-<i>` -> (state, node JSON), from the center's fleet API.
async fn nodes(http: &reqwest::Client, center: &str) -> Option<Vec<Value>> {
    let list = get_json(http, &format!("{center}/api/v1/nodes"), Some(ADMIN)).await?;
    list["nodes"].as_array().cloned()
}

async fn all_online(http: &reqwest::Client, dev: &Proc) -> Vec<Value> {
    let center = dev.url.clone();
    eventually(
        Duration::from_secs(180),
        "three agents online on a graph",
        || {
            let (http, center) = (http.clone(), center.clone());
            async move {
                let nodes = nodes(&http, &center).await?;
                let online: Vec<Value> = nodes
                    .into_iter()
                    .filter(|n| {
                        n["state"] == "online"
                            && n["ready"] == true
                            && n["graph_version"].is_string()
                    })
                    .collect();
                (online.len() == 3).then_some(online)
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", dev.log_text()))
}

/// The agents' pids and data directories, as dev recorded them.
fn recorded_agents(data_dir: &Path) -> Vec<(u32, PathBuf)> {
    std::fs::read_to_string(data_dir.join("dev.pids"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ' ');
            (parts.next()? == "agent")
                .then(|| Some((parts.next()?.parse().ok()?, PathBuf::from(parts.next()?))))?
        })
        .collect()
}

/// Whether `pid` is a live (not zombie) process still running with `dir` on its command line.
fn alive(pid: u32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    });
    !zombie && String::from_utf8_lossy(&cmdline).contains(dir.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_runs_a_fleet_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("dev");
    let port = free_port();
    let http = client();
    let mut dev = start_dev(&data_dir, port, "dev-1.log").await;
    let center = dev.url.clone();
    assert_eq!(center, format!("http://127.0.0.1:{port}"));

    let online = all_online(&http, &dev).await;
    let names: BTreeSet<&str> = online.iter().map(|n| n["node"].as_str().unwrap()).collect();
    assert_eq!(names, BTreeSet::from(["agent-1", "agent-2", "agent-3"]));
    let places: BTreeSet<String> = online.iter().map(|n| n["location"].to_string()).collect();
    assert_eq!(
        places.len(),
        3,
        "each agent stands somewhere else: {places:?}"
    );

    // Discovery: the center names the edge for agent-2's place, and that edge routes.
    let a2 = online.iter().find(|n| n["node"] == "agent-2").unwrap();
    let (lat, lon) = (
        a2["location"]["lat"].as_f64().unwrap(),
        a2["location"]["lon"].as_f64().unwrap(),
    );
    let a1 = online.iter().find(|n| n["node"] == "agent-1").unwrap();
    let to = (
        a1["location"]["lon"].as_f64().unwrap(),
        a1["location"]["lat"].as_f64().unwrap(),
    );
    let found = get_json(
        &http,
        &format!("{center}/api/v1/endpoints?lat={lat}&lon={lon}"),
        None,
    )
    .await
    .unwrap();
    let edge = &found["endpoints"][0];
    assert_eq!(edge["node"], "agent-2", "{found}");
    let route = format!("/route/v1/driving/{lon},{lat};{},{}", to.0, to.1);
    let direct = get_json(
        &http,
        &format!("{}{route}", edge["url"].as_str().unwrap()),
        None,
    )
    .await
    .unwrap();
    assert_eq!(direct["code"], "Ok", "{direct}");
    assert!(direct["routes"][0]["distance"].as_f64().unwrap() > 0.0);
    // Through the center: a 307 to the same edge, followed by the client.
    let redirected = http.get(format!("{center}{route}")).send().await.unwrap();
    assert_eq!(redirected.status(), 200);
    assert_eq!(
        redirected.url().as_str(),
        format!("{}{route}", edge["url"].as_str().unwrap())
    );
    let body: Value = redirected.json().await.unwrap();
    assert_eq!(
        body["routes"][0]["distance"],
        direct["routes"][0]["distance"]
    );

    // Every metric the Grafana dashboard queries exists in a scrape of the center or of
    // an agent of this fleet.
    let center_text = http
        .get(format!("{center}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        center_text.contains(r#"edgeroute_center_nodes{region="monaco",state="online"} 3"#),
        "{center_text}"
    );
    assert!(center_text.contains(r#"edgeroute_center_graph_downloads_total{range="full"} 3"#));
    let agent_text = http
        .get(format!("{}/metrics", edge["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exposed: BTreeSet<&str> = center_text
        .lines()
        .chain(agent_text.lines())
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let dashboard = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/grafana/edgeroute-fleet.json"),
    )
    .unwrap();
    assert_rules_name_exposed_metrics(&[&center_text, &agent_text]);
    let queried = metric_names(&dashboard);
    assert!(queried.iter().any(|n| n.starts_with("edgeroute_agent_")));
    let missing: Vec<&String> = queried
        .iter()
        .filter(|n| !exposed.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries unexposed metrics: {missing:?}"
    );

    // kill -9 one agent: dev logs it and keeps the others; the center sees it go stale,
    // then offline.
    let agents = recorded_agents(&data_dir);
    assert_eq!(agents.len(), 3, "{agents:?}");
    let (victim, victim_dir) = agents
        .iter()
        .find(|(_, d)| d.ends_with("agent-1"))
        .cloned()
        .unwrap();
    assert!(alive(victim, &victim_dir));
    let status = std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for wanted in ["stale", "offline"] {
        eventually(Duration::from_secs(30), wanted, || {
            let (http, center) = (http.clone(), center.clone());
            async move {
                let nodes = nodes(&http, &center).await?;
                let state = |name: &str| {
                    nodes
                        .iter()
                        .find(|n| n["node"] == name)
                        .map(|n| n["state"].clone())
                };
                (state("agent-1")? == wanted
                    && state("agent-2")? == "online"
                    && state("agent-3")? == "online")
                    .then_some(())
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", dev.log_text()));
    }
    assert!(dev.running(), "dev keeps running without one agent");
    assert!(
        dev.log_text().contains("exited unexpectedly"),
        "{}",
        dev.log_text()
    );

    // SIGTERM: every child stops, dev exits cleanly, the port is free again.
    let status = dev.terminate(Duration::from_secs(40)).await.unwrap();
    assert!(status.success(), "{status:?}\n{}", dev.log_text());
    for (pid, dir) in &agents {
        assert!(
            !alive(*pid, dir),
            "agent {pid} ({}) survived dev",
            dir.display()
        );
    }
    assert!(!data_dir.join("dev.pids").exists());
    std::net::TcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("the center's port is still bound: {e}"));

    // A second run on the same directory and port reuses the graph and comes up again.
    let mut again = start_dev(&data_dir, port, "dev-2.log").await;
    all_online(&http, &again).await;
    assert!(
        again.log_text().contains("reusing its graph"),
        "{}",
        again.log_text()
    );
    let agents = recorded_agents(&data_dir);
    let status = again.terminate(Duration::from_secs(40)).await.unwrap();
    assert!(status.success());
    for (pid, dir) in &agents {
        assert!(!alive(*pid, dir), "agent {pid} survived the second dev");
    }
}

/// The `edgeroute_...` identifiers in the dashboard's queries (`expr`) and variable
/// queries (`definition`).
/// Every `edgeroute_*` name in the alert rules (queries and runbook lines alike) is a series
/// a real center, agent or controller exposes: a family with no sample yet counts by its
/// `# TYPE` line, a histogram by its `_bucket`, `_sum` and `_count` series.
fn assert_rules_name_exposed_metrics(scrapes: &[&str]) {
    // The controller's failure families have samples once something failed.
    let controller = edgeroute_control_plane::metrics::Metrics::default();
    controller.reconcile_failure("kube");
    controller.judge_error("unreachable");
    let controller = controller.encode().unwrap();
    let controller = edgeroute_server::exposition::open_metrics_to_text(&controller);
    let mut exposed = BTreeSet::new();
    for line in scrapes
        .iter()
        .copied()
        .chain([controller.as_str()])
        .flat_map(str::lines)
    {
        if let Some(typed) = line.strip_prefix("# TYPE ") {
            let mut words = typed.split(' ');
            let (Some(family), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            exposed.insert(family.to_owned());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    exposed.insert(format!("{family}{suffix}"));
                }
            }
        } else if !line.starts_with('#')
            && let Some(name) = line.split(['{', ' ']).next()
        {
            exposed.insert(name.to_owned());
        }
    }
    let rules = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/monitoring/edgeroute.rules.yaml"),
    )
    .unwrap();
    // `edgeroute_center_*` in the comments names a prefix, not a metric.
    let named: BTreeSet<String> = names_in(&rules)
        .into_iter()
        .filter(|n| !n.ends_with('_'))
        .collect();
    assert!(named.len() > 20, "{named:?}");
    let missing: Vec<&String> = named.iter().filter(|n| !exposed.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "the alert rules name metrics nothing exposes: {missing:?}"
    );
}

fn metric_names(dashboard: &str) -> BTreeSet<String> {
    let json: Value = serde_json::from_str(dashboard).unwrap();
    let mut queries = Vec::new();
    collect(&json, &mut queries);
    queries.iter().flat_map(|q| names_in(q)).collect()
}

/// The `edgeroute_*` metric names in a text.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("edgeroute_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

fn collect(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", Value::String(q)) => out.push(q.clone()),
                    _ => collect(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        _ => {}
    }
}

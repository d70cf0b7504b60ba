//! Graph rollouts end to end in `dev` mode, with the real binaries and short windows: a
//! good graph version rolls out step by step and reaches every agent; a bad one (the Porto
//! artifact served to a Monaco region, so every Monaco request gets `NoSegment`) is rolled
//! back automatically with a reason naming the error rate, and no client request failed on
//! a node that was not a canary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use edgeroute_tests::{
    data::shared_data,
    fleet::{self, artifact, client, get_json},
    procs::{Proc, binary, eventually},
};
use serde_json::{Value, json};

const ADMIN: &str = "k";

async fn start_dev(data_dir: &Path) -> Proc {
    let extra = [
        "--canary-steps",
        "34,100",
        "--analysis-window-s",
        "3",
        "--min-requests",
        "40",
        "--max-inconclusive-s",
        "60",
    ];
    fleet::start_dev(data_dir, fleet::free_port(), ADMIN, &extra, "dev.log").await
}

/// The Porto artifact, built by `graph build` (a few seconds).
fn porto_artifact(dir: &Path, pbf: &Path) -> std::path::PathBuf {
    let out = dir.join("porto.graph");
    let status = std::process::Command::new(binary("edgeroute-control-plane").unwrap())
        .args(["graph", "build", "--osm"])
        .arg(pbf)
        .arg("--out")
        .arg(&out)
        .args(["--version", "porto-x"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "graph build failed");
    out
}

/// Clients that keep asking every agent for a Monaco route; failures by node.
struct Clients {
    stop: Arc<AtomicBool>,
    failed: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
    ok: Arc<Mutex<BTreeMap<String, u64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Clients {
    fn start(http: &reqwest::Client, agents: &[(String, String)], route: &str) -> Clients {
        let c = Clients {
            stop: Arc::default(),
            failed: Arc::default(),
            ok: Arc::default(),
            tasks: Vec::new(),
        };
        let mut tasks = Vec::new();
        for (node, url) in agents {
            let (http, node, url) = (http.clone(), node.clone(), format!("{url}{route}"));
            let (stop, failed, ok) = (c.stop.clone(), c.failed.clone(), c.ok.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let outcome = match http.get(&url).send().await {
                        Ok(r) => {
                            let status = r.status();
                            let body: Value = r.json().await.unwrap_or_default();
                            (status == 200 && body["code"] == "Ok")
                                .then_some(())
                                .ok_or(format!("{status} {}", body["code"]))
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    match outcome {
                        Ok(()) => *ok.lock().unwrap().entry(node.clone()).or_default() += 1,
                        Err(e) => failed
                            .lock()
                            .unwrap()
                            .entry(node.clone())
                            .or_default()
                            .push(e),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }
        Clients { tasks, ..c }
    }

    async fn stop(self) -> (BTreeMap<String, Vec<String>>, BTreeMap<String, u64>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        let ok = self.ok.lock().unwrap().clone();
        (failed, ok)
    }
}

async fn admin(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
) -> reqwest::RequestBuilder {
    http.request(method, url).bearer_auth(ADMIN)
}

async fn upload(http: &reqwest::Client, center: &str, version: &str, path: &Path) {
    let r = admin(
        http,
        reqwest::Method::PUT,
        format!("{center}/api/v1/graphs/{version}"),
    )
    .await
    .body(std::fs::read(path).unwrap())
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

async fn roll_out(http: &reqwest::Client, center: &str, version: &str) {
    let r = admin(
        http,
        reqwest::Method::PUT,
        format!("{center}/api/v1/regions/monaco/graph"),
    )
    .await
    .json(&json!({ "version": version }))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// Poll the rollout until its phase is one of `phases`; the canary nodes seen on the way.
async fn until_phase(
    http: &reqwest::Client,
    dev: &Proc,
    version: &str,
    phases: &[&str],
) -> (Value, BTreeSet<String>) {
    let url = format!("{}/api/v1/regions/monaco/rollout", dev.url);
    let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let rollout = eventually(
        Duration::from_secs(60),
        &format!("the rollout of {version} ends in {phases:?}"),
        || {
            let (http, url, seen) = (http.clone(), url.clone(), seen.clone());
            async move {
                let s = get_json(&http, &url, Some(ADMIN)).await?;
                if s["toVersion"] != version {
                    return None;
                }
                for n in s["canaryNodes"].as_array()? {
                    seen.lock().unwrap().insert(n.as_str()?.to_owned());
                }
                phases.iter().any(|p| s["phase"] == *p).then_some(s)
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", dev.log_text()));
    let canaries = seen.lock().unwrap().clone();
    (rollout, canaries)
}

async fn nodes(http: &reqwest::Client, center: &str) -> Option<Vec<Value>> {
    let list = get_json(http, &format!("{center}/api/v1/nodes"), Some(ADMIN)).await?;
    list["nodes"].as_array().cloned()
}

/// Wait for the three agents online on `version` (`None`: on any graph).
async fn all_on(http: &reqwest::Client, dev: &Proc, version: Option<&str>) -> Vec<Value> {
    let center = dev.url.clone();
    eventually(
        Duration::from_secs(120),
        &format!("three agents online on {version:?}"),
        || {
            let (http, center) = (http.clone(), center.clone());
            async move {
                let nodes = nodes(&http, &center).await?;
                let on: Vec<Value> = nodes
                    .into_iter()
                    .filter(|n| {
                        n["state"] == "online"
                            && n["ready"] == true
                            && version
                                .map_or(n["graph_version"].is_string(), |v| n["graph_version"] == v)
                    })
                    .collect();
                (on.len() == 3).then_some(on)
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", dev.log_text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_graph_rolls_out_and_a_bad_one_rolls_back() {
    let Some(porto_pbf) = shared_data("osm/porto.osm.pbf") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("dev");
    // One build after the other: two at once on a busy two-core machine starve each other.
    let builds = {
        let dir = tmp.path().to_owned();
        tokio::task::spawn_blocking(move || {
            let monaco_b = artifact("monaco-b").to_owned();
            (monaco_b, porto_artifact(&dir, &porto_pbf))
        })
    };
    let http = client();
    let mut dev = start_dev(&data_dir).await;
    let online = all_on(&http, &dev, None).await;
    let agents: Vec<(String, String)> = online
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_owned(),
                n["advertise_url"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let place = |n: &Value| {
        (
            n["location"]["lon"].as_f64().unwrap(),
            n["location"]["lat"].as_f64().unwrap(),
        )
    };
    let (from, to) = (place(&online[0]), place(&online[1]));
    let route = format!("/route/v1/driving/{},{};{},{}", from.0, from.1, to.0, to.1);
    let clients = Clients::start(&http, &agents, &route);

    // A good version: step by step to every agent.
    let (monaco_b, porto) = builds.await.unwrap();
    upload(&http, &dev.url, "monaco-b", &monaco_b).await;
    roll_out(&http, &dev.url, "monaco-b").await;
    let (good, canaries) = until_phase(
        &http,
        &dev,
        "monaco-b",
        &["Promoted", "RolledBack", "Paused"],
    )
    .await;
    assert_eq!(good["phase"], "Promoted", "{good}");
    assert_eq!(good["lastVerdict"]["kind"], "Pass", "{good}");
    assert_eq!(good["step"], 1, "promoted after its second step: {good}");
    assert_eq!(
        canaries.len(),
        3,
        "the last step took every agent: {canaries:?}"
    );
    all_on(&http, &dev, Some("monaco-b")).await;

    // A bad one: rolled back on its first window, with the reason.
    upload(&http, &dev.url, "porto-x", &porto).await;
    roll_out(&http, &dev.url, "porto-x").await;
    let (bad, canaries) = until_phase(
        &http,
        &dev,
        "porto-x",
        &["Promoted", "RolledBack", "Paused"],
    )
    .await;
    assert_eq!(bad["phase"], "RolledBack", "{bad}");
    assert_eq!(bad["step"], 0, "{bad}");
    let reason = bad["reason"].as_str().unwrap();
    assert!(
        reason.contains("error rate canary") && reason.contains("rolled back to monaco-b"),
        "{reason}"
    );
    all_on(&http, &dev, Some("monaco-b")).await;

    // The CLI shows it, and refuses to act on a rollout that is over.
    let cli = |verb: &str| {
        std::process::Command::new(binary("edgeroute-control-plane").unwrap())
            .args(["rollout", verb, "--region", "monaco", "--center", &dev.url])
            .args(["--admin-key", ADMIN])
            .output()
            .unwrap()
    };
    let status = cli("status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(text.contains("phase   RolledBack"), "{text}");
    assert!(text.contains("last verdict Fail"), "{text}");
    let promote = cli("promote");
    assert!(!promote.status.success());
    let err = String::from_utf8_lossy(&promote.stderr);
    assert!(err.contains("409") && err.contains("over"), "{err}");

    let (failed, ok) = clients.stop().await;
    for (node, _) in &agents {
        assert!(ok.get(node).copied().unwrap_or(0) > 50, "{node}: {ok:?}");
        if !canaries.contains(node) {
            assert!(
                !failed.contains_key(node),
                "{node} was never a canary of the bad graph, yet: {:?}",
                failed.get(node)
            );
        }
    }
    assert!(
        canaries.iter().any(|c| failed.contains_key(c)),
        "the bad canary's clients saw its errors: {failed:?}"
    );
    dev.terminate(Duration::from_secs(10)).await.unwrap();
}

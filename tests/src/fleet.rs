//! A fleet for end-to-end tests: the real `edgeroute-control-plane serve` and
//! `edgeroute-agent` binaries on loopback, a [`FaultProxy`] between the agents and the
//! center, clients that keep calling an agent ([`Workload`]), and the exactly-once check
//! ([`Fleet::assert_exactly_once`]).
//!
//! Everything here panics on failure: it is test support, and a panic fails the test that
//! called it with the message saying what went wrong.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::{
    fault_proxy::FaultProxy,
    procs::{Proc, binary, eventually},
};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde_json::{Value, json};

pub const ADMIN: &str = "admin-key";
pub const TOKEN: &str = "agent-token";

pub fn monaco_pbf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/monaco.osm.pbf")
}

/// A loopback port free now (the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `edgeroute-control-plane dev` with three agents on the bundled map reporting every
/// 300 ms, its center on `port`, its data in `data_dir`, admin key `admin`, plus `extra`
/// flags; its log is `log` beside `data_dir`.
pub async fn start_dev(data_dir: &Path, port: u16, admin: &str, extra: &[&str], log: &str) -> Proc {
    let mut args: Vec<String> = [
        "dev",
        "--agents",
        "3",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--admin-key",
        admin,
        "--map",
        monaco_pbf().to_str().unwrap(),
        "--sync-interval-ms",
        "300",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    Proc::start(
        binary("edgeroute-control-plane").unwrap(),
        args,
        vec![],
        data_dir.parent().unwrap().join(log),
    )
    .await
    .unwrap()
}

/// A Monaco artifact labelled `version`, built once per test binary by the control plane's
/// own `graph build`.
pub fn artifact(version: &str) -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let path = dir.path().join(format!("{version}.graph"));
    let _guard = LOCK.lock().unwrap();
    if !path.exists() {
        let status = std::process::Command::new(binary("edgeroute-control-plane").unwrap())
            .args(["graph", "build", "--osm"])
            .arg(monaco_pbf())
            .arg("--out")
            .arg(&path)
            .args(["--version", version])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "graph build failed");
    }
    Box::leak(path.into_boxed_path())
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Start `edgeroute-control-plane serve` in `dir/center` on a free port, with the test
/// admin key, plus `extra` flags (the agent token unless `extra` brings other credentials).
pub async fn start_center(dir: &Path, extra: &[&str]) -> Proc {
    let mut args: Vec<String> = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.join("center").to_str().unwrap(),
        "--admin-key",
        ADMIN,
    ]
    .map(String::from)
    .to_vec();
    if !extra.contains(&"--client-ca") {
        args.extend(["--agent-token".into(), TOKEN.into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    Proc::start(
        binary("edgeroute-control-plane").unwrap(),
        args,
        vec![],
        dir.join("center.log"),
    )
    .await
    .unwrap()
}

/// Start `edgeroute-agent` named `name` in `dir/name` on a free port, serving the Monaco
/// artifact openly in region `monaco`, plus `extra` flags; with `ready`, wait for `/readyz`.
pub async fn start_agent(dir: &Path, name: &str, extra: &[&str], ready: bool) -> Proc {
    let mut args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.join(name).to_str().unwrap(),
        "--graph",
        artifact("monaco-a").to_str().unwrap(),
        "--no-auth",
        "--node-name",
        name,
        "--region",
        "monaco",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    let agent = Proc::start(
        binary("edgeroute-agent").unwrap(),
        args,
        vec![],
        dir.join(format!("{name}.log")),
    )
    .await
    .unwrap();
    if ready {
        wait_ready(&agent).await;
    }
    agent
}

/// Wait up to 60 s for `agent`'s `/readyz` to answer 200; panic with its log if it does not.
pub async fn wait_ready(agent: &Proc) {
    let (client, url) = (client(), agent.url.clone());
    eventually(Duration::from_secs(60), "agent ready", || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client.get(format!("{url}/readyz")).send().await.ok()?;
            (r.status() == 200).then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text()));
}

/// GET `url` (with `bearer`, if given) as JSON; `None` on any failure, for polling.
pub async fn get_json(client: &reqwest::Client, url: &str, bearer: Option<&str>) -> Option<Value> {
    let mut request = client.get(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request.send().await.ok()?.json().await.ok()
}

/// A center, a fault proxy in front of it, and agents that report through the proxy.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub center: Proc,
    pub proxy: FaultProxy,
    pub agents: Vec<Proc>,
    pub client: reqwest::Client,
}

impl Fleet {
    pub async fn start(agents: &[&str], agent_args: &[&str]) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let center = start_center(dir.path(), &[]).await;
        let upstream = center.url.trim_start_matches("http://").parse().unwrap();
        let proxy = FaultProxy::start(upstream).await.unwrap();
        let mut fleet = Fleet {
            dir,
            center,
            proxy,
            agents: Vec::new(),
            client: client(),
        };
        for name in agents {
            fleet.add_agent(name, agent_args).await;
        }
        fleet
    }

    pub async fn add_agent(&mut self, name: &str, extra: &[&str]) {
        let proxy_url = self.proxy.url();
        let mut args = vec![
            "--control-plane",
            &proxy_url,
            "--sync-token",
            TOKEN,
            "--sync-interval-ms",
            "200",
            "--sync-max-backoff-ms",
            "800",
        ];
        args.extend_from_slice(extra);
        let agent = start_agent(self.dir.path(), name, &args, true).await;
        self.agents.push(agent);
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.center.url))
            .bearer_auth(ADMIN)
    }

    /// Every plan the center holds for `node`, paging through `GET /api/v1/plans`.
    pub async fn center_plans(&self, node: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut since = 0;
        loop {
            let r = self
                .admin(
                    reqwest::Method::GET,
                    &format!("/api/v1/plans?node={node}&since={since}&limit=1000"),
                )
                .await
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let page: Value = r.json().await.unwrap();
            let plans = page["plans"].as_array().unwrap().clone();
            let Some(last) = plans.last() else {
                return out;
            };
            since = last["seq"].as_u64().unwrap();
            out.extend(plans);
        }
    }

    /// Wait until the agent's outbox is empty and the center's watermark covers it.
    pub async fn drained(&self, agent: usize) {
        let url = self.agents[agent].url.clone();
        let client = self.client.clone();
        eventually(Duration::from_secs(60), "outbox drained", || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let status = get_json(&client, &format!("{url}/v1/status"), None).await?;
                (status["sync"]["outbox_depth"] == 0 && status["sync"]["last_ack_at"].is_string())
                    .then_some(())
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.agents[agent].log_text()));
    }

    /// How many new streams agent `agent` began for `reason` (a label of
    /// `edgeroute_agent_sync_stream_rotations_total`, which the agent exports from the
    /// start for every reason).
    pub async fn rotations(&self, agent: usize, reason: &str) -> u64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.agents[agent].url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let series = format!("edgeroute_agent_sync_stream_rotations_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// The center holds exactly the plans in `answered`, once each, numbered 1..=n.
    pub async fn assert_exactly_once(&self, node: &str, answered: &BTreeSet<String>) {
        let plans = self.center_plans(node).await;
        let ids: Vec<String> = plans
            .iter()
            .map(|p| p["plan_id"].as_str().unwrap().to_owned())
            .collect();
        let unique: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(ids.len(), unique.len(), "duplicates at the center: {ids:?}");
        assert_eq!(&unique, answered, "center and answered plans differ");
        let seqs: Vec<u64> = plans.iter().map(|p| p["seq"].as_u64().unwrap()).collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "gaps in the sequence");
    }
}

/// Clients calling one agent until stopped: `/optimize` (each 200 records its plan id)
/// and `/route`. Any non-200 answer is a failure.
pub struct Workload {
    stop: Arc<AtomicBool>,
    answered: Arc<Mutex<BTreeSet<String>>>,
    failures: Arc<Mutex<Vec<String>>>,
    requests: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub fn optimize_body(seed: u64) -> Value {
    let mut rng = SmallRng::seed_from_u64(seed);
    let jobs: Vec<Value> = (1..=4)
        .map(|id| {
            json!({"id": id, "location": [7.415 + rng.random::<f64>() * 0.012, 43.731 + rng.random::<f64>() * 0.008], "delivery": [1]})
        })
        .collect();
    json!({
        "vehicles": [{"id": 1, "start": [7.4197, 43.7314], "end": [7.4197, 43.7314], "capacity": [10]}],
        "jobs": jobs
    })
}

impl Workload {
    pub fn start(client: &reqwest::Client, url: &str) -> Workload {
        let w = Workload {
            stop: Arc::new(AtomicBool::new(false)),
            answered: Arc::default(),
            failures: Arc::default(),
            requests: Arc::default(),
            tasks: Vec::new(),
        };
        let mut tasks = Vec::new();
        for kind in ["optimize", "route"] {
            let (client, url) = (client.clone(), url.to_owned());
            let (stop, answered, failures, requests) = (
                w.stop.clone(),
                w.answered.clone(),
                w.failures.clone(),
                w.requests.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    requests.fetch_add(1, Ordering::Relaxed);
                    let result = if kind == "optimize" {
                        client
                            .post(format!("{url}/optimize?time_limit_ms=20"))
                            .json(&optimize_body(i))
                            .send()
                            .await
                    } else {
                        client
                            .get(format!(
                                "{url}/route/v1/driving/7.4197,43.7314;7.4246,43.7384"
                            ))
                            .send()
                            .await
                    };
                    match result {
                        Ok(r) if r.status() == 200 => {
                            if kind == "optimize" {
                                let body: Value = r.json().await.unwrap_or_default();
                                match body["plan_id"].as_str() {
                                    Some(id) => {
                                        answered.lock().unwrap().insert(id.to_owned());
                                    }
                                    None => {
                                        failures.lock().unwrap().push(format!("no plan_id: {body}"))
                                    }
                                }
                            }
                        }
                        Ok(r) => {
                            let status = r.status();
                            let text = r.text().await.unwrap_or_default();
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{kind}: {status} {text}"));
                        }
                        Err(e) => failures.lock().unwrap().push(format!("{kind}: {e}")),
                    }
                    if kind == "route" {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }));
        }
        Workload { tasks, ..w }
    }

    /// Stop; return the plan ids answered with 200, failing on any failed request.
    pub async fn finish(self) -> BTreeSet<String> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        assert!(failures.is_empty(), "failed requests: {failures:?}");
        let answered = self.answered.lock().unwrap().clone();
        assert!(
            self.requests.load(Ordering::Relaxed) > answered.len() as u64,
            "route requests ran too"
        );
        answered
    }
}

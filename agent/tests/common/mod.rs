//! Helpers shared by the agent's integration tests: the Monaco artifact (built once per test
//! binary), an agent served in process on a port-0 listener (most tests), the real
//! `edgeroute-agent` binary on a free port (the end-to-end tests), and an HTTP client.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use clap::Parser;
use edgeroute_agent::{config::Config, server::Agent as AgentServer};
use edgeroute_engine::{BuildOptions, CarProfile, Graph};
use tokio::{sync::oneshot, task::JoinHandle};

/// Points in Monaco with roads nearby.
pub const A: &str = "7.4197,43.7314";
pub const B: &str = "7.4246,43.7384";
pub const C: &str = "7.4200,43.7350";

pub fn monaco_pbf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/monaco.osm.pbf")
}

struct Artifacts {
    _dir: tempfile::TempDir,
    a: PathBuf,
    b_bytes: Vec<u8>,
}

fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let build = |version: &str| {
            let options = BuildOptions {
                version: version.to_owned(),
                ..BuildOptions::default()
            };
            Graph::from_osm_file(&monaco_pbf(), &CarProfile::default(), &options).unwrap()
        };
        let a = dir.path().join("monaco-a.graph");
        build("monaco-a").write_artifact(&a).unwrap();
        let b_bytes = build("monaco-b").to_artifact();
        Artifacts {
            _dir: dir,
            a,
            b_bytes,
        }
    })
}

/// An artifact file of Monaco, version `monaco-a`.
pub fn artifact_a() -> &'static Path {
    &artifacts().a
}

/// The bytes of a second Monaco artifact, version `monaco-b`.
pub fn artifact_b() -> &'static [u8] {
    &artifacts().b_bytes
}

/// A running agent, killed on drop.
pub struct Agent {
    child: Child,
    /// `http://127.0.0.1:PORT` or `https://...`.
    pub url: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    log: PathBuf,
}

/// Start the agent with `args` (plus `--listen 127.0.0.1:0 --data-dir <data_dir>`) and wait
/// for its `listening on ...` line.
pub fn start(data_dir: &Path, args: &[&str]) -> Agent {
    let log = data_dir.with_extension(format!("{}.log", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgeroute-agent"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let Some(url) = line.trim().strip_prefix("listening on ") else {
        let _ = child.wait();
        panic!(
            "agent did not start: {line:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    Agent {
        url: url.to_owned(),
        child,
        data_dir: data_dir.to_owned(),
        log,
    }
}

/// Wait until `{url}/readyz` is 200; `log` explains a failure.
async fn wait_ready(client: &reqwest::Client, url: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{url}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "agent never became ready:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Agent {
    /// Wait until `/readyz` is 200.
    pub async fn ready(&self, client: &reqwest::Client) {
        wait_ready(client, &self.url, || self.log()).await;
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "agent did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client (rustls with ring, as the agent).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// GET and parse JSON, returning status and body.
pub async fn get_json(client: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let ct = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    assert!(
        ct.starts_with("application/json"),
        "{url}: {status} {ct}: {text}"
    );
    (status, serde_json::from_str(&text).unwrap())
}

/// The Prometheus text of `{base}/metrics`.
pub async fn metrics_text(client: &reqwest::Client, base: &str) -> String {
    let response = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200, "{base}/metrics");
    response.text().await.unwrap()
}

/// An agent served in process, as the binary serves it, on a port-0 listener; told to stop
/// on drop, or stopped and awaited with [`InProcess::stop`].
pub struct InProcess {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Serve an agent in process with `args` (plus `--data-dir <data_dir>`), parsed as the
/// binary parses its command line.
pub async fn start_in_process(data_dir: &Path, args: &[&str]) -> InProcess {
    let mut argv = vec!["edgeroute-agent", "--data-dir", data_dir.to_str().unwrap()];
    argv.extend_from_slice(args);
    let config = Config::try_parse_from(argv).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // After a stop in this process, sled's background threads may hold the database lock
    // for a moment longer: retry that (and only that) briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    let agent = loop {
        match AgentServer::open(config.clone()).await {
            Ok(agent) => break agent,
            Err(err)
                if format!("{err:#}").contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("{err:#}"),
        }
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(agent.serve(listener, async move {
        let _ = stopped.await;
    }));
    InProcess {
        url,
        data_dir: data_dir.to_owned(),
        stop: Some(stop),
        task: Some(task),
    }
}

impl InProcess {
    /// Wait until `/readyz` is 200.
    pub async fn ready(&self, client: &reqwest::Client) {
        wait_ready(client, &self.url, String::new).await;
    }

    /// Stop as SIGTERM stops the binary: drain, flush the database, return the outcome.
    /// The database is closed when this returns, so it can be opened again.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap(),
            None => Ok(()),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// An agent serving the Monaco artifact from a fresh data directory, ready for requests.
/// Field order matters: the agent is stopped before its directory is removed.
pub struct Served {
    /// The agent, in process.
    pub agent: InProcess,
    /// A client for it.
    pub client: reqwest::Client,
    /// Keeps the data directory alive as long as the agent.
    pub dir: tempfile::TempDir,
}

/// Start an agent on the Monaco artifact with `extra` flags and wait until it is ready.
pub async fn serve_monaco(extra: &[&str]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--graph", artifact_a().to_str().unwrap()];
    args.extend_from_slice(extra);
    let agent = start_in_process(&dir.path().join("db"), &args).await;
    let client = client();
    agent.ready(&client).await;
    Served { agent, client, dir }
}

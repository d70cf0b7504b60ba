//! Helpers shared by the agent's integration tests: the Monaco artifact (built once per test
//! binary), starting the real `edgeroute-agent` binary on a free port, and an HTTP client.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use edgeroute_engine::{BuildOptions, CarProfile, Graph};

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

impl Agent {
    /// Wait until `/readyz` is 200.
    pub async fn ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", self.url)).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "agent never became ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

/// An agent serving the Monaco artifact from a fresh data directory, ready for requests.
/// Field order matters: the agent is stopped before its directory is removed.
pub struct Served {
    /// The running agent.
    pub agent: Agent,
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
    let agent = start(&dir.path().join("db"), &args);
    let client = client();
    agent.ready(&client).await;
    Served { agent, client, dir }
}

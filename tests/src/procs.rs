//! The real binaries as child processes on loopback ports chosen at run time: start, wait
//! for readiness, `kill -9`, restart on the same data directory.
//!
//! The binaries are looked up beside the running test executable (`target/<profile>/`),
//! where `cargo test --workspace` builds them before any test runs.

#![allow(clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// The path of a workspace binary built beside the test executable.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no target directory")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is not built: run the tests with `cargo test --workspace` (or `cargo build --bins` first)",
            path.display()
        );
    }
    Ok(path)
}

/// A running binary, killed on drop.
#[derive(Debug)]
pub struct Proc {
    child: Option<Child>,
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// `http://127.0.0.1:PORT` (the `listening on` line of the process).
    pub url: String,
    /// Where its stderr goes (appended across restarts).
    pub log: PathBuf,
}

impl Proc {
    /// Start `program args...`, its stderr appended to `log`, and wait for the
    /// `listening on <url>` line it prints on stdout once bound.
    pub async fn start(
        program: PathBuf,
        args: Vec<String>,
        envs: Vec<(String, String)>,
        log: PathBuf,
    ) -> anyhow::Result<Proc> {
        let mut proc = Proc {
            child: None,
            program,
            args,
            envs,
            url: String::new(),
            log,
        };
        proc.spawn().await?;
        Ok(proc)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.program.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .context("no `listening on` line within 120 s")??
            .unwrap_or_default();
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            let _ = child.wait().await;
            bail!(
                "{} did not start: {line:?}\n{}",
                self.program.display(),
                self.log_text()
            );
        };
        self.url = url.to_owned();
        // A restart binds the same address, so peers and proxies keep their target.
        if let Some(i) = self.args.iter().position(|a| a == "--listen")
            && let Some(addr) = url.split("://").nth(1)
            && let Some(slot) = self.args.get_mut(i + 1)
        {
            *slot = addr.trim_end_matches('/').to_owned();
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
        Ok(())
    }

    /// Its stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`: no shutdown code runs.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// SIGTERM, and wait up to `within` for the exit status.
    pub async fn terminate(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("not running");
        };
        let pid = child.id().context("already reaped")?;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        Ok(tokio::time::timeout(within, child.wait())
            .await
            .context("did not exit after SIGTERM")??)
    }

    /// Start again with the same arguments, data directory and address.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9().await;
        self.spawn().await
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref()?.id()
    }

    /// Whether the process is running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

/// Poll `f` every 50 ms until it returns `Some`, or fail after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

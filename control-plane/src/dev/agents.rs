//! The agents of a dev fleet as child processes: started on free loopback ports, watched
//! (an agent that dies is logged, the rest keep running), stopped with SIGTERM then SIGKILL,
//! and recorded in `<data-dir>/dev.pids` so a run that was `kill -9`ed leaves nothing a
//! later run does not clean up.
//!
//! Children die with `dev` where the platform allows it without `unsafe` (the workspace
//! forbids it, and `pre_exec` is unsafe): on Linux each agent is started through util-linux
//! `setpriv --pdeathsig TERM`, which sets the parent-death signal and then execs the agent.
//! Each child also gets its own process group, so a Ctrl-C at the terminal reaches `dev`
//! alone, which then stops the agents one SIGTERM each, in order.

use std::{
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::watch,
    task::JoinHandle,
};

/// How long an agent gets to print `listening on` after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts at a free port before giving up (another process may take a probed port).
const PORT_ATTEMPTS: usize = 5;

/// How to start one agent.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// `agent-<i>`.
    pub name: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Everything but `--listen` and `--advertise-url`, which follow the port.
    pub args: Vec<String>,
    /// Where its stderr goes.
    pub log: PathBuf,
}

/// A running agent.
#[derive(Debug)]
pub struct RunningAgent {
    /// `agent-<i>`.
    pub name: String,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Process id.
    pub pid: u32,
    /// Its log file.
    pub log: PathBuf,
    supervisor: JoinHandle<()>,
}

/// The agent binary: `explicit`, or `edgeroute-agent` beside the running executable.
pub fn agent_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!("--agent-bin {} is not a file", path.display());
        }
        return Ok(path.to_owned());
    }
    let exe = std::env::current_exe().context("cannot locate the running executable")?;
    let path = exe
        .parent()
        .context("the running executable has no directory")?
        .join(format!("edgeroute-agent{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        bail!(
            "{} is not built: run `cargo build --release -p edgeroute-agent -p \
             edgeroute-control-plane` (or pass --agent-bin)",
            path.display()
        );
    }
    Ok(path)
}

/// `setpriv` when it can give children a parent-death signal (Linux with util-linux).
pub fn pdeathsig_wrapper() -> Option<PathBuf> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    ["/usr/bin/setpriv", "/bin/setpriv"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// A loopback port free at the time of asking.
fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot probe for a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Start an agent on a free port and wait for its `listening on` line. A port taken
/// between the probe and the agent's bind makes the agent exit; another port is tried.
pub async fn start(
    program: &Path,
    wrapper: Option<&Path>,
    spec: &AgentSpec,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<RunningAgent> {
    let mut last_error = None;
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port()?;
        match start_on(program, wrapper, spec, port, stop.clone()).await {
            Ok(agent) => return Ok(agent),
            Err(e) => {
                tracing::warn!(agent = %spec.name, port, error = %e, "agent did not start; trying another port");
                last_error = Some(e);
            }
        }
    }
    let log = std::fs::read_to_string(&spec.log).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(20).collect();
    Err(last_error
        .unwrap_or_else(|| anyhow::anyhow!("no attempt made"))
        .context(format!(
            "{} did not start after {PORT_ATTEMPTS} attempts; the end of {}:\n{}",
            spec.name,
            spec.log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )))
}

async fn start_on(
    program: &Path,
    wrapper: Option<&Path>,
    spec: &AgentSpec,
    port: u16,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<RunningAgent> {
    let url = format!("http://127.0.0.1:{port}");
    let mut command = match wrapper {
        Some(setpriv) => {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "TERM", "--"]).arg(program);
            c
        }
        None => Command::new(program),
    };
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .with_context(|| format!("cannot open {}", spec.log.display()))?;
    command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--advertise-url", &url])
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        // If this task is dropped before the supervisor owns the child, it must not linger.
        .kill_on_drop(true);
    // dev configures agents by flags alone: an `EDGEROUTE_*` variable meant for dev (its
    // admin key) or for a hand-started agent must not change them behind its back.
    for (key, _) in std::env::vars_os() {
        if key
            .to_str()
            .is_some_and(|k| k.starts_with("EDGEROUTE_") && k != "EDGEROUTE_LOG_FORMAT")
        {
            command.env_remove(key);
        }
    }
    #[cfg(unix)]
    command.process_group(0);
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    let pid = child.id().context("the agent exited at once")?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(START_TIMEOUT, lines.next_line()).await;
    let line = match first {
        Ok(Ok(Some(line))) => line,
        Ok(Ok(None)) | Ok(Err(_)) => {
            let status = child.wait().await.ok();
            bail!("the agent exited before listening ({status:?})");
        }
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            bail!("the agent did not listen within {START_TIMEOUT:?}");
        }
    };
    if !line.trim().starts_with("listening on ") {
        let _ = child.start_kill();
        let _ = child.wait().await;
        bail!("unexpected first line from the agent: {line:?}");
    }
    // Drain stdout so the agent never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let supervisor = tokio::spawn(supervise(spec.name.clone(), child, pid, stop));
    Ok(RunningAgent {
        name: spec.name.clone(),
        url,
        pid,
        log: spec.log.clone(),
        supervisor,
    })
}

/// How long agents get between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Own one child until it dies (logged: the other agents keep running) or `stop` is set
/// (SIGTERM, then SIGKILL after [`STOP_GRACE`]).
async fn supervise(name: String, mut child: Child, pid: u32, mut stop: watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across the termination's awaits.
    let stopped = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    tokio::select! {
        status = child.wait() => {
            match status {
                Ok(status) => tracing::error!(agent = %name, pid, %status, "agent exited unexpectedly; the other agents keep running"),
                Err(e) => tracing::error!(agent = %name, pid, error = %e, "lost track of the agent"),
            }
        }
        () = stopped => {
            terminate(&name, &mut child, pid).await;
        }
    }
}

async fn terminate(name: &str, child: &mut Child, pid: u32) {
    if let Err(e) = send_signal(pid, "TERM") {
        tracing::warn!(agent = %name, pid, error = %e, "cannot send SIGTERM");
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(status) => tracing::info!(agent = %name, pid, status = ?status.ok(), "agent stopped"),
        Err(_) => {
            tracing::warn!(agent = %name, pid, "agent ignored SIGTERM for {STOP_GRACE:?}; killing it");
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// `kill -<signal> <pid>` through the system's `kill`: std has no safe way to send a
/// signal other than SIGKILL, and `unsafe` is forbidden in this workspace.
fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status: ExitStatus = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run `kill`")?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed (already gone?)");
    }
    Ok(())
}

impl RunningAgent {
    /// Wait until its supervisor is done (after `stop`, or once the agent died).
    pub async fn wait(self) {
        let _ = self.supervisor.await;
    }
}

/// `<data-dir>/dev.pids`: `dev <pid>` for the running `dev`, then `agent <pid> <dir>` per
/// agent, where `<dir>` is its data directory (how a later run recognises a leftover
/// agent, since a recorded pid may have been reused by an unrelated process).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PidFile {
    /// The `dev` process.
    pub dev: Option<u32>,
    /// Agents and their data directories.
    pub agents: Vec<(u32, PathBuf)>,
}

impl PidFile {
    /// Parse the file's text; lines that do not parse are ignored (it is only a hint).
    pub fn parse(text: &str) -> PidFile {
        let mut file = PidFile::default();
        for line in text.lines() {
            let mut parts = line.splitn(3, ' ');
            match (
                parts.next(),
                parts.next().map(str::parse::<u32>),
                parts.next(),
            ) {
                (Some("dev"), Some(Ok(pid)), _) => file.dev = Some(pid),
                (Some("agent"), Some(Ok(pid)), Some(dir)) if !dir.is_empty() => {
                    file.agents.push((pid, PathBuf::from(dir)));
                }
                _ => {}
            }
        }
        file
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(pid) = self.dev {
            out.push_str(&format!("dev {pid}\n"));
        }
        for (pid, dir) in &self.agents {
            out.push_str(&format!("agent {pid} {}\n", dir.display()));
        }
        out
    }

    /// Write it to `path` (atomically: a reader sees the old or the new list).
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let part = path.with_extension("pids.part");
        std::fs::write(&part, self.render())
            .with_context(|| format!("cannot write {}", part.display()))?;
        std::fs::rename(&part, path).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// The command line of a live process, if this platform shows it (`/proc`).
fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

/// Before starting: refuse if another `dev` runs on this data directory, and stop agents
/// an earlier run left behind (it was `kill -9`ed where no parent-death signal exists).
/// A recorded pid counts only if that process's command line still names what was
/// recorded, so an unrelated process that reused the pid is left alone.
pub async fn clean_stale(pids_path: &Path) -> anyhow::Result<()> {
    let Ok(text) = std::fs::read_to_string(pids_path) else {
        return Ok(());
    };
    let file = PidFile::parse(&text);
    if let Some(pid) = file.dev
        && pid != std::process::id()
        && cmdline(pid).is_some_and(|c| c.contains("edgeroute-control-plane") && c.contains(" dev"))
    {
        bail!(
            "another `edgeroute-control-plane dev` (pid {pid}) is running on this data \
             directory; stop it first, or give this one another --data-dir"
        );
    }
    for (pid, dir) in &file.agents {
        let dir = dir.display().to_string();
        if !cmdline(*pid).is_some_and(|c| c.contains("edgeroute-agent") && c.contains(&dir)) {
            continue;
        }
        tracing::warn!(pid, data_dir = %dir, "stopping an agent an earlier dev run left behind");
        let _ = send_signal(*pid, "TERM");
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        while cmdline(*pid).is_some() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if cmdline(*pid).is_some() {
            let _ = send_signal(*pid, "KILL");
        }
    }
    let _ = std::fs::remove_file(pids_path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_file_round_trips_and_ignores_junk() {
        let file = PidFile {
            dev: Some(10),
            agents: vec![
                (11, PathBuf::from("/tmp/x y/agent-1")),
                (12, PathBuf::from(".dev/agent-2")),
            ],
        };
        assert_eq!(PidFile::parse(&file.render()), file);
        let junk = "dev x\nagent 5\nagent 6 \nhello\nagent 7 /d/agent-1\n";
        assert_eq!(
            PidFile::parse(junk),
            PidFile {
                dev: None,
                agents: vec![(7, PathBuf::from("/d/agent-1"))]
            }
        );
    }

    #[tokio::test]
    async fn a_dead_or_unrelated_pid_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev.pids");
        // Our own pid is alive but is not an agent with that directory.
        PidFile {
            dev: None,
            agents: vec![(std::process::id(), dir.path().join("agent-1"))],
        }
        .write(&path)
        .unwrap();
        clean_stale(&path).await.unwrap();
        assert!(!path.exists(), "the stale list is consumed");
    }
}

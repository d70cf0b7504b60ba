//! `edgeroute-control-plane dev`: a whole fleet on this machine, no cluster. It builds the
//! map's graph (once per map), runs the center in this process with the graph registered as
//! the region's, and starts N agents as child processes that fetch the graph from the center
//! through sync, each on its own free port and place on the map. Ctrl-C or SIGTERM stops
//! everything.
//!
//! # Layout
//! - this module: the arguments, their checks and the run.
//! - [`graph`]: the artifact (built or reused), its registration, the agents' places.
//! - [`agents`]: the child processes, their supervision, and `dev.pids`.

pub mod agents;
pub mod graph;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use edgeroute_protocol::{
    crd::RolloutSpec,
    sync::{Location, NodeState},
};
use tokio::sync::watch;

use self::agents::{AgentSpec, PidFile, RunningAgent};
use crate::{
    fleet::state_of,
    graphs::registry::now_ms,
    serve::{Center, Settings, app, auth::CenterAuth},
};

/// The most agents one `dev` starts.
pub const MAX_AGENTS: usize = 64;

/// Command-line arguments of `dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Agents to start (1 to 64).
    #[arg(long, default_value_t = 3)]
    pub agents: usize,
    /// Address of the center (the dashboard, the fleet API and the sync API agents use);
    /// port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The OSM PBF map the agents serve.
    #[arg(long, default_value = "data/monaco.osm.pbf")]
    pub map: PathBuf,
    /// Where the center, the agents and the graph keep their state between runs.
    #[arg(long, default_value = ".dev")]
    pub data_dir: PathBuf,
    /// The center's admin key (default: a random one, printed at start).
    #[arg(long, env = "EDGEROUTE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// The region the agents serve (it names the graph version too).
    #[arg(long, default_value = "monaco")]
    pub region: String,
    /// The agent binary (default: `edgeroute-agent` beside this executable).
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
    /// A node is stale after this many seconds without a report.
    #[arg(long, default_value_t = 15)]
    pub stale_after_s: u64,
    /// A node is offline after this many seconds without a report.
    #[arg(long, default_value_t = 60)]
    pub offline_after_s: u64,
    /// Time between an agent's reports (shorter than in production, so the dashboard moves).
    #[arg(long, default_value_t = 2_000)]
    pub sync_interval_ms: u64,
    /// Graph rollouts: the share of nodes, in percent, on the new graph at each step
    /// (ascending, the last normally 100).
    #[arg(long, value_delimiter = ',', default_value = "34,100")]
    pub canary_steps: Vec<u8>,
    /// Graph rollouts: seconds each step is observed before it is judged.
    #[arg(long, default_value_t = 15)]
    pub analysis_window_s: u32,
    /// Graph rollouts: requests each arm must serve before a step can be judged.
    #[arg(long, default_value_t = 20)]
    pub min_requests: u32,
    /// Graph rollouts: seconds a step may stay inconclusive before the rollout pauses.
    #[arg(long, default_value_t = 60)]
    pub max_inconclusive_s: u32,
    /// The profiles the agents serve, comma-separated: `car` (always, the default graph)
    /// and `truck` (a 7.5 t delivery truck), each built once from the map and sent to the
    /// agents through sync.
    #[arg(long, value_delimiter = ',', default_value = "car")]
    pub profiles: Vec<String>,
}

impl DevArgs {
    /// The profiles to build beside the car, without repeats.
    pub fn extra_profiles(&self) -> Vec<String> {
        let mut extra: Vec<String> = self
            .profiles
            .iter()
            .map(|p| p.trim().to_owned())
            .filter(|p| !crate::graphs::profiles::DEFAULT_ALIASES.contains(&p.as_str()))
            .collect();
        extra.sort();
        extra.dedup();
        extra
    }
}

/// The rollout policy of `dev`'s region, from its flags (the rest as in an EdgeRegion's
/// defaults).
pub fn rollout_policy(args: &DevArgs) -> RolloutSpec {
    RolloutSpec {
        steps: args.canary_steps.clone(),
        analysis_window_seconds: args.analysis_window_s,
        min_requests: args.min_requests,
        max_inconclusive_seconds: args.max_inconclusive_s,
        ..RolloutSpec::default()
    }
}

/// Check what clap cannot.
pub fn validate(args: &DevArgs) -> anyhow::Result<()> {
    if !(1..=MAX_AGENTS).contains(&args.agents) {
        bail!("--agents must be 1 to {MAX_AGENTS}; got {}", args.agents);
    }
    let region_ok = (1..=64).contains(&args.region.len())
        && !args.region.starts_with('.')
        && args
            .region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !region_ok {
        bail!(
            "--region must be 1 to 64 characters from A-Z a-z 0-9 . _ - (it names the graph \
             version); got {:?}",
            args.region
        );
    }
    if args.stale_after_s == 0 || args.offline_after_s <= args.stale_after_s {
        bail!(
            "need 0 < --stale-after-s < --offline-after-s; got {} and {}",
            args.stale_after_s,
            args.offline_after_s
        );
    }
    if args.sync_interval_ms < 100 {
        bail!(
            "--sync-interval-ms must be at least 100; got {}",
            args.sync_interval_ms
        );
    }
    let steps = &args.canary_steps;
    if steps.is_empty()
        || steps.len() > 20
        || steps.iter().any(|p| !(1..=100).contains(p))
        || !steps.is_sorted()
    {
        bail!("--canary-steps must be 1 to 20 ascending percentages from 1 to 100; got {steps:?}");
    }
    if args.analysis_window_s == 0 || args.max_inconclusive_s == 0 {
        bail!("--analysis-window-s and --max-inconclusive-s must be at least 1");
    }
    if let Some(unknown) = args
        .extra_profiles()
        .into_iter()
        .find(|p| graph::profile(p).is_none())
    {
        bail!(
            "--profiles: dev builds {:?}; got {unknown:?}",
            graph::BUILDABLE
        );
    }
    if args.admin_key.as_deref().is_some_and(str::is_empty) {
        bail!("--admin-key must not be empty");
    }
    if !args.map.is_file() {
        bail!(
            "the map {} does not exist (run from the repository's root, or pass --map)",
            args.map.display()
        );
    }
    Ok(())
}

/// A random credential: 24 bytes, hex.
fn secret() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

/// The URL agents and people reach the center at: the bound address, with an unspecified
/// IP (`0.0.0.0`, `::`) replaced by loopback.
pub fn center_url(bound: SocketAddr) -> String {
    let ip = if bound.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        bound.ip()
    };
    format!("http://{}", SocketAddr::new(ip, bound.port()))
}

/// Run the fleet until SIGTERM or Ctrl-C.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    validate(&args)?;
    let agent_bin = agents::agent_binary(args.agent_bin.as_deref())?;
    let data_dir = args.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let pids_path = data_dir.join("dev.pids");
    agents::clean_stale(&pids_path).await?;
    let mut pids = PidFile {
        dev: Some(std::process::id()),
        agents: Vec::new(),
    };
    pids.write(&pids_path)?;
    let result = run_fleet(&args, &agent_bin, &pids_path, &mut pids).await;
    let _ = std::fs::remove_file(&pids_path);
    result
}

async fn run_fleet(
    args: &DevArgs,
    agent_bin: &Path,
    pids_path: &Path,
    pids: &mut PidFile,
) -> anyhow::Result<()> {
    let (map, region, dir) = (
        args.map.clone(),
        args.region.clone(),
        args.data_dir.join("graphs"),
    );
    let extra = args.extra_profiles();
    let (artifact, version, extra_artifacts) = tokio::task::spawn_blocking(move || {
        let (artifact, version) = graph::artifact(&map, &region, &dir)?;
        let extra = extra
            .iter()
            .map(|p| Ok((p.clone(), graph::artifact_for(&map, &region, &dir, p)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::Ok((artifact, version, extra))
    })
    .await??;
    // One listener for the whole run: a signal arriving between two waits is not lost.
    // (Before this point no child runs, and the default action of a signal is right.)
    let (signal_tx, signal_rx) = watch::channel(false);
    tokio::spawn(async move {
        edgeroute_server::shutdown_signal().await;
        let _ = signal_tx.send(true);
    });
    let signalled = || {
        let mut rx = signal_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let admin_key = args.admin_key.clone().unwrap_or_else(secret);
    let agent_token = secret();
    let settings = Settings {
        stale_after_ms: args.stale_after_s.saturating_mul(1000),
        offline_after_ms: args.offline_after_s.saturating_mul(1000),
        rollout_policy: rollout_policy(args),
        ..Settings::default()
    };
    let auth = CenterAuth::new(std::slice::from_ref(&agent_token), Some(&admin_key), false);
    let center_dir = args.data_dir.join("center");
    let center =
        tokio::task::spawn_blocking(move || Center::open(&center_dir, auth, settings)).await??;
    let meta = graph::register(&center, &artifact, &version, &args.region).await?;
    // Profiles asked for are set, the others unset: agents stop serving a profile a
    // previous run built.
    let before = crate::graphs::profiles::region_profiles(center.store.as_ref(), &args.region)
        .await
        .context("cannot read the region's profiles")?;
    for stale in before
        .keys()
        .filter(|p| !extra_artifacts.iter().any(|(name, _)| name == *p))
    {
        crate::graphs::profiles::set_region_profile(
            center.store.as_ref(),
            &args.region,
            stale,
            None,
        )
        .await
        .context("cannot unset a profile")?;
    }
    for (profile, (path, version)) in &extra_artifacts {
        graph::register_profile(&center, path, version, &args.region, profile).await?;
    }

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (in use? pass --listen 127.0.0.1:<port>)",
                args.listen
            )
        })?;
    let center_url = center_url(listener.local_addr()?);
    crate::serve::announce(&center_url, None)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(edgeroute_server::serve_with_grace(
        listener,
        app(center.clone()),
        async move {
            let _ = server_stop.wait_for(|stop| *stop).await;
        },
        Duration::from_secs(5),
    ));

    let mut rollout_stop = stop_rx.clone();
    tokio::spawn(crate::rollout::graph::run(
        center.clone(),
        crate::serve::ROLLOUT_TICK,
        async move {
            let _ = rollout_stop.wait_for(|stop| *stop).await;
        },
    ));

    let places = {
        let (artifact, n, bbox) = (artifact.clone(), args.agents, meta.bbox);
        tokio::task::spawn_blocking(move || graph::places_on_roads(&artifact, bbox, n)).await??
    };
    let wrapper = agents::pdeathsig_wrapper();
    if wrapper.is_none() {
        tracing::warn!(
            "no `setpriv`: agents will outlive a `kill -9` of dev; the next run stops them"
        );
    }
    let mut running: Vec<RunningAgent> = Vec::new();
    let started = async {
        for (i, place) in places.iter().enumerate() {
            let spec = agent_spec(args, i + 1, *place, &center_url, &agent_token);
            let agent =
                agents::start(agent_bin, wrapper.as_deref(), &spec, stop_rx.clone()).await?;
            pids.agents.push((agent.pid, spec.data_dir.clone()));
            pids.write(pids_path)?;
            running.push(agent);
        }
        anyhow::Ok(())
    };
    // A signal while agents start still stops those already running.
    let outcome = tokio::select! {
        started = started => started.map(|()| true),
        () = signalled() => Ok(false),
    };
    if let Ok(true) = outcome {
        let extra_names = args.extra_profiles();
        tokio::select! {
            () = wait_online(&center, &running, &meta.version, &extra_names) => {
                print_banner(&center_url, &admin_key, &args.region, &meta.version, &extra_names, &running, &places);
                signalled().await;
            }
            () = signalled() => {}
        }
    }
    tracing::info!("stopping the agents and the center");
    let _ = stop_tx.send(true);
    for agent in running {
        agent.wait().await;
    }
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "the center stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "the center's task failed"),
    }
    outcome.map(|_| ())
}

fn agent_spec(
    args: &DevArgs,
    index: usize,
    place: Location,
    center_url: &str,
    token: &str,
) -> AgentSpec {
    let name = format!("agent-{index}");
    let data_dir = args.data_dir.join(&name);
    let args = vec![
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--no-auth".into(),
        "--node-name".into(),
        name.clone(),
        "--region".into(),
        args.region.clone(),
        "--control-plane".into(),
        center_url.to_owned(),
        "--sync-token".into(),
        token.to_owned(),
        "--sync-interval-ms".into(),
        args.sync_interval_ms.to_string(),
        "--location".into(),
        format!("{:.6},{:.6}", place.lat, place.lon),
    ];
    AgentSpec {
        log: log_path(&data_dir),
        name,
        data_dir,
        args,
    }
}

fn log_path(agent_dir: &Path) -> PathBuf {
    agent_dir.with_extension("log")
}

/// Wait (up to two minutes, then go on) until every agent reports online, ready, on the
/// region's graph and serving every extra profile: then the printed commands work at once.
async fn wait_online(center: &Center, agents: &[RunningAgent], version: &str, profiles: &[String]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let now = now_ms();
        let ready = match center.store.nodes().await {
            Ok(records) => agents.iter().all(|a| {
                records.iter().any(|r| {
                    r.report.node == a.name
                        && r.report.health.ready
                        && r.report
                            .graph
                            .as_ref()
                            .is_some_and(|g| g.version == version)
                        && profiles.iter().all(|p| r.report.profiles.contains_key(p))
                        && state_of(now.saturating_sub(r.received_at_ms), &center.settings)
                            == NodeState::Online
                })
            }),
            Err(_) => false,
        };
        if ready {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            tracing::warn!("not every agent is online on the graph yet; see their logs");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn print_banner(
    center_url: &str,
    admin_key: &str,
    region: &str,
    version: &str,
    profiles: &[String],
    agents: &[RunningAgent],
    places: &[Location],
) {
    let mut out = format!(
        "\nedgeroute dev: a center and {} agents, region {region}, graph {version}{}\n\n  \
         dashboard  {center_url}/#key={admin_key}\n  admin key  {admin_key}\n",
        agents.len(),
        if profiles.is_empty() {
            String::new()
        } else {
            format!(", profiles car,{}", profiles.join(","))
        }
    );
    for (agent, place) in agents.iter().zip(places) {
        out.push_str(&format!(
            "  {:<9}  {}  at {:.5},{:.5}  log {}\n",
            agent.name,
            agent.url,
            place.lat,
            place.lon,
            agent.log.display()
        ));
    }
    if let (Some(first), Some(from)) = (agents.first(), places.first()) {
        let to = places.get(1).unwrap_or(from);
        let coords = format!(
            "{:.6},{:.6};{:.6},{:.6}",
            from.lon, from.lat, to.lon, to.lat
        );
        out.push_str(&format!(
            "\nTry:\n  curl '{}/route/v1/driving/{coords}?steps=true'\n  \
             curl -L '{center_url}/route/v1/driving/{coords}'   # the center redirects to the nearest agent\n  \
             curl '{center_url}/api/v1/endpoints?lat={:.6}&lon={:.6}'\n  \
             curl -H 'Authorization: Bearer {admin_key}' {center_url}/api/v1/nodes\n  \
             curl {center_url}/metrics\n",
            first.url, from.lat, from.lon
        ));
    }
    out.push_str(
        "\nMap data © OpenStreetMap contributors (ODbL). Ctrl-C stops the center and the agents.\n",
    );
    print!("{out}");
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        dev: DevArgs,
    }

    fn parse(extra: &[&str]) -> DevArgs {
        let map = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/monaco.osm.pbf");
        let mut argv = vec!["dev"];
        if !extra.contains(&"--map") {
            argv.extend(["--map", map]);
        }
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().dev
    }

    #[test]
    fn defaults_are_valid_and_bad_values_are_refused_clearly() {
        let args = parse(&[]);
        assert_eq!(args.agents, 3);
        assert_eq!(args.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(args.data_dir, PathBuf::from(".dev"));
        validate(&args).unwrap();
        let policy = rollout_policy(&parse(&[
            "--canary-steps",
            "10,50,100",
            "--analysis-window-s",
            "5",
            "--min-requests",
            "7",
        ]));
        assert_eq!(policy.steps, vec![10, 50, 100]);
        assert_eq!(policy.analysis_window_seconds, 5);
        assert_eq!(policy.min_requests, 7);
        assert!(args.extra_profiles().is_empty());
        let both = parse(&["--profiles", "car,truck,truck"]);
        validate(&both).unwrap();
        assert_eq!(both.extra_profiles(), ["truck"]);
        for (extra, needle) in [
            (&["--agents", "0"][..], "--agents"),
            (&["--agents", "65"], "--agents"),
            (&["--region", "../x"], "--region"),
            (&["--region", ""], "--region"),
            (
                &["--stale-after-s", "10", "--offline-after-s", "10"],
                "stale",
            ),
            (&["--stale-after-s", "0"], "stale"),
            (&["--sync-interval-ms", "5"], "--sync-interval-ms"),
            (&["--admin-key", ""], "--admin-key"),
            (&["--canary-steps", "50,20"], "--canary-steps"),
            (&["--canary-steps", "0,100"], "--canary-steps"),
            (&["--analysis-window-s", "0"], "--analysis-window-s"),
            (&["--profiles", "car,bike"], "--profiles"),
            (&["--profiles", "Truck"], "--profiles"),
            (&["--map", "/nonexistent.pbf"], "does not exist"),
        ] {
            let err = validate(&parse(extra)).unwrap_err().to_string();
            assert!(err.contains(needle), "{extra:?}: {err}");
        }
    }

    #[test]
    fn an_unspecified_listen_address_is_reached_on_loopback() {
        assert_eq!(
            center_url("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            center_url("127.0.0.2:9".parse().unwrap()),
            "http://127.0.0.2:9"
        );
    }
}

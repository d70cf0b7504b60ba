//! The command line of `edgeroute-control-plane`: its arguments, and what each subcommand
//! wires together (runtime, tracing, signals, servers) before handing over to the library.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use edgeroute_server::LogFormat;
use kube::Client;
use tokio::sync::watch;
use tracing::info;

use crate::controller::leader::LeaseSettings;
use crate::controller::workload::AgentEnv;
use crate::controller::{self, Context, Settings};
use crate::metrics::Metrics;
use crate::{crdgen, graphs};

/// The edgeroute control plane.
#[derive(Parser, Debug)]
#[command(name = "edgeroute-control-plane", version, about)]
pub struct Cli {
    /// Span export of `serve`, `dev` and `controller` (see docs/observability.md).
    #[command(flatten)]
    pub trace: edgeroute_server::telemetry::TraceArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build, inspect and query graph artifacts.
    Graph {
        /// The graph subcommand.
        #[command(subcommand)]
        command: graphs::cli::GraphCommand,
    },
    /// Run the EdgeRegion controller against the cluster in the current kube context.
    Controller(ControllerArgs),
    /// Run the center: the sync API agents report to, the graph registry and the fleet API.
    Serve(crate::serve::ServeArgs),
    /// Run a local fleet without a cluster: the center in this process and agents as
    /// child processes, on the bundled map.
    Dev(crate::dev::DevArgs),
    /// Show or steer a region's graph rollout at a center.
    Rollout(crate::rollout::cli::RolloutArgs),
    /// Print the EdgeRegion CustomResourceDefinition as YAML.
    Crd,
}

/// Command-line arguments of `edgeroute-control-plane controller`.
#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Address of the `/metrics`, `/healthz` and `/readyz` endpoints.
    #[arg(
        long,
        env = "EDGEROUTE_CONTROLLER_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub listen: SocketAddr,
    /// Namespace whose EdgeRegions are managed (and where the Lease lives).
    #[arg(long, env = "EDGEROUTE_NAMESPACE", default_value = "edgeroute")]
    pub namespace: String,
    /// Control-plane URL handed to the agents.
    #[arg(
        long,
        env = "EDGEROUTE_CONTROL_PLANE_URL",
        default_value = "http://edgeroute-center.edgeroute.svc:8080"
    )]
    pub control_plane_url: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "edgeroute-controller")]
    pub lease_name: String,
    /// Identity in the Lease; defaults to the pod name (`POD_NAME`) or the hostname.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Lease duration in seconds.
    #[arg(long, default_value_t = 15)]
    pub lease_duration_secs: u64,
    /// Periodic resync of every region, in seconds.
    #[arg(long, default_value_t = 300)]
    pub resync_secs: u64,
    /// The center that judges agent canaries (`POST /api/v1/regions/{region}/analysis`).
    /// Without it, agent rollouts hold and then pause: they are never promoted unjudged.
    #[arg(long, env = "EDGEROUTE_CENTER_URL")]
    pub center_url: Option<String>,
    /// The center's admin key, sent as a bearer token with every analysis request.
    #[arg(long, env = "EDGEROUTE_CENTER_ADMIN_KEY", hide_env_values = true)]
    pub center_admin_key: Option<String>,
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Graph { command } => graphs::cli::run(command),
        Command::Controller(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(traced(&cli.trace, run_controller(args)))
        }
        Command::Serve(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(traced(&cli.trace, crate::serve::run(args)))
        }
        Command::Dev(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            // On this thread: children get their parent-death signal from the thread that
            // started them, and the main thread lives as long as the process.
            runtime.block_on(traced(&cli.trace, crate::dev::run(args)))
        }
        Command::Rollout(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(crate::rollout::cli::run(args))
        }
        Command::Crd => {
            print!("{}", crdgen::crd_yaml()?);
            Ok(())
        }
    }
}

/// Runs `work` with logs and span export set up, then sends the spans still queued (for
/// at most two seconds: a collector that is away must not hold up the exit).
async fn traced(
    trace: &edgeroute_server::telemetry::TraceArgs,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let telemetry =
        edgeroute_server::telemetry::init("edgeroute-control-plane", log_format(), trace)?;
    let result = work.await;
    telemetry.shutdown(Duration::from_secs(2)).await;
    result
}

/// JSON lines when `EDGEROUTE_LOG_FORMAT=json`, human-readable otherwise.
fn log_format() -> LogFormat {
    if std::env::var("EDGEROUTE_LOG_FORMAT").is_ok_and(|v| v == "json") {
        LogFormat::Json
    } else {
        LogFormat::Text
    }
}

/// Runs the `controller` subcommand: the metrics/health server, leader election and the
/// controller, against the cluster of the current kube context, until SIGTERM or Ctrl-C.
pub async fn run_controller(args: ControllerArgs) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let identity = match args.identity {
        Some(id) => id,
        None => std::env::var("HOSTNAME")
            .unwrap_or_else(|_| format!("edgeroute-{}", std::process::id())),
    };
    let metrics = Arc::new(Metrics::default());
    let settings = Settings {
        namespace: args.namespace.clone(),
        agent_env: AgentEnv {
            control_plane_url: args.control_plane_url,
        },
        resync: Duration::from_secs(args.resync_secs),
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(300),
        instance: Some(identity.clone()),
        watch_backoff_base: Duration::from_millis(500),
        watch_backoff_max: Duration::from_secs(30),
    };
    let lease_duration = Duration::from_secs(args.lease_duration_secs.max(3));
    let lease = LeaseSettings {
        name: args.lease_name,
        namespace: args.namespace,
        identity,
        lease_duration,
        renew_interval: lease_duration / 3,
        retry_interval: lease_duration / 5,
    };
    // One signal stops both the metrics server and the controller.
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        edgeroute_server::shutdown_signal().await;
        let _ = tx.send(true);
    });

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    info!(addr = %args.listen, "serving /metrics and /healthz");
    let mut server_stop = rx.clone();
    let server = tokio::spawn(edgeroute_server::serve(
        listener,
        controller::http::router(Arc::clone(&metrics)),
        async move {
            let _ = server_stop.wait_for(|stop| *stop).await;
        },
    ));
    let mut ctx = Context::new(client, settings, metrics);
    match (args.center_url, args.center_admin_key) {
        (Some(url), Some(key)) => {
            let judge = controller::judge::HttpJudge::new(&url, &key)
                .context("building the center's HTTP client")?;
            ctx = ctx.with_judge(Arc::new(judge));
        }
        (Some(_), None) => {
            anyhow::bail!("--center-url needs --center-admin-key (EDGEROUTE_CENTER_ADMIN_KEY)")
        }
        (None, _) => tracing::warn!(
            "no --center-url: agent rollouts cannot be judged; they will hold, then pause"
        ),
    }
    controller::run_elected(Arc::new(ctx), lease, rx).await;
    server
        .await
        .context("metrics server task")?
        .context("metrics server")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Cli;

    #[test]
    fn trace_flags_are_taken_after_the_subcommand() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "edgeroute-control-plane",
            "crd",
            "--otlp-endpoint",
            "http://collector:4318/v1/traces",
            "--trace-sample-ratio",
            "0.25",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cli.trace.otlp_endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert!((cli.trace.trace_sample_ratio - 0.25).abs() < f64::EPSILON);
        let refused = Cli::try_parse_from([
            "edgeroute-control-plane",
            "crd",
            "--trace-sample-ratio",
            "2",
        ]);
        assert!(refused.is_err());
    }
}

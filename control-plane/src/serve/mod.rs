//! `edgeroute-control-plane serve`: the center's long-lived server. Agents report to it
//! and download graphs from it ([`crate::sync`]); operators upload graphs and pick a
//! region's graph ([`crate::graphs`]) and read the fleet ([`crate::fleet`]).
//!
//! # Layout
//! - [`auth`]: agent tokens, client certificates and the admin key.
//! - [`error`]: the JSON error every handler returns.
//! - [`metrics`]: `GET /metrics`, the center's Prometheus metrics.

pub mod auth;
pub mod error;
pub mod metrics;

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::Context;
use axum::{Router, http::StatusCode, routing::get};
use tower_http::decompression::RequestDecompressionLayer;

use edgeroute_protocol::crd::RolloutSpec;

use self::{auth::CenterAuth, error::ApiError};
use crate::{
    fleet::view::{FleetView, HistoryConfig},
    graphs::{self, registry::GraphRegistry},
    rollout::{Clock, Rollouts},
    sync::{
        self,
        directive_cache::{DirectiveCache, InvalidatingStore},
        postgres::{self as pg, PgCenterStore},
        sled_store::SledCenterStore,
        store::{CenterStore, NodeRecord},
    },
};

/// How often the rollout driver looks for due analysis windows.
pub const ROLLOUT_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Concurrent ingests of a sled center: each holds a decoded report (up to a batch of
/// plans, ~100-200 kB in a reconnect storm) while sled's writes and flushes, which use a
/// few threads, serve them; more in flight only adds memory and latency.
pub const DEFAULT_SLED_INGESTS: usize = 64;

/// Concurrent ingests per pooled PostgreSQL connection: enough waiting reports for group
/// commit to fill its batches, few enough that none waits out the pool's timeout.
pub const PG_INGESTS_PER_CONNECTION: usize = 4;

/// Default of `--directive-cache-ms`: a change made through another replica reaches the
/// agents of this one a second later at most, less than one report interval, while each
/// region's directive reads drop from one per report to about one per second.
pub const DEFAULT_DIRECTIVE_CACHE_MS: u64 = 1_000;

/// Command-line arguments of `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "EDGEROUTE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the center keeps its database and the graph registry.
    #[arg(long, env = "EDGEROUTE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Where the center keeps its state: `sled` (embedded in `--data-dir`, one replica) or
    /// a `postgres://` URL shared by several replicas (see docs/scale.md).
    #[arg(
        long,
        env = "EDGEROUTE_STORE",
        default_value = "sled",
        hide_env_values = true
    )]
    pub store: String,
    /// Most connections one replica opens to a PostgreSQL store.
    #[arg(long, env = "EDGEROUTE_STORE_POOL", default_value_t = 16)]
    pub store_pool: usize,
    /// Most reports a PostgreSQL store commits in one transaction (group commit; 1: a
    /// transaction per report).
    #[arg(long, env = "EDGEROUTE_STORE_BATCH_MAX", default_value_t = 128)]
    pub store_batch_max: usize,
    /// Milliseconds a PostgreSQL committer waits for more reports to share a commit.
    #[arg(long, env = "EDGEROUTE_STORE_BATCH_WINDOW_MS", default_value_t = 2)]
    pub store_batch_window_ms: u64,
    /// PEM CA bundle trusted for a PostgreSQL store's certificate (else the system's).
    #[arg(long, env = "EDGEROUTE_STORE_CA")]
    pub store_ca: Option<PathBuf>,
    /// PEM certificate chain: serve HTTPS.
    #[arg(long, env = "EDGEROUTE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "EDGEROUTE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: agents presenting a client certificate signed by it are admitted to
    /// the sync API without a token (mutual TLS). Needs `--tls-cert`.
    #[arg(long, env = "EDGEROUTE_CLIENT_CA", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Key operators send as `Authorization: Bearer <key>` to the `/api/v1/` endpoints.
    #[arg(long, env = "EDGEROUTE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Token agents send as `Authorization: Bearer <token>` to `/sync/v1/` (repeatable;
    /// comma-separated in the environment).
    #[arg(
        long = "agent-token",
        env = "EDGEROUTE_AGENT_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub agent_tokens: Vec<String>,
    /// Serve every endpoint without authentication (local experiments only).
    #[arg(long, env = "EDGEROUTE_NO_AUTH")]
    pub no_auth: bool,
    /// A node is stale after this long without a report.
    #[arg(long, env = "EDGEROUTE_STALE_AFTER_S", default_value_t = 15)]
    pub stale_after_s: u64,
    /// A node is offline after this long without a report.
    #[arg(long, env = "EDGEROUTE_OFFLINE_AFTER_S", default_value_t = 60)]
    pub offline_after_s: u64,
    /// Report interval the center asks agents to use (by default agents keep theirs).
    #[arg(long, env = "EDGEROUTE_AGENT_SYNC_INTERVAL_MS")]
    pub agent_sync_interval_ms: Option<u64>,
    /// Largest report body accepted, after decompression.
    #[arg(long, env = "EDGEROUTE_MAX_REPORT_BYTES", default_value_t = 64 << 20)]
    pub max_report_bytes: usize,
    /// Largest graph artifact accepted by the registry.
    #[arg(long, env = "EDGEROUTE_MAX_GRAPH_BYTES", default_value_t = 4 << 30)]
    pub max_graph_bytes: u64,
    /// Most reports one replica ingests at once; beyond it a report is answered 503 with
    /// `Retry-After` before its body is read. Default: 64 with sled, four per pooled
    /// connection with PostgreSQL (see docs/scale.md).
    #[arg(long, env = "EDGEROUTE_MAX_CONCURRENT_INGESTS")]
    pub max_concurrent_ingests: Option<usize>,
    /// Seconds a shed agent is asked to wait (`Retry-After`; agents add jitter).
    #[arg(long, env = "EDGEROUTE_INGEST_RETRY_AFTER_S", default_value_t = 1)]
    pub ingest_retry_after_s: u64,
    /// Time one point of a node's in-memory history covers (120 points are kept).
    #[arg(long, env = "EDGEROUTE_HISTORY_POINT_S", default_value_t = 30)]
    pub history_point_s: u64,
    /// Seconds in-flight requests get to finish after SIGTERM.
    #[arg(long, env = "EDGEROUTE_SHUTDOWN_GRACE_S", default_value_t = 10)]
    pub shutdown_grace_s: u64,
    /// Follow the EdgeRegions of this namespace (in-cluster or current kube context): each
    /// one's `spec.graph.version` becomes its region's graph.
    #[arg(long, env = "EDGEROUTE_REGIONS_NAMESPACE")]
    pub regions_namespace: Option<String>,
    /// Seconds a replica's lease on driving a region's rollout lasts without renewal (with
    /// a shared store; renewed every second): how soon another replica takes over.
    #[arg(long, env = "EDGEROUTE_ROLLOUT_LEASE_S", default_value_t = 15)]
    pub rollout_lease_s: u64,
    /// Milliseconds a replica keeps what every report's directives read (region graph,
    /// graph metadata, profile graphs). Writes through the replica take effect at once;
    /// another replica's within this time. 0 reads the store for every report.
    #[arg(long, env = "EDGEROUTE_DIRECTIVE_CACHE_MS", default_value_t = DEFAULT_DIRECTIVE_CACHE_MS)]
    pub directive_cache_ms: u64,
    /// Write the bound address to this file once listening (for tests and scripts).
    #[arg(long, env = "EDGEROUTE_PORT_FILE")]
    pub port_file: Option<PathBuf>,
}

/// Tunables the handlers read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A node is stale after this many milliseconds without a report.
    pub stale_after_ms: u64,
    /// A node is offline after this many milliseconds without a report.
    pub offline_after_ms: u64,
    /// Report interval the center asks agents to use.
    pub agent_sync_interval_ms: Option<u64>,
    /// Largest report body.
    pub max_report_bytes: usize,
    /// Largest graph artifact.
    pub max_graph_bytes: u64,
    /// Most reports ingested at once; more are shed with 503.
    pub max_concurrent_ingests: usize,
    /// `Retry-After` (seconds) of a shed report.
    pub ingest_retry_after_s: u64,
    /// How much node history the fleet view keeps.
    pub history: HistoryConfig,
    /// The rollout policy of regions without an EdgeRegion (`dev` sets it from flags).
    pub rollout_policy: RolloutSpec,
    /// The time rollouts are judged by (a manual clock in tests).
    pub clock: Clock,
    /// This replica's name among those sharing a store (holder of rollout leases).
    pub replica: String,
    /// How long a rollout lease lasts without renewal, in milliseconds.
    pub rollout_lease_ms: u64,
    /// How long the replica keeps directive inputs ([`crate::sync::directive_cache`]), in
    /// milliseconds; 0 turns the cache off.
    pub directive_cache_ms: u64,
}

/// A name for this replica: the pod's (`HOSTNAME`) with a random suffix, so a replica
/// restarted under the same name does not mistake its predecessor's lease for its own.
pub fn replica_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "center".into());
    format!("{host}-{:08x}", rand::random::<u32>())
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            stale_after_ms: 15_000,
            offline_after_ms: 60_000,
            agent_sync_interval_ms: None,
            max_report_bytes: 64 << 20,
            max_graph_bytes: 4 << 30,
            max_concurrent_ingests: DEFAULT_SLED_INGESTS,
            ingest_retry_after_s: 1,
            history: HistoryConfig::default(),
            rollout_policy: RolloutSpec::default(),
            clock: Clock::system(),
            replica: replica_name(),
            rollout_lease_ms: 15_000,
            directive_cache_ms: DEFAULT_DIRECTIVE_CACHE_MS,
        }
    }
}

impl From<&ServeArgs> for Settings {
    fn from(a: &ServeArgs) -> Self {
        Self {
            stale_after_ms: a.stale_after_s.saturating_mul(1000),
            offline_after_ms: a.offline_after_s.saturating_mul(1000),
            agent_sync_interval_ms: a.agent_sync_interval_ms,
            max_report_bytes: a.max_report_bytes,
            max_graph_bytes: a.max_graph_bytes,
            max_concurrent_ingests: a.max_concurrent_ingests.unwrap_or(DEFAULT_SLED_INGESTS),
            ingest_retry_after_s: a.ingest_retry_after_s,
            history: HistoryConfig {
                point_ms: a.history_point_s.max(1).saturating_mul(1000),
                ..HistoryConfig::default()
            },
            rollout_lease_ms: a.rollout_lease_s.max(2).saturating_mul(1000),
            directive_cache_ms: a.directive_cache_ms,
            ..Settings::default()
        }
    }
}

/// Shared state of the center's handlers.
#[derive(Clone)]
pub struct Center {
    /// Durable state.
    pub store: Arc<dyn CenterStore>,
    /// Artifact files.
    pub registry: Arc<GraphRegistry>,
    /// Credentials.
    pub auth: Arc<CenterAuth>,
    /// Tunables.
    pub settings: Arc<Settings>,
    /// Prometheus metrics.
    pub metrics: Arc<metrics::CenterMetrics>,
    /// The fleet in memory, kept current by every report.
    pub fleet: Arc<FleetView>,
    /// Graph rollouts: the cache of their records, the recent windows, the policies.
    pub rollouts: Arc<Rollouts>,
    /// One permit per report being ingested ([`Settings::max_concurrent_ingests`]).
    pub ingests: Arc<tokio::sync::Semaphore>,
    /// What every report's directives read, kept briefly; `store` drops its entries on
    /// the writes they depend on.
    pub directive_cache: Arc<DirectiveCache>,
}

impl std::fmt::Debug for Center {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Center")
            .field("registry", &self.registry)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Center {
    /// Open the sled store and the registry under `data_dir`.
    pub fn open(
        data_dir: &std::path::Path,
        auth: CenterAuth,
        settings: Settings,
    ) -> anyhow::Result<Self> {
        let store = SledCenterStore::open(&data_dir.join("db"))
            .with_context(|| format!("cannot open the database in {}", data_dir.display()))?;
        let registry = GraphRegistry::open(&data_dir.join("graphs"))
            .with_context(|| format!("cannot open the graph registry in {}", data_dir.display()))?;
        let records = store
            .node_records()
            .with_context(|| format!("cannot read the nodes in {}", data_dir.display()))?;
        Ok(Self::with_store(
            Arc::new(store),
            registry,
            records,
            auth,
            settings,
        ))
    }

    /// Connect to the PostgreSQL store at `url` (migrating it) and open the registry
    /// under `data_dir`. The store is returned too, for [`pg::refresh::follow`].
    pub async fn open_postgres(
        url: &str,
        pool: &pg::connect::PoolOptions,
        data_dir: &std::path::Path,
        auth: CenterAuth,
        settings: Settings,
    ) -> anyhow::Result<(Self, PgCenterStore)> {
        let store = pg::connect::connect(url, pool).await?;
        let registry = GraphRegistry::open(&data_dir.join("graphs"))
            .with_context(|| format!("cannot open the graph registry in {}", data_dir.display()))?;
        let records = store
            .nodes()
            .await
            .context("cannot read the nodes from the PostgreSQL store")?;
        let center = Self::with_store(Arc::new(store.clone()), registry, records, auth, settings);
        Ok((center, store))
    }

    fn with_store(
        store: Arc<dyn CenterStore>,
        registry: GraphRegistry,
        records: Vec<NodeRecord>,
        auth: CenterAuth,
        settings: Settings,
    ) -> Self {
        let directive_cache = Arc::new(DirectiveCache::new(std::time::Duration::from_millis(
            settings.directive_cache_ms,
        )));
        let store: Arc<dyn CenterStore> =
            Arc::new(InvalidatingStore::new(store, directive_cache.clone()));
        let fleet = FleetView::load(records, &settings, settings.history);
        let metrics = metrics::CenterMetrics::new();
        let rollouts = Rollouts::new(
            settings.rollout_policy.clone(),
            metrics.rollouts.clone(),
            settings.clock.clone(),
        );
        if store.shared() {
            rollouts.windows.share();
        }
        let ingests = Arc::new(tokio::sync::Semaphore::new(
            settings
                .max_concurrent_ingests
                .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
        ));
        Self {
            ingests,
            store,
            registry: Arc::new(registry),
            auth: Arc::new(auth),
            settings: Arc::new(settings),
            metrics: Arc::new(metrics),
            fleet: Arc::new(fleet),
            rollouts: Arc::new(rollouts),
            directive_cache,
        }
    }
}

/// The center's whole HTTP API.
pub fn app(center: Center) -> Router {
    Router::new()
        .merge(
            sync::router(&center).route_layer(axum::middleware::from_fn_with_state(
                center.metrics.clone(),
                metrics::track_sync,
            )),
        )
        .merge(graphs::api::router())
        .merge(crate::fleet::router())
        .merge(crate::rollout::api::router())
        .merge(crate::dashboard::router())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/metrics", get(metrics::scrape))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "NotFound", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "method not allowed here",
            )
        })
        // Agents gzip their reports; the body limits above apply to the inflated bytes.
        .layer(RequestDecompressionLayer::new())
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(sync::trace::make_span)
                .on_response(sync::trace::on_response),
        )
        .with_state(center)
}

/// Check the credentials make sense before anything starts.
pub fn auth_from_args(args: &ServeArgs) -> anyhow::Result<CenterAuth> {
    let mut auth = CenterAuth::new(
        &args.agent_tokens,
        args.admin_key.as_deref(),
        args.client_ca.is_some(),
    );
    auth.open = args.no_auth;
    if !auth.agents_can_authenticate() {
        anyhow::bail!(
            "refusing to start without agent authentication: give --agent-token (or \
             EDGEROUTE_AGENT_TOKENS), or --client-ca with --tls-cert/--tls-key, or pass \
             --no-auth to serve everything openly"
        );
    }
    if !auth.has_admin_key() {
        tracing::warn!("no --admin-key: the graph registry and fleet API answer 403");
    }
    Ok(auth)
}

/// Run the center until SIGTERM/SIGINT.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let auth = auth_from_args(&args)?;
    let data_dir = args.data_dir.clone();
    let mut settings = Settings::from(&args);
    let center = if pg::connect::is_postgres_url(&args.store) {
        settings.max_concurrent_ingests = args.max_concurrent_ingests.unwrap_or(
            args.store_pool
                .max(1)
                .saturating_mul(PG_INGESTS_PER_CONNECTION),
        );
        let pool = pg::connect::PoolOptions {
            max_size: args.store_pool,
            ca_file: args.store_ca.clone(),
            // A quarter of the pool commits; the rest serves reads and the fallback of a
            // failed batch.
            batch: (args.store_batch_max > 1).then(|| pg::batch::BatchOptions {
                max_reports: args.store_batch_max,
                window: std::time::Duration::from_millis(args.store_batch_window_ms),
                committers: (args.store_pool / 4).max(1),
            }),
            ..Default::default()
        };
        let (center, store) =
            Center::open_postgres(&args.store, &pool, &data_dir, auth, settings).await?;
        tokio::spawn(pg::refresh::follow(
            store,
            center.fleet.clone(),
            std::time::Duration::from_secs(5),
        ));
        center
    } else if args.store == "sled" {
        tokio::task::spawn_blocking(move || Center::open(&data_dir, auth, settings)).await??
    } else {
        anyhow::bail!("--store must be `sled` or a postgres:// URL");
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if args.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    announce(&format!("{scheme}://{addr}"), args.port_file.as_deref())?;
    tracing::info!(%addr, "control plane serving");
    if let Some(namespace) = args.regions_namespace.clone() {
        let client = kube::Client::try_default()
            .await
            .context("connecting to the Kubernetes API for --regions-namespace")?;
        tokio::spawn(crate::sync::regions::follow_center(
            client,
            namespace,
            center.clone(),
        ));
    }
    tokio::spawn(crate::rollout::graph::run(
        center.clone(),
        ROLLOUT_TICK,
        std::future::pending(),
    ));
    let app = app(center);
    let grace = std::time::Duration::from_secs(args.shutdown_grace_s);
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let config = edgeroute_server::tls::server_config_with_client_ca(
                cert,
                key,
                args.client_ca.as_deref(),
            )?;
            edgeroute_server::tls::serve_tls(
                listener,
                app,
                std::sync::Arc::new(config),
                edgeroute_server::shutdown_signal(),
                grace,
            )
            .await?;
        }
        _ => {
            edgeroute_server::serve_with_grace(
                listener,
                app,
                edgeroute_server::shutdown_signal(),
                grace,
            )
            .await?
        }
    }
    tracing::info!("control plane stopped");
    Ok(())
}

/// Print `listening on <url>` (what scripts and tests wait for) and write the port file.
pub fn announce(url: &str, port_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {url}")?;
    out.flush()?;
    if let Some(path) = port_file {
        let port = url.rsplit(':').next().unwrap_or_default();
        std::fs::write(path, port).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

//! Command line and environment configuration.
//!
//! Every flag can also be set with an `EDGEROUTE_*` environment variable, so the same binary
//! runs from a shell, a systemd unit or a Kubernetes DaemonSet without wrapper scripts.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;

/// `edgeroute-agent`: serves OSRM-compatible routing from a local road graph.
#[derive(Debug, Clone, Parser)]
#[command(name = "edgeroute-agent", version, about)]
pub struct Config {
    /// Address and port to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "EDGEROUTE_LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,

    /// Directory of the agent's sled database (graphs, keys, node identity).
    #[arg(long, env = "EDGEROUTE_DATA_DIR")]
    pub data_dir: PathBuf,

    /// OSM PBF file to import and serve when the database holds no graph yet. Once a graph
    /// is active, the most recently activated one (an upload, a rollback, a control-plane
    /// directive) is served after a restart instead; see `--force-graph`.
    #[arg(long, env = "EDGEROUTE_MAP", conflicts_with = "graph")]
    pub map: Option<PathBuf>,

    /// Prepared graph artifact to store and serve when the database holds no graph yet (as
    /// `--map`, the active graph survives restarts; see `--force-graph`).
    #[arg(long, env = "EDGEROUTE_GRAPH")]
    pub graph: Option<PathBuf>,

    /// An extra profile's graph, `NAME=ARTIFACT` (repeatable; comma separated in env):
    /// `--profile-graph truck=porto-truck.graph` serves `/route/v1/truck/...` from it, and
    /// `/optimize` vehicles with `"profile": "truck"` use it. Installed at every start
    /// (replacing an earlier upload of that profile); `car`/`driving` name the `--graph`.
    #[arg(long = "profile-graph", env = "EDGEROUTE_PROFILE_GRAPHS", value_delimiter = ',', value_parser = parse_profile_graph)]
    pub profile_graphs: Vec<(String, PathBuf)>,

    /// Activate the `--map` or `--graph` file at start even if another graph is active
    /// (replacing, say, one uploaded since).
    #[arg(long, env = "EDGEROUTE_FORCE_GRAPH")]
    pub force_graph: bool,

    /// Version label for a graph imported with `--map` (default: file stem + content hash).
    #[arg(long, env = "EDGEROUTE_GRAPH_VERSION")]
    pub graph_version: Option<String>,

    /// API key accepted as `Authorization: Bearer <key>` (repeatable; comma separated in env).
    /// Exactly the keys given at start are accepted; none is stored across restarts.
    #[arg(long = "api-key", env = "EDGEROUTE_API_KEY", value_delimiter = ',')]
    pub api_keys: Vec<String>,

    /// Key for the `/admin` endpoints (graph upload and rollback). Without it they are off.
    #[arg(long, env = "EDGEROUTE_ADMIN_KEY")]
    pub admin_key: Option<String>,

    /// Serve the routing API without authentication. Must be explicit.
    #[arg(long, env = "EDGEROUTE_NO_AUTH")]
    pub no_auth: bool,

    /// PEM certificate chain: serve HTTPS (HTTP/1.1 and HTTP/2 via ALPN).
    #[arg(long, env = "EDGEROUTE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key matching `--tls-cert`.
    #[arg(long, env = "EDGEROUTE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Node name reported by `/v1/status` (default: the stored node id).
    #[arg(long, env = "EDGEROUTE_NODE_NAME")]
    pub node_name: Option<String>,

    /// Region this node serves.
    #[arg(long, env = "EDGEROUTE_REGION", default_value = "default")]
    pub region: String,

    /// Write the bound port to this file once listening (for tools that bind port 0).
    #[arg(long, env = "EDGEROUTE_PORT_FILE")]
    pub port_file: Option<PathBuf>,

    /// Largest number of sources, and of destinations, of one `/table` request.
    #[arg(long, env = "EDGEROUTE_MAX_TABLE_SIZE", default_value_t = 1000)]
    pub max_table_size: usize,

    /// Largest number of coordinates of one `/route` request.
    #[arg(long, env = "EDGEROUTE_MAX_ROUTE_WAYPOINTS", default_value_t = 500)]
    pub max_route_waypoints: usize,

    /// Largest `number` of one `/nearest` request.
    #[arg(long, env = "EDGEROUTE_MAX_NEAREST", default_value_t = 100)]
    pub max_nearest: usize,

    /// Snapping radius in metres when the request gives none; also the cap on `radiuses`.
    #[arg(long, env = "EDGEROUTE_SNAP_RADIUS_M", default_value_t = 1000.0)]
    pub snap_radius_m: f64,

    /// Sustained requests per second allowed per API key (0 disables rate limiting).
    #[arg(long, env = "EDGEROUTE_RATE_LIMIT", default_value_t = 2000.0)]
    pub rate_limit: f64,

    /// Burst size of the per-key token bucket.
    #[arg(long, env = "EDGEROUTE_RATE_BURST", default_value_t = 4000)]
    pub rate_burst: u32,

    /// Per-request timeout in milliseconds (answered with 504).
    #[arg(long, env = "EDGEROUTE_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,

    /// Largest request body in bytes on the routing API.
    #[arg(long, env = "EDGEROUTE_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Largest graph artifact accepted by `PUT /admin/graph`, in bytes.
    #[arg(long, env = "EDGEROUTE_MAX_GRAPH_BYTES", default_value_t = 1 << 30)]
    pub max_graph_bytes: usize,

    /// Routing API requests processed at once (a request computed on the blocking pool holds
    /// its slot until the work ends); more wait in the admission queue.
    #[arg(long, env = "EDGEROUTE_CONCURRENCY_LIMIT", default_value_t = 64)]
    pub concurrency_limit: usize,

    /// Requests that may wait for a `--concurrency-limit` slot; beyond, 503 at once.
    #[arg(long, env = "EDGEROUTE_ADMISSION_QUEUE", default_value_t = 256)]
    pub admission_queue: usize,

    /// Longest wait for a `--concurrency-limit` slot, in milliseconds; then 503.
    #[arg(long, env = "EDGEROUTE_ADMISSION_MAX_WAIT_MS", default_value_t = 50)]
    pub admission_max_wait_ms: u64,

    /// Refuse new routing and optimisation requests with 503 while connections with a
    /// request wait this many milliseconds for a runtime worker (every request arriving then
    /// waits about that long before it is even read); 0 turns the check off. The default
    /// keeps accepted requests fast at twice the saturation rate (docs/overload.md); raise it
    /// for clients that prefer a slow answer to a 503.
    #[arg(long, env = "EDGEROUTE_MAX_QUEUE_DELAY_MS", default_value_t = 5)]
    pub max_queue_delay_ms: u64,

    /// Refuse new routing and optimisation requests with 503 while the runtime is stalled
    /// or far behind: a probe task wakes this many milliseconds late, or is overdue by that
    /// much; 0 turns the check off.
    #[arg(long, env = "EDGEROUTE_MAX_RUNTIME_LAG_MS", default_value_t = 50)]
    pub max_runtime_lag_ms: u64,

    /// Latency first: under a sustained overload (every wake-up of the lag probe later than
    /// this for 100 ms), refuse routing requests with 503 while the lag exceeds it, until it
    /// has stayed within it for a second; short bursts are served. Off by default (0): a few
    /// dozen clients in a closed loop at saturation form a standing queue of a few
    /// milliseconds too, and 2 ms would refuse their requests (docs/overload.md).
    #[arg(long, env = "EDGEROUTE_STANDING_LAG_MS", default_value_t = 0)]
    pub standing_lag_ms: u64,

    /// Open connections at most (lowered to fit the open-file limit); further clients wait
    /// in the listen backlog.
    #[arg(long, env = "EDGEROUTE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Time a client has to send a request head (and to finish a TLS handshake), in
    /// milliseconds; also the longest wait for the next request on an HTTP/1 connection.
    #[arg(
        long,
        env = "EDGEROUTE_HEADER_READ_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub header_read_timeout_ms: u64,

    /// A connection without a request in flight for this many milliseconds is closed.
    #[arg(long, env = "EDGEROUTE_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,

    /// Requests one HTTP/1 connection may carry before it is closed (0: unlimited).
    #[arg(
        long,
        env = "EDGEROUTE_MAX_REQUESTS_PER_CONNECTION",
        default_value_t = 10_000
    )]
    pub max_requests_per_connection: u64,

    /// Origins allowed by CORS (`*` for any; repeatable; comma separated in env).
    #[arg(
        long = "cors-origin",
        env = "EDGEROUTE_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT.
    #[arg(long, env = "EDGEROUTE_SHUTDOWN_GRACE_S", default_value_t = 30)]
    pub shutdown_grace_s: u64,

    /// Max jobs plus shipments of a `POST /optimize` request.
    #[arg(long, env = "EDGEROUTE_MAX_VRP_JOBS", default_value_t = 2000)]
    pub max_vrp_jobs: usize,

    /// `POST /optimize` solves running at once (0: one per core); more wait in the solve
    /// queue (within the request timeout). Small problems stop as soon as the search has
    /// converged, large ones use their time budget.
    #[arg(long, env = "EDGEROUTE_MAX_CONCURRENT_SOLVES", default_value_t = 0)]
    pub max_concurrent_solves: usize,

    /// `POST /optimize` requests that may wait for a solve slot; beyond, 503 at once.
    #[arg(long, env = "EDGEROUTE_SOLVE_QUEUE", default_value_t = 64)]
    pub solve_queue: usize,

    /// Largest `time_limit_ms` a `POST /optimize` request may ask for.
    #[arg(
        long,
        env = "EDGEROUTE_MAX_VRP_TIME_LIMIT_MS",
        default_value_t = 10_000
    )]
    pub max_vrp_time_limit_ms: u64,

    /// `POST /optimize` body limit (custom matrices are large).
    #[arg(long, env = "EDGEROUTE_MAX_OPTIMIZE_BODY_BYTES", default_value_t = 32 << 20)]
    pub max_optimize_body_bytes: usize,

    // Load: compute pool, accept-time shedding, probe listener, database cache.
    /// Threads computing tables, trips and long routes (0: one per core). Each keeps one
    /// query workspace (a few MB per million graph nodes).
    #[arg(long, env = "EDGEROUTE_COMPUTE_THREADS", default_value_t = 0)]
    pub compute_threads: usize,

    /// Tables, trips and long routes that may wait for a compute thread; beyond, 503 with
    /// `Retry-After` at once.
    #[arg(long, env = "EDGEROUTE_COMPUTE_QUEUE", default_value_t = 64)]
    pub compute_queue: usize,

    /// Open connections beyond which a new connection is answered at once with 503 and
    /// closed, instead of waiting to be served (0: never). Probes and admin requests are
    /// refused too (nothing is read yet): serve probes on `--probe-listen`.
    #[arg(long, env = "EDGEROUTE_SHED_CONNECTIONS_ABOVE", default_value_t = 512)]
    pub shed_connections_above: usize,

    /// Refuse new connections the same way while the runtime lags this many milliseconds
    /// (0: never, the default: a short stall would refuse probes and admin requests too).
    #[arg(long, env = "EDGEROUTE_SHED_CONNECTIONS_LAG_MS", default_value_t = 0)]
    pub shed_connections_lag_ms: u64,

    /// A second, plain-HTTP address serving only `/healthz`, `/readyz` and `/metrics`,
    /// without authentication, shedding or the connection cap of `--listen`: probes there
    /// never queue behind a flood of clients.
    #[arg(long, env = "EDGEROUTE_PROBE_LISTEN")]
    pub probe_listen: Option<SocketAddr>,

    /// Page cache of the database in MiB. Graphs are read once at start (and on upload),
    /// plans are small: a large cache only holds memory.
    #[arg(long, env = "EDGEROUTE_DB_CACHE_MB", default_value_t = 16)]
    pub db_cache_mb: u64,

    /// Log format on stderr.
    #[arg(long, env = "EDGEROUTE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Span export (`--otlp-endpoint`, `--otlp-protocol`, `--trace-sample-ratio`); see
    /// docs/observability.md.
    #[command(flatten)]
    pub trace: edgeroute_server::telemetry::TraceArgs,

    /// The control plane's base URL (`https://center:8443`). Without it the agent runs
    /// standalone: no reports, no outbox, no graph directives.
    #[arg(long, env = "EDGEROUTE_CONTROL_PLANE_URL")]
    pub control_plane: Option<reqwest::Url>,
    /// Time between reports to the control plane.
    #[arg(long, env = "EDGEROUTE_SYNC_INTERVAL_MS", default_value_t = 5_000)]
    pub sync_interval_ms: u64,
    /// Longest wait between failed reports (exponential backoff with jitter up to it).
    #[arg(long, env = "EDGEROUTE_SYNC_MAX_BACKOFF_MS", default_value_t = 30_000)]
    pub sync_max_backoff_ms: u64,
    /// Bearer token for the control plane (one of its `--agent-token`s).
    #[arg(long, env = "EDGEROUTE_SYNC_TOKEN", hide_env_values = true)]
    pub sync_token: Option<String>,
    /// PEM client certificate for mutual TLS with the control plane.
    #[arg(long, env = "EDGEROUTE_SYNC_CLIENT_CERT", requires = "sync_client_key")]
    pub sync_client_cert: Option<PathBuf>,
    /// PEM private key of `--sync-client-cert`.
    #[arg(long, env = "EDGEROUTE_SYNC_CLIENT_KEY", requires = "sync_client_cert")]
    pub sync_client_key: Option<PathBuf>,
    /// PEM CA bundle that signed the control plane's certificate (default: system roots).
    #[arg(long, env = "EDGEROUTE_SYNC_CA")]
    pub sync_ca: Option<PathBuf>,
    /// The URL clients reach this agent at, as the control plane should advertise it.
    #[arg(long, env = "EDGEROUTE_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Where this agent stands, `lat,lon` (for nearest-edge discovery).
    #[arg(long, env = "EDGEROUTE_LOCATION", value_parser = parse_location)]
    pub location: Option<edgeroute_protocol::sync::Location>,
    /// Events the outbox holds while the control plane is unreachable. When full, new plans
    /// are refused with 503 (never dropped); routing goes on.
    #[arg(long, env = "EDGEROUTE_OUTBOX_MAX_EVENTS", default_value_t = 1_000_000)]
    pub outbox_max_events: u64,
    /// Most events in one report.
    #[arg(long, env = "EDGEROUTE_SYNC_BATCH_EVENTS", default_value_t = 2_000)]
    pub sync_batch_events: usize,
    /// Sampled requests waiting for comparison on the shadow graph during a graph canary;
    /// beyond, samples are dropped (and counted), never the client's request.
    #[arg(long, env = "EDGEROUTE_SHADOW_QUEUE", default_value_t = crate::routing::shadow::DEFAULT_QUEUE)]
    pub shadow_queue: usize,
}

/// Parse `NAME=PATH` of `--profile-graph`.
pub fn parse_profile_graph(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not `PROFILE=ARTIFACT` (e.g. truck=truck.graph)"))?;
    if !crate::routing::profiles::valid_name(name) {
        return Err(format!(
            "{name:?} cannot name an extra profile: use 1 to 32 of a-z, 0-9, _ and - \
             (car and driving name the --graph)"
        ));
    }
    if path.is_empty() {
        return Err(format!("{s:?} names no artifact file"));
    }
    Ok((name.to_owned(), PathBuf::from(path)))
}

/// Parse `lat,lon` in degrees.
pub fn parse_location(s: &str) -> Result<edgeroute_protocol::sync::Location, String> {
    let (lat, lon) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?} is not `lat,lon`"))?;
    let lat: f64 = lat
        .trim()
        .parse()
        .map_err(|_| format!("bad latitude in {s:?}"))?;
    let lon: f64 = lon
        .trim()
        .parse()
        .map_err(|_| format!("bad longitude in {s:?}"))?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(format!("{s:?} is outside -90..90, -180..180"));
    }
    Ok(edgeroute_protocol::sync::Location { lat, lon })
}

pub use edgeroute_server::LogFormat;

/// Request limits the handlers enforce, derived from [`Config`].
#[derive(Debug, Clone)]
pub struct Limits {
    /// Max sources and max destinations of a table.
    pub max_table_size: usize,
    /// Max coordinates of a route.
    pub max_route_waypoints: usize,
    /// Max `number` of nearest.
    pub max_nearest: usize,
    /// Default and maximum snapping radius in metres.
    pub snap_radius_m: f64,
    /// Routing API body limit.
    pub max_body_bytes: usize,
    /// Admin graph upload body limit.
    pub max_graph_bytes: usize,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Routing API requests past admission at once.
    pub concurrency_limit: usize,
    /// Requests waiting for admission at most.
    pub admission_queue: usize,
    /// Longest wait for admission.
    pub admission_max_wait: Duration,
    /// Runtime lag above which requests are refused (`None`: never).
    pub max_runtime_lag: Option<Duration>,
    /// Connections' wait for a worker above which requests are refused (`None`: never).
    pub max_queue_delay: Option<Duration>,
    /// Runtime lag above which requests are refused while a standing queue lasts.
    pub standing_lag: Option<Duration>,
    /// `POST /optimize` requests waiting for a solve slot at most.
    pub solve_queue: usize,
    /// Per-key requests per second (0: unlimited).
    pub rate_limit: f64,
    /// Per-key burst.
    pub rate_burst: u32,
    /// Max jobs plus shipments of an optimisation.
    pub max_vrp_jobs: usize,
    /// Solves running at once.
    pub max_concurrent_solves: usize,
    /// Largest solver time budget a request may ask for.
    pub max_vrp_time_limit: Duration,
    /// `POST /optimize` body limit.
    pub max_optimize_body_bytes: usize,
    /// Compute pool threads (0: one per core).
    pub compute_threads: usize,
    /// Jobs waiting for a compute thread at most.
    pub compute_queue: usize,
}

impl Config {
    /// The request limits of this configuration.
    pub fn limits(&self) -> Limits {
        Limits {
            max_table_size: self.max_table_size,
            max_route_waypoints: self.max_route_waypoints,
            max_nearest: self.max_nearest,
            snap_radius_m: self.snap_radius_m,
            max_body_bytes: self.max_body_bytes,
            max_graph_bytes: self.max_graph_bytes,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            concurrency_limit: self.concurrency_limit.max(1),
            admission_queue: self.admission_queue,
            admission_max_wait: Duration::from_millis(self.admission_max_wait_ms),
            max_runtime_lag: (self.max_runtime_lag_ms > 0)
                .then(|| Duration::from_millis(self.max_runtime_lag_ms)),
            max_queue_delay: (self.max_queue_delay_ms > 0)
                .then(|| Duration::from_millis(self.max_queue_delay_ms)),
            standing_lag: (self.standing_lag_ms > 0)
                .then(|| Duration::from_millis(self.standing_lag_ms)),
            solve_queue: self.solve_queue,
            rate_limit: self.rate_limit,
            rate_burst: self.rate_burst.max(1),
            max_vrp_jobs: self.max_vrp_jobs,
            max_concurrent_solves: match self.max_concurrent_solves {
                0 => std::thread::available_parallelism().map_or(1, usize::from),
                n => n,
            },
            max_vrp_time_limit: Duration::from_millis(self.max_vrp_time_limit_ms),
            max_optimize_body_bytes: self.max_optimize_body_bytes,
            compute_threads: self.compute_threads,
            compute_queue: self.compute_queue,
        }
    }
}

impl Config {
    /// The connection bounds of this configuration, with the connection cap lowered to fit
    /// `fd_limit` (the soft open-file limit, when known) less a reserve for the database,
    /// graph files and outgoing connections.
    pub fn server_limits(&self, fd_limit: Option<u64>) -> edgeroute_server::ServerLimits {
        let limits = edgeroute_server::ServerLimits {
            max_connections: self.max_connections.max(1),
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms.max(1)),
            max_requests_per_connection: (self.max_requests_per_connection > 0)
                .then_some(self.max_requests_per_connection),
            protocol_error_body: Some(crate::api::middleware::protocol_error_body),
            ..edgeroute_server::ServerLimits::default()
        };
        match fd_limit {
            Some(fds) => limits.within_fd_limit(fds, FD_RESERVE),
            None => limits,
        }
    }
}

/// Descriptors kept free of client connections.
const FD_RESERVE: u64 = 256;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_table_size: 1000,
            max_route_waypoints: 500,
            max_nearest: 100,
            snap_radius_m: 1000.0,
            max_body_bytes: 64 * 1024,
            max_graph_bytes: 1 << 30,
            request_timeout: Duration::from_secs(30),
            concurrency_limit: 64,
            admission_queue: 256,
            admission_max_wait: Duration::from_millis(50),
            max_runtime_lag: None,
            max_queue_delay: None,
            standing_lag: None,
            solve_queue: 64,
            rate_limit: 0.0,
            rate_burst: 1,
            max_vrp_jobs: 2000,
            max_concurrent_solves: 2,
            max_vrp_time_limit: Duration::from_secs(10),
            max_optimize_body_bytes: 32 << 20,
            compute_threads: 0,
            compute_queue: 64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_tls_needs_both_files() {
        let config = Config::try_parse_from([
            "edgeroute-agent",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "/tmp/x",
            "--api-key",
            "a",
            "--api-key",
            "b",
        ])
        .unwrap();
        assert_eq!(config.api_keys, ["a", "b"]);
        assert_eq!(config.max_table_size, 1000);
        assert!(
            Config::try_parse_from([
                "edgeroute-agent",
                "--data-dir",
                "/tmp/x",
                "--tls-cert",
                "c.pem"
            ])
            .is_err()
        );
        assert!(
            Config::try_parse_from([
                "edgeroute-agent",
                "--data-dir",
                "/tmp/x",
                "--map",
                "m.pbf",
                "--graph",
                "g.bin"
            ])
            .is_err()
        );
    }
}

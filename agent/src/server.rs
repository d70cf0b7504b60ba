//! Start-up, serving and graceful shutdown.
//!
//! [`run`] is what the binary does: [`Agent::open`], bind, [`Agent::serve`] until SIGTERM or
//! SIGINT. Tests do the same in process with a port-0 listener and any future as the
//! shutdown trigger.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration, time::Instant};

use anyhow::Context;
use axum::Router;
use tokio::{net::TcpListener, sync::watch};

use crate::{
    api::{self, AppState, Auth, NodeInfo, middleware::RateLimiter},
    config::Config,
    metrics::Metrics,
    routing::{GraphHolder, GraphService, Source, profiles::Profiles, shadow::Shadow},
    storage::{SledStore, Store},
};

/// Runs the agent until SIGTERM/SIGINT, or until the initial graph fails to load.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let probe_listen = config.probe_listen;
    let agent = Agent::open(config).await?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let probes = match probe_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for probes on {addr}"))?,
        ),
        None => None,
    };
    agent
        .serve_with_probes(listener, probes, edgeroute_server::shutdown_signal())
        .await
}

/// An agent ready to serve: its database open, its keys checked, its state built. The graph
/// is loaded once it serves.
pub struct Agent {
    config: Config,
    store: Arc<dyn Store>,
    state: AppState,
    sync: Option<crate::sync::SyncContext>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Opens the database in `config.data_dir` and refuses to start without authentication
    /// (an `--api-key`) unless `--no-auth` says so.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        let data_dir = config.data_dir.clone();
        // The outbox exists only for an agent that syncs: a standalone one must never fill
        // it up and start refusing plans.
        let outbox = config
            .control_plane
            .is_some()
            .then_some(config.outbox_max_events.max(1));
        let cache_bytes = config.db_cache_mb.saturating_mul(1 << 20);
        let store = tokio::task::spawn_blocking(move || {
            let store = SledStore::open_with_cache(&data_dir, cache_bytes)?;
            match outbox {
                Some(max) => store.with_outbox(max),
                None => Ok(store),
            }
        })
        .await?
        .with_context(|| format!("cannot open the database in {}", config.data_dir.display()))?;
        let store: Arc<dyn Store> = Arc::new(store);

        let identity = {
            let store = store.clone();
            let node = config.node_name.clone();
            tokio::task::spawn_blocking(move || {
                let identity = store.boot(node.as_deref())?;
                store.flush()?;
                Ok::<_, crate::storage::Error>(identity)
            })
            .await??
        };
        // The configured keys are the accepted keys: none is stored, so a key removed from
        // the configuration is refused from the next start on.
        let keys: Vec<String> = config
            .api_keys
            .iter()
            .filter(|k| !k.is_empty())
            .cloned()
            .collect();
        let auth = Auth::new(&keys, config.admin_key.as_deref(), config.no_auth);
        if !auth.has_api_keys() && !auth.open {
            anyhow::bail!(
                "refusing to start without authentication: give at least one --api-key \
                 (or EDGEROUTE_API_KEY), or pass --no-auth to serve the routing API openly"
            );
        }

        let metrics = Arc::new(Metrics::new());
        let holder = Arc::new(GraphHolder::default());
        let graphs = Arc::new(
            GraphService::new(holder, store.clone(), metrics.clone())
                .with_spool_dir(config.data_dir.join("uploads")),
        );
        let limits = config.limits();
        let profiles = Arc::new(Profiles::new(config.data_dir.join("profiles")));
        {
            let profiles = profiles.clone();
            let flags = config.profile_graphs.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                for (name, path) in &flags {
                    let bytes = std::fs::read(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    profiles.install(name, &bytes).with_context(|| {
                        format!("cannot serve {} as profile {name}", path.display())
                    })?;
                }
                let loaded = profiles
                    .load_dir()
                    .context("cannot load the profile graphs")?;
                if !loaded.is_empty() {
                    tracing::info!(?loaded, "extra profiles served");
                }
                Ok(())
            })
            .await??;
        }
        let window: Arc<crate::sync::window::WindowRecorder> = Arc::default();
        let shadow = Arc::new(Shadow::new(
            config.shadow_queue,
            window.clone(),
            metrics.clone(),
        ));
        let mut state = api::Shared {
            graphs,
            store: store.clone(),
            admission: Arc::new(api::admission(&limits, &metrics)),
            metrics,
            rate: Arc::new(RateLimiter::new(limits.rate_limit, limits.rate_burst)),
            limits: Arc::new(limits),
            auth: Arc::new(auth),
            cors_origins: Arc::new(config.cors_origins.clone()),
            node: Arc::new(NodeInfo {
                name: config
                    .node_name
                    .clone()
                    .unwrap_or_else(|| identity.id.clone()),
                id: identity.id.clone(),
                region: config.region.clone(),
                boot_count: identity.boot_count,
                started: Instant::now(),
            }),
            window,
            sync: None,
            shadow,
            profiles,
        };
        let mut sync = None;
        if let Some(url) = &config.control_plane {
            let handle = Arc::new(crate::sync::SyncHandle {
                control_plane: url.to_string(),
                state: Arc::default(),
            });
            state.sync = Some(handle.clone());
            sync = Some(crate::sync::SyncContext {
                config: Arc::new(crate::sync::SyncConfig::from_config(&config, url.clone())),
                client: crate::sync::client::http_client(&config)?,
                store: store.clone(),
                graphs: state.graphs.clone(),
                window: state.window.clone(),
                state: handle.state.clone(),
                node: state.node.clone(),
                metrics: state.metrics.clone(),
                shadow: state.shadow.clone(),
                profiles: state.profiles.clone(),
            });
        }
        Ok(Self {
            config,
            store,
            state: state.into(),
            sync,
        })
    }

    /// The state every handler shares.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The whole application with its middleware, for driving with `tower::ServiceExt`.
    pub fn router(&self) -> Router {
        api::app(self.state.clone())
    }

    /// Announces `listener`, loads the graph in the background and serves until `shutdown`
    /// resolves or the graph fails to load; then drains and flushes the database.
    pub async fn serve<F>(self, listener: TcpListener, shutdown: F) -> anyhow::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.serve_with_probes(listener, None, shutdown).await
    }

    /// [`Agent::serve`], and `/healthz`, `/readyz` and `/metrics` on `probes` too, if given:
    /// a listener of their own, where no flood of clients delays them (see
    /// [`probe_app`]).
    pub async fn serve_with_probes<F>(
        self,
        listener: TcpListener,
        probes: Option<TcpListener>,
        shutdown: F,
    ) -> anyhow::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Self {
            config,
            store,
            state,
            sync,
        } = self;
        let graphs = state.graphs.clone();
        let shadow = state.shadow.clone();
        let accept_max_lag = (config.shed_connections_lag_ms > 0)
            .then(|| Duration::from_millis(config.shed_connections_lag_ms));
        if state.admission.max_lag.is_some() || accept_max_lag.is_some() {
            tokio::spawn(state.admission.lag.clone().run());
        }
        let shedder: Arc<dyn edgeroute_server::conn::ConnectionShedder> =
            Arc::new(api::admission::AcceptShed {
                admission: state.admission.clone(),
                metrics: state.metrics.clone(),
                max_open: (config.shed_connections_above > 0)
                    .then_some(config.shed_connections_above),
                max_lag: accept_max_lag,
            });
        // Measured only when something refuses on it: the wrapper costs every poll a lock.
        let queue_delay = state
            .admission
            .max_queue_delay
            .map(|_| state.admission.queue_delay.clone());
        let probe_app = probe_app(state.clone());
        let app = api::app(state);
        let addr = listener.local_addr()?;
        let scheme = if config.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        announce(&config, scheme, addr).await?;

        // Load the graph in the background: /healthz answers at once, /readyz once it is in.
        let (fatal_tx, mut fatal_rx) = watch::channel(None::<String>);
        let source = match (&config.map, &config.graph) {
            (Some(path), _) => Source::Map {
                path: path.clone(),
                version: config.graph_version.clone(),
            },
            (None, Some(path)) => Source::Artifact(path.clone()),
            (None, None) => Source::Stored,
        };
        let force_graph = config.force_graph;
        tokio::spawn(async move {
            match graphs.load_initial(source, force_graph).await {
                Ok(Some(_)) => {}
                Ok(None) => tracing::warn!(
                    "no graph stored yet: start with --map or --graph, upload one with PUT /admin/graph, \
                     or let the control plane's directive bring one"
                ),
                Err(err) => {
                    let message = format!("{:#}", anyhow::Error::new(err));
                    tracing::error!(error = %message, "cannot load the graph");
                    let _ = fatal_tx.send(Some(message));
                }
            }
        });

        // The sync loop stops with the server; it holds nothing that needs draining (what it
        // has not sent stays in the outbox).
        let (stop_sync, mut sync_stopped) = watch::channel(false);
        let stop_sync_rx_for_probes = stop_sync.subscribe();
        let mut shadow_stopped = stop_sync.subscribe();
        tokio::spawn(shadow.run(async move {
            let _ = shadow_stopped.wait_for(|stop| *stop).await;
        }));
        if let Some(sync) = sync {
            tokio::spawn(crate::sync::client::run(sync, async move {
                let _ = sync_stopped.wait_for(|stop| *stop).await;
            }));
        }
        let grace = Duration::from_secs(config.shutdown_grace_s);
        // A flood of connections must not exhaust the descriptors the database and the
        // health probes need: raise the soft limit as far as allowed, and cap connections
        // below it.
        let fd_limit = edgeroute_server::raise_fd_limit();
        let mut server_limits = config.server_limits(fd_limit);
        server_limits.shedder = Some(shedder);
        server_limits.queue_delay = queue_delay;
        if server_limits.max_connections < config.max_connections {
            tracing::warn!(
                max_connections = server_limits.max_connections,
                fd_limit,
                "--max-connections lowered to fit the open-file limit"
            );
        }
        let shutdown = {
            let mut fatal_rx = fatal_rx.clone();
            async move {
                let fatal = async {
                    // The sender is dropped once the graph is loaded: then only `shutdown` counts.
                    if fatal_rx.wait_for(Option::is_some).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    () = shutdown => {}
                    () = fatal => {}
                }
                let _ = stop_sync.send(true);
            }
        };
        // The probe listener stops with the main one (the sync stop signals both).
        let probe_server = probes.map(|probes| {
            let mut stopped = stop_sync_rx_for_probes;
            let limits = edgeroute_server::ServerLimits {
                max_connections: PROBE_CONNECTIONS,
                ..edgeroute_server::ServerLimits::default()
            };
            let addr = probes.local_addr().ok();
            tracing::info!(?addr, "serving probes");
            tokio::spawn(edgeroute_server::serve_with_limits(
                probes,
                probe_app,
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
                Some(Duration::from_secs(1)),
                limits,
            ))
        });
        match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                edgeroute_server::tls::install_provider();
                let tls = edgeroute_server::tls::server_config(cert, key)?;
                edgeroute_server::serve_tls_with_limits(
                    listener,
                    app,
                    Arc::new(tls),
                    shutdown,
                    grace,
                    server_limits,
                )
                .await
                .context("HTTPS server failed")?;
            }
            _ => edgeroute_server::serve_with_limits(
                listener,
                app,
                shutdown,
                Some(grace),
                server_limits,
            )
            .await
            .context("HTTP server failed")?,
        }
        if let Some(probe_server) = probe_server {
            match probe_server.await {
                Ok(Err(err)) => tracing::warn!(error = %err, "probe listener failed"),
                Err(err) => tracing::warn!(error = %err, "probe listener panicked"),
                Ok(Ok(())) => {}
            }
        }
        store.flush().context("flushing the database")?;
        let fatal = fatal_rx.borrow_and_update().clone();
        if let Some(message) = fatal {
            anyhow::bail!("cannot load the graph: {message}");
        }
        tracing::info!("shut down cleanly");
        Ok(())
    }
}

/// Connections the probe listener keeps open at once: a few probers, never a crowd.
const PROBE_CONNECTIONS: usize = 64;

/// What the probe listener serves: liveness, readiness and metrics, without the API's
/// middleware (no authentication, rate limit or admission: these must answer under any load,
/// and only the node's own infrastructure should reach this address).
pub fn probe_app(state: AppState) -> Router {
    api::health::router().with_state(state)
}

/// Tell humans and tools where we listen: a stdout line and the optional port file.
async fn announce(config: &Config, scheme: &str, addr: SocketAddr) -> anyhow::Result<()> {
    println!("listening on {scheme}://{addr}");
    tracing::info!(%addr, scheme, "listening");
    if let Some(path) = &config.port_file {
        let tmp = path.with_extension("tmp");
        tokio::fs::write(&tmp, addr.port().to_string())
            .await
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        tokio::fs::rename(&tmp, path)
            .await
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

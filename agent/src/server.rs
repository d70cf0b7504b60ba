//! Start-up, serving and graceful shutdown.

use std::{net::SocketAddr, sync::Arc, time::Duration, time::Instant};

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::sync::watch;

use crate::{
    api::{self, AppState, Auth, NodeInfo, middleware::RateLimiter},
    config::Config,
    metrics::Metrics,
    routing::{GraphHolder, GraphService, Source},
    storage::{SledStore, Store},
    tls,
};

/// Run the agent until SIGTERM/SIGINT, or until the initial graph fails to load.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || SledStore::open(&data_dir))
        .await?
        .with_context(|| format!("cannot open the database in {}", config.data_dir.display()))?;
    let store: Arc<dyn Store> = Arc::new(store);

    // Keys: the ones given now are stored (hashed); stored ones stay valid across restarts.
    let (identity, stored_hashes) = {
        let store = store.clone();
        let keys = config.api_keys.clone();
        tokio::task::spawn_blocking(move || {
            for key in keys.iter().filter(|k| !k.is_empty()) {
                store.add_api_key(key)?;
            }
            let identity = store.boot()?;
            store.flush()?;
            Ok::<_, crate::storage::Error>((identity, store.api_key_hashes()?))
        })
        .await??
    };
    let mut auth = Auth::new(&[], config.admin_key.as_deref(), config.no_auth);
    auth.api_key_hashes = stored_hashes.into_iter().collect();
    if auth.api_key_hashes.is_empty() && !auth.open {
        anyhow::bail!(
            "refusing to start without authentication: give at least one --api-key \
             (or EDGEROUTE_API_KEY), or pass --no-auth to serve the routing API openly"
        );
    }

    let metrics = Arc::new(Metrics::new());
    let holder = Arc::new(GraphHolder::default());
    let graphs = Arc::new(GraphService::new(holder, store.clone(), metrics.clone()));
    let limits = config.limits();
    let state = AppState {
        graphs: graphs.clone(),
        store: store.clone(),
        metrics,
        rate: Arc::new(RateLimiter::new(limits.rate_limit, limits.rate_burst)),
        solves: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent_solves)),
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
    };
    let app = api::app(state);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
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
    tokio::spawn(async move {
        match graphs.load_initial(source).await {
            Ok(Some(_)) => {}
            Ok(None) => tracing::warn!(
                "no graph stored yet: start with --map or --graph, or upload one with PUT /admin/graph"
            ),
            Err(err) => {
                let message = format!("{:#}", anyhow::Error::new(err));
                tracing::error!(error = %message, "cannot load the graph");
                let _ = fatal_tx.send(Some(message));
            }
        }
    });

    let grace = Duration::from_secs(config.shutdown_grace_s);
    let shutdown = {
        let mut fatal_rx = fatal_rx.clone();
        async move {
            let fatal = async {
                // The sender is dropped once the graph is loaded: then only signals count.
                if fatal_rx.wait_for(Option::is_some).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = signal() => {}
                () = fatal => {}
            }
        }
    };
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            tls::install_provider();
            let tls_config = tls::server_config(cert, key)?;
            let rustls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls_config));
            let handle = axum_server::Handle::new();
            let shutdown_handle = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                shutdown_handle.graceful_shutdown(Some(grace));
            });
            let std_listener = listener.into_std()?;
            // TCP_NODELAY: small responses must not wait for Nagle + delayed ACK (~40 ms).
            axum_server::from_tcp_rustls(std_listener, rustls)
                .map(|tls| tls.acceptor(axum_server::accept::NoDelayAcceptor::new()))
                .handle(handle)
                .serve(app.into_make_service())
                .await
                .context("HTTPS server failed")?;
        }
        _ => {
            let listener = listener.tap_io(|tcp| {
                if let Err(err) = tcp.set_nodelay(true) {
                    tracing::warn!(error = %err, "cannot set TCP_NODELAY");
                }
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
                .context("HTTP server failed")?;
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

/// Resolves on SIGINT or SIGTERM.
async fn signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT: draining in-flight requests"),
        () = terminate => tracing::info!("SIGTERM: draining in-flight requests"),
    }
}

//! How every edgeroute server runs: `serve(listener, app, shutdown)`, as in mini-redis.
//!
//! The caller binds the listener (port 0 in tests), builds the axum [`Router`] and passes any
//! future as the shutdown trigger: [`shutdown_signal`] in a binary, a oneshot receiver in a
//! test. Servers are therefore testable in process; only a few end-to-end tests need the
//! real binaries.
//!
//! # Layout
//! - this module: [`serve`], [`serve_with_grace`] and [`serve_with_limits`] (plain HTTP/1.1
//!   and HTTP/2), [`shutdown_signal`] (SIGTERM or SIGINT), [`init_tracing`] and
//!   [`LogFormat`].
//! - [`telemetry`]: logs and OpenTelemetry traces (OTLP export, W3C trace context) for
//!   every process; [`init_tracing`] is its no-export form.
//! - [`conn`]: the accept loop they share with [`serve_tls`], bounded by [`ServerLimits`]
//!   (connection cap, header-read and idle timeouts, keep-alive limits, back-off on
//!   `EMFILE`), and [`raise_fd_limit`].
//! - [`exposition`]: the OpenMetrics and Prometheus 0.0.4 text formats of `/metrics`.
//! - [`protocol_errors`]: bodies for the errors hyper answers before the application sees
//!   the request (400, 414, 431).
//! - [`scratch`]: the buffers a thread reuses for text it formats per request.
//! - [`tls`] (feature `tls`): [`serve_tls`] (HTTPS, with a grace period for in-flight
//!   requests) and the rustls (ring) server configuration, optionally asking for client
//!   certificates against a CA; each request then carries a [`tls::ClientCert`] extension
//!   saying whether its client presented a verified one.

pub mod conn;
pub mod exposition;
pub mod protocol_errors;
pub mod queue_delay;
pub mod scratch;
pub mod telemetry;
#[cfg(feature = "tls")]
pub mod tls;

use std::{future::Future, time::Duration};

use axum::Router;
use tokio::net::TcpListener;

pub use conn::{ServerLimits, raise_fd_limit};
#[cfg(feature = "tls")]
pub use tls::{serve_tls, serve_tls_with_limits};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Accepting or serving connections failed.
    #[error("server failed")]
    Io(#[from] std::io::Error),
    /// The TLS configuration could not be built.
    #[cfg(feature = "tls")]
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Serves `app` over plain HTTP on `listener` until `shutdown` resolves, then stops accepting
/// and waits for in-flight requests to finish. Connections are bounded by
/// [`ServerLimits::default`].
pub async fn serve<F>(listener: TcpListener, app: Router, shutdown: F) -> Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    serve_with_limits(listener, app, shutdown, None, ServerLimits::default()).await
}

/// [`serve`], but once `shutdown` resolves, in-flight requests get at most `grace` to finish;
/// then the server returns and the connections still open are dropped. One stalled client
/// must not keep a process alive past its termination grace period.
pub async fn serve_with_grace<F>(
    listener: TcpListener,
    app: Router,
    shutdown: F,
    grace: Duration,
) -> Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    serve_with_limits(
        listener,
        app,
        shutdown,
        Some(grace),
        ServerLimits::default(),
    )
    .await
}

/// [`serve_with_grace`] with the connection bounds of `limits`; `grace: None` waits for
/// in-flight requests however long they take.
///
/// Accepted sockets get `TCP_NODELAY`: small responses must not wait for Nagle plus a delayed
/// ACK (about 40 ms).
pub async fn serve_with_limits<F>(
    listener: TcpListener,
    app: Router,
    shutdown: F,
    grace: Option<Duration>,
    limits: ServerLimits,
) -> Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    conn::run(listener, app, shutdown, grace, limits, conn::PlainTcp).await
}

/// Resolves on SIGINT or SIGTERM (SIGINT only where there is no SIGTERM). If a signal
/// cannot be listened for, that one is logged and ignored rather than ending the server.
pub async fn shutdown_signal() {
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

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the process's tracing subscriber, writing to stderr in `format`, without span
/// export (see [`telemetry::init`] for that); the filter comes from `RUST_LOG` and defaults
/// to `info`. A second call (tests, embedding) keeps the first subscriber instead of
/// panicking.
pub fn init_tracing(format: LogFormat) {
    // Without an endpoint nothing can fail.
    let _ = telemetry::init("edgeroute", format, &telemetry::TraceArgs::default());
}

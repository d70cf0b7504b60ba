//! Tracing set-up shared by every long-running subcommand.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs a tracing subscriber: JSON lines when `EDGEROUTE_LOG_FORMAT=json` (what log
/// shippers in a cluster want), human-readable otherwise; the filter comes from `RUST_LOG`
/// and defaults to `info`.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("EDGEROUTE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let registry = tracing_subscriber::registry().with(filter);
    // try_init: a second call (tests, dev mode) must not panic.
    let _ = if json {
        registry.with(fmt::layer().json()).try_init()
    } else {
        registry.with(fmt::layer()).try_init()
    };
}

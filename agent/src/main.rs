//! `edgeroute-agent`: see the library documentation and `--help`.

use clap::Parser;
use edgeroute_agent::config::Config;

/// jemalloc rather than glibc's malloc: a `/route` makes about 120 allocations, and glibc's
/// malloc, free and realloc were 15% of its instructions, with half the mallocs missing the
/// per-thread cache. It is built to give freed pages back at once (`.cargo/config.toml`),
/// so an idle agent stays as small as glibc with a fixed mmap threshold kept it, without
/// the environment variables that needed. Figures in `docs/agent-benchmarks.md`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let telemetry = match edgeroute_server::telemetry::init(
        "edgeroute-agent",
        config.log_format,
        &config.trace,
    ) {
        Ok(t) => t,
        Err(err) => {
            eprintln!("error: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = match edgeroute_agent::server::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "edgeroute-agent failed");
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    };
    // A collector that is away must not hold up the exit for long.
    telemetry.shutdown(std::time::Duration::from_secs(2)).await;
    code
}

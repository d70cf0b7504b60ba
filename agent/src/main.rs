//! `edgeroute-agent`: see the library documentation and `--help`.

use clap::Parser;
use edgeroute_agent::config::Config;

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

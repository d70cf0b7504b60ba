//! `edgeroute-agent`: see the library documentation and `--help`.

use clap::Parser;
use edgeroute_agent::config::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    edgeroute_server::init_tracing(config.log_format);
    match edgeroute_agent::server::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "edgeroute-agent failed");
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

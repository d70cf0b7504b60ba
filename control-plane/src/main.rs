//! `edgeroute-control-plane`: a thin shell that parses the command line and hands over to
//! the library.

use clap::{Parser, Subcommand};
use edgeroute_control_plane::{controller, crdgen, graph_cli, telemetry};

/// The edgeroute control plane.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build, inspect and query graph artifacts.
    Graph {
        #[command(subcommand)]
        command: graph_cli::GraphCommand,
    },
    /// Run the EdgeRegion controller against the cluster in the current kube context.
    Controller(controller::ControllerArgs),
    /// Print the EdgeRegion CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Graph { command } => graph_cli::run(command),
        Command::Controller(args) => {
            telemetry::init();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(controller::run(args))
        }
        Command::Crd => {
            print!("{}", crdgen::crd_yaml()?);
            Ok(())
        }
    }
}

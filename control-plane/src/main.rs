//! `edgeroute-control-plane`: a thin shell that parses the command line and hands over to
//! the library.

use clap::Parser;
use edgeroute_control_plane::cli::{self, Cli};

fn main() -> anyhow::Result<()> {
    cli::run(Cli::parse())
}

//! The `noether` command-line tool.

use clap::{Parser, Subcommand};

/// noether: symmetry-equivariant machine learning for particle physics.
#[derive(Debug, Parser)]
#[command(name = "noether", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version of noether and of its crates.
    Version,
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("noether {}", noether::VERSION);
        }
    }
}

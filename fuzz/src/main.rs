//! `noether-fuzz`: run a fuzzing campaign against one of noether's readers.
//!
//! ```sh
//! cargo run --release -p noether-fuzz -- run hdf5 --inputs 1000000 --out fuzz/out/hdf5
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use noether_fuzz::engine::{self, Limits};
use noether_fuzz::targets;

/// Structure-aware mutational fuzzing of noether's readers of untrusted bytes.
#[derive(Debug, Parser)]
#[command(name = "noether-fuzz")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a campaign in supervised worker processes; prints the figures.
    Run {
        /// The target: hdf5, safetensors, pt, toml or csv.
        target: String,
        /// Inputs to run.
        #[arg(long, default_value_t = 1_000_000)]
        inputs: u64,
        /// The campaign's seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The campaign directory (findings/, corpus/, stats.json).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Run one file through a target under the worker's memory limit, as a regression
    /// test does.
    Replay {
        /// The target.
        target: String,
        /// The input file.
        file: PathBuf,
        /// The address-space limit in bytes (0: none).
        #[arg(long, default_value_t = 4 << 30)]
        memory_limit: u64,
    },
    /// One worker of a campaign (started by `run`).
    #[command(hide = true)]
    Worker {
        target: String,
        #[arg(long)]
        from: u64,
        #[arg(long)]
        to: u64,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        limits: LimitArgs,
    },
}

/// The limits a worker runs under, as `run` takes them and hands them to its workers.
#[derive(Debug, clap::Args)]
struct LimitArgs {
    /// The longest one input may run, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    time_limit_ms: u64,
    /// A worker's address-space limit in bytes (0: none).
    #[arg(long, default_value_t = 4 << 30)]
    memory_limit: u64,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            time: Duration::from_millis(self.time_limit_ms),
            memory: self.memory_limit,
        }
    }
}

fn target(name: &str) -> Result<Box<dyn noether_fuzz::Target>, String> {
    targets::by_name(name).ok_or_else(|| {
        let names: Vec<_> = targets::all().iter().map(|t| t.name()).collect();
        format!("unknown target '{name}' (one of {})", names.join(", "))
    })
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Run {
            target: name,
            inputs,
            seed,
            out,
            limits,
        } => {
            let target = target(&name)?;
            let limits = limits.limits();
            let exe = std::env::current_exe()?;
            let stats =
                engine::supervise(&exe, target.as_ref(), inputs, seed, &out, limits, |line| {
                    eprintln!("{line}");
                })?;
            println!(
                "target={name} executions={} per_second={:.0} accepted={} rejected={} distinct_errors={} findings={} slowest_ms={:.1} seconds={:.0}",
                stats.executions,
                stats.rate(),
                stats.accepted,
                stats.rejected,
                stats.error_kinds.len(),
                stats.findings,
                stats.slowest_ms,
                stats.seconds
            );
        }
        Command::Replay {
            target: name,
            file,
            memory_limit,
        } => {
            let target = target(&name)?;
            engine::limit_memory(memory_limit)?;
            let input = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let scratch =
                std::env::temp_dir().join(format!("noether-fuzz-replay-{}", std::process::id()));
            std::fs::create_dir_all(&scratch)?;
            let outcome = target.execute(&input, &scratch);
            let _ = std::fs::remove_dir_all(&scratch);
            println!("{}: {outcome:?}", file.display());
        }
        Command::Worker {
            target: name,
            from,
            to,
            seed,
            dir,
            limits,
        } => {
            let target = target(&name)?;
            engine::worker(target.as_ref(), from, to, seed, &dir, limits.limits())?;
        }
    }
    Ok(())
}

//! The `noether` command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

use cli::output::{note, say, StdoutError};

// candle allocates a buffer per operation; see `noether::equivariant::CachingAllocator`.
#[global_allocator]
static ALLOCATOR: noether::equivariant::CachingAllocator = noether::equivariant::CachingAllocator;
use noether::data::{self, JetFile, Layout, OpenOptions};

/// noether: symmetry-equivariant machine learning for particle physics.
#[derive(Debug, Parser)]
#[command(name = "noether", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version of noether.
    Version,
    /// Show a jet file's detected layout, datasets (shapes, types, filters) and counts.
    Inspect {
        /// The HDF5 file.
        file: PathBuf,
    },
    /// Convert a jet file of any supported layout into noether's ragged layout.
    Convert {
        /// The input file (any layout; see `--layout`).
        input: PathBuf,
        /// The output file (written atomically).
        output: PathBuf,
        /// Force the input layout instead of detecting it (toptag-table, toptag-fixed,
        /// lorentznet, jetnet, lhco, ragged).
        #[arg(long)]
        layout: Option<Layout>,
        /// Label given to every jet of a layout without labels (JetNet).
        #[arg(long)]
        label: Option<u8>,
        /// Keep only the first N jets.
        #[arg(long)]
        max_jets: Option<usize>,
    },
    /// Convert a PyTorch checkpoint (`torch.save` of a state dict) into safetensors.
    ConvertCheckpoint {
        /// The `.pt` file (read without Python; only tensors and containers are loaded).
        input: PathBuf,
        /// The safetensors file to write (atomically).
        output: PathBuf,
    },
    /// Evaluate a checkpoint on a jet file.
    Eval(cli::eval::EvalArgs),
    /// Export a quantised checkpoint (QONNX, for hls4ml and FINN).
    Export(cli::export::ExportArgs),
    /// Time one jet through a checkpoint (batch of one, one core), in the integer
    /// engine with `--fixed-point`.
    Latency(cli::latency::LatencyArgs),
    /// Train a tagger from a TOML config; writes a run directory.
    Train(cli::train::TrainArgs),
    /// Fine-tune from a pretrained safetensors checkpoint; writes a run directory.
    Finetune(cli::finetune::FinetuneArgs),
    /// Scaling-law fits and compute allocation.
    #[command(subcommand)]
    Scaling(cli::scaling::ScalingCommand),
    /// Learning-dynamics diagnostics of a checkpoint (Hessian, LLC, paths, balance).
    #[command(subcommand)]
    Diagnose(cli::diagnose::DiagnoseCommand),
    /// Sweeps of runs: plan once, run locally or as a Slurm job array, collect.
    #[command(subcommand)]
    Sweep(cli::sweep::SweepCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`noether ... | head`) is not an error.
        Err(e)
            if e.downcast_ref::<StdoutError>()
                .is_some_and(StdoutError::is_closed_pipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            note!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Version => say!("noether {}", noether::VERSION)?,
        Command::Inspect { file } => say!("{}", data::inspect(&file)?)?,
        Command::Scaling(command) => cli::scaling::run(command)?,
        Command::Eval(args) => cli::eval::run(&args)?,
        Command::Train(args) => cli::train::run(&args)?,
        Command::Latency(args) => cli::latency::run(&args)?,
        Command::Export(args) => cli::export::run(&args)?,
        Command::Finetune(args) => cli::finetune::run(&args)?,
        Command::Diagnose(command) => cli::diagnose::run(&command)?,
        Command::Sweep(command) => cli::sweep::run(&command)?,
        Command::ConvertCheckpoint { input, output } => cli::checkpoint::convert(&input, &output)?,
        Command::Convert {
            input,
            output,
            layout,
            label,
            max_jets,
        } => {
            let options = OpenOptions {
                layout,
                label,
                ..OpenOptions::default()
            };
            let file = JetFile::open_with(&input, &options)?;
            let count = max_jets.unwrap_or(file.len());
            let (jets, report) = file.read(0, count)?;
            let source = format!(
                "converted by noether {} from {}",
                noether::VERSION,
                input.display()
            );
            data::write_ragged(&output, &jets, &source)?;
            say!("{report}")?;
            say!("wrote {} jets to {}", jets.len(), output.display())?;
        }
    }
    Ok(())
}

//! `noether latency`: the time one jet takes through a checkpoint, batch of one, on one
//! core, as a trigger would run it: in the integer engine (`--fixed-point`, quantised
//! checkpoints) or the float model. The features are computed beforehand (on an FPGA they
//! arrive as inputs); the figure is the median of many single-jet calls after a warm-up.

use std::path::PathBuf;

use clap::Args;
use noether::data::JetFile;
use noether::train::{engine_latency, float_latency, jet_inputs, load_inference_model};

use crate::cli::output::say;

/// Arguments of `latency`.
#[derive(Debug, Args)]
pub struct LatencyArgs {
    /// A noether checkpoint (`best.safetensors` of a run).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Constituents per jet (padded or truncated), as the trigger's input buffer holds
    /// them (default: the run's `data.n_max`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    constituents: Option<u16>,
    /// Run the integer engine (a checkpoint trained with `[quant]`).
    #[arg(long)]
    fixed_point: bool,
    /// Jets to cycle through (default: the bundled test jets).
    #[arg(long, default_value = "data/test.h5")]
    data: PathBuf,
    /// Time this one jet (its row in `--data`) instead of cycling through the first 512:
    /// for comparing two builds or configurations on the same work.
    #[arg(long)]
    jet: Option<usize>,
    /// Timed single-jet calls (the median is reported).
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
}

type Error = Box<dyn std::error::Error>;

/// Jets the calls cycle through.
const JETS: usize = 512;

/// Runs `noether latency`: prints `latency_ns_per_jet=X` and
/// `throughput_jets_per_s=Y`.
pub fn run(args: &LatencyArgs) -> Result<(), Error> {
    // One core, as the figure promises.
    crate::cli::set_threads(1);
    let (model, _, config) = load_inference_model(&args.checkpoint)?;
    let nodes = args.constituents.map_or(config.data.n_max, usize::from);
    let file = JetFile::open(&args.data)?;
    let (start, count) = match args.jet {
        Some(row) if row >= file.len() => {
            return Err(format!(
                "{}: --jet {row} is past its last row ({} jets)",
                args.data.display(),
                file.len()
            )
            .into())
        }
        Some(row) => (row, 1),
        None => (0, JETS.min(file.len())),
    };
    let (jets, _) = file.read(start, count)?;
    if jets.is_empty() {
        return Err(format!("{}: no jets", args.data.display()).into());
    }
    let input = jet_inputs(&model, &jets, nodes)?;
    let latency = if args.fixed_point {
        engine_latency(&model, &input, args.calls)
            .map_err(|e| format!("{}: {e}", args.checkpoint.display()))?
    } else {
        float_latency(&model, &input, args.calls)?
    };
    say!(
        "model={} constituents={nodes} mode={} calls={}",
        model.kind(),
        if args.fixed_point {
            "fixed-point"
        } else {
            "float"
        },
        latency.calls
    )?;
    say!("latency_ns_per_jet={}", latency.median.as_nanos())?;
    say!("throughput_jets_per_s={:.0}", latency.jets_per_second)?;
    Ok(())
}

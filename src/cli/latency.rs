//! `noether latency`: the time one jet takes through a checkpoint, batch of one, on one
//! core, as a trigger would run it: in the integer engine (`--fixed-point`, quantised
//! checkpoints) or the float model. The features are computed beforehand (on an FPGA they
//! arrive as inputs); the figure is the median of many single-jet calls after a warm-up.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use noether::data::JetFile;
use noether::equivariant::{FixedPointInput, Mode};
use noether::quant::Engine;
use noether::train::{jet_inputs, load_inference_model};

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
    let (jets, _) = file.read(0, JETS.min(file.len()))?;
    if jets.is_empty() {
        return Err(format!("{}: no jets", args.data.display()).into());
    }
    let input = jet_inputs(&model, &jets, nodes)?;
    let calls = args.calls.max(1);
    let mut times = Vec::with_capacity(calls);
    let started = Instant::now();
    if args.fixed_point {
        let mut engine = Engine::new(&model.quant_graph()?)?;
        let features = FixedPointInput::new(&input)?;
        let mut call = |k: usize| -> Result<Duration, Error> {
            let (x, mask) = features.jet(k % features.len());
            let t = Instant::now();
            std::hint::black_box(engine.run(std::hint::black_box(x), mask)?);
            Ok(t.elapsed())
        };
        for k in 0..calls.min(1000) {
            call(k)?;
        }
        for k in 0..calls {
            times.push(call(k)?);
        }
    } else {
        let device = &model.placement().device;
        let singles = (0..jets.len())
            .map(|b| {
                let row = candle_core::Tensor::new(&[b as u32], device)?;
                input.select(&row).map_err(Into::into)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let call = |k: usize| -> Result<Duration, Error> {
            let t = Instant::now();
            std::hint::black_box(model.forward_t(&singles[k % singles.len()], &mut Mode::Eval)?);
            Ok(t.elapsed())
        };
        for k in 0..calls.min(20) {
            call(k)?;
        }
        for k in 0..calls {
            times.push(call(k)?);
        }
    }
    let total = started.elapsed();
    times.sort_unstable();
    let median = times[times.len() / 2];
    say!(
        "model={} constituents={nodes} mode={} calls={calls}",
        model.kind(),
        if args.fixed_point {
            "fixed-point"
        } else {
            "float"
        }
    )?;
    say!("latency_ns_per_jet={}", median.as_nanos())?;
    say!(
        "throughput_jets_per_s={:.0}",
        calls as f64 / total.as_secs_f64().max(f64::MIN_POSITIVE)
    )?;
    Ok(())
}

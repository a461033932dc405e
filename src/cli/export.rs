//! `noether export`: a quantised checkpoint as QONNX, the ONNX dialect hls4ml and FINN
//! read.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use noether::quant::{export_qonnx, ParticleLayout};
use noether::train::load_inference_model;

use crate::cli::output::{note, say};

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// ONNX with QONNX `Quant` nodes.
    Qonnx,
}

/// Arguments of `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The format.
    #[arg(long, value_enum)]
    format: Format,
    /// A noether checkpoint trained with a `[quant]` section.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The file to write (atomically).
    #[arg(long)]
    out: PathBuf,
    /// Particles per jet of the exported input (default: the run's `data.n_max`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    constituents: Option<u16>,
    /// How a Deep Sets model (PFN, EFN) or PELICAN takes its particles: `stacked`
    /// (inputs `features` [batch, N, F] and `mask` [batch, N, 1]; PELICAN's `embedded`
    /// [batch, N, N, E], `labels` [batch, N, 2], `mask`) or `per-particle` (inputs
    /// `features_K` [batch, F] and `mask_K` [batch, 1] for each particle K; PELICAN's
    /// `embedded_I_J` [batch, E] per pair, `labels_K`, `mask_K` per node, beams first;
    /// the layers repeated: the form hls4ml's ONNX frontend converts).
    #[arg(long, value_enum, default_value_t = Layout::Stacked)]
    layout: Layout,
}

/// `--layout`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Layout {
    /// All particles in one tensor.
    Stacked,
    /// One input per particle (hls4ml).
    PerParticle,
}

type Error = Box<dyn std::error::Error>;

/// Runs `noether export`.
pub fn run(args: &ExportArgs) -> Result<(), Error> {
    let Format::Qonnx = args.format;
    let (model, _, config) = load_inference_model(&args.checkpoint)?;
    let graph = model
        .quant_graph()
        .map_err(|e| format!("{}: {e}", args.checkpoint.display()))?;
    let constituents = args.constituents.map_or(config.data.n_max, usize::from);
    // PELICAN's pair stage runs on the beams too; L-GATr-slim's tokens are the class
    // token, the spurions and the constituents.
    let beams = if graph.pairs.is_some() {
        model.beams().len()
    } else if graph.slim.is_some() {
        1 + model.beams().len()
    } else {
        0
    };
    let layout = match args.layout {
        Layout::Stacked => ParticleLayout::Stacked,
        Layout::PerParticle => ParticleLayout::PerParticle,
    };
    let report = export_qonnx(&graph, constituents + beams, layout, &args.out)
        .map_err(|e| format!("{}: {e}", args.checkpoint.display()))?;
    for (layer, bits) in &report.inexact {
        note!(
            "note: layer {layer}: sums of up to {bits} bits; QONNX executors compute in \
             float32 (24 bits) and may round them where noether's engine does not"
        );
    }
    say!(
        "wrote {} ({} nodes, {} Quant nodes, {} constituents)",
        args.out.display(),
        report.nodes,
        report.quant_nodes,
        constituents
    )?;
    Ok(())
}

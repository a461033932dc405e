//! `noether eval`: run a checkpoint on a jet file.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use clap::{Args, ValueEnum};
use noether::data::JetFile;
use noether::equivariant::{LorentzNet, LorentzNetConfig, LorentzNetInput};

/// Models `eval` can run.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModelKind {
    /// LorentzNet (default configuration unless the checkpoint's metadata says otherwise).
    Lorentznet,
}

/// Arguments of `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The model architecture.
    #[arg(long, value_enum, default_value = "lorentznet")]
    model: ModelKind,
    /// A safetensors checkpoint (a `module.` prefix, as DistributedDataParallel writes,
    /// is recognised).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Jets in any layout the data crate reads.
    #[arg(long)]
    data: PathBuf,
    /// Print one line per jet: `jet <i> logits <l0> <l1>`.
    #[arg(long)]
    print_logits: bool,
    /// Set E = |p| for every constituent (as detector-level eflow objects are).
    #[arg(long)]
    massless: bool,
}

/// Evaluates every jet alone (batch of one, LorentzNet's beams prepended); prints the
/// logits of each jet with `--print-logits` (and nothing else), otherwise the accuracy.
pub fn run(args: &EvalArgs) -> Result<(), Box<dyn std::error::Error>> {
    let ModelKind::Lorentznet = args.model;
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(&args.checkpoint, &Device::Cpu)
            .map_err(|e| format!("{}: {e}", args.checkpoint.display()))?;
    let prefixed = tensors.keys().all(|k| k.starts_with("module."));
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let vb = if prefixed { vb.pp("module") } else { vb };
    let model = LorentzNet::new(&LorentzNetConfig::default(), &vb)
        .map_err(|e| format!("{}: {e}", args.checkpoint.display()))?;
    let (mut jets, _) = JetFile::open(&args.data)?.read_all()?;
    if args.massless {
        jets.make_massless();
    }
    let mut out = std::io::stdout().lock();
    let mut correct = 0;
    for i in 0..jets.len() {
        let input = LorentzNetInput::single_jet(jets.constituents(i))?;
        let logits = model.forward(&input)?.flatten_all()?.to_vec1::<f32>()?;
        if args.print_logits {
            let text: Vec<String> = logits.iter().map(ToString::to_string).collect();
            writeln!(out, "jet {i} logits {}", text.join(" "))?;
        }
        let predicted = usize::from(logits.get(1).copied().unwrap_or(f32::MIN) > logits[0]);
        correct += usize::from(predicted == usize::from(jets.label(i)));
    }
    if !args.print_logits {
        let accuracy = correct as f64 / jets.len().max(1) as f64;
        writeln!(out, "jets={} accuracy={accuracy:.4}", jets.len())?;
    }
    Ok(())
}

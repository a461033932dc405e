//! `noether eval`: run a checkpoint on a jet file. noether checkpoints carry their config
//! in `__metadata__`; foreign LorentzNet checkpoints (the official release, `module.`
//! prefix recognised) are evaluated one jet at a time, as the reference code does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::cli::output::{note, say};
use candle_core::{DType, Device};
use candle_nn::VarMap;
use clap::{Args, ValueEnum};
use noether::data::{JetFile, JetSet};
use noether::equivariant::{
    inference_varbuilder, seeded_varbuilder, LorentzNet, LorentzNetConfig, LorentzNetInput,
};
use noether::train::{
    load_inference_model_on, logits, predict, write_outputs, DeviceSetting, RunDir, RunSummary,
    Scored, TaggingMetrics,
};
use noether::transfer::{load_checkpoint, LoadOptions};

/// Architectures of foreign (non-noether) checkpoints.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModelKind {
    /// LorentzNet with the default (paper) configuration.
    Lorentznet,
}

/// Arguments of `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Architecture of a foreign checkpoint (ignored for noether checkpoints).
    #[arg(long, value_enum, default_value = "lorentznet")]
    model: ModelKind,
    /// A safetensors checkpoint: a noether run's `best.safetensors`, or a PyTorch
    /// LorentzNet state dict (`module.` prefix recognised).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Jets in any layout the data crate reads.
    #[arg(long)]
    data: PathBuf,
    /// Write `metrics.json` and `roc.svg` here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print one line per jet: `jet <i> logits <l0> <l1>` (and nothing else).
    #[arg(long)]
    print_logits: bool,
    /// Set E = |p| for every constituent (as detector-level eflow objects are).
    #[arg(long)]
    massless: bool,
    /// CPU threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Device for a noether checkpoint (default: the one it was trained on): cpu,
    /// cuda:N or metal.
    #[arg(long)]
    device: Option<DeviceSetting>,
}

type Error = Box<dyn std::error::Error>;

/// Runs `noether eval`: prints `jets=N acc=.. auc=.. rejection_at_0.3=..
/// rejection_at_0.5=..`, or the logits with `--print-logits`.
pub fn run(args: &EvalArgs) -> Result<(), Error> {
    crate::cli::set_threads(args.threads);
    let (mut jets, report) = JetFile::open(&args.data)?.read_all()?;
    if !report.skipped_empty.is_empty() {
        note!(
            "{}: skipped {} jets without constituents (rows {})",
            args.data.display(),
            report.skipped_empty.len(),
            noether::data::row_list(&report.skipped_empty)
        );
    }
    // Printed logits name each jet by its file row.
    let rows = args.print_logits.then(|| report.kept_rows());
    if args.massless {
        jets.make_massless();
    }
    let bytes = std::fs::read(&args.checkpoint)
        .map_err(|e| format!("{}: {e}", args.checkpoint.display()))?;
    let is_noether = safetensors::SafeTensors::read_metadata(&bytes)
        .ok()
        .and_then(|(_, h)| h.metadata().as_ref().map(|m| m.contains_key("config")))
        .unwrap_or(false);
    let (scores, labels) = if is_noether {
        noether_scores(&args.checkpoint, &jets, rows.as_deref(), args.device)?
    } else {
        lorentznet_scores(&args.checkpoint, &jets, rows.as_deref())?
    };
    if args.print_logits {
        return Ok(());
    }
    let scored = Scored::new(&scores, &labels, None)?;
    let m = TaggingMetrics::of(&scored);
    say!(
        "jets={} acc={:.4} auc={:.4} rejection_at_0.3={:.1} rejection_at_0.5={:.1}",
        jets.len(),
        m.acc,
        m.auc,
        m.rejection_at_0_3,
        m.rejection_at_0_5
    )?;
    if let Some(out) = &args.out {
        let summary = RunSummary {
            model: "checkpoint".into(),
            acc: m.acc,
            auc: m.auc,
            rejection_at_0_3: m.rejection_at_0_3,
            rejection_at_0_5: m.rejection_at_0_5,
            test_loss: f64::NAN,
            intervals: HashMap::new(),
            train_jets: 0,
            test_jets: jets.len(),
            params: 0,
            trainable_params: 0,
            nonzero_params: 0,
            seconds: 0.0,
            epochs: 0,
            best_epoch: 0,
            start_val_auc: None,
            data: Vec::new(),
        };
        write_outputs(&RunDir::new(out), &summary, &[], &scored)?;
    }
    Ok(())
}

/// One line per jet, named by its row in the input file (`rows`, one per jet).
fn print_logits(logits: &[Vec<f32>], rows: &[usize]) -> Result<(), Error> {
    for (row, l) in rows.iter().zip(logits) {
        let text: Vec<String> = l.iter().map(ToString::to_string).collect();
        say!("jet {row} logits {}", text.join(" "))?;
    }
    Ok(())
}

/// A noether checkpoint: config from the metadata, batched evaluation (one jet per
/// batch when printing the logits of the jets of file rows `print`).
fn noether_scores(
    path: &Path,
    jets: &JetSet,
    print: Option<&[usize]>,
    device: Option<DeviceSetting>,
) -> Result<(Vec<f64>, Vec<u8>), Error> {
    let (model, _, config) = load_inference_model_on(path, device)?;
    if let Some(rows) = print {
        let all = logits(&model, jets, config.data.n_max, 1)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?;
        print_logits(&all, rows)?;
        return Ok((Vec::new(), Vec::new()));
    }
    let (scores, labels, _) = predict(
        &model,
        jets,
        config.data.n_max,
        config.train.eval_batch_size,
    )?;
    Ok((scores, labels))
}

/// A PyTorch LorentzNet state dict: each jet alone, beams prepended.
fn lorentznet_scores(
    path: &Path,
    jets: &JetSet,
    print: Option<&[usize]>,
) -> Result<(Vec<f64>, Vec<u8>), Error> {
    // The one checkpoint loader: `module.` prefix stripped, every parameter required,
    // shapes checked; the buffers' `num_batches_tracked` counters are not parameters.
    let varmap = VarMap::new();
    let config = LorentzNetConfig::default();
    LorentzNet::new(
        &config,
        &seeded_varbuilder(&varmap, 0, DType::F32, &Device::Cpu),
    )?;
    let options = LoadOptions {
        strict: true,
        ..LoadOptions::lenient()
    };
    let report = load_checkpoint(path, &varmap, &options)?;
    if let Some(m) = report.mismatched.first() {
        return Err(format!(
            "{}: tensor '{}' has shape {:?}, LorentzNet needs {:?}",
            path.display(),
            m.name,
            m.found,
            m.expected
        )
        .into());
    }
    let model = LorentzNet::new(
        &config,
        &inference_varbuilder(&varmap, DType::F32, &Device::Cpu),
    )?;
    let mut all = Vec::with_capacity(jets.len());
    for i in 0..jets.len() {
        let input = LorentzNetInput::single_jet(jets.constituents(i))?;
        all.push(model.forward(&input)?.flatten_all()?.to_vec1::<f32>()?);
    }
    if let Some(rows) = print {
        print_logits(&all, rows)?;
        return Ok((Vec::new(), Vec::new()));
    }
    let scores = all
        .iter()
        .map(|l| {
            let (a, b) = (f64::from(l[0]), f64::from(l[1]));
            1.0 / (1.0 + (a - b).exp())
        })
        .collect();
    Ok((scores, jets.labels().to_vec()))
}

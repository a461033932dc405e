//! `noether eval`: run a checkpoint on a jet file. noether checkpoints carry their config
//! in `__metadata__`; foreign checkpoints (safetensors or PyTorch `.pt` state dicts,
//! wrapper prefixes recognised) are built with `--model`: LorentzNet one jet at a time,
//! as the reference code does, ParticleNet batched with the inputs of `--data-config`.
//! Multi-class models score a binary task with `--signal-classes` and
//! `--background-classes`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::cli::output::{note, say};
use candle_core::{DType, Device};
use candle_nn::VarMap;
use clap::{Args, ValueEnum};
use noether::data::{JetFile, JetSet};
use noether::equivariant::{
    inference_varbuilder, seeded_varbuilder, LorentzNet, LorentzNetConfig, LorentzNetInput,
    ModelConfig, ParticleNetConfig, Tagger,
};
use noether::train::{
    fixed_point_logits, load_inference_model_on, logits, write_outputs, DeviceSetting, RunDir,
    RunSummary, Scored, TaggingMetrics,
};
use noether::transfer::{load_checkpoint, LoadOptions};

/// Architectures of foreign (non-noether) checkpoints.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModelKind {
    /// LorentzNet with the default (paper) configuration.
    Lorentznet,
    /// ParticleNet with the default (JetClass) configuration and the inputs of
    /// `--data-config`.
    Particlenet,
}

/// Arguments of `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Architecture of a foreign checkpoint (ignored for noether checkpoints).
    #[arg(long, value_enum, default_value = "lorentznet")]
    model: ModelKind,
    /// A checkpoint: a noether run's `best.safetensors`, or a foreign state dict
    /// (safetensors or a PyTorch `.pt` file; `module.` / `mod.` prefixes recognised).
    #[arg(long)]
    checkpoint: PathBuf,
    /// A weaver-core data config (YAML) defining a foreign ParticleNet's inputs (and its
    /// class count, from `labels`).
    #[arg(long)]
    data_config: Option<PathBuf>,
    /// Classes whose probabilities sum to the signal score of a multi-class model
    /// (comma-separated indices; with `--background-classes`).
    #[arg(long, value_delimiter = ',')]
    signal_classes: Vec<usize>,
    /// Classes whose probabilities sum to the background: the score is
    /// sum p(signal) / (sum p(signal) + sum p(background)).
    #[arg(long, value_delimiter = ',')]
    background_classes: Vec<usize>,
    /// Jets in any layout the data crate reads.
    #[arg(long)]
    data: PathBuf,
    /// Write `metrics.json` and `roc.svg` here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print one line per jet: `jet <i> logits <l0> <l1> ...` (every class; jets named by
    /// their row in the file, and nothing else).
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
    /// Run a quantised checkpoint (trained with `[quant]`) in the integer engine: the
    /// fixed-point arithmetic of the firmware, bit-exact with the training forward.
    #[arg(long)]
    fixed_point: bool,
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
    let classes = Classes::new(&args.signal_classes, &args.background_classes)?;
    if is_noether && args.data_config.is_some() {
        return Err(format!(
            "{}: a noether checkpoint carries its inputs in its config; --data-config is \
             for foreign checkpoints",
            args.checkpoint.display()
        )
        .into());
    }
    let all = if is_noether {
        noether_logits(&args.checkpoint, &jets, args.device, args.fixed_point)?
    } else if args.fixed_point {
        return Err(format!(
            "{}: --fixed-point needs a noether checkpoint trained with a [quant] section",
            args.checkpoint.display()
        )
        .into());
    } else {
        match args.model {
            ModelKind::Lorentznet => lorentznet_logits(&args.checkpoint, &jets)?,
            ModelKind::Particlenet => {
                particlenet_logits(&args.checkpoint, args.data_config.as_deref(), &jets)?
            }
        }
    };
    if let Some(rows) = &rows {
        return print_logits(&all, rows);
    }
    let scores = classes.scores(&all)?;
    let labels = jets.labels().to_vec();
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
            extra_tests: std::collections::BTreeMap::new(),
            params: 0,
            trainable_params: 0,
            nonzero_params: 0,
            forward_flops_per_jet: 0.0,
            train_flops: 0.0,
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

/// Which classes make the signal and the background of a binary score.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Classes {
    signal: Vec<usize>,
    background: Vec<usize>,
}

impl Classes {
    /// The flags, checked: both or neither, disjoint (default: class 1 against 0).
    fn new(signal: &[usize], background: &[usize]) -> Result<Self, Error> {
        match (signal.is_empty(), background.is_empty()) {
            (true, true) => Ok(Self {
                signal: vec![1],
                background: vec![0],
            }),
            (false, false) => {
                if let Some(both) = signal.iter().find(|c| background.contains(c)) {
                    return Err(format!(
                        "class {both} is in both --signal-classes and --background-classes"
                    )
                    .into());
                }
                Ok(Self {
                    signal: signal.to_vec(),
                    background: background.to_vec(),
                })
            }
            _ => Err("--signal-classes and --background-classes go together".into()),
        }
    }

    /// sum p(signal) / (sum p(signal) + sum p(background)) per jet, from the logits.
    fn scores(&self, logits: &[Vec<f32>]) -> Result<Vec<f64>, Error> {
        let n_class = logits.first().map_or(2, Vec::len);
        if n_class != 2 && self.signal == [1] && self.background == [0] {
            return Err(format!(
                "a {n_class}-class model scores a binary task only with --signal-classes \
                 and --background-classes (e.g. --signal-classes 8 --background-classes 0 \
                 for JetClass Tbqq against QCD)"
            )
            .into());
        }
        if let Some(c) = self
            .signal
            .iter()
            .chain(&self.background)
            .find(|&&c| c >= n_class)
        {
            return Err(format!(
                "class index {c} is out of range for a {n_class}-class model (0 to {})",
                n_class - 1
            )
            .into());
        }
        Ok(logits
            .iter()
            .map(|l| {
                // Softmax with the largest logit subtracted; the normalisation cancels.
                let top = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let p = |c: &usize| (f64::from(l[*c]) - f64::from(top)).exp();
                let s: f64 = self.signal.iter().map(p).sum();
                let b: f64 = self.background.iter().map(p).sum();
                s / (s + b)
            })
            .collect())
    }
}

/// A noether checkpoint's logits: config from the metadata, batched evaluation.
fn noether_logits(
    path: &Path,
    jets: &JetSet,
    device: Option<DeviceSetting>,
    fixed_point: bool,
) -> Result<Vec<Vec<f32>>, Error> {
    let (model, _, config) = load_inference_model_on(path, device)?;
    if fixed_point {
        return fixed_point_logits(&model, jets, config.data.n_max)
            .map_err(|e| format!("{}: {e}", path.display()).into());
    }
    Ok(logits(
        &model,
        jets,
        config.data.n_max,
        config.train.eval_batch_size,
    )?
    .to_dtype(DType::F32)?
    .to_vec2::<f32>()?)
}

/// Loads a foreign state dict into `varmap`: every parameter required, shapes checked.
fn load_foreign(path: &Path, varmap: &VarMap, model: &str) -> Result<(), Error> {
    let options = LoadOptions {
        strict: true,
        ..LoadOptions::lenient()
    };
    let report = load_checkpoint(path, varmap, &options)?;
    if let Some(m) = report.mismatched.first() {
        return Err(format!(
            "{}: tensor '{}' has shape {:?}, {model} needs {:?}",
            path.display(),
            m.name,
            m.found,
            m.expected
        )
        .into());
    }
    Ok(())
}

/// A foreign ParticleNet: the default (JetClass) architecture, the inputs and class
/// count of `data_config`, batches of 256 jets.
fn particlenet_logits(
    path: &Path,
    data_config: Option<&Path>,
    jets: &JetSet,
) -> Result<Vec<Vec<f32>>, Error> {
    let mut config = ParticleNetConfig::default();
    if let Some(yaml) = data_config {
        let weaver = noether::equivariant::weaver::DataConfig::load(yaml)?;
        config.n_class = weaver.labels.len();
        config.inputs = weaver.inputs;
    }
    let n_max = config.inputs.length();
    let model_config = ModelConfig::ParticleNet(config);
    let varmap = VarMap::new();
    Tagger::new(
        &model_config,
        &seeded_varbuilder(&varmap, 0, DType::F32, &Device::Cpu),
    )?;
    load_foreign(path, &varmap, "ParticleNet")?;
    let model = Tagger::new(
        &model_config,
        &inference_varbuilder(&varmap, DType::F32, &Device::Cpu),
    )?;
    Ok(logits(&model, jets, n_max, 256)?.to_vec2::<f32>()?)
}

/// A foreign LorentzNet state dict: each jet alone, beams prepended.
fn lorentznet_logits(path: &Path, jets: &JetSet) -> Result<Vec<Vec<f32>>, Error> {
    let varmap = VarMap::new();
    let config = LorentzNetConfig::default();
    LorentzNet::new(
        &config,
        &seeded_varbuilder(&varmap, 0, DType::F32, &Device::Cpu),
    )?;
    load_foreign(path, &varmap, "LorentzNet")?;
    let model = LorentzNet::new(
        &config,
        &inference_varbuilder(&varmap, DType::F32, &Device::Cpu),
    )?;
    let mut all = Vec::with_capacity(jets.len());
    for i in 0..jets.len() {
        let input = LorentzNetInput::single_jet(jets.constituents(i))?;
        all.push(model.forward(&input)?.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(all)
}

//! `noether train`: train a tagger from a TOML config and write a run directory.

use std::path::PathBuf;

use crate::cli::output::say;
use clap::Args;
use noether_train::{
    default_run_dir, profile_checkpoint, DeviceSetting, DistillConfig, Precision, PruneConfig,
    RunData, RunSummary, TrainConfig, TrainJob,
};

/// `--dtype f32|f64`.
pub fn parse_precision(text: &str) -> Result<Precision, String> {
    match text {
        "f32" => Ok(Precision::F32),
        "f64" => Ok(Precision::F64),
        other => Err(format!("'{other}' is not a dtype (f32 or f64)")),
    }
}

/// `--extra-test NAME=FILE`.
fn parse_extra_test(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => {
            Ok((name.to_owned(), PathBuf::from(file)))
        }
        _ => Err(format!(
            "'{text}' is not NAME=FILE (e.g. boosted=data/boosted_test.h5)"
        )),
    }
}

/// Arguments of `train` (flags override the config file).
// Command-line switches are bools by nature.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The run configuration (see `configs/`).
    #[arg(long)]
    pub config: PathBuf,
    /// Training jets (any layout the data crate reads); default: the config's.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Validation jets.
    #[arg(long)]
    pub val_data: Option<PathBuf>,
    /// Evaluation jets (default: the bundled test set).
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// Also score the best checkpoint on this file, reported as `extra_tests.NAME` in
    /// `metrics.json` (`data.extra_tests`; repeatable).
    #[arg(long, value_name = "NAME=FILE", value_parser = parse_extra_test)]
    pub extra_test: Vec<(String, PathBuf)>,
    /// Training jets used (a seeded class-balanced subset).
    #[arg(long)]
    pub train_jets: Option<usize>,
    /// Seed of weights, subsets, shuffles and dropout.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Constituents kept per jet.
    #[arg(long)]
    pub n_max: Option<usize>,
    /// Jets per batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Base learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// CPU threads (0: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Device: cpu, cuda:N or metal (GPUs need the cargo feature of the same name).
    #[arg(long)]
    pub device: Option<DeviceSetting>,
    /// Float type of the model: f32 or f64.
    #[arg(long, value_parser = parse_precision)]
    pub dtype: Option<Precision>,
    /// Set E = |p| for every constituent.
    #[arg(long)]
    pub massless: bool,
    /// A weaver-core data config (YAML) defining ParticleNet's inputs (`data.config`):
    /// its `inputs` and `new_variables` are read, its length becomes `data.n_max`.
    #[arg(long)]
    pub data_config: Option<PathBuf>,
    /// Run directory (default: runs/<config name>-seed<S>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in `--out` from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Overwrite the run in `--out`, or resume it with changed settings (refused
    /// otherwise, naming what would change).
    #[arg(long)]
    pub force: bool,
    /// No progress bar or per-epoch lines.
    #[arg(long)]
    pub quiet: bool,
    /// Distil from this teacher (a noether checkpoint); `[distill]` in the config sets
    /// temperature and weight (defaults T = 4, alpha = 0.5).
    #[arg(long, value_name = "CKPT")]
    pub teacher: Option<PathBuf>,
    /// Prune this fraction of the weight matrices by global magnitude before training
    /// and keep it pruned (`[prune]` in the config).
    #[arg(long, value_name = "SPARSITY")]
    pub prune: Option<f64>,
}

impl TrainArgs {
    /// The config file with the command-line overrides applied and validated.
    ///
    /// # Errors
    /// Config errors naming the key.
    pub fn resolve(&self) -> Result<TrainConfig, noether_train::TrainError> {
        let mut c = TrainConfig::load(&self.config)?;
        if let Some(p) = &self.data {
            c.data.train.clone_from(p);
        }
        if let Some(p) = &self.val_data {
            c.data.val.clone_from(p);
        }
        if let Some(p) = &self.test_data {
            c.data.test.clone_from(p);
        }
        c.data.extra_tests.extend(self.extra_test.iter().cloned());
        c.data.train_jets = self.train_jets.unwrap_or(c.data.train_jets);
        c.train.seed = self.seed.unwrap_or(c.train.seed);
        c.train.epochs = self.epochs.unwrap_or(c.train.epochs);
        c.data.n_max = self.n_max.unwrap_or(c.data.n_max);
        c.data.batch_size = self.batch_size.unwrap_or(c.data.batch_size);
        c.optim.lr = self.lr.unwrap_or(c.optim.lr);
        c.train.threads = self.threads.unwrap_or(c.train.threads);
        c.train.device = self.device.unwrap_or(c.train.device);
        c.train.dtype = self.dtype.unwrap_or(c.train.dtype);
        c.data.massless |= self.massless;
        if let Some(path) = &self.data_config {
            c.data.config = Some(path.clone());
        }
        c.apply_data_config()?;
        if let Some(teacher) = &self.teacher {
            c.distill = Some(DistillConfig {
                teacher: teacher.clone(),
                ..c.distill.clone().unwrap_or(DistillConfig {
                    teacher: teacher.clone(),
                    temperature: 4.0,
                    alpha: 0.5,
                })
            });
        }
        if let Some(sparsity) = self.prune {
            c.prune = Some(PruneConfig {
                sparsity,
                ..c.prune.clone().unwrap_or(PruneConfig {
                    sparsity,
                    targets: r"\.weight$".into(),
                })
            });
        }
        c.validate()?;
        // A device this build cannot use fails here, before any data is read.
        c.placement()?;
        Ok(c)
    }

    /// The run directory: `--out`, or `runs/<config name>-seed<S>`.
    pub fn out_dir(&self, config: &TrainConfig) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| default_run_dir(&self.config, config.train.seed))
    }
}

/// Runs `noether train`: prints the test metrics and the run directory.
pub fn run(args: &TrainArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = args.resolve()?;
    crate::cli::set_threads(config.train.threads);
    let data = RunData::load(&config)?;
    let out = args.out_dir(&config);
    let job = TrainJob {
        resume: args.resume,
        progress: !args.quiet,
        force: args.force,
        ..TrainJob::new(config.clone(), &out)
    };
    let summary = job.run_on(&data)?;
    print_summary(&summary, &out)?;
    if config.prune.is_some() || config.distill.is_some() {
        let before = match &config.distill {
            Some(d) => Some(profile_checkpoint(&d.teacher, &data.test)?),
            None => None,
        };
        super::compress::report(&out, &summary, &data.test, before.as_ref())?;
    }
    Ok(())
}

/// Prints the contract lines of `train` and `finetune`.
///
/// # Errors
/// Standard output cannot be written.
pub fn print_summary(
    summary: &RunSummary,
    out: &std::path::Path,
) -> Result<(), crate::cli::output::StdoutError> {
    say!(
        "model={} train_jets={} params={} acc={:.4} auc={:.4} rejection_at_0.3={:.1} rejection_at_0.5={:.1} seconds={:.1}",
        summary.model,
        summary.train_jets,
        summary.params,
        summary.acc,
        summary.auc,
        summary.rejection_at_0_3,
        summary.rejection_at_0_5,
        summary.seconds
    )?;
    say!("run directory: {}", out.display())
}

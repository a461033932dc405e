//! A run as `noether train` starts it, for the command line and the examples alike:
//! the config's threads set, its data loaded, the loop run into the run directory.

use std::path::{Path, PathBuf};

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::record::RunSummary;
use crate::trainer::{train, RunData, RunOptions};

/// One training run.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// The resolved configuration.
    pub config: TrainConfig,
    /// The run directory.
    pub out: PathBuf,
    /// Continue from `out/last.safetensors`.
    pub resume: bool,
    /// Progress bar and per-epoch lines on stderr.
    pub progress: bool,
    /// Overwrite a run directory that holds another run, or resume with changed settings.
    pub force: bool,
}

impl TrainJob {
    /// A fresh run of `config` into `out`, with progress.
    pub fn new(config: TrainConfig, out: impl Into<PathBuf>) -> Self {
        Self {
            config,
            out: out.into(),
            resume: false,
            progress: true,
            force: false,
        }
    }

    /// Sets candle's threads (`train.threads`, 0: all cores), loads the data and trains.
    ///
    /// # Errors
    /// As [`train`] and [`RunData::load`].
    pub fn run(&self) -> Result<RunSummary> {
        if let Some(message) = noether_equivariant::set_threads(self.config.train.threads).capped()
        {
            crate::trainer::note(format_args!("{message}"));
        }
        let data = RunData::load(&self.config)?;
        self.run_on(&data)
    }

    /// [`TrainJob::run`] on data already loaded (threads as the caller set them).
    ///
    /// # Errors
    /// As [`train`].
    pub fn run_on(&self, data: &RunData) -> Result<RunSummary> {
        let options = RunOptions {
            out: self.out.clone(),
            resume: self.resume,
            progress: self.progress,
            stop_after: None,
            init: None,
            force: self.force,
        };
        train(&self.config, data, &options)?.ok_or_else(|| TrainError::Checkpoint {
            path: self.out.clone(),
            message: "the run stopped before its final evaluation".into(),
        })
    }
}

/// The default run directory of a config file: `runs/<file stem>-seed<S>`.
pub fn default_run_dir(config_file: &Path, seed: u64) -> PathBuf {
    let stem = config_file
        .file_stem()
        .map_or_else(|| "run".into(), |s| s.to_string_lossy().to_string());
    PathBuf::from("runs").join(format!("{stem}-seed{seed}"))
}

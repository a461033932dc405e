//! The crate's single error type.

use std::path::PathBuf;

/// Errors from planning, running, submitting and collecting sweeps.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The sweep file is malformed or names keys or values it cannot have.
    #[error("sweep file {path}: {message}")]
    SweepFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A trial's resolved configuration is rejected.
    #[error("trial {trial} ({settings}): {source}")]
    Trial {
        /// Its position in the manifest.
        trial: usize,
        /// Its varied settings, `key=value` joined by commas.
        settings: String,
        /// The configuration's error.
        source: Box<noether_train::TrainError>,
    },
    /// The manifest is missing, malformed, or was edited after planning.
    #[error("manifest {path}: {message}")]
    Manifest {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A trial number outside the manifest.
    #[error("trial {trial} does not exist: the sweep has {trials} trials (0..{trials})")]
    NoSuchTrial {
        /// The number asked for.
        trial: usize,
        /// Trials in the manifest.
        trials: usize,
    },
    /// Another worker holds the trial's lock.
    #[error("trial {trial} is already running: {lock} is locked by another process")]
    Locked {
        /// The trial.
        trial: usize,
        /// The lock file.
        lock: PathBuf,
    },
    /// A trial's directory holds a run made with other settings.
    #[error("trial {trial}: {dir} holds a run with other settings than the manifest's; move it away (or plan into a new directory)")]
    Clobber {
        /// The trial.
        trial: usize,
        /// Its run directory.
        dir: PathBuf,
    },
    /// A scheduler command is missing or failed.
    #[error("{command}: {message}")]
    Scheduler {
        /// The command (`sbatch`, `squeue`, the trial worker).
        command: String,
        /// What happened.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Training failed.
    #[error(transparent)]
    Train(Box<noether_train::TrainError>),
}

impl From<noether_train::TrainError> for SweepError {
    fn from(e: noether_train::TrainError) -> Self {
        Self::Train(Box::new(e))
    }
}

/// The crate-wide result type.
pub type Result<T> = std::result::Result<T, SweepError>;

/// An [`SweepError::Io`] naming `path`.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> SweepError + '_ {
    move |source| SweepError::Io {
        path: path.to_owned(),
        source,
    }
}

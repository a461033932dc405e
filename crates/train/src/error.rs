//! The crate's single error type.

use std::path::PathBuf;

/// Errors from configuring, running, checkpointing and evaluating training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A configuration value is impossible.
    #[error("config key '{key}' = {value}: {reason}")]
    InvalidConfig {
        /// The dotted key, e.g. `optim.lr`.
        key: String,
        /// The value found.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A configuration file could not be parsed (unknown keys are named by the parser).
    #[error("config file {path}: {message}")]
    ConfigParse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key.
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
    /// A checkpoint is unreadable or lacks what is needed.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A run directory cannot take this run without losing or misdescribing another.
    #[error("run directory {path}: {message}")]
    RunDirectory {
        /// The directory.
        path: PathBuf,
        /// Why, and what to do instead.
        message: String,
    },
    /// A run-directory file (`metrics.json`, `history.csv`) is malformed.
    #[error("run record {path}: {message}")]
    Record {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line where it applies.
        message: String,
    },
    /// Jets a run cannot use (no jets, one class), found before the first epoch.
    #[error("{what}: {problem}")]
    UnusableData {
        /// The jets: the file and its role (`validation file data/val.h5`).
        what: String,
        /// What is wrong with them.
        problem: String,
    },
    /// The loss became NaN or infinite.
    #[error("loss became {value} at epoch {epoch}, step {step}; the last good checkpoint is kept")]
    NonFiniteLoss {
        /// Epoch (1-based).
        epoch: usize,
        /// Optimizer step.
        step: usize,
        /// The value.
        value: f32,
    },
    /// Metrics cannot be computed from the inputs.
    #[error("metrics: {0}")]
    Metric(String),
    /// Data loading failed (boxed: data errors carry paths and context).
    #[error(transparent)]
    Data(Box<noether_data::DataError>),
    /// A model failed.
    #[error(transparent)]
    Model(Box<noether_equivariant::ModelError>),
    /// A tensor operation failed.
    #[error("{context}: {source}")]
    Candle {
        /// What was being done.
        context: String,
        /// candle's error.
        source: candle_core::Error,
    },
    /// Plotting failed.
    #[error("plot {path}: {message}")]
    Plot {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl From<noether_data::DataError> for TrainError {
    fn from(e: noether_data::DataError) -> Self {
        Self::Data(Box::new(e))
    }
}

impl From<noether_equivariant::ModelError> for TrainError {
    fn from(e: noether_equivariant::ModelError) -> Self {
        Self::Model(Box::new(e))
    }
}

/// Errors of the integer engine, as the model errors that carry them.
impl From<noether_quant::QuantError> for TrainError {
    fn from(e: noether_quant::QuantError) -> Self {
        Self::Model(Box::new(e.into()))
    }
}

/// The crate-wide result type.
pub type Result<T> = std::result::Result<T, TrainError>;

/// Adds context to candle errors.
pub(crate) trait Context<T> {
    fn context(self, what: &str) -> Result<T>;
}

impl<T> Context<T> for candle_core::Result<T> {
    fn context(self, what: &str) -> Result<T> {
        self.map_err(|source| TrainError::Candle {
            context: what.to_owned(),
            source,
        })
    }
}

/// Shorthand for an [`TrainError::InvalidConfig`].
pub(crate) fn invalid(key: &str, value: impl std::fmt::Display, reason: &str) -> TrainError {
    TrainError::InvalidConfig {
        key: key.to_owned(),
        value: value.to_string(),
        reason: reason.to_owned(),
    }
}

/// `error`'s message without the leading `path: ` that the data and transfer crates'
/// messages start with, for an error variant that names the path itself.
pub(crate) fn without_path(path: &std::path::Path, error: &impl std::fmt::Display) -> String {
    let text = error.to_string();
    let prefix = format!("{}: ", path.display());
    text.strip_prefix(&prefix).unwrap_or(&text).to_owned()
}

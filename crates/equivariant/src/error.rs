//! The crate's single error type.

/// Errors from building and running the models.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A tensor operation failed (wrong shapes, missing or mis-shaped checkpoint tensor);
    /// candle's message names the tensor.
    #[error("{context}: {source}")]
    Candle {
        /// What was being done.
        context: String,
        /// candle's error.
        source: candle_core::Error,
    },
    /// An input has the wrong shape.
    #[error("input '{input}' has shape {found:?}, expected {expected}")]
    BadInput {
        /// The input.
        input: &'static str,
        /// The expected shape, in words.
        expected: String,
        /// The shape found.
        found: Vec<usize>,
    },
    /// A device setting that is malformed or cannot be used in this build.
    #[error("device '{device}': {reason}")]
    BadDevice {
        /// The setting as given.
        device: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A model configuration value that cannot build a model.
    #[error("model setting '{key}' = {value}: {reason}")]
    BadConfig {
        /// The key, relative to the model's section (`n_hidden`, `phi_sizes[0]`).
        key: String,
        /// The value found.
        value: String,
        /// What it must be.
        reason: String,
    },
    /// A weaver-core data config (YAML) that noether cannot use.
    #[error("{path}: data config key '{key}': {reason}")]
    DataConfig {
        /// The YAML file (`<built-in>` for the embedded default).
        path: std::path::PathBuf,
        /// The key (`inputs.pf_features.vars[2]`, `new_variables.part_pt`).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// An input was computed for another model than the one it is fed to.
    #[error("input for model '{found}' fed to model '{expected}'")]
    WrongInput {
        /// The model run.
        expected: &'static str,
        /// The model the input was computed for.
        found: &'static str,
    },
    /// Fixed-point settings the model cannot use, or a model without a fixed-point form.
    #[error(transparent)]
    Quant(#[from] noether_quant::QuantError),
    /// An input holds NaN or infinite values.
    #[error("input '{input}' contains non-finite values")]
    NonFinite {
        /// The input.
        input: &'static str,
    },
}

/// The crate-wide result type.
pub type Result<T> = std::result::Result<T, ModelError>;

/// Adds context to candle errors: `.context("building head")` turns a candle error into
/// [`ModelError::Candle`] saying what was being done (for model authors too).
pub trait Context<T> {
    /// The result with `what` attached to its error.
    ///
    /// # Errors
    /// The candle error, as [`ModelError::Candle`].
    fn context(self, what: &str) -> Result<T>;
}

impl<T> Context<T> for candle_core::Result<T> {
    fn context(self, what: &str) -> Result<T> {
        self.map_err(|source| ModelError::Candle {
            context: what.to_owned(),
            source,
        })
    }
}

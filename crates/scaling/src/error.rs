//! The crate's single error type.

use std::path::PathBuf;

/// Errors from loading runs, fitting and allocating.
#[derive(Debug, thiserror::Error)]
pub enum ScalingError {
    /// The CSV file could not be read.
    #[error("{path}: {detail}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// A required column is absent.
    #[error("{path}: no column '{column}' (columns are: {available})")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The missing column.
        column: String,
        /// The header found.
        available: String,
    },
    /// A value is not a positive finite number.
    #[error("{path}: row {row}, column '{column}': {detail}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// Data row (1-based, header excluded).
        row: usize,
        /// The column.
        column: String,
        /// What is wrong with the value.
        detail: String,
    },
    /// Fewer data points than free parameters.
    #[error("{rows} runs cannot determine the {params} parameters of the {form} form")]
    TooFewRows {
        /// Rows available.
        rows: usize,
        /// Parameters to fit.
        params: usize,
        /// The form.
        form: String,
    },
    /// No start of the optimiser converged.
    #[error("the {form} fit did not converge from any of its {starts} starts ({detail})")]
    NoConvergence {
        /// The form.
        form: String,
        /// Starts tried.
        starts: usize,
        /// Why.
        detail: String,
    },
    /// An error in the runs of one group (`--group-col`).
    #[error("group '{group}': {source}")]
    InGroup {
        /// The group's value.
        group: String,
        /// The error.
        source: Box<ScalingError>,
    },
    /// An impossible setting.
    #[error("invalid {name}: {detail}")]
    InvalidArgument {
        /// The setting.
        name: &'static str,
        /// Why it is invalid.
        detail: String,
    },
}

/// The crate-wide result type.
pub type Result<T> = std::result::Result<T, ScalingError>;

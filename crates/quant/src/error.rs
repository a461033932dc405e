//! The crate's single error type.

/// Errors from fixed-point types, quantisation settings, the integer engine and export.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// A fixed-point type that cannot be represented.
    #[error("fixed-point type {spec}: {detail}")]
    BadType {
        /// The type as written.
        spec: String,
        /// Why it is rejected.
        detail: String,
    },
    /// A `[quant]` setting that does not fit the model.
    #[error("[quant] {setting}: {detail}")]
    BadSetting {
        /// The setting (`layers."phi.7".weight`, `pool`).
        setting: String,
        /// What is wrong.
        detail: String,
    },
    /// A layer whose arithmetic does not fit the engine's registers or the float
    /// forward's mantissa.
    #[error("layer {layer}: {detail}")]
    Layer {
        /// The layer's checkpoint path (`phi.0`).
        layer: String,
        /// What does not fit.
        detail: String,
    },
    /// An input the engine cannot run.
    #[error("input {input}: {detail}")]
    BadInput {
        /// Which input.
        input: String,
        /// What is wrong.
        detail: String,
    },
    /// A model that cannot be exported in the requested form.
    #[error("export: {0}")]
    Export(String),
    /// An error from the tensor backend.
    #[error("{context}: {source}")]
    Candle {
        /// What was being done.
        context: String,
        /// The backend's error.
        source: candle_core::Error,
    },
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, QuantError>;

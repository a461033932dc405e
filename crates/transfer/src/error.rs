//! The crate's single error type.

use std::path::PathBuf;

/// Errors from loading checkpoints into models.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid safetensors (truncated, header out of bounds, ...): the
    /// safetensors crate's validation message.
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What the validation found.
        message: String,
    },
    /// The file is not a PyTorch zip checkpoint (legacy format, wrong magic, truncated
    /// or malformed archive).
    #[error("{path}: not a readable PyTorch checkpoint: {reason}")]
    NotTorch {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The pickle names a class or function other than tensors and containers: refused,
    /// as `torch.load(weights_only=True)` refuses it, before anything could run.
    #[error("{path}: refusing to load: the pickle refers to {object:?}, which is not a tensor or container (only state dicts are read, as torch.load(weights_only=True) reads them)")]
    ForbiddenObject {
        /// The file.
        path: PathBuf,
        /// `module.name` of the object.
        object: String,
    },
    /// The pickle inside a PyTorch checkpoint is malformed or uses unsupported opcodes.
    #[error("{path}: malformed pickle in data.pkl {reason}")]
    Pickle {
        /// The file.
        path: PathBuf,
        /// Where and what.
        reason: String,
    },
    /// The checkpoint holds no state dict (a bare tensor, a list, a dict without tensors).
    #[error("{path}: not a state dict: {found}")]
    NotStateDict {
        /// The file.
        path: PathBuf,
        /// What it holds instead.
        found: String,
    },
    /// A tensor of a PyTorch checkpoint whose view or storage is inconsistent (its key,
    /// taken from the file, is quoted with escapes).
    #[error("{path}: tensor {tensor:?}: {reason}")]
    BadTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor has a dtype that cannot become a float parameter.
    #[error("{path}: tensor '{tensor}' has dtype {dtype}, which cannot be loaded into a float parameter")]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The tensor (name in the file).
        tensor: String,
        /// Its dtype.
        dtype: String,
    },
    /// `strict` loading found parameters the checkpoint does not provide.
    #[error("{path}: strict load: {} model parameter(s) missing from the checkpoint: {}", missing.len(), missing.join(", "))]
    Missing {
        /// The file.
        path: PathBuf,
        /// The parameters without a tensor.
        missing: Vec<String>,
    },
    /// A tensor holding NaN or infinite values.
    #[error("{path}: tensor '{tensor}' holds {count} non-finite value(s) (NaN or infinity), first at flat index {first}: a diverged or corrupt checkpoint")]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The tensor (its name in the checkpoint).
        tensor: String,
        /// How many of its values are not finite.
        count: usize,
        /// The flat index of the first.
        first: usize,
    },
    /// `head_classes` cannot select the new head's rows from a checkpoint head tensor:
    /// another count than the config's classes, or a class the checkpoint does not have.
    #[error("{path}: tensor '{tensor}': head classes {classes:?}: {reason}")]
    BadHeadClasses {
        /// The file.
        path: PathBuf,
        /// The head tensor (its name in the checkpoint).
        tensor: String,
        /// The classes asked for.
        classes: Vec<usize>,
        /// Why they do not fit.
        reason: String,
    },
    /// A `--remap FROM=TO` rule is malformed.
    #[error("remap rule '{rule}': {reason}")]
    BadRemap {
        /// The rule as given.
        rule: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A `--lora` specification is malformed.
    #[error("LoRA spec '{spec}': {reason}")]
    BadLora {
        /// The spec as given.
        spec: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A tensor operation failed.
    #[error("{context}: {source}")]
    Candle {
        /// What was being done.
        context: String,
        /// candle's error.
        source: candle_core::Error,
    },
}

/// The crate-wide result type.
pub type Result<T> = std::result::Result<T, TransferError>;

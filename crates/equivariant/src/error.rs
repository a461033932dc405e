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
    /// An input holds NaN or infinite values.
    #[error("input '{input}' contains non-finite values")]
    NonFinite {
        /// The input.
        input: &'static str,
    },
}

/// The crate-wide result type.
pub type Result<T> = std::result::Result<T, ModelError>;

/// Adds context to candle errors.
pub(crate) trait Context<T> {
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

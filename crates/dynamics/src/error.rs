//! The crate's error type.

/// What can go wrong in a diagnostic.
#[derive(Debug, thiserror::Error)]
pub enum DynamicsError {
    /// A setting is out of its range; names the setting.
    #[error("{setting} = {value}: {reason}")]
    InvalidSetting {
        /// The setting (`sgld.epsilon`, `hessian.k`, ...).
        setting: &'static str,
        /// Its value.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A vector's length does not match the objective's dimension.
    #[error("{what} has length {found}, the objective has {expected} parameters")]
    Dimension {
        /// Which vector.
        what: &'static str,
        /// The objective's dimension.
        expected: usize,
        /// The vector's length.
        found: usize,
    },
    /// The loss or a gradient became NaN or infinite.
    #[error("non-finite {what} at step {step}")]
    NonFinite {
        /// Loss or gradient.
        what: &'static str,
        /// The step.
        step: usize,
    },
}

/// Shorthand.
pub type Result<T> = std::result::Result<T, DynamicsError>;

pub(crate) fn invalid(
    setting: &'static str,
    value: impl std::fmt::Display,
    reason: &'static str,
) -> DynamicsError {
    DynamicsError::InvalidSetting {
        setting,
        value: value.to_string(),
        reason,
    }
}

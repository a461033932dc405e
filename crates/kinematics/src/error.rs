//! The crate's single error type.

use num_complex::Complex64;

/// Everything that can go wrong when building kinematic objects from user input.
///
/// Each variant carries the offending value so that a printed error says what was
/// expected and what was found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KinematicsError {
    /// A four-momentum component or a constructor argument is NaN or infinite.
    #[error("{name} is not finite (got {value})")]
    NonFinite {
        /// Which component or argument (e.g. `"px"`, `"rapidity"`).
        name: &'static str,
        /// The value found.
        value: f64,
    },
    /// A physical four-momentum has E < |p| by more than the tolerance.
    #[error(
        "energy {energy} GeV is below |p| = {momentum} GeV (E - |p| = {deficit:e} GeV, \
         tolerance {tolerance:e} relative): not a physical particle"
    )]
    EnergyBelowMomentum {
        /// The energy component.
        energy: f64,
        /// The magnitude of the three-momentum.
        momentum: f64,
        /// E - |p| (negative).
        deficit: f64,
        /// The relative tolerance that was exceeded.
        tolerance: f64,
    },
    /// An argument that must be non-negative (pT, mass, maximum rapidity) is negative.
    #[error("{name} must be non-negative (got {value})")]
    Negative {
        /// Which argument.
        name: &'static str,
        /// The value found.
        value: f64,
    },
    /// A boost velocity with |beta| >= 1.
    #[error("boost velocity |beta| = {beta} must be below 1 (the speed of light)")]
    Superluminal {
        /// The magnitude of the velocity found.
        beta: f64,
    },
    /// A direction (boost or rotation axis, jet axis) of zero length.
    #[error("{name} has zero length and defines no direction")]
    ZeroDirection {
        /// What the direction was for.
        name: &'static str,
    },
    /// A matrix that is not in SO+(1,3) within the tolerance.
    #[error(
        "not a proper orthochronous Lorentz transformation: {check} violated by {deviation:e} \
         (tolerance {tolerance:e})"
    )]
    NotProperOrthochronous {
        /// Which condition failed: `"Lambda^T eta Lambda = eta"`, `"det = +1"` or
        /// `"Lambda^0_0 >= 1"`.
        check: &'static str,
        /// How far from the condition the matrix is.
        deviation: f64,
        /// The tolerance used.
        tolerance: f64,
    },
    /// A complex 2x2 matrix whose determinant is not 1.
    #[error("not an SL(2,C) element: det = {det} (must be 1 within {tolerance:e})")]
    NotUnimodular {
        /// The determinant found.
        det: Complex64,
        /// The tolerance used.
        tolerance: f64,
    },
    /// A jet (or any system) with m^2 <= 0 has no rest frame.
    #[error("a system with m^2 = {mass2} GeV^2 and E = {energy} GeV has no rest frame")]
    NoRestFrame {
        /// The invariant mass squared of the system.
        mass2: f64,
        /// Its energy.
        energy: f64,
    },
}

/// The crate-wide result type.
pub type Result<T> = std::result::Result<T, KinematicsError>;

/// Returns `value` if it is finite, otherwise a [`KinematicsError::NonFinite`] naming it.
pub(crate) fn finite(name: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(KinematicsError::NonFinite { name, value })
    }
}

/// Returns `value` if it is finite and non-negative.
pub(crate) fn non_negative(name: &'static str, value: f64) -> Result<f64> {
    let value = finite(name, value)?;
    if value < 0.0 {
        Err(KinematicsError::Negative { name, value })
    } else {
        Ok(value)
    }
}

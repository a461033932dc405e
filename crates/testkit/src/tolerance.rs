//! Named tolerance tiers, as e3nn and lgatr use them.

use std::fmt;

/// A tolerance `|got - expected| <= abs + rel * scale`, where `scale` is the size of the
/// expected value (for four-vectors: the largest component of the expected vector).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// A short name printed in reports.
    pub name: &'static str,
    /// Relative part.
    pub rel: f64,
    /// Absolute part (floor for outputs that are zero).
    pub abs: f64,
}

impl Tolerance {
    /// Exact algebra in f64 (group products, covering map): 1e-12 relative.
    pub const F64_STRICT: Self = Self {
        name: "f64-strict",
        rel: 1e-12,
        abs: 1e-12,
    };
    /// Invariants computed in f64 after transformations with rapidity up to ~4:
    /// 1e-9 relative (entries of Lambda grow like cosh y, rounding like e^(2y) eps).
    pub const F64: Self = Self {
        name: "f64",
        rel: 1e-9,
        abs: 1e-9,
    };
    /// Invariants computed in f32 (with cancellation-free formulas): 1e-4 relative.
    pub const F32: Self = Self {
        name: "f32",
        rel: 1e-4,
        abs: 1e-5,
    };
    /// Whole networks evaluated in f32: 1e-3 relative, 1e-4 absolute.
    pub const F32_NETWORK: Self = Self {
        name: "f32-network",
        rel: 1e-3,
        abs: 1e-4,
    };

    /// A custom tier.
    pub const fn new(name: &'static str, rel: f64, abs: f64) -> Self {
        Self { name, rel, abs }
    }

    /// The error in units of the allowed error: <= 1 passes. NaN on either side (or a
    /// NaN/infinite difference) gives infinity, so it always fails.
    pub fn ratio(&self, expected: f64, got: f64, scale: f64) -> f64 {
        let diff = (got - expected).abs();
        if diff.is_nan() || diff.is_infinite() {
            return f64::INFINITY;
        }
        diff / (self.abs + self.rel * scale.abs())
    }

    /// Whether `got` is within tolerance of `expected` at size `scale`.
    pub fn allows(&self, expected: f64, got: f64, scale: f64) -> bool {
        self.ratio(expected, got, scale) <= 1.0
    }
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (rel {:e}, abs {:e})", self.name, self.rel, self.abs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_scales_with_size_and_rejects_nan() {
        let t = Tolerance::F32;
        assert!(t.allows(1000.0, 1000.05, 1000.0));
        assert!(!t.allows(1000.0, 1000.2, 1000.0));
        assert!(!t.allows(1.0, f64::NAN, 1.0));
        assert!(t.ratio(0.0, 5e-6, 0.0) < 1.0);
    }
}

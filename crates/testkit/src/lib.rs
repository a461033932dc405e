//! # noether-testkit
//!
//! The symmetry test kit every noether model crate uses: proptest [`strategies`] for
//! realistic jets and group elements, named [`Tolerance`] tiers for f64 and f32, and
//! checks that report the worst violation together with the group element that caused it.
//!
//! A model is tested for invariance in three lines:
//!
//! ```
//! use noether_kinematics::FourMomentum;
//! use noether_testkit::{SymmetryKit, Tolerance};
//!
//! let jet_mass2 = |jet: &[FourMomentum]| vec![jet.iter().sum::<FourMomentum>().mass2()];
//! SymmetryKit::new(7).with_max_rapidity(4.0).assert_lorentz_invariant(jet_mass2, Tolerance::F64);
//! ```
//!
//! Tolerance tiers (relative; see [`Tolerance`]): [`Tolerance::F64_STRICT`] 1e-12 for exact
//! algebra, [`Tolerance::F64`] 1e-9 for invariants in f64, [`Tolerance::F32`] 1e-4 for
//! invariants in f32, [`Tolerance::F32_NETWORK`] 1e-3 for whole networks in f32.

mod kit;
pub mod strategies;
mod symmetry;
mod tolerance;

pub use kit::{assert_equivariant, assert_invariant, assert_report, SymmetryKit};
pub use symmetry::{
    check_equivariant, check_invariant, check_permutation_equivariant, SymmetryOp, SymmetryReport,
    Violation,
};
pub use tolerance::Tolerance;

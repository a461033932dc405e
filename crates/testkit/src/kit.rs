//! [`SymmetryKit`]: seeded jets and group elements, and the assertion helpers.

use std::ops::RangeInclusive;

use noether_kinematics::FourMomentum;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::strategies;
use crate::symmetry::{
    check_equivariant, check_invariant, check_permutation_equivariant, SymmetryOp, SymmetryReport,
};
use crate::Tolerance;

/// Draws reproducible test jets and group elements from the [`strategies`] with a
/// seeded proptest runner, and checks functions of jets against them.
///
/// ```
/// use noether_testkit::{SymmetryKit, Tolerance};
/// let kit = SymmetryKit::new(42).with_max_rapidity(3.0);
/// // The jet mass is Lorentz and permutation invariant...
/// let jet_mass = |jet: &[noether_kinematics::FourMomentum]| vec![jet.iter().sum::<noether_kinematics::FourMomentum>().mass()];
/// kit.assert_lorentz_invariant(jet_mass, Tolerance::F64);
/// kit.assert_permutation_invariant(jet_mass, Tolerance::F64_STRICT);
/// // ...its transverse momentum is not.
/// let jet_pt = |jet: &[noether_kinematics::FourMomentum]| vec![jet.iter().sum::<noether_kinematics::FourMomentum>().pt()];
/// assert!(!kit.lorentz_invariance(jet_pt, Tolerance::F64).passed());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SymmetryKit {
    seed: u64,
    jets: usize,
    transforms: usize,
    max_rapidity: f64,
    constituents: RangeInclusive<usize>,
}

impl SymmetryKit {
    /// A kit with 8 jets of 2-30 constituents and 8 group elements of rapidity <= 2.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            jets: 8,
            transforms: 8,
            max_rapidity: 2.0,
            constituents: 2..=30,
        }
    }

    /// Number of jets to check.
    #[must_use]
    pub fn with_jets(mut self, jets: usize) -> Self {
        self.jets = jets;
        self
    }

    /// Number of group elements applied to each jet.
    #[must_use]
    pub fn with_transforms(mut self, transforms: usize) -> Self {
        self.transforms = transforms;
        self
    }

    /// Largest boost rapidity of the sampled Lorentz transformations.
    #[must_use]
    pub fn with_max_rapidity(mut self, max_rapidity: f64) -> Self {
        self.max_rapidity = max_rapidity;
        self
    }

    /// Range of constituent counts of the sampled jets.
    #[must_use]
    pub fn with_constituents(mut self, constituents: RangeInclusive<usize>) -> Self {
        self.constituents = constituents;
        self
    }

    fn runner(&self, stream: u64) -> TestRunner {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&self.seed.to_le_bytes());
        seed[8..16].copy_from_slice(&stream.to_le_bytes());
        TestRunner::new_with_rng(
            Config::default(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
        )
    }

    fn draw<S: Strategy>(&self, strategy: &S, stream: u64, n: usize) -> Vec<S::Value> {
        let mut runner = self.runner(stream);
        (0..n)
            .map(|_| {
                strategy
                    .new_tree(&mut runner)
                    .expect("noether strategies never reject values")
                    .current()
            })
            .collect()
    }

    /// The test jets (reproducible for a seed).
    pub fn jets(&self) -> Vec<Vec<FourMomentum>> {
        self.draw(&strategies::jet(self.constituents.clone()), 0, self.jets)
    }

    /// Random SO+(1,3) elements with rapidity <= the kit's maximum.
    pub fn lorentz_ops(&self) -> Vec<SymmetryOp> {
        self.draw(&strategies::lorentz(self.max_rapidity), 1, self.transforms)
            .into_iter()
            .map(SymmetryOp::Lorentz)
            .collect()
    }

    /// Random permutations (one seed each; they adapt to every jet's length).
    pub fn permutation_ops(&self) -> Vec<SymmetryOp> {
        self.draw(&proptest::arbitrary::any::<u64>(), 2, self.transforms)
            .into_iter()
            .map(SymmetryOp::Shuffle)
            .collect()
    }

    /// Checks Lorentz invariance of `f` on the kit's jets.
    pub fn lorentz_invariance<F>(&self, f: F, tolerance: Tolerance) -> SymmetryReport
    where
        F: Fn(&[FourMomentum]) -> Vec<f64>,
    {
        named(
            check_invariant(f, &self.jets(), &self.lorentz_ops(), tolerance),
            "Lorentz invariance",
        )
    }

    /// Checks permutation invariance of `f` on the kit's jets.
    pub fn permutation_invariance<F>(&self, f: F, tolerance: Tolerance) -> SymmetryReport
    where
        F: Fn(&[FourMomentum]) -> Vec<f64>,
    {
        let report = check_invariant(f, &self.jets(), &self.permutation_ops(), tolerance);
        named(report, "permutation invariance")
    }

    /// Checks Lorentz equivariance of four-vector outputs of `f`.
    pub fn lorentz_equivariance<F>(&self, f: F, tolerance: Tolerance) -> SymmetryReport
    where
        F: Fn(&[FourMomentum]) -> Vec<FourMomentum>,
    {
        let report = check_equivariant(f, &self.jets(), &self.lorentz_ops(), tolerance);
        named(report, "Lorentz equivariance")
    }

    /// Checks that per-particle outputs of `f` follow permutations of the input.
    pub fn permutation_equivariance<F>(&self, f: F, tolerance: Tolerance) -> SymmetryReport
    where
        F: Fn(&[FourMomentum]) -> Vec<f64>,
    {
        let report =
            check_permutation_equivariant(f, &self.jets(), &self.permutation_ops(), tolerance);
        named(report, "permutation equivariance")
    }

    /// Asserts Lorentz invariance.
    ///
    /// # Panics
    /// With the report (worst violation and the group element) when it fails.
    pub fn assert_lorentz_invariant<F>(&self, f: F, tolerance: Tolerance)
    where
        F: Fn(&[FourMomentum]) -> Vec<f64>,
    {
        assert_report(&self.lorentz_invariance(f, tolerance));
    }

    /// Asserts permutation invariance.
    ///
    /// # Panics
    /// With the report when it fails.
    pub fn assert_permutation_invariant<F>(&self, f: F, tolerance: Tolerance)
    where
        F: Fn(&[FourMomentum]) -> Vec<f64>,
    {
        assert_report(&self.permutation_invariance(f, tolerance));
    }

    /// Asserts Lorentz equivariance of four-vector outputs.
    ///
    /// # Panics
    /// With the report when it fails.
    pub fn assert_lorentz_equivariant<F>(&self, f: F, tolerance: Tolerance)
    where
        F: Fn(&[FourMomentum]) -> Vec<FourMomentum>,
    {
        assert_report(&self.lorentz_equivariance(f, tolerance));
    }

    /// Asserts permutation equivariance of per-particle outputs.
    ///
    /// # Panics
    /// With the report when it fails.
    pub fn assert_permutation_equivariant<F>(&self, f: F, tolerance: Tolerance)
    where
        F: Fn(&[FourMomentum]) -> Vec<f64>,
    {
        assert_report(&self.permutation_equivariance(f, tolerance));
    }
}

fn named(mut report: SymmetryReport, property: &str) -> SymmetryReport {
    property.clone_into(&mut report.property);
    report
}

/// Panics with the report unless it passed.
///
/// # Panics
/// When `report` did not pass.
pub fn assert_report(report: &SymmetryReport) {
    assert!(report.passed(), "{report}");
}

/// Asserts f(g x) == f(x) on explicit inputs and group elements.
///
/// # Panics
/// With the report (worst violation, the input and the group element) when it fails.
pub fn assert_invariant<F>(
    f: F,
    inputs: &[Vec<FourMomentum>],
    ops: &[SymmetryOp],
    tolerance: Tolerance,
) where
    F: Fn(&[FourMomentum]) -> Vec<f64>,
{
    assert_report(&check_invariant(f, inputs, ops, tolerance));
}

/// Asserts f(g x) == g f(x) on explicit inputs and group elements.
///
/// # Panics
/// With the report when it fails.
pub fn assert_equivariant<F>(
    f: F,
    inputs: &[Vec<FourMomentum>],
    ops: &[SymmetryOp],
    tolerance: Tolerance,
) where
    F: Fn(&[FourMomentum]) -> Vec<FourMomentum>,
{
    assert_report(&check_equivariant(f, inputs, ops, tolerance));
}

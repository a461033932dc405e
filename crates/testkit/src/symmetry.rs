//! Symmetry operations, violation reports and the invariance / equivariance checks.

use std::fmt;

use noether_kinematics::random::{permute, random_permutation};
use noether_kinematics::{FourMomentum, LorentzTransform};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::Tolerance;

/// A group element acting on a set of four-momenta.
#[derive(Debug, Clone, PartialEq)]
pub enum SymmetryOp {
    /// The same Lorentz transformation applied to every four-vector.
    Lorentz(LorentzTransform),
    /// A fixed reordering `out[i] = in[perm[i]]`; must match the input length.
    Permutation(Vec<usize>),
    /// A random permutation of whatever length the input has, drawn from this seed.
    Shuffle(u64),
}

impl SymmetryOp {
    /// Applies the operation; `None` when a fixed permutation does not match the length.
    pub fn apply(&self, momenta: &[FourMomentum]) -> Option<Vec<FourMomentum>> {
        match self {
            Self::Lorentz(l) => Some(l.apply_all(momenta)),
            Self::Permutation(p) => {
                is_permutation_of(p, momenta.len()).then(|| permute(momenta, p))
            }
            Self::Shuffle(seed) => Some(permute(momenta, &shuffle_for(*seed, momenta.len()))),
        }
    }

    /// Applies the reordering part only (identity for Lorentz transformations): how
    /// per-particle outputs move. `None` on a length mismatch.
    pub fn reorder<T: Clone>(&self, items: &[T]) -> Option<Vec<T>> {
        match self {
            Self::Lorentz(_) => Some(items.to_vec()),
            Self::Permutation(p) => is_permutation_of(p, items.len()).then(|| permute(items, p)),
            Self::Shuffle(seed) => Some(permute(items, &shuffle_for(*seed, items.len()))),
        }
    }
}

fn shuffle_for(seed: u64, n: usize) -> Vec<usize> {
    random_permutation(&mut ChaCha8Rng::seed_from_u64(seed), n)
}

fn is_permutation_of(p: &[usize], n: usize) -> bool {
    let mut seen = vec![false; n];
    p.len() == n
        && p.iter()
            .all(|&i| i < n && !std::mem::replace(&mut seen[i], true))
}

impl fmt::Display for SymmetryOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lorentz(l) => write!(f, "{l}"),
            Self::Permutation(p) => write!(f, "permutation {p:?}"),
            Self::Shuffle(seed) => write!(f, "random permutation (seed {seed})"),
        }
    }
}

/// The worst disagreement found by a check.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// Index of the input (jet) in the checked set.
    pub input: usize,
    /// The group element that caused it.
    pub op: SymmetryOp,
    /// Index of the output entry (for four-vector outputs: 4 * vector + component).
    pub output: usize,
    /// The value symmetry predicts.
    pub expected: f64,
    /// The value found.
    pub got: f64,
    /// The error in units of the allowed error (> 1 fails); infinite for NaN or for an
    /// output of the wrong length.
    pub ratio: f64,
}

/// The result of a symmetry check: how many comparisons were made and the worst one.
#[derive(Debug, Clone, PartialEq)]
pub struct SymmetryReport {
    /// What was checked (e.g. "Lorentz invariance").
    pub property: String,
    /// The tolerance used.
    pub tolerance: Tolerance,
    /// Number of compared output entries.
    pub comparisons: usize,
    /// The comparison with the largest error ratio, passing or not.
    pub worst: Option<Violation>,
}

impl SymmetryReport {
    fn new(property: &str, tolerance: Tolerance) -> Self {
        Self {
            property: property.to_owned(),
            tolerance,
            comparisons: 0,
            worst: None,
        }
    }

    fn record(&mut self, candidate: Violation) {
        self.comparisons += 1;
        let worse = self
            .worst
            .as_ref()
            .is_none_or(|w| candidate.ratio > w.ratio);
        if worse {
            self.worst = Some(candidate);
        }
    }

    /// Whether every comparison was within tolerance.
    pub fn passed(&self) -> bool {
        self.comparisons > 0 && self.worst.as_ref().is_none_or(|w| w.ratio <= 1.0)
    }

    /// The largest error ratio found (0 if nothing was compared).
    pub fn worst_ratio(&self) -> f64 {
        self.worst.as_ref().map_or(0.0, |w| w.ratio)
    }
}

impl fmt::Display for SymmetryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "holds" } else { "VIOLATED" };
        write!(
            f,
            "{} {verdict} at tolerance {} over {} comparisons",
            self.property, self.tolerance, self.comparisons
        )?;
        if let Some(w) = &self.worst {
            write!(
                f,
                "; worst: input {} output {}: expected {:e}, got {:e} ({:.3}x the allowed error) under {}",
                w.input, w.output, w.expected, w.got, w.ratio, w.op
            )?;
        }
        Ok(())
    }
}

/// Checks f(g x) == f(x) for every input x and group element g, returning the worst
/// comparison. Outputs are compared entry by entry with scale |expected|.
pub fn check_invariant<F>(
    f: F,
    inputs: &[Vec<FourMomentum>],
    ops: &[SymmetryOp],
    tolerance: Tolerance,
) -> SymmetryReport
where
    F: Fn(&[FourMomentum]) -> Vec<f64>,
{
    let checks = Checks {
        inputs,
        ops,
        tolerance,
    };
    checks.run("invariance", &f, |_, fx| entrywise(fx.clone()), |v| v)
}

/// Checks f(g x) == g f(x) for functions returning four-vectors that transform like the
/// input: Lorentz-transformed, and reordered like the input under permutations (one
/// four-vector per particle). Components are compared with the scale of the largest
/// component of the expected vector.
pub fn check_equivariant<F>(
    f: F,
    inputs: &[Vec<FourMomentum>],
    ops: &[SymmetryOp],
    tolerance: Tolerance,
) -> SymmetryReport
where
    F: Fn(&[FourMomentum]) -> Vec<FourMomentum>,
{
    let predict = |op: &SymmetryOp, fx: &Vec<FourMomentum>| {
        let expected = op.apply(fx).map(|v| flatten(&v)).unwrap_or_default();
        let scales = expected
            .chunks(4)
            .flat_map(|v| [v.iter().fold(0.0_f64, |m, c| m.max(c.abs())); 4])
            .collect();
        (expected, scales)
    };
    let checks = Checks {
        inputs,
        ops,
        tolerance,
    };
    checks.run("equivariance", &f, predict, |v| flatten(&v))
}

/// Checks that per-particle scalar outputs (one value per constituent) are reordered
/// like the input under permutations and unchanged under Lorentz transformations.
pub fn check_permutation_equivariant<F>(
    f: F,
    inputs: &[Vec<FourMomentum>],
    ops: &[SymmetryOp],
    tolerance: Tolerance,
) -> SymmetryReport
where
    F: Fn(&[FourMomentum]) -> Vec<f64>,
{
    let predict = |op: &SymmetryOp, fx: &Vec<f64>| entrywise(op.reorder(fx).unwrap_or_default());
    let checks = Checks {
        inputs,
        ops,
        tolerance,
    };
    checks.run("permutation equivariance", &f, predict, |v| v)
}

/// Expected values with scale |expected| entry by entry.
fn entrywise(expected: Vec<f64>) -> (Vec<f64>, Vec<f64>) {
    let scales = expected.iter().map(|e| e.abs()).collect();
    (expected, scales)
}

/// The inputs, group elements and tolerance shared by every check.
struct Checks<'a> {
    inputs: &'a [Vec<FourMomentum>],
    ops: &'a [SymmetryOp],
    tolerance: Tolerance,
}

impl Checks<'_> {
    /// For every input x and element g: compares `flat(f(g x))` with what `predict`
    /// derives from f(x) and g (expected values and their scales).
    fn run<O>(
        &self,
        property: &str,
        f: &impl Fn(&[FourMomentum]) -> O,
        predict: impl Fn(&SymmetryOp, &O) -> (Vec<f64>, Vec<f64>),
        flat: impl Fn(O) -> Vec<f64>,
    ) -> SymmetryReport {
        let mut report = SymmetryReport::new(property, self.tolerance);
        for (input_index, x) in self.inputs.iter().enumerate() {
            let fx = f(x);
            for op in self.ops {
                let (expected, scales) = predict(op, &fx);
                let got = op.apply(x).map(|gx| flat(f(&gx)));
                let case = Case {
                    input: input_index,
                    op,
                    expected: &expected,
                    scales: &scales,
                };
                case.compare(&mut report, got.as_deref());
            }
        }
        report
    }
}

/// One input under one group element: what symmetry predicts, entry by entry.
struct Case<'a> {
    input: usize,
    op: &'a SymmetryOp,
    expected: &'a [f64],
    scales: &'a [f64],
}

impl Case<'_> {
    /// Records every entry of `got` against the prediction; a missing or mis-sized output
    /// (e.g. a permutation of the wrong length) is recorded as an infinite violation.
    fn compare(&self, report: &mut SymmetryReport, got: Option<&[f64]>) {
        let violation = |output, expected, got, ratio| Violation {
            input: self.input,
            op: self.op.clone(),
            output,
            expected,
            got,
            ratio,
        };
        match got {
            Some(got) if got.len() == self.expected.len() => {
                for (i, (&e, &g)) in self.expected.iter().zip(got).enumerate() {
                    let ratio = report.tolerance.ratio(e, g, self.scales[i]);
                    report.record(violation(i, e, g, ratio));
                }
            }
            Some(got) => report.record(violation(
                got.len(),
                self.expected.len() as f64,
                got.len() as f64,
                f64::INFINITY,
            )),
            None => report.record(violation(0, f64::NAN, f64::NAN, f64::INFINITY)),
        }
    }
}

fn flatten(v: &[FourMomentum]) -> Vec<f64> {
    v.iter().flat_map(FourMomentum::to_array).collect()
}

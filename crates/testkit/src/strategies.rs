//! proptest strategies for jets and symmetry transformations.
//!
//! Use them directly in `proptest!` blocks, or through [`crate::SymmetryKit`], which
//! draws from them with a seeded runner.

use std::f64::consts::PI;
use std::ops::RangeInclusive;

use noether_kinematics::random::{random_rotation, random_unit_vector};
use noether_kinematics::{FourMomentum, LorentzTransform};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Masses of the stable hadrons and photons a particle-level jet is made of (GeV):
/// photon, charged pion, charged kaon, proton.
pub const CONSTITUENT_MASSES: [f64; 4] = [0.0, 0.13957, 0.49368, 0.93827];

/// Jet radius used by [`jet`] (anti-kT R = 0.8, as in the top-tagging datasets).
pub const JET_RADIUS: f64 = 0.8;

/// A single particle: pT log-uniform in [0.5, 500] GeV, |eta| <= 2.5, any phi, mass of a
/// photon or a stable hadron.
pub fn particle() -> impl Strategy<Value = FourMomentum> {
    (
        0.5_f64.ln()..500.0_f64.ln(),
        -2.5..2.5_f64,
        -PI..PI,
        prop::sample::select(CONSTITUENT_MASSES.to_vec()),
    )
        .prop_map(|(log_pt, eta, phi, m)| {
            FourMomentum::from_pt_eta_phi_m(log_pt.exp(), eta, phi, m)
                .expect("strategy ranges are valid")
        })
}

/// A realistic boosted jet: jet pT in [300, 1000] GeV, |eta| <= 2, with `constituents`
/// particles inside Delta R < [`JET_RADIUS`] of the axis, carrying steeply falling
/// momentum fractions, returned sorted by decreasing pT (the noether convention).
pub fn jet(constituents: RangeInclusive<usize>) -> impl Strategy<Value = Vec<FourMomentum>> {
    let constituent = (
        0.0..1.0_f64, // momentum-fraction weight (cubed: a few hard, many soft)
        0.0..1.0_f64, // radial position (sqrt: uniform in the disc)
        0.0..2.0 * PI,
        prop::sample::select(CONSTITUENT_MASSES.to_vec()),
    );
    (
        300.0..1000.0_f64,
        -2.0..2.0_f64,
        -PI..PI,
        prop::collection::vec(constituent, constituents),
    )
        .prop_map(|(jet_pt, jet_eta, jet_phi, parts)| {
            let weights: Vec<f64> = parts.iter().map(|p| 1e-3 + p.0.powi(3)).collect();
            let total: f64 = weights.iter().sum();
            let mut momenta: Vec<FourMomentum> = parts
                .iter()
                .zip(&weights)
                .map(|(&(_, r, angle, m), w)| {
                    let dr = JET_RADIUS * r.sqrt();
                    FourMomentum::from_pt_eta_phi_m(
                        jet_pt * w / total,
                        jet_eta + dr * angle.cos(),
                        jet_phi + dr * angle.sin(),
                        m,
                    )
                    .expect("strategy ranges are valid")
                })
                .collect();
            momenta.sort_by(|a, b| b.pt().total_cmp(&a.pt()));
            momenta
        })
}

/// A boost in a uniformly random direction with rapidity in [0, `max_rapidity`]
/// (shrinks toward small rapidity).
pub fn boost(max_rapidity: f64) -> impl Strategy<Value = LorentzTransform> {
    (any::<u64>(), 0.0..=max_rapidity).prop_map(|(seed, y)| {
        let axis = random_unit_vector(&mut ChaCha8Rng::seed_from_u64(seed));
        LorentzTransform::boost_rapidity(&axis, y).expect("unit axis and finite rapidity")
    })
}

/// A Haar-random rotation.
pub fn rotation() -> impl Strategy<Value = LorentzTransform> {
    any::<u64>().prop_map(|seed| random_rotation(&mut ChaCha8Rng::seed_from_u64(seed)))
}

/// A general element of SO+(1,3): a boost with rapidity <= `max_rapidity` after a
/// Haar-random rotation.
pub fn lorentz(max_rapidity: f64) -> impl Strategy<Value = LorentzTransform> {
    (rotation(), boost(max_rapidity)).prop_map(|(r, b)| b * r)
}

/// A permutation of `0..n`.
pub fn permutation(n: usize) -> impl Strategy<Value = Vec<usize>> {
    Just((0..n).collect::<Vec<usize>>()).prop_shuffle()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    #[test]
    fn jets_are_physical_sorted_and_inside_the_radius() {
        let mut runner = TestRunner::deterministic();
        for _ in 0..50 {
            let j = jet(1..=40).new_tree(&mut runner).unwrap().current();
            let axis: FourMomentum = j.iter().sum();
            assert!(j.windows(2).all(|w| w[0].pt() >= w[1].pt()));
            assert!(j.iter().all(|p| p.mass2() >= -1e-9 * p.e() * p.e()));
            assert!(j.iter().all(|p| p.delta_r(&axis) < 2.0 * JET_RADIUS));
        }
    }

    #[test]
    fn boosts_respect_the_rapidity_bound() {
        let mut runner = TestRunner::deterministic();
        for _ in 0..50 {
            let b = lorentz(2.5).new_tree(&mut runner).unwrap().current();
            assert!(b.rapidity() <= 2.5 + 1e-9 && b.is_valid(1e-9));
        }
    }
}

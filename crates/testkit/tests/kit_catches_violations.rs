//! The kit itself: invariant functions pass, deliberately broken ones are caught, and
//! the report names the worst violation.

use noether_kinematics::invariants::{pairwise_stable_dots, PtYPhiM};
use noether_kinematics::FourMomentum;
use noether_testkit::{check_invariant, SymmetryKit, SymmetryOp, Tolerance};

fn total(jet: &[FourMomentum]) -> FourMomentum {
    jet.iter().sum()
}

#[test]
fn jet_mass_is_lorentz_and_permutation_invariant() {
    let kit = SymmetryKit::new(1).with_max_rapidity(4.0).with_jets(16);
    kit.assert_lorentz_invariant(|j| vec![total(j).mass2()], Tolerance::F64);
    kit.assert_permutation_invariant(|j| vec![total(j).mass()], Tolerance::F64);
}

#[test]
fn sorted_pairwise_invariants_are_invariant_in_f64() {
    // The multiset of pairwise Minkowski products: invariant under both groups.
    let sorted_dots = |j: &[FourMomentum]| {
        let p: Vec<PtYPhiM<f64>> = j.iter().map(PtYPhiM::from_four_momentum).collect();
        let mut d = pairwise_stable_dots(&p);
        d.sort_by(f64::total_cmp);
        d
    };
    // The smallest products are hadron masses squared (0.02 GeV^2) recomputed from boosted
    // momenta of ~1 TeV: E - |p| carries an absolute rounding of ~eps E^2 ~ 1e-9 GeV^2, so
    // the tier needs an absolute floor (1e-6 GeV^2) besides the relative 1e-9.
    let kit = SymmetryKit::new(2).with_max_rapidity(3.0);
    let report = kit.lorentz_invariance(sorted_dots, Tolerance::new("pairwise", 1e-9, 1e-6));
    assert!(report.passed(), "{report}");
    kit.assert_permutation_invariant(sorted_dots, Tolerance::F64_STRICT);
}

#[test]
fn function_of_px_alone_is_caught_with_its_group_element() {
    let kit = SymmetryKit::new(3);
    let report = kit.lorentz_invariance(|j| vec![total(j).px()], Tolerance::F32_NETWORK);
    assert!(!report.passed());
    let worst = report.worst.as_ref().unwrap();
    assert!(worst.ratio > 1e3, "{report}");
    assert!(matches!(worst.op, SymmetryOp::Lorentz(_)));
    let text = report.to_string();
    assert!(
        text.contains("VIOLATED") && text.contains("Lorentz transform"),
        "{text}"
    );
}

#[test]
fn order_dependent_function_is_caught_by_permutations() {
    let kit = SymmetryKit::new(4).with_constituents(3..=20);
    let leading_then_second = |j: &[FourMomentum]| vec![j[0].e() - j[1].e()];
    assert!(!kit
        .permutation_invariance(leading_then_second, Tolerance::F64)
        .passed());
}

#[test]
fn nan_output_never_passes() {
    let kit = SymmetryKit::new(5);
    assert!(!kit
        .lorentz_invariance(|_| vec![f64::NAN], Tolerance::F32_NETWORK)
        .passed());
}

#[test]
fn identity_is_equivariant_and_spatial_reflection_is_not() {
    let kit = SymmetryKit::new(6).with_max_rapidity(3.0);
    kit.assert_lorentz_equivariant(<[FourMomentum]>::to_vec, Tolerance::F64_STRICT);
    let reflect = |j: &[FourMomentum]| {
        j.iter()
            .map(|p| FourMomentum::new_unchecked(p.e(), -p.px(), p.py(), p.pz()))
            .collect()
    };
    assert!(!kit.lorentz_equivariance(reflect, Tolerance::F64).passed());
    // Per-particle energies follow permutations but per-particle pT rank does not.
    kit.assert_permutation_equivariant(
        |j| j.iter().map(FourMomentum::e).collect(),
        Tolerance::F64_STRICT,
    );
}

#[test]
fn wrong_length_permutation_is_reported_not_panicking() {
    let jets = vec![SymmetryKit::new(7).jets().remove(0)];
    let op = SymmetryOp::Permutation(vec![0]);
    let report = check_invariant(|j| vec![j.len() as f64], &jets, &[op], Tolerance::F64);
    assert!(!report.passed() && report.worst_ratio().is_infinite());
}

#[test]
fn kit_is_reproducible_for_a_seed() {
    assert_eq!(SymmetryKit::new(9).jets(), SymmetryKit::new(9).jets());
    assert_ne!(SymmetryKit::new(9).jets(), SymmetryKit::new(10).jets());
}

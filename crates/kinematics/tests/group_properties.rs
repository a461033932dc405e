//! Property tests of the Lorentz group and its double cover on random elements.
//!
//! Tolerances (documented tiers): group conditions 1e-9 relative to max|Lambda|^2;
//! Minkowski products 1e-9 relative to E'_a E'_b (the scale at which the boosted
//! product is computed) — entries of Lambda grow like cosh(y), so absolute errors grow
//! like e^(2y) eps.

use std::f64::consts::PI;

use nalgebra::Vector3;
use noether_kinematics::random::{random_lorentz, random_rotation, random_sl2c};
use noether_kinematics::{FourMomentum, LorentzTransform, Sl2c, DEFAULT_GROUP_TOLERANCE};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const MAX_RAPIDITY: f64 = 4.0;

fn lorentz(seed: u64) -> LorentzTransform {
    random_lorentz(&mut ChaCha8Rng::seed_from_u64(seed), MAX_RAPIDITY).unwrap()
}

fn sl2c(seed: u64) -> Sl2c {
    random_sl2c(&mut ChaCha8Rng::seed_from_u64(seed), MAX_RAPIDITY).unwrap()
}

fn max_rel_diff(a: &LorentzTransform, b: &LorentzTransform) -> f64 {
    let scale = a.matrix().amax().max(b.matrix().amax()).max(1.0);
    (a.matrix() - b.matrix()).amax() / scale
}

fn momentum() -> impl Strategy<Value = FourMomentum> {
    (0.1..1000.0_f64, -4.0..4.0_f64, -PI..PI, 0.0..200.0_f64)
        .prop_map(|(pt, eta, phi, m)| FourMomentum::from_pt_eta_phi_m(pt, eta, phi, m).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_elements_are_in_so13_plus(seed in any::<u64>()) {
        let l = lorentz(seed);
        prop_assert!(l.validate(DEFAULT_GROUP_TOLERANCE).is_ok(), "{l}: {:?}", l.validate(DEFAULT_GROUP_TOLERANCE));
        prop_assert!(l.rapidity() <= MAX_RAPIDITY * (1.0 + 1e-9));
    }

    #[test]
    fn identity_and_inverse(seed in any::<u64>()) {
        let l = lorentz(seed);
        let id = LorentzTransform::identity();
        prop_assert!(max_rel_diff(&(l * id), &l) == 0.0);
        prop_assert!(max_rel_diff(&(id * l), &l) == 0.0);
        // Lambda Lambda^-1 has entries of size cosh^2(y): rounding relative to that.
        let scale = l.matrix().amax().powi(2);
        prop_assert!(((l * l.inverse()).matrix() - id.matrix()).amax() < 1e-12 * scale);
        prop_assert!(((l.inverse() * l).matrix() - id.matrix()).amax() < 1e-12 * scale);
    }

    #[test]
    fn associativity_and_closure(a in any::<u64>(), b in any::<u64>(), c in any::<u64>()) {
        let (la, lb, lc) = (lorentz(a), lorentz(b), lorentz(c));
        let left = (la * lb) * lc;
        let right = la * (lb * lc);
        prop_assert!(max_rel_diff(&left, &right) < 1e-12, "{}", max_rel_diff(&left, &right));
        // Closure: the product of three elements (rapidity up to 12) is still in SO+(1,3).
        prop_assert!(left.validate(DEFAULT_GROUP_TOLERANCE).is_ok(), "{:?}", left.validate(DEFAULT_GROUP_TOLERANCE));
    }

    #[test]
    fn minkowski_products_are_invariant(seed in any::<u64>(), p in momentum(), q in momentum()) {
        let l = lorentz(seed);
        let (lp, lq) = (l.apply(&p), l.apply(&q));
        let scale = lp.e() * lq.e() + p.e() * q.e();
        prop_assert!((lp.dot(&lq) - p.dot(&q)).abs() <= 1e-9 * scale,
            "p.q = {} -> {} under {l}", p.dot(&q), lp.dot(&lq));
        prop_assert!((lp.mass2() - p.mass2()).abs() <= 1e-9 * (lp.e() * lp.e() + p.e() * p.e()));
    }

    #[test]
    fn covering_map_is_a_homomorphism(a in any::<u64>(), b in any::<u64>()) {
        let (sa, sb) = (sl2c(a), sl2c(b));
        let product = (sa * sb).to_lorentz();
        let composed = sa.to_lorentz() * sb.to_lorentz();
        prop_assert!(max_rel_diff(&product, &composed) < 1e-12, "{}", max_rel_diff(&product, &composed));
        prop_assert!(max_rel_diff(&(-sa).to_lorentz(), &sa.to_lorentz()) == 0.0);
        prop_assert!(sa.to_lorentz().validate(DEFAULT_GROUP_TOLERANCE).is_ok());
    }

    #[test]
    fn sl2c_action_matches_its_lorentz_image(seed in any::<u64>(), p in momentum()) {
        let a = sl2c(seed);
        let (x, y) = (a.act(&p), a.to_lorentz().apply(&p));
        let scale = x.e().max(1.0);
        for (u, v) in x.to_array().iter().zip(y.to_array()) {
            prop_assert!((u - v).abs() < 1e-12 * scale);
        }
    }

    #[test]
    fn rapidity_equals_pseudorapidity_for_massless(pt in 0.1..1e4_f64, eta in -8.0..8.0_f64, phi in -PI..PI) {
        let p = FourMomentum::from_pt_eta_phi_m(pt, eta, phi, 0.0).unwrap();
        prop_assert!((p.rapidity() - eta).abs() < 1e-9, "y = {} eta = {}", p.rapidity(), eta);
        prop_assert!((p.eta() - eta).abs() < 1e-9);
    }

    #[test]
    fn rotations_preserve_pt_about_z_and_three_momentum(seed in any::<u64>(), p in momentum()) {
        let r = random_rotation(&mut ChaCha8Rng::seed_from_u64(seed));
        let q = r.apply(&p);
        prop_assert!((q.p() - p.p()).abs() < 1e-12 * p.p().max(1.0));
        prop_assert!((q.e() - p.e()).abs() == 0.0);
        let rz = LorentzTransform::rotation(&Vector3::z(), 0.7).unwrap().apply(&p);
        prop_assert!((rz.pt() - p.pt()).abs() < 1e-12 * p.pt());
        prop_assert!((rz.eta() - p.eta()).abs() < 1e-9);
    }
}

#[test]
fn boosts_along_z_shift_rapidity() {
    let p = FourMomentum::from_pt_y_phi_m(40.0, 0.3, 1.0, 5.0).unwrap();
    let b = LorentzTransform::boost_rapidity(&Vector3::z(), 1.7).unwrap();
    assert!((b.apply(&p).rapidity() - 2.0).abs() < 1e-12);
}

#[test]
fn sl2c_boost_matches_lorentz_boost_in_every_direction() {
    for axis in [Vector3::x(), Vector3::y(), Vector3::new(1.0, -2.0, 0.5)] {
        let a = Sl2c::boost_rapidity(&axis, -1.3).unwrap().to_lorentz();
        let b = LorentzTransform::boost_rapidity(&axis, -1.3).unwrap();
        assert!(max_rel_diff(&a, &b) < 1e-14, "{axis:?}");
    }
}

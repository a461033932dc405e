//! Seeded random group elements for tests and data augmentation.
//!
//! Every function takes the caller's RNG, so runs are reproducible with a seeded
//! generator such as `rand_chacha::ChaCha8Rng::seed_from_u64(seed)`.

use std::f64::consts::PI;

use nalgebra::{Quaternion, UnitQuaternion, Vector3};
use rand::seq::SliceRandom;
use rand::{Rng, RngExt};

use crate::error::{non_negative, Result};
use crate::{LorentzTransform, Sl2c};

/// A direction drawn uniformly on the unit sphere.
pub fn random_unit_vector<R: Rng + ?Sized>(rng: &mut R) -> Vector3<f64> {
    let cos_theta: f64 = rng.random_range(-1.0..=1.0);
    let phi: f64 = rng.random_range(0.0..2.0 * PI);
    let sin_theta = (1.0 - cos_theta * cos_theta).max(0.0).sqrt();
    Vector3::new(sin_theta * phi.cos(), sin_theta * phi.sin(), cos_theta)
}

/// A unit quaternion drawn uniformly (Haar measure on SU(2); Shoemake's method).
pub fn random_unit_quaternion<R: Rng + ?Sized>(rng: &mut R) -> UnitQuaternion<f64> {
    let u1: f64 = rng.random_range(0.0..1.0);
    let (u2, u3): (f64, f64) = (rng.random_range(0.0..1.0), rng.random_range(0.0..1.0));
    let (a, b) = ((1.0 - u1).sqrt(), u1.sqrt());
    UnitQuaternion::from_quaternion(Quaternion::new(
        b * (2.0 * PI * u3).cos(),
        a * (2.0 * PI * u2).sin(),
        a * (2.0 * PI * u2).cos(),
        b * (2.0 * PI * u3).sin(),
    ))
}

/// A rotation drawn uniformly from SO(3) (Haar measure).
pub fn random_rotation<R: Rng + ?Sized>(rng: &mut R) -> LorentzTransform {
    LorentzTransform::from_rotation(&random_unit_quaternion(rng).to_rotation_matrix())
}

/// A boost in a uniformly random direction with rapidity uniform in [0, `max_rapidity`].
///
/// # Errors
/// A negative or non-finite `max_rapidity`.
pub fn random_boost<R: Rng + ?Sized>(rng: &mut R, max_rapidity: f64) -> Result<LorentzTransform> {
    let max_rapidity = non_negative("maximum rapidity", max_rapidity)?;
    let axis = random_unit_vector(rng);
    let y = rng.random_range(0.0..=max_rapidity);
    LorentzTransform::boost_rapidity(&axis, y)
}

/// A general element of SO+(1,3): a random boost (rapidity <= `max_rapidity`) after a
/// Haar-random rotation. Every element has this polar form Lambda = B R.
///
/// # Errors
/// A negative or non-finite `max_rapidity`.
pub fn random_lorentz<R: Rng + ?Sized>(rng: &mut R, max_rapidity: f64) -> Result<LorentzTransform> {
    let rotation = random_rotation(rng);
    Ok(random_boost(rng, max_rapidity)? * rotation)
}

/// A random SL(2,C) element: boost (rapidity <= `max_rapidity`) times a Haar-random
/// SU(2) element, with a random overall sign (both signs cover the same Lambda).
///
/// # Errors
/// A negative or non-finite `max_rapidity`.
pub fn random_sl2c<R: Rng + ?Sized>(rng: &mut R, max_rapidity: f64) -> Result<Sl2c> {
    let max_rapidity = non_negative("maximum rapidity", max_rapidity)?;
    let q = random_unit_quaternion(rng);
    let rotation = Sl2c::from_quaternion(q.w, q.i, q.j, q.k)?;
    let boost = Sl2c::boost_rapidity(
        &random_unit_vector(rng),
        rng.random_range(0.0..=max_rapidity),
    )?;
    let a = boost * rotation;
    Ok(if rng.random_bool(0.5) { -a } else { a })
}

/// A uniformly random permutation of `0..n` (Fisher-Yates).
pub fn random_permutation<R: Rng + ?Sized>(rng: &mut R, n: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    p.shuffle(rng);
    p
}

/// Reorders `items` so that `out[i] = items[permutation[i]]`.
///
/// # Panics
/// If `permutation` is shorter than `items` or holds an index out of range; it is meant
/// for permutations from [`random_permutation`].
pub fn permute<T: Clone>(items: &[T], permutation: &[usize]) -> Vec<T> {
    permutation.iter().map(|&i| items[i].clone()).collect()
}

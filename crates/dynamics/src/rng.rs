//! Seeded random vectors.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A ChaCha8 stream for `seed`.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A standard normal draw (Box-Muller: avoids a rand_distr dependency for one
/// distribution).
pub fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// `n` standard normal draws.
pub fn normals(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| normal(rng)).collect()
}

/// `n` Rademacher draws (+-1 with equal probability).
pub fn rademacher(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            if rng.random_range(0..2) == 0 {
                -1.0
            } else {
                1.0
            }
        })
        .collect()
}

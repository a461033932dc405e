//! Double descent ground truth (Belkin, Hsu, Xu 2019): min-norm least squares on p of D
//! isotropic Gaussian features with n samples and noise sigma has expected test error
//! (|b_c|^2 + sigma^2)(1 + p / (n - p - 1)) for p <= n - 2 and
//! |b_T|^2 (1 - n/p) + (|b_c|^2 + sigma^2)(1 + n / (p - n - 1)) for p >= n + 2, where
//! b_T are the coefficients of the p used features and b_c the rest.

use nalgebra::{DMatrix, DVector};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The expected test error (including the noise) from Belkin, Hsu and Xu; `None` in the
/// window n - 2 < p < n + 2 where it diverges.
pub fn expected_test_error(
    p: usize,
    n: usize,
    b_used2: f64,
    b_unused2: f64,
    sigma2: f64,
) -> Option<f64> {
    let (pf, nf) = (p as f64, n as f64);
    if p + 2 <= n {
        Some((b_unused2 + sigma2) * (1.0 + pf / (nf - pf - 1.0)))
    } else if p >= n + 2 {
        Some(b_used2 * (1.0 - nf / pf) + (b_unused2 + sigma2) * (1.0 + nf / (pf - nf - 1.0)))
    } else {
        None
    }
}

/// Monte-Carlo test error of min-norm least squares using the first `p` of the
/// coefficients `beta` (all features isotropic Gaussian), `n` samples, noise `sigma`,
/// averaged over `trials` seeded draws. The expectation over test points is exact:
/// |b_T - b_hat|^2 + |b_c|^2 + sigma^2.
pub fn simulate_test_error(
    beta: &[f64],
    p: usize,
    n: usize,
    sigma: f64,
    trials: usize,
    seed: u64,
) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let total = beta.len();
    let unused2: f64 = beta[p..].iter().map(|b| b * b).sum();
    let mut sum = 0.0;
    for _ in 0..trials {
        let x = DMatrix::from_fn(n, total, |_, _| gaussian(&mut rng));
        let noise = DVector::from_fn(n, |_, _| sigma * gaussian(&mut rng));
        let y = &x * DVector::from_column_slice(beta) + noise;
        let x_used = x.columns(0, p).into_owned();
        let fit = x_used
            .pseudo_inverse(1e-10)
            .map_or_else(|_| DVector::zeros(p), |pinv| pinv * &y);
        let err: f64 = (0..p).map(|k| (beta[k] - fit[k]).powi(2)).sum();
        sum += err + unused2 + sigma * sigma;
    }
    sum / trials as f64
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    use rand::RngExt;
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

//! SGLD and the local learning coefficient against exact answers: stationary moments of
//! power potentials and of a localised quadratic (with the Euler-Maruyama variance
//! inflation), d/2 for a regular model, the exact finite-temperature value of a singular
//! one, and Aoyagi-Watanabe values for reduced-rank regression.

use nalgebra::DMatrix;
use noether_dynamics::llc::{estimate_llc, sgld_losses, SgldConfig};
use noether_dynamics::toy::{rrr_learning_coefficient, PowerPotential, ReducedRankRegression};
use noether_dynamics::{DynamicsError, LeastSquares, Quadratic};

fn mean(chains: &[Vec<f64>]) -> f64 {
    let all: Vec<f64> = chains.iter().flatten().copied().collect();
    all.iter().sum::<f64>() / all.len() as f64
}

#[test]
fn power_potentials_have_mean_one_over_2k() {
    for k in [1, 2] {
        // 20 independent coordinates: E[L] = 20 / (2k).
        let obj = PowerPotential { c: 3.0, k, dim: 20 };
        let config = SgldConfig {
            epsilon: 2e-3,
            gamma: 0.0,
            n_beta: Some(1.0),
            chains: 4,
            draws: 20_000,
            burn_in: 2_000,
            batch_size: None,
            seed: 11,
        };
        let m = mean(&sgld_losses(&obj, &[0.0; 20], &config).unwrap()) / 20.0;
        let want = 1.0 / f64::from(2 * k);
        assert!((m - want).abs() < 0.03 * want, "k = {k}: {m} vs {want}");
    }
}

#[test]
fn localised_quadratic_matches_the_discretised_ou_process() {
    let a = 2.0;
    let obj = Quadratic::diagonal(&[a; 10]);
    let (n_beta, gamma, eps) = (50.0, 30.0, 0.01);
    let config = SgldConfig {
        epsilon: eps,
        gamma,
        n_beta: Some(n_beta),
        chains: 4,
        draws: 20_000,
        burn_in: 1_000,
        batch_size: None,
        seed: 3,
    };
    let est = estimate_llc(&obj, &[0.0; 10], &config).unwrap();
    let c = n_beta * a + gamma;
    let want = 10.0 * n_beta * a / (2.0 * c) / (1.0 - eps * c / 4.0);
    assert!(
        (est.lambda_hat - want).abs() < 0.03 * want,
        "{} vs {want}",
        est.lambda_hat
    );
    assert_eq!(est.per_chain.len(), 4);
    assert!(est.std > 0.0);
}

#[test]
fn a_regular_model_has_lambda_d_over_2() {
    let d = 6;
    let mut r = noether_dynamics::rng::rng(5);
    let n = 2000;
    let x = nalgebra::DMatrix::from_vec(n, d, noether_dynamics::rng::normals(&mut r, n * d));
    let y = nalgebra::DVector::from_vec(noether_dynamics::rng::normals(&mut r, n));
    let ls = LeastSquares {
        x: x.clone(),
        y: y.clone(),
    };
    // The minimum of the empirical loss.
    let w_star = (x.transpose() * &x)
        .lu()
        .solve(&(x.transpose() * &y))
        .unwrap();
    let config = SgldConfig {
        epsilon: 1e-3,
        gamma: 1.0,
        chains: 4,
        draws: 4_000,
        burn_in: 500,
        ..SgldConfig::default()
    };
    let est = estimate_llc(&ls, w_star.as_slice(), &config).unwrap();
    assert!((est.lambda_hat - 3.0).abs() < 0.3, "{est:?}");
    assert!((est.n_beta - 2000.0 / 2000f64.ln()).abs() < 1e-9);
}

/// The exact answer at finite temperature for K(a, b) = |a|^2 |b|^2 / 2 with a, b in
/// R^2 (lambda = 1 with multiplicity 2): under exp(-t K - gamma |w|^2 / 2), polar
/// coordinates in a and b and u = |a|^2 give
/// E[t K] = int e^(-gamma u/2) t u / (t u + gamma)^2 du / int e^(-gamma u/2) / (t u + gamma) du,
/// here by the trapezoid rule on a log grid.
fn exact_singular_mean(t: f64, gamma: f64) -> f64 {
    let (lo, hi, steps) = (1e-12f64.ln(), (80.0 / gamma).ln(), 400_000);
    let h = (hi - lo) / f64::from(steps);
    let (mut num, mut den) = (0.0, 0.0);
    for i in 0..=steps {
        let u = (lo + h * f64::from(i)).exp();
        let weight = if i == 0 || i == steps { 0.5 } else { 1.0 } * u; // du = u ds
        let decay = (-gamma * u / 2.0).exp();
        num += weight * decay * t * u / (t * u + gamma).powi(2);
        den += weight * decay / (t * u + gamma);
    }
    num / den
}

/// SGLD on that singular model reproduces the exact finite-temperature mean (0.871 at
/// t = 2000, gamma = 1, not the asymptotic 1): reduced-rank regression (2, 1, 2) with
/// X^T X / n = I and y = 0, so that L(w) - L(0) is exactly K.
#[test]
fn singular_model_matches_its_exact_finite_temperature_mean() {
    let x = DMatrix::<f64>::identity(2, 2) * 2f64.sqrt(); // X^T X / 2 = I
    let obj = ReducedRankRegression::new(x, DMatrix::zeros(2, 2), 1, vec![0.0; 4]);
    let (t, gamma) = (2000.0, 1.0);
    let want = exact_singular_mean(t, gamma);
    assert!((want - 0.8707).abs() < 1e-3, "quadrature {want}");
    let config = SgldConfig {
        epsilon: 2.5e-5,
        gamma,
        n_beta: Some(t),
        chains: 4,
        draws: 1_000_000,
        burn_in: 50_000,
        seed: 3,
        ..SgldConfig::default()
    };
    let est = estimate_llc(&obj, &[0.0; 4], &config).unwrap();
    // 3% is about three standard errors (per-chain spread ~0.017 over 4 chains).
    assert!(
        (est.lambda_hat - want).abs() < 0.03 * want,
        "SGLD {} (chain spread {}) vs exact {want}",
        est.lambda_hat,
        est.std
    );
}

/// SGLD centred on the trained parameter (n = 200,000, gamma = 10, eps n beta = 0.25)
/// against Aoyagi and Watanabe's values, all four cases of the issue within 20%.
#[test]
fn reduced_rank_regression_matches_aoyagi_watanabe() {
    for (m, h, n_out, want) in [
        (5, 3, 5, 6.5),
        (5, 4, 5, 8.0),
        (4, 3, 8, 6.0),
        (2, 1, 2, 1.0),
    ] {
        assert_eq!(rrr_learning_coefficient(m, h, n_out, 0), want);
        let obj = ReducedRankRegression::sample(m, h, n_out, 0, 200_000, 1);
        let config = SgldConfig {
            epsilon: 1.5e-5,
            gamma: 10.0,
            chains: 4,
            draws: 100_000,
            burn_in: 50_000,
            seed: 1,
            ..SgldConfig::default()
        };
        let est = estimate_llc(&obj, &obj.fitted(), &config).unwrap();
        assert!(
            (est.lambda_hat - want).abs() < 0.2 * want,
            "({m}, {h}, {n_out}, 0): {} vs {want}",
            est.lambda_hat
        );
    }
    assert_eq!(rrr_learning_coefficient(2, 1, 2, 0), 1.0);
    // The other branches of the formula: (M + H < N + r), (N + H < M + r), (M + N < H + r).
    assert_eq!(
        rrr_learning_coefficient(4, 3, 8, 1),
        8.5 // (H M - H r + N r) / 2 = (12 - 3 + 8) / 2
    );
    assert_eq!(
        rrr_learning_coefficient(8, 3, 4, 1),
        8.5 // (H M - H r + N r) / 2 = (12 - 3 + 8) / 2
    );
    assert_eq!(rrr_learning_coefficient(2, 6, 2, 3), 2.0);
}

#[test]
fn bad_settings_are_named() {
    let q = Quadratic::diagonal(&[1.0]);
    let bad = SgldConfig {
        epsilon: -1.0,
        ..SgldConfig::default()
    };
    assert!(matches!(
        estimate_llc(&q, &[0.0], &bad),
        Err(DynamicsError::InvalidSetting {
            setting: "sgld.epsilon",
            ..
        })
    ));
    let huge = SgldConfig {
        epsilon: 10.0,
        n_beta: Some(1e6),
        ..SgldConfig::default()
    };
    assert!(matches!(
        estimate_llc(&q, &[0.0], &huge),
        Err(DynamicsError::NonFinite { .. })
    ));
}

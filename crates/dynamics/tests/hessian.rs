//! Curvature estimates against exact answers: quadratics with known spectra and linear
//! least squares, whose Hessian is `X^T X / n`.

use nalgebra::{DMatrix, SymmetricEigen};
use noether_dynamics::hessian::{hutchinson_trace, hvp, slq_density, top_eigenvalues, PowerConfig};
use noether_dynamics::rng::{normals, rng};
use noether_dynamics::{DynamicsError, LeastSquares, Objective, Quadratic};

/// A quadratic with eigenvalues `spectrum` in a random orthonormal basis.
fn rotated(spectrum: &[f64], seed: u64) -> Quadratic {
    let d = spectrum.len();
    let mut r = rng(seed);
    let g = DMatrix::from_vec(d, d, normals(&mut r, d * d));
    let q = g.qr().q();
    let a = &q
        * DMatrix::from_diagonal(&nalgebra::DVector::from_column_slice(spectrum))
        * q.transpose();
    Quadratic {
        a,
        center: nalgebra::DVector::from_vec(normals(&mut r, d)),
    }
}

fn least_squares(n: usize, d: usize, seed: u64) -> LeastSquares {
    let mut r = rng(seed);
    // Columns of different scales give a spread spectrum.
    let x = DMatrix::from_fn(n, d, |_, j| (1.0 + j as f64) * normals(&mut r, 1)[0]);
    let y = nalgebra::DVector::from_vec(normals(&mut r, n));
    LeastSquares { x, y }
}

#[test]
fn hvp_is_exact_on_a_quadratic() {
    let q = rotated(&[7.0, 3.0, 2.0, 0.5, 0.1], 1);
    let w = [0.3, -1.0, 2.0, 0.0, 5.0];
    let v = [1.0, 2.0, -1.0, 0.5, 0.0];
    let got = hvp(&q, &w, &v).unwrap();
    let want = &q.a * nalgebra::DVector::from_column_slice(&v);
    for (g, e) in got.iter().zip(want.iter()) {
        assert!((g - e).abs() < 1e-7, "{g} vs {e}");
    }
    assert!(matches!(
        hvp(&q, &w[..3], &v),
        Err(DynamicsError::Dimension {
            what: "w",
            expected: 5,
            found: 3
        })
    ));
}

#[test]
fn power_iteration_finds_the_top_eigenvalues() {
    let spectrum = [9.0, 6.0, 4.0, 1.0, 0.5, 0.25, 0.1, 0.0];
    let q = rotated(&spectrum, 2);
    let w = vec![0.1; spectrum.len()];
    let top = top_eigenvalues(
        &q,
        &w,
        &PowerConfig {
            k: 3,
            max_iters: 2000,
            tol: 1e-12,
            seed: 3,
        },
    )
    .unwrap();
    for (pair, want) in top.iter().zip(&spectrum) {
        assert!((pair.value - want).abs() < 1e-5, "{} vs {want}", pair.value);
        // An eigenvector: A u = lambda u.
        let u = nalgebra::DVector::from_column_slice(&pair.vector);
        assert!((&q.a * &u - &u * pair.value).norm() < 1e-3);
    }
    let ls = least_squares(400, 6, 4);
    let exact = SymmetricEigen::new(ls.hessian()).eigenvalues;
    let mut exact: Vec<f64> = exact.iter().copied().collect();
    exact.sort_by(|a, b| b.total_cmp(a));
    let top = top_eigenvalues(
        &ls,
        &[0.0; 6],
        &PowerConfig {
            k: 2,
            max_iters: 3000,
            tol: 1e-12,
            seed: 0,
        },
    )
    .unwrap();
    for (pair, want) in top.iter().zip(&exact) {
        assert!(
            (pair.value - want).abs() < 1e-4 * want,
            "{} vs {want}",
            pair.value
        );
    }
    assert!(top_eigenvalues(
        &ls,
        &[0.0; 6],
        &PowerConfig {
            k: 7,
            ..PowerConfig::default()
        }
    )
    .is_err());
}

#[test]
fn hutchinson_trace_is_unbiased() {
    let ls = least_squares(300, 8, 5);
    let exact = ls.hessian().trace();
    let est = hutchinson_trace(&ls, &[0.2; 8], 400, 9).unwrap();
    assert!(
        (est.trace - exact).abs() < 4.0 * est.std_error,
        "{} +- {} vs {exact}",
        est.trace,
        est.std_error
    );
    assert!(est.std_error > 0.0 && est.std_error < 0.2 * exact);
    // Diagonal Hessian: every Rademacher probe gives the trace exactly.
    let q = Quadratic::diagonal(&[3.0, 2.0, 0.5]);
    let est = hutchinson_trace(&q, &[0.0; 3], 5, 0).unwrap();
    assert!((est.trace - 5.5).abs() < 1e-6 && est.std_error < 1e-6);
}

#[test]
fn lanczos_quadrature_recovers_the_spectrum() {
    let spectrum = [5.0, 3.0, 2.0, 1.0, 0.5, 0.2];
    let q = rotated(&spectrum, 6);
    // Full Lanczos: the nodes are the eigenvalues.
    let density = slq_density(&q, &[0.0; 6], 6, 1, 1).unwrap();
    let mut nodes = density.nodes.clone();
    nodes.sort_by(|a, b| b.total_cmp(a));
    for (n, e) in nodes.iter().zip(&spectrum) {
        assert!((n - e).abs() < 1e-5, "{n} vs {e}");
    }
    // Many probes, few steps: weights sum to 1 and the first two moments estimate
    // tr(H) / d and tr(H^2) / d.
    let ls = least_squares(500, 10, 7);
    let h = ls.hessian();
    let d = 10.0;
    let density = slq_density(&ls, &[0.0; 10], 5, 200, 2).unwrap();
    let total: f64 = density.weights.iter().sum();
    assert!((total - 1.0).abs() < 1e-9, "{total}");
    let m1 = h.trace() / d;
    let m2 = (&h * &h).trace() / d;
    assert!(
        (density.moment(1) - m1).abs() < 0.15 * m1,
        "{} vs {m1}",
        density.moment(1)
    );
    assert!(
        (density.moment(2) - m2).abs() < 0.3 * m2,
        "{} vs {m2}",
        density.moment(2)
    );
    let grid: Vec<f64> = (0..2000).map(|i| -5.0 + f64::from(i) * 0.1).collect();
    let smooth = density.smoothed(&grid, 0.5);
    let area: f64 = smooth.iter().sum::<f64>() * 0.1;
    assert!((area - 1.0).abs() < 1e-3, "{area}");
    assert_eq!(ls.dim(), 10);
}

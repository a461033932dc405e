//! Every toy objective's gradient against central finite differences.

use nalgebra::DMatrix;
use noether_dynamics::rng::{normals, rng};
use noether_dynamics::toy::{PowerPotential, ReducedRankRegression, Ring, TanhMlp, Valley};
use noether_dynamics::{LeastSquares, Objective};

fn check(obj: &dyn Objective, w: &[f64], batch: Option<&[usize]>) {
    let mut g = vec![0.0; w.len()];
    obj.loss_grad(w, batch, &mut g);
    let h = 1e-6;
    for i in 0..w.len() {
        let mut p = w.to_vec();
        let mut m = w.to_vec();
        p[i] += h;
        m[i] -= h;
        let fd = (obj.loss(&p, batch) - obj.loss(&m, batch)) / (2.0 * h);
        assert!(
            (fd - g[i]).abs() < 1e-6 * (1.0 + fd.abs()),
            "parameter {i}: analytic {} vs finite difference {fd}",
            g[i]
        );
    }
}

#[test]
fn gradients_match_finite_differences() {
    let mut r = rng(3);
    let rrr = ReducedRankRegression::sample(3, 2, 4, 1, 50, 2);
    check(&rrr, &normals(&mut r, rrr.dim()), None);
    check(&rrr, &normals(&mut r, rrr.dim()), Some(&[0, 5, 7]));
    let mlp = TanhMlp {
        x: DMatrix::from_vec(20, 3, normals(&mut r, 60)),
        y: DMatrix::from_vec(20, 2, normals(&mut r, 40)),
        hidden: [5, 4],
    };
    assert_eq!(mlp.dim(), 5 * 3 + 5 + 4 * 5 + 4 + 2 * 4 + 2);
    check(&mlp, &mlp.init(1), None);
    check(&mlp, &mlp.init(2), Some(&[1, 3]));
    check(&Valley { k0: 3.0 }, &[0.3, 0.7], None);
    check(&Ring { dim: 4 }, &normals(&mut r, 4), None);
    check(
        &PowerPotential {
            c: 2.0,
            k: 2,
            dim: 3,
        },
        &[0.5, -0.3, 1.1],
        None,
    );
    let ls = LeastSquares {
        x: DMatrix::from_vec(10, 3, normals(&mut r, 30)),
        y: nalgebra::DVector::from_vec(normals(&mut r, 10)),
    };
    check(&ls, &[0.1, -0.2, 0.3], Some(&[2, 4]));
}

/// The full-batch path (sufficient statistics) equals the batch path over all rows.
#[test]
fn reduced_rank_full_batch_statistics_match_explicit_sum() {
    let mut r = rng(5);
    let rrr = ReducedRankRegression::sample(4, 2, 3, 1, 200, 9);
    let all: Vec<usize> = (0..200).collect();
    for _ in 0..3 {
        let w = normals(&mut r, rrr.dim());
        let (mut g_stats, mut g_rows) = (vec![0.0; w.len()], vec![0.0; w.len()]);
        let l_stats = rrr.loss_grad(&w, None, &mut g_stats);
        let l_rows = rrr.loss_grad(&w, Some(&all), &mut g_rows);
        assert!((l_stats - l_rows).abs() < 1e-12 * l_rows.abs().max(1.0));
        for (a, b) in g_stats.iter().zip(&g_rows) {
            assert!((a - b).abs() < 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}

/// The closed-form reduced-rank fit is a stationary point with rank <= H whose loss is
/// below the generating parameter's, and no nearby point does better.
#[test]
fn reduced_rank_fit_is_the_empirical_minimiser() {
    let rrr = ReducedRankRegression::sample(4, 2, 3, 1, 500, 4);
    let fit = rrr.fitted();
    let mut g = vec![0.0; fit.len()];
    let l_fit = rrr.loss_grad(&fit, None, &mut g);
    let g_norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!(g_norm < 1e-10, "gradient at the fit {g_norm}");
    assert!(l_fit <= rrr.loss(&rrr.truth, None));
    let mut r = rng(8);
    for _ in 0..50 {
        let w: Vec<f64> = fit
            .iter()
            .zip(normals(&mut r, fit.len()))
            .map(|(f, z)| f + 0.05 * z)
            .collect();
        assert!(rrr.loss(&w, None) >= l_fit);
    }
}

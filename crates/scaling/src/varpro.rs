//! Variable projection for the Chinchilla form: for fixed exponents (alpha, beta) the
//! law E + A N^-alpha + B D^-beta is linear in (E, A, B) >= 0, so those are solved exactly
//! by non-negative least squares on relative residuals ((L_pred - L) / L, the first-order
//! log residual), and only the two exponents are searched (grid, then Nelder-Mead).

use argmin::core::{CostFunction, Error, Executor, State};
use argmin::solver::neldermead::NelderMead;
use nalgebra::{DMatrix, DVector};
use rayon::prelude::*;

use crate::error::{Result, ScalingError};
use crate::forms::ChinchillaParams;
use crate::Runs;

/// A variable-projection fit.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct VarProFit {
    /// The fitted parameters.
    pub params: ChinchillaParams,
    /// Sum of squared relative residuals.
    pub rss: f64,
}

struct Inner<'a> {
    n: &'a [f64],
    d: &'a [f64],
    loss: &'a [f64],
}

impl Inner<'_> {
    /// Exact NNLS over (E, A, B) for fixed exponents: every active set of the three
    /// coefficients is solved and the best feasible one kept (exact for three unknowns).
    fn solve(&self, alpha: f64, beta: f64) -> (f64, [f64; 3]) {
        let rows = self.loss.len();
        let design = DMatrix::from_fn(rows, 3, |i, j| {
            let basis = match j {
                0 => 1.0,
                1 => self.n[i].powf(-alpha),
                _ => self.d[i].powf(-beta),
            };
            basis / self.loss[i]
        });
        let target = DVector::from_element(rows, 1.0);
        let mut best = (f64::INFINITY, [0.0; 3]);
        for mask in 1u8..8 {
            let cols: Vec<usize> = (0..3).filter(|j| mask & (1 << j) != 0).collect();
            let sub = design.select_columns(cols.iter());
            let Some(coef) = sub.clone().svd(true, true).solve(&target, 1e-14).ok() else {
                continue;
            };
            if coef.iter().any(|c| *c < 0.0) {
                continue;
            }
            let rss = (&sub * &coef - &target).norm_squared();
            if rss < best.0 {
                let mut full = [0.0; 3];
                for (k, &j) in cols.iter().enumerate() {
                    full[j] = coef[k];
                }
                best = (rss, full);
            }
        }
        best
    }
}

/// Fits the Chinchilla form by variable projection.
///
/// # Errors
/// Missing columns, fewer than 5 runs, or a failed exponent search.
pub fn fit_varpro(runs: &Runs) -> Result<VarProFit> {
    let inner = Inner {
        n: runs.require("N")?,
        d: runs.require("D")?,
        loss: runs.require("loss")?,
    };
    if runs.len() < 5 {
        return Err(ScalingError::TooFewRows {
            rows: runs.len(),
            params: 5,
            form: "chinchilla (varpro)".into(),
        });
    }
    let axis: Vec<f64> = (1..=40).map(|k| 0.025 * f64::from(k)).collect();
    let (start_alpha, start_beta, _) = axis
        .par_iter()
        .flat_map_iter(|&a| axis.iter().map(move |&b| (a, b)))
        .map(|(a, b)| (a, b, inner.solve(a, b).0))
        .min_by(|x, y| x.2.total_cmp(&y.2))
        .expect("the grid is not empty");
    let simplex = vec![
        vec![start_alpha, start_beta],
        vec![start_alpha + 0.02, start_beta],
        vec![start_alpha, start_beta + 0.02],
    ];
    let solver = NelderMead::new(simplex)
        .with_sd_tolerance(1e-12)
        .map_err(|e| ScalingError::NoConvergence {
            form: "chinchilla (varpro)".into(),
            starts: 1,
            detail: e.to_string(),
        })?;
    let result = Executor::new(&inner, solver)
        .configure(|s| s.max_iters(2000))
        .timer(false)
        .ctrlc(false)
        .run()
        .map_err(|e| ScalingError::NoConvergence {
            form: "chinchilla (varpro)".into(),
            starts: 1,
            detail: e.to_string(),
        })?;
    let best = result
        .state()
        .get_best_param()
        .cloned()
        .unwrap_or(vec![start_alpha, start_beta]);
    let (rss, [e, a, b]) = inner.solve(best[0], best[1]);
    Ok(VarProFit {
        params: ChinchillaParams {
            E: e,
            A: a,
            B: b,
            alpha: best[0],
            beta: best[1],
        },
        rss,
    })
}

/// The exponent search's cost: the NNLS residual at (alpha, beta).
impl CostFunction for &Inner<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Vec<f64>) -> std::result::Result<f64, Error> {
        Ok(self.solve(p[0], p[1]).0)
    }
}

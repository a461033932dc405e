//! Compute allocation with C = 6 N D: compute-optimal (N, D), allocation under a
//! parameter cap or a unique-data cap (data-constrained: best N and number of epochs),
//! and IsoFLOP profiles (Hoffmann et al.'s Approach 2).

use nalgebra::{DMatrix, DVector};

use crate::error::{Result, ScalingError};
use crate::forms::{ChinchillaParams, DataConstrained};
use crate::Runs;

/// An allocation of a compute budget.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Allocation {
    /// Compute budget (FLOP).
    pub flops: f64,
    /// Parameters.
    pub n: f64,
    /// Training tokens / examples seen.
    pub d: f64,
    /// Epochs over the unique data (D / U), 1 when data is not capped.
    pub epochs: f64,
    /// Predicted loss.
    pub loss: f64,
}

/// The compute-optimal allocation of `flops` under `params`, with optional caps on the
/// parameter count and on unique data (`data_constrained` gives the law for repeated
/// data, with its R_D*, R_N*).
///
/// # Errors
/// A non-positive budget or cap.
pub fn allocate(
    params: &ChinchillaParams,
    flops: f64,
    max_params: Option<f64>,
    unique_data: Option<(f64, &DataConstrained, f64, f64)>,
) -> Result<Allocation> {
    for (name, v) in [("compute", Some(flops)), ("max-params", max_params)] {
        if let Some(v) = v {
            if !(v.is_finite() && v > 0.0) {
                return Err(ScalingError::InvalidArgument {
                    name: "allocation",
                    detail: format!("{name} = {v} must be a positive number"),
                });
            }
        }
    }
    let cap = max_params.unwrap_or(f64::INFINITY);
    let Some((unique, law, r_d, r_n)) = unique_data else {
        let (n_opt, _) = params.compute_optimal(flops);
        let n = n_opt.min(cap);
        let d = flops / (6.0 * n);
        return Ok(Allocation {
            flops,
            n,
            d,
            epochs: 1.0,
            loss: params.loss(n, d),
        });
    };
    if !(unique.is_finite() && unique > 0.0) {
        return Err(ScalingError::InvalidArgument {
            name: "allocation",
            detail: format!("unique data = {unique} must be a positive number"),
        });
    }
    // 1-D search over ln N: dense scan, then golden-section refinement.
    let loss_at = |ln_n: f64| {
        let n = ln_n.exp();
        let d = flops / (6.0 * n);
        law.loss(n, d, unique, r_d, r_n)
    };
    let (lo, hi) = (1e3_f64.ln(), (flops / 6.0).ln().min(cap.ln()));
    let grid: Vec<f64> = (0..=400)
        .map(|k| lo + (hi - lo) * f64::from(k) / 400.0)
        .collect();
    let k = (0..grid.len())
        .min_by(|&a, &b| loss_at(grid[a]).total_cmp(&loss_at(grid[b])))
        .unwrap_or(0);
    let (mut a, mut b) = (grid[k.saturating_sub(1)], grid[(k + 1).min(grid.len() - 1)]);
    let phi = 0.5 * (5f64.sqrt() - 1.0);
    for _ in 0..100 {
        let (x1, x2) = (b - phi * (b - a), a + phi * (b - a));
        if loss_at(x1) < loss_at(x2) {
            b = x2;
        } else {
            a = x1;
        }
    }
    let n = (0.5 * (a + b)).exp();
    let d = flops / (6.0 * n);
    Ok(Allocation {
        flops,
        n,
        d,
        epochs: d / unique,
        loss: law.loss(n, d, unique, r_d, r_n),
    })
}

/// IsoFLOP analysis: the optimum of each compute group and the power laws
/// N_opt = k_N C^a, D_opt = k_D C^b fitted through them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IsoFlop {
    /// Per group: (compute, N at the parabola's minimum, minimum loss).
    pub optima: Vec<(f64, f64, f64)>,
    /// Exponent a of N_opt ∝ C^a.
    pub a: f64,
    /// Exponent b of D_opt ∝ C^b (= 1 - a with C = 6 N D).
    pub b: f64,
}

/// Groups runs whose compute 6 N D agrees within `bin_dex` decades, fits loss as a
/// parabola in ln N per group (groups need >= `min_runs` runs and an upward parabola
/// whose minimum lies inside the group's N range), and regresses ln N_opt on ln C.
///
/// # Errors
/// Fewer than two usable groups.
pub fn isoflop(runs: &Runs, bin_dex: f64, min_runs: usize) -> Result<IsoFlop> {
    let (n, d, loss) = (
        runs.require("N")?,
        runs.require("D")?,
        runs.require("loss")?,
    );
    let log_c: Vec<f64> = n
        .iter()
        .zip(d)
        .map(|(n, d)| (6.0 * n * d).log10())
        .collect();
    let mut order: Vec<usize> = (0..n.len()).collect();
    order.sort_by(|&a, &b| log_c[a].total_cmp(&log_c[b]));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in order {
        match groups.last_mut() {
            Some(g) if log_c[i] - log_c[g[0]] <= bin_dex => g.push(i),
            _ => groups.push(vec![i]),
        }
    }
    let mut optima = Vec::new();
    for g in groups.iter().filter(|g| g.len() >= min_runs) {
        let x: Vec<f64> = g.iter().map(|&i| n[i].ln()).collect();
        let design = DMatrix::from_fn(g.len(), 3, |r, c| x[r].powi(c as i32));
        let y = DVector::from_iterator(g.len(), g.iter().map(|&i| loss[i]));
        let Ok(coef) = design.svd(true, true).solve(&y, 1e-12) else {
            continue;
        };
        if coef[2] <= 0.0 {
            continue;
        }
        let x_min = -coef[1] / (2.0 * coef[2]);
        let (lo, hi) = x
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                (l.min(*v), h.max(*v))
            });
        if !(lo..=hi).contains(&x_min) {
            continue;
        }
        let c = 10f64.powf(g.iter().map(|&i| log_c[i]).sum::<f64>() / g.len() as f64);
        let min_loss = coef[0] + coef[1] * x_min + coef[2] * x_min * x_min;
        optima.push((c, x_min.exp(), min_loss));
    }
    if optima.len() < 2 {
        return Err(ScalingError::InvalidArgument {
            name: "isoflop",
            detail: format!(
                "only {} compute groups have a usable minimum; need 2",
                optima.len()
            ),
        });
    }
    let m = optima.len() as f64;
    let (xs, ys): (Vec<f64>, Vec<f64>) = optima.iter().map(|(c, n, _)| (c.ln(), n.ln())).unzip();
    let (mx, my) = (xs.iter().sum::<f64>() / m, ys.iter().sum::<f64>() / m);
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let a = sxy / sxx;
    Ok(IsoFlop {
        optima,
        a,
        b: 1.0 - a,
    })
}

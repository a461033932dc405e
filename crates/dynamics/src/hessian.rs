//! Curvature of a loss at a point, from gradients alone: Hessian-vector products by
//! central differences of gradients (no double backward: candle's grad-of-grad is
//! silently wrong unless `CANDLE_GRAD_DO_NOT_DETACH=1`), the top eigenvalues by power
//! iteration with deflation, the trace by Hutchinson's estimator, and the spectral
//! density by stochastic Lanczos quadrature (Ghorbani et al. 2019).

use nalgebra::{DMatrix, SymmetricEigen};

use crate::error::{invalid, Result};
pub use crate::objective::FD_STEP;
use crate::objective::{check_dim, Objective};
use crate::rng::{normals, rademacher, rng};

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// `H v` at `w` by the central difference `(g(w + r u) - g(w - r u)) |v| / (2 r)`,
/// `u = v / |v|`, on the whole sample. Exact for quadratics up to rounding; O(r^2)
/// otherwise.
///
/// # Errors
/// [`crate::DynamicsError::Dimension`] when `w` or `v` do not match the objective.
pub fn hvp(obj: &dyn Objective, w: &[f64], v: &[f64]) -> Result<Vec<f64>> {
    check_dim(obj, "w", w)?;
    check_dim(obj, "v", v)?;
    let d = w.len();
    let scale = norm(v);
    if scale == 0.0 {
        return Ok(vec![0.0; d]);
    }
    let r = obj.fd_step() * (norm(w) / (d as f64).sqrt()).max(1.0);
    let shifted = |sign: f64| -> Vec<f64> {
        w.iter()
            .zip(v)
            .map(|(wi, vi)| wi + sign * r * vi / scale)
            .collect()
    };
    let (mut gp, mut gm) = (vec![0.0; d], vec![0.0; d]);
    obj.loss_grad(&shifted(1.0), None, &mut gp);
    obj.loss_grad(&shifted(-1.0), None, &mut gm);
    Ok(gp
        .iter()
        .zip(&gm)
        .map(|(p, m)| (p - m) * scale / (2.0 * r))
        .collect())
}

/// Settings of [`top_eigenvalues`].
#[derive(Debug, Clone, PartialEq)]
pub struct PowerConfig {
    /// Eigenvalues wanted.
    pub k: usize,
    /// Most iterations per eigenvalue.
    pub max_iters: usize,
    /// Stop when the Rayleigh quotient changes by less than `tol` relative.
    pub tol: f64,
    /// Seed of the starting vectors.
    pub seed: u64,
}

impl Default for PowerConfig {
    fn default() -> Self {
        Self {
            k: 1,
            max_iters: 500,
            tol: 1e-8,
            seed: 0,
        }
    }
}

/// An eigenpair.
#[derive(Debug, Clone, PartialEq)]
pub struct Eigenpair {
    /// The eigenvalue.
    pub value: f64,
    /// The unit eigenvector.
    pub vector: Vec<f64>,
    /// Iterations used.
    pub iterations: usize,
}

/// The `k` eigenvalues of largest magnitude of the Hessian at `w` (PyHessian's power
/// iteration with deflation against the pairs already found), largest first.
///
/// # Errors
/// [`crate::DynamicsError::InvalidSetting`] for k = 0 or k > d; dimension errors.
pub fn top_eigenvalues(
    obj: &dyn Objective,
    w: &[f64],
    config: &PowerConfig,
) -> Result<Vec<Eigenpair>> {
    let d = obj.dim();
    if config.k == 0 || config.k > d {
        return Err(invalid(
            "hessian.k",
            config.k,
            "must be in 1..=number of parameters",
        ));
    }
    let mut rng = rng(config.seed);
    let mut found: Vec<Eigenpair> = Vec::with_capacity(config.k);
    for _ in 0..config.k {
        let mut v = normals(&mut rng, d);
        let mut value = 0.0;
        let mut iterations = 0;
        for it in 0..config.max_iters {
            deflate(&mut v, &found);
            let n = norm(&v);
            for x in &mut v {
                *x /= n;
            }
            let mut hv = hvp(obj, w, &v)?;
            deflate_applied(&mut hv, &v, &found);
            let rayleigh = dot(&v, &hv);
            iterations = it + 1;
            let converged = (rayleigh - value).abs() <= config.tol * rayleigh.abs().max(1e-300);
            value = rayleigh;
            v = hv;
            if converged && it > 0 {
                break;
            }
        }
        deflate(&mut v, &found);
        let n = norm(&v);
        for x in &mut v {
            *x /= n;
        }
        found.push(Eigenpair {
            value,
            vector: v,
            iterations,
        });
    }
    found.sort_by(|a, b| b.value.abs().total_cmp(&a.value.abs()));
    Ok(found)
}

/// Removes the components along the found eigenvectors.
fn deflate(v: &mut [f64], found: &[Eigenpair]) {
    for pair in found {
        let c = dot(v, &pair.vector);
        v.iter_mut()
            .zip(&pair.vector)
            .for_each(|(x, u)| *x -= c * u);
    }
}

/// `H v - sum_i lambda_i (u_i . v) u_i`: the deflated operator applied to `v`.
fn deflate_applied(hv: &mut [f64], v: &[f64], found: &[Eigenpair]) {
    for pair in found {
        let c = pair.value * dot(v, &pair.vector);
        hv.iter_mut()
            .zip(&pair.vector)
            .for_each(|(x, u)| *x -= c * u);
    }
}

/// A Hutchinson trace estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceEstimate {
    /// Mean of `v^T H v` over the probes.
    pub trace: f64,
    /// Standard error of the mean.
    pub std_error: f64,
    /// Probes used.
    pub samples: usize,
}

/// `tr H` at `w` by Hutchinson's estimator with `samples` Rademacher probes.
///
/// # Errors
/// [`crate::DynamicsError::InvalidSetting`] for fewer than 2 samples; dimension errors.
pub fn hutchinson_trace(
    obj: &dyn Objective,
    w: &[f64],
    samples: usize,
    seed: u64,
) -> Result<TraceEstimate> {
    if samples < 2 {
        return Err(invalid(
            "hessian.trace_samples",
            samples,
            "must be at least 2",
        ));
    }
    let mut rng = rng(seed);
    let values: Vec<f64> = (0..samples)
        .map(|_| {
            let v = rademacher(&mut rng, obj.dim());
            hvp(obj, w, &v).map(|hv| dot(&v, &hv))
        })
        .collect::<Result<_>>()?;
    let n = samples as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Ok(TraceEstimate {
        trace: mean,
        std_error: (var / n).sqrt(),
        samples,
    })
}

/// A spectral density from stochastic Lanczos quadrature: Ritz values (nodes) and their
/// weights, averaged over probes; the weights sum to 1.
#[derive(Debug, Clone, PartialEq)]
pub struct SpectralDensity {
    /// Ritz values of all probes.
    pub nodes: Vec<f64>,
    /// Their quadrature weights divided by the number of probes.
    pub weights: Vec<f64>,
}

impl SpectralDensity {
    /// The density smoothed by Gaussians of width `sigma`, on `grid`.
    pub fn smoothed(&self, grid: &[f64], sigma: f64) -> Vec<f64> {
        let norm = 1.0 / (sigma * std::f64::consts::TAU.sqrt());
        grid.iter()
            .map(|x| {
                self.nodes
                    .iter()
                    .zip(&self.weights)
                    .map(|(t, w)| w * norm * (-(x - t).powi(2) / (2.0 * sigma * sigma)).exp())
                    .sum()
            })
            .collect()
    }

    /// `sum_k weight_k node_k^p`: an estimate of `tr(H^p) / d`.
    pub fn moment(&self, p: i32) -> f64 {
        self.nodes
            .iter()
            .zip(&self.weights)
            .map(|(t, w)| w * t.powi(p))
            .sum()
    }
}

/// Stochastic Lanczos quadrature with `steps` Lanczos steps (full reorthogonalisation)
/// from each of `probes` Gaussian starting vectors.
///
/// # Errors
/// [`crate::DynamicsError::InvalidSetting`] for zero steps or probes; dimension errors.
pub fn slq_density(
    obj: &dyn Objective,
    w: &[f64],
    steps: usize,
    probes: usize,
    seed: u64,
) -> Result<SpectralDensity> {
    if steps == 0 {
        return Err(invalid(
            "hessian.lanczos_steps",
            steps,
            "must be at least 1",
        ));
    }
    if probes == 0 {
        return Err(invalid("hessian.probes", probes, "must be at least 1"));
    }
    let mut rng = rng(seed);
    let mut density = SpectralDensity {
        nodes: Vec::new(),
        weights: Vec::new(),
    };
    for _ in 0..probes {
        let start = normals(&mut rng, obj.dim());
        let (alpha, beta) = lanczos(obj, w, &start, steps.min(obj.dim()))?;
        let m = alpha.len();
        let t = DMatrix::from_fn(m, m, |i, j| match i.abs_diff(j) {
            0 => alpha[i],
            1 => beta[i.min(j)],
            _ => 0.0,
        });
        let eig = SymmetricEigen::new(t);
        for k in 0..m {
            density.nodes.push(eig.eigenvalues[k]);
            density
                .weights
                .push(eig.eigenvectors[(0, k)].powi(2) / probes as f64);
        }
    }
    Ok(density)
}

/// Lanczos tridiagonalisation: diagonal `alpha` and off-diagonal `beta`.
fn lanczos(
    obj: &dyn Objective,
    w: &[f64],
    start: &[f64],
    steps: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let n0 = norm(start);
    let mut basis: Vec<Vec<f64>> = vec![start.iter().map(|x| x / n0).collect()];
    let (mut alpha, mut beta) = (Vec::new(), Vec::new());
    for j in 0..steps {
        let mut r = hvp(obj, w, &basis[j])?;
        let a = dot(&basis[j], &r);
        alpha.push(a);
        // Full reorthogonalisation (twice is enough) keeps the Ritz values clean.
        for _ in 0..2 {
            for q in &basis {
                let c = dot(&r, q);
                r.iter_mut().zip(q).for_each(|(x, qi)| *x -= c * qi);
            }
        }
        let b = norm(&r);
        if j + 1 == steps || b < 1e-10 * a.abs().max(1.0) {
            break;
        }
        beta.push(b);
        basis.push(r.iter().map(|x| x / b).collect());
    }
    Ok((alpha, beta))
}

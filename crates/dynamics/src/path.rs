//! Paths between two minima: the loss barrier along the straight line, a quadratic
//! Bezier curve trained to connect them at low loss (Garipov et al., arXiv:1802.10026),
//! and the loss and curvature (top Hessian eigenvalue, trace) along any path, as in the
//! entropic-confinement analysis of arXiv:2512.06297.

use rand::RngExt;

use crate::error::{invalid, Result};
use crate::hessian::{hutchinson_trace, top_eigenvalues, PowerConfig};
use crate::objective::Objective;
use crate::rng::{normal, rng};

/// `(1 - t) a + t b`.
pub fn lerp(a: &[f64], b: &[f64], t: f64) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(x, y)| (1.0 - t) * x + t * y)
        .collect()
}

/// One point of a path profile.
#[derive(Debug, Clone, PartialEq)]
pub struct PathPoint {
    /// Position along the path, in [0, 1].
    pub t: f64,
    /// The loss there.
    pub loss: f64,
    /// The top Hessian eigenvalue there (when asked).
    pub lambda_max: Option<f64>,
    /// The Hessian trace there (when asked).
    pub trace: Option<f64>,
}

/// What [`profile`] measures at each point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Curvature {
    /// Top eigenvalue by power iteration (at most [`PATH_POWER_ITERS`] iterations, to a
    /// relative tolerance of [`PATH_POWER_TOL`]: finite-difference products of a network
    /// are not accurate enough for the default 1e-8 to stop the iteration early).
    pub lambda_max: bool,
    /// Hutchinson trace with this many probes (0: none).
    pub trace_samples: usize,
}

/// Power iterations per point of [`profile`].
pub const PATH_POWER_ITERS: usize = 100;
/// Relative tolerance of the power iteration in [`profile`].
pub const PATH_POWER_TOL: f64 = 1e-4;

/// Loss (and curvature) at `points + 1` evenly spaced t along `path`.
///
/// # Errors
/// Dimension errors from the curvature estimates.
pub fn profile(
    obj: &dyn Objective,
    path: &dyn Fn(f64) -> Vec<f64>,
    points: usize,
    curvature: Curvature,
) -> Result<Vec<PathPoint>> {
    (0..=points)
        .map(|i| {
            let t = i as f64 / points.max(1) as f64;
            let w = path(t);
            let lambda_max = if curvature.lambda_max {
                let power = PowerConfig {
                    max_iters: PATH_POWER_ITERS,
                    tol: PATH_POWER_TOL,
                    ..PowerConfig::default()
                };
                Some(top_eigenvalues(obj, &w, &power)?[0].value)
            } else {
                None
            };
            let trace = if curvature.trace_samples > 1 {
                Some(hutchinson_trace(obj, &w, curvature.trace_samples, i as u64)?.trace)
            } else {
                None
            };
            Ok(PathPoint {
                t,
                loss: obj.loss(&w, None),
                lambda_max,
                trace,
            })
        })
        .collect()
}

/// The barrier of a profile: `max_t [L(t) - ((1 - t) L(0) + t L(1))]` (0 when the path
/// never rises above the line between its end losses).
pub fn barrier(profile: &[PathPoint]) -> f64 {
    let (Some(first), Some(last)) = (profile.first(), profile.last()) else {
        return 0.0;
    };
    profile
        .iter()
        .map(|p| p.loss - ((1.0 - p.t) * first.loss + p.t * last.loss))
        .fold(0.0, f64::max)
}

/// A quadratic Bezier curve `(1 - t)^2 a + 2 t (1 - t) theta + t^2 b`.
#[derive(Debug, Clone, PartialEq)]
pub struct BezierCurve {
    /// Start.
    pub a: Vec<f64>,
    /// Control point.
    pub theta: Vec<f64>,
    /// End.
    pub b: Vec<f64>,
}

impl BezierCurve {
    /// The point at t.
    pub fn point(&self, t: f64) -> Vec<f64> {
        let (c0, c1, c2) = ((1.0 - t).powi(2), 2.0 * t * (1.0 - t), t * t);
        self.a
            .iter()
            .zip(&self.theta)
            .zip(&self.b)
            .map(|((a, m), b)| c0 * a + c1 * m + c2 * b)
            .collect()
    }
}

/// Settings of [`train_bezier`].
#[derive(Debug, Clone, PartialEq)]
pub struct BezierConfig {
    /// SGD steps on the control point.
    pub steps: usize,
    /// Learning rate.
    pub lr: f64,
    /// Samples per gradient (`None`: full batch).
    pub batch_size: Option<usize>,
    /// Seed of the t draws and batches.
    pub seed: u64,
}

/// Trains the control point so that the curve from `a` to `b` has low loss on average
/// over t ~ U(0, 1): SGD on `E_t L(phi(t))`, whose gradient in theta is
/// `2 t (1 - t) grad L(phi(t))`. The control point starts near the midpoint.
///
/// # Errors
/// [`crate::DynamicsError::InvalidSetting`] for a non-positive learning rate.
pub fn train_bezier(
    obj: &dyn Objective,
    a: &[f64],
    b: &[f64],
    config: &BezierConfig,
) -> Result<BezierCurve> {
    if !(config.lr.is_finite() && config.lr > 0.0) {
        return Err(invalid("bezier.lr", config.lr, "must be a positive number"));
    }
    let mut r = rng(config.seed);
    // The midpoint, nudged by 1e-3 |b - a| of seeded noise: on symmetric problems the
    // midpoint itself can sit on a saddle the gradient never leaves.
    let distance = a
        .iter()
        .zip(b)
        .map(|(x, y)| (y - x).powi(2))
        .sum::<f64>()
        .sqrt();
    let scale = 1e-3 * distance / (a.len().max(1) as f64).sqrt();
    let theta = lerp(a, b, 0.5)
        .into_iter()
        .map(|m| m + scale * normal(&mut r))
        .collect();
    let mut curve = BezierCurve {
        a: a.to_vec(),
        theta,
        b: b.to_vec(),
    };
    let mut g = vec![0.0; a.len()];
    let n = obj.n_samples();
    for _ in 0..config.steps {
        let t: f64 = r.random_range(0.0..1.0);
        let batch: Option<Vec<usize>> = config
            .batch_size
            .map(|k| (0..k).map(|_| r.random_range(0..n)).collect());
        obj.loss_grad(&curve.point(t), batch.as_deref(), &mut g);
        let weight = 2.0 * t * (1.0 - t);
        for (m, gi) in curve.theta.iter_mut().zip(&g) {
            *m -= config.lr * weight * gi;
        }
    }
    Ok(curve)
}

//! The scaling-law forms. Each works in log space: it predicts ln L from log inputs, with
//! its parameters in an unconstrained parameterisation (logs of positive coefficients),
//! and reports the natural parameters (E, A, B, alpha, ...) separately.

mod bnsl;
mod chinchilla;
mod data_constrained;
mod kaplan;
mod power_law;

pub use bnsl::BrokenPowerLaw;
pub use chinchilla::{Chinchilla, ChinchillaParams};
pub use data_constrained::DataConstrained;
pub use kaplan::Kaplan;
pub use power_law::PowerLaw;

use crate::error::Result;
use crate::Runs;

/// A scaling-law form fitted by [`crate::fit`].
pub trait ScalingLaw: Send + Sync {
    /// Short name (`chinchilla`, `kaplan`, ...).
    fn name(&self) -> String;
    /// Names of the fit parameters, in order (e.g. `a`, `b`, `e`, `alpha`, `beta`).
    fn param_names(&self) -> Vec<String>;
    /// The per-run features the form reads (usually logs of the inputs).
    ///
    /// # Errors
    /// A missing column.
    fn features(&self, runs: &Runs) -> Result<Vec<Vec<f64>>>;
    /// Predicted ln L for one run's features.
    fn log_loss(&self, theta: &[f64], x: &[f64]) -> f64;
    /// Predicted ln L and its gradient with respect to `theta` (central differences
    /// unless the form has an analytic gradient).
    fn log_loss_grad(&self, theta: &[f64], x: &[f64], grad: &mut [f64]) -> f64 {
        let mut t = theta.to_vec();
        for k in 0..theta.len() {
            let h = 1e-6 * theta[k].abs().max(1.0);
            t[k] = theta[k] + h;
            let up = self.log_loss(&t, x);
            t[k] = theta[k] - h;
            let down = self.log_loss(&t, x);
            t[k] = theta[k];
            grad[k] = (up - down) / (2.0 * h);
        }
        self.log_loss(theta, x)
    }
    /// Starting points of the multi-start optimisation.
    fn starts(&self) -> Vec<Vec<f64>>;
    /// The natural parameters that are each one fit parameter or its exponential (what
    /// bounds can be put on). Forms whose natural parameters are all of this kind list
    /// them here and need not implement [`ScalingLaw::natural`].
    fn natural_params(&self) -> Vec<NaturalParam> {
        Vec::new()
    }
    /// The natural parameters (name, value) for fit parameters `theta`; by default those
    /// of [`ScalingLaw::natural_params`].
    fn natural(&self, theta: &[f64]) -> Vec<(String, f64)> {
        self.natural_params()
            .into_iter()
            .map(|p| {
                let t = theta[p.index];
                (p.name, if p.log { t.exp() } else { t })
            })
            .collect()
    }
}

/// A natural parameter that is one fit parameter (`alpha`) or its exponential
/// (`E = exp(e)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NaturalParam {
    /// Its name (`E`, `A`, `alpha`, ...).
    pub name: String,
    /// The fit parameter it comes from.
    pub index: usize,
    /// Whether it is the exponential of that fit parameter (so positive).
    pub log: bool,
}

impl NaturalParam {
    /// The natural parameter `name` = exp(fit parameter `index`).
    pub fn exp(name: &str, index: usize) -> Self {
        Self {
            name: name.into(),
            index,
            log: true,
        }
    }

    /// The natural parameter `name` = fit parameter `index`.
    pub fn linear(name: &str, index: usize) -> Self {
        Self {
            name: name.into(),
            index,
            log: false,
        }
    }
}

/// ln(e^x1 + ... + e^xn) and the softmax weights, without overflow.
pub(crate) fn log_sum_exp(terms: &[f64], weights: &mut [f64]) -> f64 {
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for (w, t) in weights.iter_mut().zip(terms) {
        *w = (t - max).exp();
        sum += *w;
    }
    for w in weights.iter_mut() {
        *w /= sum;
    }
    max + sum.ln()
}

/// The Cartesian product of per-parameter grids.
pub(crate) fn grid(axes: &[Vec<f64>]) -> Vec<Vec<f64>> {
    axes.iter().fold(vec![Vec::new()], |acc, axis| {
        acc.iter()
            .flat_map(|prefix| {
                axis.iter().map(move |v| {
                    let mut p = prefix.clone();
                    p.push(*v);
                    p
                })
            })
            .collect()
    })
}

/// `start, start + step, ..., <= end`.
pub(crate) fn steps(start: f64, end: f64, step: f64) -> Vec<f64> {
    let n = ((end - start) / step + 1e-9).floor() as usize;
    (0..=n).map(|k| start + step * k as f64).collect()
}

/// Logs of a column.
pub(crate) fn log_column(runs: &Runs, name: &str) -> Result<Vec<f64>> {
    Ok(runs.require(name)?.iter().map(|v| v.ln()).collect())
}

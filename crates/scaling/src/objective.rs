//! The fit objective: a robust loss on log residuals ln L_pred - ln L_obs, summed over
//! runs (not averaged: averaging shrinks the gradient by 1/n and makes L-BFGS stop at its
//! start under its absolute tolerances — a known pitfall of scaling-law fits).

use argmin::core::{CostFunction, Error, Gradient};

use crate::forms::ScalingLaw;

/// The robust loss applied to each log residual.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Loss {
    /// Huber with threshold `delta` (quadratic below, linear above); Hoffmann et al. use
    /// delta = 1e-3.
    Huber {
        /// The threshold.
        delta: f64,
    },
    /// Absolute value, smoothed as sqrt(r^2 + 1e-12) so that L-BFGS can use it.
    L1,
    /// Huber as a likelihood with a fitted scale sigma (one extra parameter ln sigma,
    /// appended to the form's): sum Huber(r / sigma) + n ln sigma.
    HuberLikelihood {
        /// The threshold, in units of sigma.
        delta: f64,
    },
}

impl Default for Loss {
    fn default() -> Self {
        Self::Huber { delta: 1e-3 }
    }
}

impl Loss {
    /// Extra parameters this loss appends to the form's.
    pub fn extra_params(&self) -> usize {
        usize::from(matches!(self, Self::HuberLikelihood { .. }))
    }

    /// Checks the loss's threshold.
    ///
    /// # Errors
    /// A Huber `delta` that is not a positive finite number.
    pub fn check(&self) -> crate::Result<()> {
        match *self {
            Self::Huber { delta } | Self::HuberLikelihood { delta }
                if !(delta.is_finite() && delta > 0.0) =>
            {
                Err(crate::ScalingError::InvalidArgument {
                    name: "delta",
                    detail: format!("{delta} is not a positive finite number"),
                })
            }
            _ => Ok(()),
        }
    }
}

/// Huber value and derivative.
pub(crate) fn huber(r: f64, delta: f64) -> (f64, f64) {
    if r.abs() <= delta {
        (0.5 * r * r, r)
    } else {
        (delta * (r.abs() - 0.5 * delta), delta * r.signum())
    }
}

/// The objective of one fit: a form, the runs' features and observed ln L.
pub struct Objective<'a> {
    /// The form.
    pub law: &'a dyn ScalingLaw,
    /// Per-run features.
    pub features: &'a [Vec<f64>],
    /// Observed ln L per run.
    pub log_loss: &'a [f64],
    /// The robust loss.
    pub loss: Loss,
}

impl Objective<'_> {
    /// Objective value and gradient at `theta` (form parameters, then loss parameters).
    pub fn value_grad(&self, theta: &[f64], grad: Option<&mut [f64]>) -> f64 {
        let n_form = theta.len() - self.loss.extra_params();
        let (form, extra) = theta.split_at(n_form);
        let sigma = extra.first().map_or(1.0, |s| s.exp());
        let mut g_row = vec![0.0; n_form];
        let mut total = 0.0;
        let mut d_sigma = 0.0;
        let want_grad = grad.is_some();
        let mut g_sum = vec![0.0; theta.len()];
        for (x, y) in self.features.iter().zip(self.log_loss) {
            let pred = if want_grad {
                self.law.log_loss_grad(form, x, &mut g_row)
            } else {
                self.law.log_loss(form, x)
            };
            let r = pred - y;
            let (value, slope) = match self.loss {
                Loss::Huber { delta } => huber(r, delta),
                Loss::L1 => {
                    let s = (r * r + 1e-12).sqrt();
                    (s, r / s)
                }
                Loss::HuberLikelihood { delta } => {
                    let (v, d) = huber(r / sigma, delta);
                    d_sigma += -d * r / sigma + 1.0;
                    (v + sigma.ln(), d / sigma)
                }
            };
            total += value;
            if want_grad {
                for (g, gr) in g_sum.iter_mut().zip(&g_row) {
                    *g += slope * gr;
                }
            }
        }
        if let Some(grad) = grad {
            grad[..n_form].copy_from_slice(&g_sum[..n_form]);
            if self.loss.extra_params() == 1 {
                grad[n_form] = d_sigma;
            }
        }
        total
    }
}

impl CostFunction for Objective<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, theta: &Self::Param) -> Result<f64, Error> {
        finite("objective", self.value_grad(theta, None))
    }
}

impl Gradient for Objective<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, theta: &Self::Param) -> Result<Vec<f64>, Error> {
        let mut g = vec![0.0; theta.len()];
        self.value_grad(theta, Some(&mut g));
        if let Some(bad) = g.iter().find(|v| !v.is_finite()) {
            finite("gradient", *bad)?;
        }
        Ok(g)
    }
}

/// `value`, or an error when it is not finite: argmin's line search never ends on a NaN
/// cost (it keeps bisecting an interval it cannot order), so a non-finite objective must
/// end the local optimisation, not feed it.
pub(crate) fn finite(what: &str, value: f64) -> Result<f64, Error> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(argmin::core::ArgminError::InvalidParameter {
            text: format!("the {what} is {value}"),
        }
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forms::Chinchilla;

    #[test]
    fn analytic_gradient_matches_central_differences() {
        let features = vec![vec![20.0, 23.0], vec![21.5, 22.0], vec![19.0, 25.0]];
        let y = vec![0.9, 0.8, 1.1];
        for loss in [
            Loss::Huber { delta: 1e-3 },
            Loss::Huber { delta: 1.0 },
            Loss::L1,
            Loss::HuberLikelihood { delta: 1.0 },
        ] {
            let obj = Objective {
                law: &Chinchilla,
                features: &features,
                log_loss: &y,
                loss,
            };
            let mut theta = vec![6.0, 7.0, 0.5, 0.34, 0.28];
            if loss.extra_params() == 1 {
                theta.push(-2.0);
            }
            let mut g = vec![0.0; theta.len()];
            obj.value_grad(&theta, Some(&mut g));
            for k in 0..theta.len() {
                let (mut up, mut down) = (theta.clone(), theta.clone());
                up[k] += 1e-6;
                down[k] -= 1e-6;
                let fd = (obj.value_grad(&up, None) - obj.value_grad(&down, None)) / 2e-6;
                assert!(
                    (fd - g[k]).abs() < 1e-5 * (1.0 + fd.abs()),
                    "{loss:?} k={k}: {fd} vs {}",
                    g[k]
                );
            }
        }
    }
}

//! Exchange rates between fitted data-scaling laws: how many training examples a
//! reference model (a PFN, a plain Transformer) needs to reach the loss another model
//! reaches with x, "LorentzNet at 2k jets = PFN at N jets", with a bootstrap interval.

use crate::error::{Result, ScalingError};
use crate::fit::FitResult;
use crate::forms::PowerLaw;

/// The exchange rate at one training-set size.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Exchange {
    /// The model's training-set size.
    pub x: f64,
    /// The model's fitted loss there.
    pub loss: f64,
    /// The reference's training-set size with the same fitted loss; `None` when the
    /// reference's floor lies at or above that loss (no amount of data gets it there).
    pub reference_x: Option<f64>,
    /// The central interval of `reference_x` over paired bootstrap resamples (the k-th
    /// resample of the model with the k-th of the reference); `None` at an end means
    /// unbounded (resamples whose reference never reaches the loss). Absent without
    /// bootstrap resamples.
    pub interval: Option<(Option<f64>, Option<f64>)>,
}

/// The x at which the power law `theta` (fit parameters a, e, alpha) predicts `loss`:
/// x = (A / (loss - E))^(1/alpha); `None` when `loss <= E`.
fn solve_x(theta: &[f64], loss: f64) -> Option<f64> {
    let (a, e, alpha) = (theta[0].exp(), theta[1].exp(), theta[2]);
    (loss > e && alpha > 0.0).then(|| (a / (loss - e)).powf(1.0 / alpha))
}

fn power_loss(theta: &[f64], x: f64) -> f64 {
    theta[1].exp() + theta[0].exp() * x.powf(-theta[2])
}

/// Exchange rates of `model` against `reference` (both power-law fits, `L = E + A
/// x^-alpha`) at sizes `at`, with the central `level` interval over the paired bootstrap
/// fit parameters `model_band` / `reference_band` (may be empty).
///
/// # Errors
/// A fit that is not of the power form.
pub fn exchange_rates(
    model: (&FitResult, &[Vec<f64>]),
    reference: (&FitResult, &[Vec<f64>]),
    at: &[f64],
    level: f64,
) -> Result<Vec<Exchange>> {
    let power = PowerLaw::default();
    for fit in [model.0, reference.0] {
        if fit.form != crate::forms::ScalingLaw::name(&power) {
            return Err(ScalingError::InvalidArgument {
                name: "exchange",
                detail: format!("exchange rates need power-law fits, not {}", fit.form),
            });
        }
    }
    let pairs = model.1.len().min(reference.1.len());
    Ok(at
        .iter()
        .map(|&x| {
            let loss = power_loss(&model.0.theta, x);
            let interval = (pairs >= 2).then(|| {
                let mut draws: Vec<f64> = (0..pairs)
                    .map(|k| {
                        solve_x(&reference.1[k], power_loss(&model.1[k], x))
                            .unwrap_or(f64::INFINITY)
                    })
                    .collect();
                draws.sort_by(f64::total_cmp);
                let tail = 0.5 * (1.0 - level);
                let finite = |v: f64| v.is_finite().then_some(v);
                (
                    finite(crate::uncertainty::percentile(&draws, tail)),
                    finite(crate::uncertainty::percentile(&draws, 1.0 - tail)),
                )
            });
            Exchange {
                x,
                loss,
                reference_x: solve_x(&reference.0.theta, loss),
                interval,
            }
        })
        .collect())
}

//! Exchange rates between fitted data-scaling laws: how many training examples a
//! reference model (a PFN, a plain Transformer) needs to reach the loss another model
//! reaches with x, "LorentzNet at 2k jets = PFN at N jets", with a bootstrap interval.

use crate::error::{Result, ScalingError};
use crate::fit::FitResult;
use crate::forms::{PowerLaw, ScalingLaw};

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
        if fit.form != power.name() {
            return Err(ScalingError::InvalidArgument {
                name: "exchange",
                detail: format!("exchange rates need power-law fits, not {}", fit.form),
            });
        }
    }
    let loss_at = |theta: &[f64], x: f64| power.log_loss(theta, &[x.ln()]).exp();
    let pairs = model.1.len().min(reference.1.len());
    Ok(at
        .iter()
        .map(|&x| {
            let loss = loss_at(&model.0.theta, x);
            let interval = (pairs >= 2).then(|| {
                let mut draws: Vec<f64> = (0..pairs)
                    .map(|k| {
                        PowerLaw::x_at_loss(&reference.1[k], loss_at(&model.1[k], x))
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
                reference_x: PowerLaw::x_at_loss(&reference.0.theta, loss),
                interval,
            }
        })
        .collect())
}

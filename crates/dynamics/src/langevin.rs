//! Overdamped Langevin dynamics in the Euler-Maruyama form
//! `w += -eta grad L(w) + sqrt(2 eta T) N(0, 1)` (stationary density exp(-L / T)), and the
//! mean-squared displacement of a trajectory, whose log-log slope tells diffusion
//! (exponent 1) from confinement (a plateau, exponent 0).

use crate::error::{invalid, DynamicsError, Result};
use crate::objective::Objective;
use crate::rng::{normal, rng};

/// Maps a state back into its domain after each step (e.g. periodic coordinates).
pub type Wrap<'a> = &'a dyn Fn(&mut [f64]);

/// Langevin settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LangevinConfig {
    /// Step size eta.
    pub eta: f64,
    /// Temperature T.
    pub temperature: f64,
    /// Steps.
    pub steps: usize,
    /// Keep every `thin`-th state.
    pub thin: usize,
    /// Seed.
    pub seed: u64,
}

/// Runs Langevin dynamics from `start`; returns the kept states. `wrap`, when given,
/// maps each state back into a domain after every step (periodic coordinates).
///
/// # Errors
/// Invalid settings; a non-finite state.
pub fn langevin(
    obj: &dyn Objective,
    start: &[f64],
    config: &LangevinConfig,
    wrap: Option<Wrap<'_>>,
) -> Result<Vec<Vec<f64>>> {
    if !(config.eta.is_finite() && config.eta > 0.0) {
        return Err(invalid(
            "langevin.eta",
            config.eta,
            "must be a positive number",
        ));
    }
    if !(config.temperature.is_finite() && config.temperature >= 0.0) {
        return Err(invalid(
            "langevin.temperature",
            config.temperature,
            "must be finite and >= 0",
        ));
    }
    if config.thin == 0 {
        return Err(invalid("langevin.thin", 0, "must be at least 1"));
    }
    let mut r = rng(config.seed);
    let noise = (2.0 * config.eta * config.temperature).sqrt();
    let mut w = start.to_vec();
    let mut g = vec![0.0; w.len()];
    let mut kept = Vec::with_capacity(config.steps / config.thin + 1);
    for step in 0..config.steps {
        obj.loss_grad(&w, None, &mut g);
        for (wi, gi) in w.iter_mut().zip(&g) {
            *wi += -config.eta * gi + noise * normal(&mut r);
        }
        if let Some(f) = wrap {
            f(&mut w);
        }
        if !w.iter().all(|x| x.is_finite()) {
            return Err(DynamicsError::NonFinite {
                what: "state",
                step,
            });
        }
        if step % config.thin == 0 {
            kept.push(w.clone());
        }
    }
    Ok(kept)
}

/// Mean-squared displacement `<|w(t + lag) - w(t)|^2>` of a trajectory at each lag.
pub fn msd(trajectory: &[Vec<f64>], lags: &[usize]) -> Vec<f64> {
    lags.iter()
        .map(|&lag| {
            let pairs = trajectory.len().saturating_sub(lag);
            if pairs == 0 || lag == 0 {
                return f64::NAN;
            }
            (0..pairs)
                .map(|t| {
                    trajectory[t + lag]
                        .iter()
                        .zip(&trajectory[t])
                        .map(|(a, b)| (a - b).powi(2))
                        .sum::<f64>()
                })
                .sum::<f64>()
                / pairs as f64
        })
        .collect()
}

/// Least-squares slope of log MSD against log lag.
pub fn msd_exponent(lags: &[usize], msd: &[f64]) -> f64 {
    let points: Vec<(f64, f64)> = lags
        .iter()
        .zip(msd)
        .filter(|(l, m)| **l > 0 && m.is_finite() && **m > 0.0)
        .map(|(l, m)| ((*l as f64).ln(), m.ln()))
        .collect();
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx).powi(2))
    });
    sxy / sxx
}

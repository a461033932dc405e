//! Uncertainties of a fit: seeded parallel bootstrap (standard errors and percentile
//! intervals) and profile likelihood (which flags weakly identified parameters).

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{Result, ScalingError};
use crate::fit::{lbfgs, FitConfig, FitResult, Problem, Reduced};
use crate::forms::ScalingLaw;
use crate::Runs;

/// The spread of one natural parameter over bootstrap resamples.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ParamSpread {
    /// Parameter name.
    pub name: String,
    /// Full-data estimate.
    pub estimate: f64,
    /// Standard deviation over resamples (the bootstrap standard error).
    pub se: f64,
    /// 2.5% percentile.
    pub lo: f64,
    /// 97.5% percentile.
    pub hi: f64,
    /// The converged resamples' values, sorted (for other intervals).
    #[serde(skip)]
    pub samples: Vec<f64>,
}

impl ParamSpread {
    /// The central interval holding `level` of the resamples (0.8: the 10% and 90%
    /// percentiles), interpolated linearly between order statistics as numpy's
    /// `percentile` does.
    pub fn interval(&self, level: f64) -> (f64, f64) {
        let tail = 0.5 * (1.0 - level.clamp(0.0, 1.0));
        (
            percentile(&self.samples, tail),
            percentile(&self.samples, 1.0 - tail),
        )
    }
}

/// Bootstrap results.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Bootstrap {
    /// Resamples drawn.
    pub resamples: usize,
    /// Resamples whose refit did not converge (excluded, reported).
    pub failed: usize,
    /// Per natural parameter.
    pub params: Vec<ParamSpread>,
    /// The converged resamples' fit parameters (for prediction bands).
    #[serde(skip)]
    pub thetas: Vec<Vec<f64>>,
}

impl Bootstrap {
    /// The spread of a parameter by name.
    pub fn get(&self, name: &str) -> Option<&ParamSpread> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// Refits `resamples` bootstrap resamples of the runs (rows drawn with replacement, the
/// k-th from seed `seed + k`, so the result does not depend on the thread count), each
/// started from the full-data optimum, in parallel.
///
/// # Errors
/// Fewer than 2 resamples, or [`ScalingError::NoConvergence`] when none converged.
pub fn bootstrap(
    law: &dyn ScalingLaw,
    runs: &Runs,
    full: &FitResult,
    config: &FitConfig,
    resamples: usize,
    seed: u64,
) -> Result<Bootstrap> {
    if resamples < 2 {
        return Err(ScalingError::InvalidArgument {
            name: "bootstrap",
            detail: format!("{resamples} resamples; at least 2 are needed"),
        });
    }
    let n = runs.len();
    let fits: Vec<Option<Vec<f64>>> = (0..resamples)
        .into_par_iter()
        .map(|k| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(k as u64));
            let rows: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            let sample = runs.select(&rows);
            let problem = Problem::new(law, &sample, config).ok()?;
            let local = problem.solve(&full.theta, config);
            local.converged.then_some(local.theta)
        })
        .collect();
    let thetas: Vec<Vec<f64>> = fits.into_iter().flatten().collect();
    let n_form = law.param_names().len();
    let ok: Vec<Vec<f64>> = thetas
        .iter()
        .map(|t| {
            law.natural(&t[..n_form])
                .into_iter()
                .map(|(_, v)| v)
                .collect()
        })
        .collect();
    if ok.is_empty() {
        return Err(ScalingError::NoConvergence {
            form: law.name(),
            starts: resamples,
            detail: "no bootstrap refit converged".into(),
        });
    }
    let params = full
        .natural
        .iter()
        .take(law.param_names().len())
        .enumerate()
        .map(|(k, (name, estimate))| {
            let mut values: Vec<f64> = ok.iter().map(|v| v[k]).collect();
            values.sort_by(f64::total_cmp);
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
                / (values.len() as f64 - 1.0).max(1.0);
            ParamSpread {
                name: name.clone(),
                estimate: *estimate,
                se: var.sqrt(),
                lo: percentile(&values, 0.025),
                hi: percentile(&values, 0.975),
                samples: values,
            }
        })
        .collect();
    Ok(Bootstrap {
        resamples,
        failed: resamples - ok.len(),
        params,
        thetas,
    })
}

/// The `q` quantile (`q` in [0, 1]) of ascending values, interpolated linearly between
/// order statistics (numpy's default); an infinite neighbour gives an infinite quantile,
/// no values give NaN.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos.fract());
    let next = sorted[(i + 1).min(sorted.len() - 1)];
    if frac == 0.0 || next == sorted[i] {
        return sorted[i];
    }
    sorted[i] + frac * (next - sorted[i])
}

/// The profile of one fit parameter.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Profile {
    /// The fit parameter profiled.
    pub param: String,
    /// Scanned values of the fit parameter.
    pub values: Vec<f64>,
    /// Delta NLL = n ln(objective / best objective) at each value (Laplace likelihood
    /// with its scale profiled out, the small-delta limit of the Huber loss).
    pub delta_nll: Vec<f64>,
    /// The 95% interval (Delta NLL <= 1.92) in fit-parameter units, clipped to the scan.
    pub interval: (f64, f64),
    /// Whether the interval runs into an end of the scan: the data do not pin the
    /// parameter down.
    pub weakly_identified: bool,
}

/// Profiles fit parameter `index`: scans it over `best +- half_width` (`points` values),
/// refitting the others at each point (warm-started from the neighbour).
///
/// # Errors
/// A bad index, or a missing column.
pub fn profile(
    law: &dyn ScalingLaw,
    runs: &Runs,
    full: &FitResult,
    config: &FitConfig,
    index: usize,
    half_width: f64,
    points: usize,
) -> Result<Profile> {
    if index >= full.theta.len() || points < 3 {
        return Err(ScalingError::InvalidArgument {
            name: "profile",
            detail: format!(
                "parameter index {index} of {} with {points} points",
                full.theta.len()
            ),
        });
    }
    let problem = Problem::new(law, runs, config)?;
    let best = full.theta[index];
    let values: Vec<f64> = (0..points)
        .map(|k| best - half_width + 2.0 * half_width * k as f64 / (points - 1) as f64)
        .collect();
    let fixed = FixedParam { index };
    let scan = |range: &mut dyn Iterator<Item = &f64>| -> Vec<(f64, f64)> {
        let mut warm = full.theta.clone();
        range
            .map(|&v| {
                warm[index] = v;
                let local = fixed.refit(&problem, &warm, config);
                warm.clone_from(&local.0);
                (v, local.1)
            })
            .collect()
    };
    let mid = points / 2;
    let mut upper = scan(&mut values[mid..].iter());
    let mut lower = scan(&mut values[..mid].iter().rev());
    lower.reverse();
    lower.append(&mut upper);
    let n = runs.len() as f64;
    let delta_nll: Vec<f64> = lower
        .iter()
        .map(|(_, obj)| (n * (obj / full.objective).ln()).max(0.0))
        .collect();
    let inside: Vec<usize> = (0..points).filter(|&k| delta_nll[k] <= 1.92).collect();
    let (first, last) = (
        inside.first().copied().unwrap_or(mid),
        inside.last().copied().unwrap_or(mid),
    );
    Ok(Profile {
        param: full.param_names[index].clone(),
        interval: (values[first], values[last]),
        weakly_identified: first == 0 || last == points - 1,
        values,
        delta_nll,
    })
}

/// Refits all parameters but one, which stays at its given value.
struct FixedParam {
    index: usize,
}

impl FixedParam {
    fn refit(&self, problem: &Problem<'_>, theta: &[f64], config: &FitConfig) -> (Vec<f64>, f64) {
        let fixed = [(self.index, theta[self.index])];
        let reduced = Reduced {
            problem,
            fixed: &fixed,
            loss: config.loss,
        };
        let full = if theta.len() == 1 {
            theta.to_vec()
        } else {
            let best = minimise(reduced, reduced.free(theta), config);
            reduced.expand(&best)
        };
        let obj = problem.evaluate(&full, config.loss);
        (full, obj)
    }
}

/// L-BFGS on a profile point, with argmin's default cost tolerance (machine epsilon)
/// rather than the fit's: a profile wants the minimum. A run that fails (a line search
/// with no descent left, a non-finite objective) keeps the start, the neighbour's optimum.
fn minimise(reduced: Reduced<'_, '_>, start: Vec<f64>, config: &FitConfig) -> Vec<f64> {
    let profile = FitConfig {
        tol_cost: f64::EPSILON,
        ..config.clone()
    };
    lbfgs(reduced, start.clone(), &profile).map_or(start, |(theta, _, _)| theta)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentile_matches_numpy_linear_interpolation() {
        // numpy.percentile([1, 2, 4, 8], [0, 10, 50, 90, 100]) = 1, 1.3, 3, 6.8, 8
        let v = [1.0, 2.0, 4.0, 8.0];
        for (q, want) in [(0.0, 1.0), (0.1, 1.3), (0.5, 3.0), (0.9, 6.8), (1.0, 8.0)] {
            assert!((percentile(&v, q) - want).abs() < 1e-12, "q = {q}");
        }
    }

    #[test]
    fn percentile_of_unbounded_draws_is_infinite_not_nan() {
        let v = [1.0, f64::INFINITY, f64::INFINITY];
        assert_eq!(percentile(&v, 0.25), f64::INFINITY);
        assert_eq!(percentile(&v, 0.9), f64::INFINITY);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}

//! Multi-start L-BFGS fits (argmin), starts in parallel with rayon.

use argmin::core::{Executor, State, TerminationReason, TerminationStatus};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use rayon::prelude::*;

use crate::error::{Result, ScalingError};
use crate::forms::ScalingLaw;
use crate::objective::{Loss, Objective};
use crate::Runs;

/// Optimiser settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FitConfig {
    /// The robust loss.
    pub loss: Loss,
    /// Maximum L-BFGS iterations per start.
    pub max_iters: u64,
    /// Gradient-norm tolerance (convergence).
    pub tol_grad: f64,
    /// Relative cost-change tolerance (convergence).
    pub tol_cost: f64,
    /// Start from these fit parameters only, instead of the form's grid (e.g. refine a
    /// Huber optimum under the L1 loss).
    pub start: Option<Vec<f64>>,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            loss: Loss::default(),
            max_iters: 1000,
            tol_grad: 1e-10,
            tol_cost: 1e-14,
            start: None,
        }
    }
}

/// The result of a fit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FitResult {
    /// The form's name.
    pub form: String,
    /// Fit parameter names (form, then loss parameters).
    pub param_names: Vec<String>,
    /// Fit parameters at the optimum.
    pub theta: Vec<f64>,
    /// Natural parameters (name, value).
    pub natural: Vec<(String, f64)>,
    /// Objective at the optimum (summed loss).
    pub objective: f64,
    /// Starts tried.
    pub starts: usize,
    /// Starts that converged (gradient or cost tolerance reached).
    pub converged_starts: usize,
    /// Number of runs fitted.
    pub runs: usize,
}

impl FitResult {
    /// A natural parameter by name.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.natural
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }
}

/// One local optimisation: the end point, its objective, and whether it converged.
#[derive(Debug, Clone)]
pub(crate) struct Local {
    pub theta: Vec<f64>,
    pub objective: f64,
    pub converged: bool,
}

/// Prepared data of a fit: features and ln L per run.
pub(crate) struct Problem<'a> {
    pub law: &'a dyn ScalingLaw,
    pub features: Vec<Vec<f64>>,
    pub log_loss: Vec<f64>,
}

impl<'a> Problem<'a> {
    pub(crate) fn new(law: &'a dyn ScalingLaw, runs: &Runs, config: &FitConfig) -> Result<Self> {
        config.loss.check()?;
        let params = law.param_names().len() + config.loss.extra_params();
        if runs.len() < params {
            return Err(ScalingError::TooFewRows {
                rows: runs.len(),
                params,
                form: law.name(),
            });
        }
        Ok(Self {
            law,
            features: law.features(runs)?,
            log_loss: runs.require("loss")?.iter().map(|l| l.ln()).collect(),
        })
    }

    fn objective(&self, loss: Loss) -> Objective<'_> {
        Objective {
            law: self.law,
            features: &self.features,
            log_loss: &self.log_loss,
            loss,
        }
    }

    /// L-BFGS from one start.
    pub(crate) fn local(&self, start: Vec<f64>, config: &FitConfig) -> Local {
        let objective = self.objective(config.loss);
        let fallback = objective.value_grad(&start, None);
        let failed = |theta: Vec<f64>| Local {
            theta,
            objective: fallback,
            converged: false,
        };
        let Ok(solver) = LBFGS::new(MoreThuenteLineSearch::new(), 10)
            .with_tolerance_grad(config.tol_grad)
            .and_then(|s| s.with_tolerance_cost(config.tol_cost))
        else {
            return failed(start);
        };
        let run = Executor::new(objective, solver)
            .configure(|state| state.param(start.clone()).max_iters(config.max_iters))
            .timer(false)
            .ctrlc(false)
            .run();
        match run {
            Ok(result) => {
                let state = result.state();
                let converged = matches!(
                    state.get_termination_status(),
                    TerminationStatus::Terminated(
                        TerminationReason::SolverConverged | TerminationReason::TargetCostReached
                    )
                );
                let theta = state.get_best_param().cloned().unwrap_or(start);
                let objective = state.get_best_cost();
                if objective.is_finite() && theta.iter().all(|t| t.is_finite()) {
                    Local {
                        theta,
                        objective,
                        converged,
                    }
                } else {
                    failed(theta)
                }
            }
            // Line-search failures at the optimum (no descent possible) end here; the
            // start is then simply not counted as converged.
            Err(_) => failed(start),
        }
    }

    /// All starts in parallel; the best converged one.
    pub(crate) fn multi_start(
        &self,
        starts: Vec<Vec<f64>>,
        config: &FitConfig,
    ) -> Result<(Local, usize, usize)> {
        let n = starts.len();
        let results: Vec<Local> = starts
            .into_par_iter()
            .map(|s| self.local(s, config))
            .collect();
        let converged = results.iter().filter(|r| r.converged).count();
        let best = results
            .into_iter()
            .filter(|r| r.converged)
            .min_by(|a, b| a.objective.total_cmp(&b.objective))
            .ok_or_else(|| ScalingError::NoConvergence {
                form: self.law.name(),
                starts: n,
                detail: format!(
                    "no start reached the gradient tolerance {:e}",
                    config.tol_grad
                ),
            })?;
        Ok((best, converged, n))
    }

    pub(crate) fn result(
        &self,
        local: &Local,
        converged: usize,
        starts: usize,
        config: &FitConfig,
    ) -> FitResult {
        let n_form = self.law.param_names().len();
        let mut names = self.law.param_names();
        let mut natural = self.law.natural(&local.theta[..n_form]);
        if config.loss.extra_params() == 1 {
            names.push("ln_sigma".into());
            natural.push(("sigma".into(), local.theta[n_form].exp()));
        }
        FitResult {
            form: self.law.name(),
            param_names: names,
            theta: local.theta.clone(),
            natural,
            objective: local.objective,
            starts,
            converged_starts: converged,
            runs: self.log_loss.len(),
        }
    }

    /// The starts of `law` (or the configured one), extended with ln sigma for the
    /// likelihood loss.
    pub(crate) fn starts(&self, config: &FitConfig) -> Vec<Vec<f64>> {
        let n_form = self.law.param_names().len();
        let mut starts = match &config.start {
            Some(s) => vec![s[..n_form.min(s.len())].to_vec()],
            None => self.law.starts(),
        };
        if config.loss.extra_params() == 1 {
            for s in &mut starts {
                s.push((0.05_f64).ln());
            }
        }
        starts
    }

    /// Objective at given fit parameters.
    pub(crate) fn evaluate(&self, theta: &[f64], loss: Loss) -> f64 {
        self.objective(loss).value_grad(theta, None)
    }

    /// Objective and gradient at given fit parameters.
    pub(crate) fn value_grad(&self, theta: &[f64], loss: Loss, grad: &mut [f64]) -> f64 {
        self.objective(loss).value_grad(theta, Some(grad))
    }
}

/// Fits `law` to `runs` from every start of the form's grid (in parallel), refining each
/// with L-BFGS, and returns the best converged optimum.
///
/// # Errors
/// Too few runs, a missing column, or [`ScalingError::NoConvergence`] when no start
/// converged — never a silent best guess.
pub fn fit(law: &dyn ScalingLaw, runs: &Runs, config: &FitConfig) -> Result<FitResult> {
    let problem = Problem::new(law, runs, config)?;
    let (best, converged, n) = problem.multi_start(problem.starts(config), config)?;
    Ok(problem.result(&best, converged, n, config))
}

/// The objective of `law` on `runs` at fit parameters `theta` (e.g. published values).
///
/// # Errors
/// A missing column.
pub fn objective_at(law: &dyn ScalingLaw, runs: &Runs, theta: &[f64], loss: Loss) -> Result<f64> {
    let config = FitConfig {
        loss,
        ..FitConfig::default()
    };
    let problem = Problem::new(law, runs, &config)?;
    Ok(problem.evaluate(theta, loss))
}

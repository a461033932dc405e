//! Multi-start L-BFGS fits (argmin), starts in parallel with rayon.

use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason, TerminationStatus};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use rayon::prelude::*;

use crate::bounds::{self, ParamBound};
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
    /// Box bounds on fit parameters (from [`crate::resolve_bounds`]); empty: none.
    pub bounds: Vec<ParamBound>,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            loss: Loss::default(),
            max_iters: 1000,
            tol_grad: 1e-10,
            tol_cost: 1e-14,
            start: None,
            bounds: Vec::new(),
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
    /// The natural parameters held at a bound at the optimum (the fit ran into them:
    /// their values are the bounds', not estimates).
    pub at_bound: Vec<String>,
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

/// One local optimisation: the end point, its objective, whether it converged, and the
/// fit parameters held at a bound.
#[derive(Debug, Clone)]
pub(crate) struct Local {
    pub theta: Vec<f64>,
    pub objective: f64,
    pub converged: bool,
    pub at_bound: Vec<usize>,
}

/// L-BFGS on `problem` from `start`: the best point, its cost, and whether the solver
/// converged (a line-search failure at the optimum, where no descent is possible, ends
/// as not converged).
pub(crate) fn lbfgs<P>(
    problem: P,
    start: Vec<f64>,
    config: &FitConfig,
) -> Option<(Vec<f64>, f64, bool)>
where
    P: CostFunction<Param = Vec<f64>, Output = f64>
        + Gradient<Param = Vec<f64>, Gradient = Vec<f64>>,
{
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(config.tol_grad)
        .and_then(|s| s.with_tolerance_cost(config.tol_cost))
        .ok()?;
    let result = Executor::new(problem, solver)
        .configure(|state| state.param(start.clone()).max_iters(config.max_iters))
        .timer(false)
        .ctrlc(false)
        .run()
        .ok()?;
    let state = result.state();
    let converged = matches!(
        state.get_termination_status(),
        TerminationStatus::Terminated(
            TerminationReason::SolverConverged | TerminationReason::TargetCostReached
        )
    );
    let theta = state.get_best_param().cloned().unwrap_or(start);
    let cost = state.get_best_cost();
    (cost.is_finite() && theta.iter().all(|t| t.is_finite())).then_some((theta, cost, converged))
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

    /// L-BFGS from one start, without bounds.
    pub(crate) fn local(&self, start: Vec<f64>, config: &FitConfig) -> Local {
        let objective = self.objective(config.loss);
        match lbfgs(objective, start.clone(), config) {
            Some((theta, objective, converged)) => Local {
                theta,
                objective,
                converged,
                at_bound: Vec::new(),
            },
            None => Local {
                objective: self.evaluate(&start, config.loss),
                theta: start,
                converged: false,
                at_bound: Vec::new(),
            },
        }
    }

    /// L-BFGS from one start on one face of the box (the parameters of `face` held):
    /// `None` unless it converged inside the box.
    fn local_on_face(
        &self,
        start: &[f64],
        face: &[(usize, f64)],
        config: &FitConfig,
    ) -> Option<Local> {
        let reduced = Reduced {
            problem: self,
            fixed: face,
            loss: config.loss,
        };
        let free = reduced.free(start);
        let (theta, converged) = if free.is_empty() {
            (reduced.expand(&[]), true)
        } else {
            let (free, _, converged) = lbfgs(reduced, free, config)?;
            (reduced.expand(&free), converged)
        };
        (converged && bounds::admits(&config.bounds, &theta)).then(|| Local {
            objective: self.evaluate(&theta, config.loss),
            theta,
            converged,
            at_bound: face.iter().map(|(i, _)| *i).collect(),
        })
    }

    /// The best minimum from one start within the bounds (every face of the box tried);
    /// without bounds, plain [`Problem::local`].
    pub(crate) fn solve(&self, start: &[f64], config: &FitConfig) -> Local {
        if config.bounds.is_empty() {
            return self.local(start.to_vec(), config);
        }
        let start = bounds::clamp(&config.bounds, start);
        let best = bounds::faces(&config.bounds)
            .iter()
            .filter_map(|face| {
                let mut s = start.clone();
                for (i, v) in face {
                    s[*i] = *v;
                }
                self.local_on_face(&s, face, config)
            })
            .min_by(|a, b| a.objective.total_cmp(&b.objective));
        best.unwrap_or_else(|| Local {
            objective: self.evaluate(&start, config.loss),
            theta: start,
            converged: false,
            at_bound: Vec::new(),
        })
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
            .map(|s| self.solve(&s, config))
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
                    "no start reached the gradient tolerance {:e}{}",
                    config.tol_grad,
                    if config.bounds.is_empty() {
                        ""
                    } else {
                        " inside the bounds"
                    }
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
        let naturals = self.law.natural_params();
        let at_bound = local
            .at_bound
            .iter()
            .map(|&i| {
                naturals
                    .iter()
                    .find(|p| p.index == i)
                    .map_or_else(|| names[i].clone(), |p| p.name.clone())
            })
            .collect();
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
            at_bound,
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

/// The objective of a fit with some parameters held fixed: what L-BFGS minimises on a
/// face of the box, and along a profile.
#[derive(Clone, Copy)]
pub(crate) struct Reduced<'a, 'b> {
    /// The full problem.
    pub problem: &'a Problem<'b>,
    /// The held parameters and their values, by fit-parameter index.
    pub fixed: &'a [(usize, f64)],
    /// The robust loss.
    pub loss: Loss,
}

impl Reduced<'_, '_> {
    fn is_fixed(&self, index: usize) -> bool {
        self.fixed.iter().any(|(i, _)| *i == index)
    }

    /// The free parameters of a full parameter vector.
    pub(crate) fn free(&self, theta: &[f64]) -> Vec<f64> {
        theta
            .iter()
            .enumerate()
            .filter(|(k, _)| !self.is_fixed(*k))
            .map(|(_, v)| *v)
            .collect()
    }

    /// The full parameter vector of free parameters `free`.
    pub(crate) fn expand(&self, free: &[f64]) -> Vec<f64> {
        let n = free.len() + self.fixed.len();
        let mut rest = free.iter();
        (0..n)
            .map(|k| {
                self.fixed
                    .iter()
                    .find(|(i, _)| *i == k)
                    .map_or_else(|| *rest.next().unwrap_or(&f64::NAN), |(_, v)| *v)
            })
            .collect()
    }
}

impl CostFunction for Reduced<'_, '_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, free: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
        crate::objective::finite(
            "objective",
            self.problem.evaluate(&self.expand(free), self.loss),
        )
    }
}

impl Gradient for Reduced<'_, '_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, free: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        let full = self.expand(free);
        let mut g = vec![0.0; full.len()];
        self.problem.value_grad(&full, self.loss, &mut g);
        let g = self.free(&g);
        if let Some(bad) = g.iter().find(|v| !v.is_finite()) {
            crate::objective::finite("gradient", *bad)?;
        }
        Ok(g)
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

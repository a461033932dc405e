//! The local learning coefficient (singular learning theory) estimated by SGLD around a
//! trained point w*, as devinterp does (Lau et al., arXiv:2308.12108):
//!
//! `Delta w = -(eps / 2) [n beta grad L_B(w) + gamma (w - w*)] + sqrt(eps) N(0, 1)`,
//! `lambda_hat = n beta (E_draws[L(w)] - L(w*))`,
//!
//! over several chains after a burn-in. `n beta` defaults to `n / ln n` with n the number
//! of samples (the WBIC temperature; devinterp's default puts the batch size there).

use crate::error::{invalid, DynamicsError, Result};
use crate::objective::{check_dim, Objective};
use crate::rng::{normal, rng};
use rand::seq::SliceRandom;

/// SGLD settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SgldConfig {
    /// Step size epsilon.
    pub epsilon: f64,
    /// Localisation strength gamma.
    pub gamma: f64,
    /// `n beta`; `None`: `n / ln n` (n = the objective's samples; 1 when n < 3).
    pub n_beta: Option<f64>,
    /// Independent chains.
    pub chains: usize,
    /// Draws per chain kept after the burn-in.
    pub draws: usize,
    /// Steps discarded at the start of each chain.
    pub burn_in: usize,
    /// Samples per gradient (`None`: full batch).
    pub batch_size: Option<usize>,
    /// Seed of the noise and batches (chain c uses seed + c).
    pub seed: u64,
}

impl Default for SgldConfig {
    fn default() -> Self {
        Self {
            epsilon: 1e-4,
            gamma: 100.0,
            n_beta: None,
            chains: 4,
            draws: 2000,
            burn_in: 500,
            batch_size: None,
            seed: 0,
        }
    }
}

impl SgldConfig {
    /// The `n beta` used for `obj`.
    pub fn n_beta_for(&self, obj: &dyn Objective) -> f64 {
        self.n_beta.unwrap_or_else(|| {
            let n = obj.n_samples() as f64;
            if n < 3.0 {
                1.0
            } else {
                n / n.ln()
            }
        })
    }

    fn validate(&self) -> Result<()> {
        let positive = |name: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(invalid(name, v, "must be a positive number"))
            }
        };
        positive("sgld.epsilon", self.epsilon)?;
        if !(self.gamma.is_finite() && self.gamma >= 0.0) {
            return Err(invalid("sgld.gamma", self.gamma, "must be finite and >= 0"));
        }
        if let Some(nb) = self.n_beta {
            positive("sgld.n_beta", nb)?;
        }
        if self.chains == 0 {
            return Err(invalid("sgld.chains", self.chains, "must be at least 1"));
        }
        if self.draws == 0 {
            return Err(invalid("sgld.draws", self.draws, "must be at least 1"));
        }
        if self.batch_size == Some(0) {
            return Err(invalid("sgld.batch_size", 0, "must be at least 1"));
        }
        Ok(())
    }
}

/// The result of an LLC estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct LlcEstimate {
    /// lambda-hat averaged over chains.
    pub lambda_hat: f64,
    /// lambda-hat of each chain.
    pub per_chain: Vec<f64>,
    /// Standard deviation of the per-chain estimates.
    pub std: f64,
    /// L(w*).
    pub loss_at_center: f64,
    /// The `n beta` used.
    pub n_beta: f64,
    /// Mean loss over the kept draws of each chain.
    pub mean_loss: Vec<f64>,
}

/// Runs SGLD chains from `center` and returns the draws' losses of each chain (the
/// full-data loss of the state at each kept step).
///
/// # Errors
/// Invalid settings; dimension mismatch; a non-finite loss (step size too large).
pub fn sgld_losses(
    obj: &dyn Objective,
    center: &[f64],
    config: &SgldConfig,
) -> Result<Vec<Vec<f64>>> {
    config.validate()?;
    check_dim(obj, "center", center)?;
    let n_beta = config.n_beta_for(obj);
    let (eps, gamma) = (config.epsilon, config.gamma);
    let mut chains = Vec::with_capacity(config.chains);
    for c in 0..config.chains {
        let mut rng = rng(config.seed.wrapping_add(c as u64));
        let mut w = center.to_vec();
        let mut g = vec![0.0; w.len()];
        let mut order: Vec<usize> = (0..obj.n_samples()).collect();
        let mut cursor = order.len();
        let mut losses = Vec::with_capacity(config.draws);
        for step in 0..config.burn_in + config.draws {
            let batch: Option<Vec<usize>> = config.batch_size.map(|b| {
                if cursor + b > order.len() {
                    order.shuffle(&mut rng);
                    cursor = 0;
                }
                cursor += b;
                order[cursor - b..cursor].to_vec()
            });
            let batch_loss = obj.loss_grad(&w, batch.as_deref(), &mut g);
            if step >= config.burn_in {
                // The state drawn at this step; full batch: its loss came with the gradient.
                let loss = match batch {
                    None => batch_loss,
                    Some(_) => obj.loss(&w, None),
                };
                if !loss.is_finite() {
                    return Err(DynamicsError::NonFinite { what: "loss", step });
                }
                losses.push(loss);
            }
            for ((wi, gi), ci) in w.iter_mut().zip(&g).zip(center) {
                let drift = n_beta * gi + gamma * (*wi - ci);
                *wi += -0.5 * eps * drift + eps.sqrt() * normal(&mut rng);
            }
        }
        chains.push(losses);
    }
    Ok(chains)
}

/// Estimates the local learning coefficient at `center`.
///
/// # Errors
/// As [`sgld_losses`].
pub fn estimate_llc(
    obj: &dyn Objective,
    center: &[f64],
    config: &SgldConfig,
) -> Result<LlcEstimate> {
    let n_beta = config.n_beta_for(obj);
    let loss_at_center = obj.loss(center, None);
    let chains = sgld_losses(obj, center, config)?;
    let mean_loss: Vec<f64> = chains
        .iter()
        .map(|l| l.iter().sum::<f64>() / l.len() as f64)
        .collect();
    let per_chain: Vec<f64> = mean_loss
        .iter()
        .map(|m| n_beta * (m - loss_at_center))
        .collect();
    let k = per_chain.len() as f64;
    let lambda_hat = per_chain.iter().sum::<f64>() / k;
    let var = per_chain
        .iter()
        .map(|x| (x - lambda_hat).powi(2))
        .sum::<f64>()
        / (k - 1.0).max(1.0);
    Ok(LlcEstimate {
        lambda_hat,
        per_chain,
        std: var.sqrt(),
        loss_at_center,
        n_beta,
        mean_loss,
    })
}

//! Chinchilla (Hoffmann et al. 2022): L(N, D) = E + A / N^alpha + B / D^beta, fitted as
//! ln L = LSE(a - alpha ln N, b - beta ln D, e) with a = ln A, b = ln B, e = ln E.

use super::{grid, log_column, log_sum_exp, steps, NaturalParam, ScalingLaw};
use crate::error::Result;
use crate::Runs;

/// The Chinchilla form on columns `N` and `D`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chinchilla;

/// Natural Chinchilla parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[allow(non_snake_case)]
pub struct ChinchillaParams {
    /// Irreducible loss.
    pub E: f64,
    /// Parameter-term coefficient.
    pub A: f64,
    /// Data-term coefficient.
    pub B: f64,
    /// Parameter exponent.
    pub alpha: f64,
    /// Data exponent.
    pub beta: f64,
}

impl ChinchillaParams {
    /// From the fit parameters (a, b, e, alpha, beta).
    pub fn from_theta(theta: &[f64]) -> Self {
        Self {
            E: theta[2].exp(),
            A: theta[0].exp(),
            B: theta[1].exp(),
            alpha: theta[3],
            beta: theta[4],
        }
    }

    /// The fit parameters (a, b, e, alpha, beta).
    pub fn to_theta(&self) -> Vec<f64> {
        vec![self.A.ln(), self.B.ln(), self.E.ln(), self.alpha, self.beta]
    }

    /// L(N, D).
    pub fn loss(&self, n: f64, d: f64) -> f64 {
        self.E + self.A / n.powf(self.alpha) + self.B / d.powf(self.beta)
    }

    /// G = (alpha A / (beta B))^(1 / (alpha + beta)) of the compute-optimal allocation.
    pub fn g(&self) -> f64 {
        ((self.alpha * self.A) / (self.beta * self.B)).powf(1.0 / (self.alpha + self.beta))
    }

    /// Compute-optimal (N, D) for a budget of C = 6 N D FLOP:
    /// N = G (C/6)^(beta/(alpha+beta)), D = (C/6) / N.
    pub fn compute_optimal(&self, flops: f64) -> (f64, f64) {
        let c = flops / 6.0;
        let n = self.g() * c.powf(self.beta / (self.alpha + self.beta));
        (n, c / n)
    }

    /// The compute-optimal N for which the optimal D equals `d`.
    pub fn optimal_n_for_data(&self, d: f64) -> f64 {
        let g = self.g();
        g * (d * g).powf(self.beta / self.alpha)
    }
}

impl ScalingLaw for Chinchilla {
    fn name(&self) -> String {
        "chinchilla".into()
    }

    fn param_names(&self) -> Vec<String> {
        ["a", "b", "e", "alpha", "beta"].map(String::from).to_vec()
    }

    fn features(&self, runs: &Runs) -> Result<Vec<Vec<f64>>> {
        let (n, d) = (log_column(runs, "N")?, log_column(runs, "D")?);
        Ok(n.into_iter().zip(d).map(|(n, d)| vec![n, d]).collect())
    }

    fn log_loss(&self, t: &[f64], x: &[f64]) -> f64 {
        let mut w = [0.0; 3];
        log_sum_exp(&[t[0] - t[3] * x[0], t[1] - t[4] * x[1], t[2]], &mut w)
    }

    fn log_loss_grad(&self, t: &[f64], x: &[f64], g: &mut [f64]) -> f64 {
        let mut w = [0.0; 3];
        let value = log_sum_exp(&[t[0] - t[3] * x[0], t[1] - t[4] * x[1], t[2]], &mut w);
        g[0] = w[0];
        g[1] = w[1];
        g[2] = w[2];
        g[3] = -w[0] * x[0];
        g[4] = -w[1] * x[1];
        value
    }

    /// Hoffmann et al.'s grid: alpha, beta in 0..2 step 0.5, e in -1..1 step 0.5,
    /// a, b in 0..25 step 5 (4,500 starts).
    fn starts(&self) -> Vec<Vec<f64>> {
        let ab = steps(0.0, 25.0, 5.0);
        let exps = steps(0.0, 2.0, 0.5);
        grid(&[ab.clone(), ab, steps(-1.0, 1.0, 0.5), exps.clone(), exps])
    }

    fn natural_params(&self) -> Vec<NaturalParam> {
        // The order of ChinchillaParams::from_theta.
        vec![
            NaturalParam::exp("E", 2),
            NaturalParam::exp("A", 0),
            NaturalParam::exp("B", 1),
            NaturalParam::linear("alpha", 3),
            NaturalParam::linear("beta", 4),
        ]
    }
}

//! Kaplan et al. 2020: L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D (no
//! floor), fitted as ln L = alpha_D LSE((alpha_N / alpha_D)(ln N_c - ln N), ln D_c - ln D).

use super::{grid, log_column, log_sum_exp, NaturalParam, ScalingLaw};
use crate::error::Result;
use crate::Runs;

/// The Kaplan form on columns `N` and `D`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kaplan;

impl ScalingLaw for Kaplan {
    fn name(&self) -> String {
        "kaplan".into()
    }

    fn param_names(&self) -> Vec<String> {
        ["ln_Nc", "ln_Dc", "alpha_N", "alpha_D"]
            .map(String::from)
            .to_vec()
    }

    fn features(&self, runs: &Runs) -> Result<Vec<Vec<f64>>> {
        let (n, d) = (log_column(runs, "N")?, log_column(runs, "D")?);
        Ok(n.into_iter().zip(d).map(|(n, d)| vec![n, d]).collect())
    }

    fn log_loss(&self, t: &[f64], x: &[f64]) -> f64 {
        let mut w = [0.0; 2];
        t[3] * log_sum_exp(&[(t[2] / t[3]) * (t[0] - x[0]), t[1] - x[1]], &mut w)
    }

    fn log_loss_grad(&self, t: &[f64], x: &[f64], g: &mut [f64]) -> f64 {
        let mut w = [0.0; 2];
        let (ratio, u) = (t[2] / t[3], t[0] - x[0]);
        let s = log_sum_exp(&[ratio * u, t[1] - x[1]], &mut w);
        g[0] = t[2] * w[0];
        g[1] = t[3] * w[1];
        g[2] = w[0] * u;
        g[3] = s - w[0] * ratio * u;
        t[3] * s
    }

    fn starts(&self) -> Vec<Vec<f64>> {
        let logs = vec![10.0, 15.0, 20.0, 25.0, 30.0, 35.0];
        let exps = vec![0.05, 0.1, 0.2, 0.4, 0.8];
        grid(&[logs.clone(), logs, exps.clone(), exps])
    }

    fn natural_params(&self) -> Vec<NaturalParam> {
        vec![
            NaturalParam::exp("N_c", 0),
            NaturalParam::exp("D_c", 1),
            NaturalParam::linear("alpha_N", 2),
            NaturalParam::linear("alpha_D", 3),
        ]
    }
}

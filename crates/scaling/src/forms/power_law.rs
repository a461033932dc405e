//! Single-variable power law with floor: L(x) = E + A x^-alpha, fitted as
//! ln L = LSE(a - alpha ln x, e).

use super::{grid, log_column, log_sum_exp, steps, NaturalParam, ScalingLaw};
use crate::error::Result;
use crate::Runs;

/// The power law in one column (`N` by default; `D` for data scaling).
#[derive(Debug, Clone)]
pub struct PowerLaw {
    /// The column of x.
    pub column: String,
}

impl Default for PowerLaw {
    fn default() -> Self {
        Self { column: "N".into() }
    }
}

impl PowerLaw {
    /// The x at which the law with fit parameters `theta` (a, e, alpha) predicts `loss`:
    /// x = (A / (loss - E))^(1/alpha); `None` when `loss <= E` (the floor is above it).
    pub fn x_at_loss(theta: &[f64], loss: f64) -> Option<f64> {
        let (a, e, alpha) = (theta[0].exp(), theta[1].exp(), theta[2]);
        (loss > e && alpha > 0.0).then(|| (a / (loss - e)).powf(1.0 / alpha))
    }
}

impl ScalingLaw for PowerLaw {
    fn name(&self) -> String {
        "power".into()
    }

    fn param_names(&self) -> Vec<String> {
        ["a", "e", "alpha"].map(String::from).to_vec()
    }

    fn features(&self, runs: &Runs) -> Result<Vec<Vec<f64>>> {
        Ok(log_column(runs, &self.column)?
            .into_iter()
            .map(|x| vec![x])
            .collect())
    }

    fn log_loss(&self, t: &[f64], x: &[f64]) -> f64 {
        let mut w = [0.0; 2];
        log_sum_exp(&[t[0] - t[2] * x[0], t[1]], &mut w)
    }

    fn log_loss_grad(&self, t: &[f64], x: &[f64], g: &mut [f64]) -> f64 {
        let mut w = [0.0; 2];
        let v = log_sum_exp(&[t[0] - t[2] * x[0], t[1]], &mut w);
        g[0] = w[0];
        g[1] = w[1];
        g[2] = -w[0] * x[0];
        v
    }

    fn starts(&self) -> Vec<Vec<f64>> {
        grid(&[
            steps(0.0, 25.0, 5.0),
            steps(-1.0, 1.0, 0.5),
            steps(0.0, 2.0, 0.5),
        ])
    }

    fn natural_params(&self) -> Vec<NaturalParam> {
        vec![
            NaturalParam::exp("E", 1),
            NaturalParam::exp("A", 0),
            NaturalParam::linear("alpha", 2),
        ]
    }
}

//! Data-constrained scaling (Muennighoff et al. 2023): Chinchilla in effective data and
//! parameters,
//! D' = U_D + U_D R_D* (1 - exp(-R_D / R_D*)), R_D = D / U_D - 1,
//! N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)), R_N = N / U_N - 1,
//! U_N = min(N, N_opt(U_D)), with N_opt the compute-optimal N of the base fit for data
//! U_D. The base coefficients are fixed (fitted on single-epoch runs); the fit
//! parameters are ln R_D* and ln R_N*.

use super::{grid, log_column, ChinchillaParams, ScalingLaw};
use crate::error::Result;
use crate::Runs;

/// The data-constrained form on columns `N`, `D` and `U` (unique data).
#[derive(Debug, Clone, Copy)]
pub struct DataConstrained {
    /// The single-epoch Chinchilla coefficients.
    pub base: ChinchillaParams,
}

impl DataConstrained {
    /// Muennighoff et al.'s base coefficients (a = 6.255414, b = 7.3049974,
    /// e = 0.6254804, alpha = beta = 0.3526596).
    pub fn muennighoff() -> Self {
        Self {
            base: ChinchillaParams::from_theta(&[
                6.255414, 7.3049974, 0.6254804, 0.3526596, 0.3526596,
            ]),
        }
    }

    /// L(N, D, U_D) for decay constants R_D*, R_N*.
    pub fn loss(&self, n: f64, d: f64, unique: f64, r_d: f64, r_n: f64) -> f64 {
        let (n_eff, d_eff) = self.effective(n, d, unique, r_d, r_n);
        self.base.loss(n_eff, d_eff)
    }

    /// Effective (N', D'). Unique data beyond the tokens seen (less than one epoch)
    /// counts as U_D = D: nothing is repeated.
    pub fn effective(&self, n: f64, d: f64, unique: f64, r_d: f64, r_n: f64) -> (f64, f64) {
        let unique = unique.min(d);
        let u_n = n.min(self.base.optimal_n_for_data(unique));
        let repeats_d = d / unique - 1.0;
        let repeats_n = n / u_n - 1.0;
        let d_eff = unique + unique * r_d * (1.0 - (-repeats_d / r_d).exp());
        let n_eff = u_n + u_n * r_n * (1.0 - (-repeats_n / r_n).exp());
        (n_eff, d_eff)
    }
}

impl ScalingLaw for DataConstrained {
    fn name(&self) -> String {
        "data-constrained".into()
    }

    fn param_names(&self) -> Vec<String> {
        ["ln_R_D", "ln_R_N"].map(String::from).to_vec()
    }

    fn features(&self, runs: &Runs) -> Result<Vec<Vec<f64>>> {
        let (n, d, u) = (
            log_column(runs, "N")?,
            log_column(runs, "D")?,
            log_column(runs, "U")?,
        );
        Ok((0..n.len()).map(|i| vec![n[i], d[i], u[i]]).collect())
    }

    fn log_loss(&self, t: &[f64], x: &[f64]) -> f64 {
        self.loss(x[0].exp(), x[1].exp(), x[2].exp(), t[0].exp(), t[1].exp())
            .ln()
    }

    fn starts(&self) -> Vec<Vec<f64>> {
        let axis: Vec<f64> = [0.5_f64, 2.0, 5.0, 15.0, 50.0]
            .iter()
            .map(|v| v.ln())
            .collect();
        grid(&[axis.clone(), axis])
    }

    fn natural(&self, t: &[f64]) -> Vec<(String, f64)> {
        vec![("R_D".into(), t[0].exp()), ("R_N".into(), t[1].exp())]
    }
}

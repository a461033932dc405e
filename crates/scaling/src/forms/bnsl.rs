//! Broken neural scaling law (Caballero et al. 2022) with one or more breaks:
//! y = a + b x^-c0 prod_i (1 + (x / d_i)^(1/f_i))^(-c_i f_i), fitted in log space with
//! a, b, d_i, f_i as logs.

use super::{grid, log_column, ScalingLaw};
use crate::error::Result;
use crate::Runs;

/// A broken power law with `breaks` breaks in column `column`.
#[derive(Debug, Clone)]
pub struct BrokenPowerLaw {
    /// The column of x.
    pub column: String,
    /// Number of breaks (1 or 2).
    pub breaks: usize,
    /// Range of ln x, to place the starting break positions.
    pub log_x_range: (f64, f64),
}

impl BrokenPowerLaw {
    /// A law with `breaks` breaks in `column`, with starting break positions spread over
    /// the data's range.
    ///
    /// # Errors
    /// A missing column.
    pub fn for_runs(runs: &Runs, column: &str, breaks: usize) -> Result<Self> {
        let x = log_column(runs, column)?;
        let lo = x.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Ok(Self {
            column: column.to_owned(),
            breaks,
            log_x_range: (lo, hi),
        })
    }
}

fn softplus(z: f64) -> f64 {
    if z > 30.0 {
        z
    } else {
        z.exp().ln_1p()
    }
}

impl ScalingLaw for BrokenPowerLaw {
    fn name(&self) -> String {
        format!("bnsl{}", self.breaks)
    }

    fn param_names(&self) -> Vec<String> {
        let mut names = vec!["ln_a".to_owned(), "ln_b".into(), "c0".into()];
        for i in 1..=self.breaks {
            names.extend([format!("c{i}"), format!("ln_d{i}"), format!("ln_f{i}")]);
        }
        names
    }

    fn features(&self, runs: &Runs) -> Result<Vec<Vec<f64>>> {
        Ok(log_column(runs, &self.column)?
            .into_iter()
            .map(|x| vec![x])
            .collect())
    }

    fn log_loss(&self, t: &[f64], x: &[f64]) -> f64 {
        let lx = x[0];
        let mut log_term = t[1] - t[2] * lx;
        for i in 0..self.breaks {
            let (c, ln_d, f) = (t[3 + 3 * i], t[4 + 3 * i], t[5 + 3 * i].exp());
            log_term -= c * f * softplus((lx - ln_d) / f);
        }
        let (m, n) = if t[0] > log_term {
            (t[0], log_term)
        } else {
            (log_term, t[0])
        };
        m + (n - m).exp().ln_1p()
    }

    fn starts(&self) -> Vec<Vec<f64>> {
        let (lo, hi) = self.log_x_range;
        let positions: Vec<f64> = (1..=3)
            .map(|k| lo + (hi - lo) * f64::from(k) / 4.0)
            .collect();
        let mut axes = vec![vec![-3.0, -1.0, 0.5], vec![0.0, 2.0, 5.0], vec![0.0, 0.3]];
        for _ in 0..self.breaks {
            axes.extend([vec![0.2, 1.0], positions.clone(), vec![-1.0, 0.5]]);
        }
        grid(&axes)
    }

    fn natural(&self, t: &[f64]) -> Vec<(String, f64)> {
        let mut out = vec![
            ("a".to_owned(), t[0].exp()),
            ("b".into(), t[1].exp()),
            ("c0".into(), t[2]),
        ];
        for i in 0..self.breaks {
            out.push((format!("c{}", i + 1), t[3 + 3 * i]));
            out.push((format!("d{}", i + 1), t[4 + 3 * i].exp()));
            out.push((format!("f{}", i + 1), t[5 + 3 * i].exp()));
        }
        out
    }
}

//! Differentiable losses over a flat parameter vector, the interface every diagnostic
//! works on, and the exactly solvable objectives the diagnostics are validated with.

use nalgebra::{DMatrix, DVector};

use crate::error::{DynamicsError, Result};

/// Default relative finite-difference step: the gradient is evaluated at
/// `w +- r v / |v|` with `r = step * max(1, |w| / sqrt(d))` ([`Objective::fd_step`]).
pub const FD_STEP: f64 = 1e-4;

/// [`DynamicsError::Dimension`] unless `v` has one entry per parameter of `obj`.
pub(crate) fn check_dim(obj: &dyn Objective, what: &'static str, v: &[f64]) -> Result<()> {
    if v.len() == obj.dim() {
        Ok(())
    } else {
        Err(DynamicsError::Dimension {
            what,
            expected: obj.dim(),
            found: v.len(),
        })
    }
}

/// A loss `L(w) = (1/n) sum_i l_i(w)` over `n` samples with its gradient.
pub trait Objective: Sync {
    /// Number of parameters.
    fn dim(&self) -> usize;
    /// Number of samples n (1 for a loss that is not an average).
    fn n_samples(&self) -> usize;
    /// Loss and gradient on the samples `batch` (all samples when `None`); the gradient is
    /// written into `grad` (length [`Objective::dim`]).
    fn loss_grad(&self, w: &[f64], batch: Option<&[usize]>, grad: &mut [f64]) -> f64;

    /// Relative step of the finite-difference Hessian-vector products (default
    /// [`FD_STEP`], right for f64 gradients; f32 models want ~1e-2, near
    /// the cube root of their rounding error).
    fn fd_step(&self) -> f64 {
        FD_STEP
    }

    /// Loss alone (default: through [`Objective::loss_grad`]).
    fn loss(&self, w: &[f64], batch: Option<&[usize]>) -> f64 {
        let mut g = vec![0.0; self.dim()];
        self.loss_grad(w, batch, &mut g)
    }
}

/// `L(w) = (w - c)^T A (w - c) / 2` with a symmetric A: Hessian A everywhere.
#[derive(Debug, Clone)]
pub struct Quadratic {
    /// The Hessian A `[d, d]` (symmetric).
    pub a: DMatrix<f64>,
    /// The minimum c.
    pub center: DVector<f64>,
}

impl Quadratic {
    /// A diagonal quadratic with the given eigenvalues, minimum at 0.
    pub fn diagonal(eigenvalues: &[f64]) -> Self {
        let d = eigenvalues.len();
        Self {
            a: DMatrix::from_diagonal(&DVector::from_column_slice(eigenvalues)),
            center: DVector::zeros(d),
        }
    }
}

impl Objective for Quadratic {
    fn dim(&self) -> usize {
        self.center.len()
    }

    fn n_samples(&self) -> usize {
        1
    }

    fn loss_grad(&self, w: &[f64], _batch: Option<&[usize]>, grad: &mut [f64]) -> f64 {
        let x = DVector::from_column_slice(w) - &self.center;
        let g = &self.a * &x;
        grad.copy_from_slice(g.as_slice());
        0.5 * x.dot(&g)
    }
}

/// Linear least squares `L(w) = (1/2n) sum_i (x_i . w - y_i)^2`: Hessian `X^T X / n`.
#[derive(Debug, Clone)]
pub struct LeastSquares {
    /// Inputs `[n, d]`.
    pub x: DMatrix<f64>,
    /// Targets `[n]`.
    pub y: DVector<f64>,
}

impl LeastSquares {
    /// The exact Hessian `X^T X / n`.
    pub fn hessian(&self) -> DMatrix<f64> {
        self.x.transpose() * &self.x / self.x.nrows() as f64
    }
}

impl Objective for LeastSquares {
    fn dim(&self) -> usize {
        self.x.ncols()
    }

    fn n_samples(&self) -> usize {
        self.x.nrows()
    }

    fn loss_grad(&self, w: &[f64], batch: Option<&[usize]>, grad: &mut [f64]) -> f64 {
        let w = DVector::from_column_slice(w);
        grad.fill(0.0);
        let rows: Vec<usize> =
            batch.map_or_else(|| (0..self.x.nrows()).collect(), <[usize]>::to_vec);
        let mut loss = 0.0;
        for &i in &rows {
            let row = self.x.row(i);
            let r = row.dot(&w.transpose()) - self.y[i];
            loss += 0.5 * r * r;
            for (g, x) in grad.iter_mut().zip(row.iter()) {
                *g += r * x;
            }
        }
        let n = rows.len().max(1) as f64;
        for g in grad.iter_mut() {
            *g /= n;
        }
        loss / n
    }
}

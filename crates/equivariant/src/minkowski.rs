//! Minkowski products on tensors, written as the LGN / LorentzNet reference code does
//! (`2 p0 q0 - sum(p * q)`), and the psi embedding.

use candle_core::{Result, Tensor, D};

/// p . q over the last dimension (size 4): 2 p0 q0 - sum_mu p_mu q_mu.
///
/// # Errors
/// Shapes that do not broadcast or a last dimension other than 4.
pub fn dot4(p: &Tensor, q: &Tensor) -> Result<Tensor> {
    let prod = (p * q)?;
    let first = prod.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?;
    (first * 2.0)? - prod.sum(D::Minus1)?
}

/// psi(a) = sgn(a) ln(|a| + 1), LorentzNet's embedding of invariants.
///
/// # Errors
/// Only from the tensor backend.
pub fn psi(a: &Tensor) -> Result<Tensor> {
    a.sign()? * (a.abs()? + 1.0)?.log()?
}

//! Batch normalisation over the last dimension with masked batch statistics, so that
//! padded constituents and non-edges do not enter the statistics.

use candle_core::{DType, Result, Tensor, Var, D};
use candle_nn::VarBuilder;

/// BatchNorm1d (PyTorch's parameter names: `weight`, `bias`, `running_mean`,
/// `running_var`) acting on the last dimension of any tensor.
#[derive(Debug, Clone)]
pub struct MaskedBatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

impl MaskedBatchNorm {
    /// Loads (or initialises: weight 1, bias 0, mean 0, var 1) the layer.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor in the checkpoint.
    pub fn new(features: usize, vb: &VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(features, "weight", candle_nn::Init::Const(1.0))?;
        let bias = vb.get_with_hints(features, "bias", candle_nn::Init::Const(0.0))?;
        let running_mean =
            vb.get_with_hints(features, "running_mean", candle_nn::Init::Const(0.0))?;
        let running_var =
            vb.get_with_hints(features, "running_var", candle_nn::Init::Const(1.0))?;
        Ok(Self {
            weight,
            bias,
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            eps: 1e-5,
            momentum: 0.1,
        })
    }

    /// Normalises `x` (`[..., C]`). In training, statistics come from the entries where
    /// `mask` (`[...]`, broadcast over C) is 1, and the running statistics are updated;
    /// in evaluation the running statistics are used.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward(&self, x: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        let (mean, var) = if train {
            let c = x.dim(D::Minus1)?;
            let flat = x.reshape(((), c))?;
            let m = mask.reshape(((), 1))?.to_dtype(x.dtype())?;
            let count = m
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?
                .max(1.0);
            let mean = (flat.broadcast_mul(&m)?.sum(0)? / count)?;
            let centred = flat.broadcast_sub(&mean)?;
            let var = (centred.sqr()?.broadcast_mul(&m)?.sum(0)? / count)?;
            let unbiased = (&var * (count / (count - 1.0).max(1.0)))?;
            let keep = 1.0 - self.momentum;
            self.running_mean.set(
                &((self.running_mean.as_tensor() * keep)? + (&mean * self.momentum)?)?.detach(),
            )?;
            self.running_var.set(
                &((self.running_var.as_tensor() * keep)? + (unbiased * self.momentum)?)?.detach(),
            )?;
            (mean, var)
        } else {
            (
                self.running_mean.as_tensor().clone(),
                self.running_var.as_tensor().clone(),
            )
        };
        let scale = (&self.weight / (var + self.eps)?.sqrt()?)?;
        x.broadcast_sub(&mean)?
            .broadcast_mul(&scale)?
            .broadcast_add(&self.bias)
    }
}

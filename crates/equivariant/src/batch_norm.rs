//! Batch normalisation over the last dimension with masked batch statistics, so that
//! padded constituents and non-edges do not enter the statistics.

use candle_core::{DType, Result, Tensor, Var, D};
use candle_nn::VarBuilder;

use crate::dense::{add_rows, broadcast_rows, masked_row_sum, mul_rows};

/// The one rule for buffers: tensors a model updates itself in training, not by
/// gradient, and that are not parameters (they are not counted, trained, frozen, pruned
/// or decayed). They are BatchNorm's running statistics and PyTorch's
/// `num_batches_tracked` counter, by their PyTorch names.
pub fn is_buffer(name: &str) -> bool {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    matches!(leaf, "running_mean" | "running_var" | "num_batches_tracked")
}

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

    /// The affine parameters `weight` and `bias` `[C]` (trainable) and `eps`.
    pub fn affine(&self) -> (&Tensor, &Tensor, f64) {
        (&self.weight, &self.bias, self.eps)
    }

    /// The running mean and variance `[C]`, detached: they are `Var`s updated in place,
    /// and a variable in the graph would make candle record, and keep alive until the
    /// output is dropped, every edge tensor of the forward pass (5.6 GB for 64 jets of
    /// the official LorentzNet), even with frozen weights.
    pub fn running(&self) -> (Tensor, Tensor) {
        (
            self.running_mean.as_tensor().detach(),
            self.running_var.as_tensor().detach(),
        )
    }

    /// Folds one batch's statistics into the running ones as PyTorch does: the biased
    /// variance `var` of `count` entries enters unbiased, both with momentum 0.1.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn update_running(&self, mean: &Tensor, var: &Tensor, count: f64) -> Result<()> {
        let c = self.weight.dim(0)?;
        let unbiased = (var * (count / (count - 1.0).max(1.0)))?;
        let keep = 1.0 - self.momentum;
        let update = |stat: &Var, batch: &Tensor| -> Result<()> {
            let batch = batch.reshape(c)?.to_dtype(stat.dtype())?;
            stat.set(&((stat.as_tensor() * keep)? + (batch * self.momentum)?)?.detach())
        };
        update(&self.running_mean, mean)?;
        update(&self.running_var, &unbiased)
    }

    /// Normalises `x` (`[..., C]`). In training, statistics come from the entries where
    /// `mask` (`[...]`, broadcast over C) is 1, and the running statistics are updated;
    /// in evaluation the running statistics are used. Internally `[rows, C]` with the
    /// row reductions and broadcasts as matrix products (see [`crate::dense`]).
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward(&self, x: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        let c = x.dim(D::Minus1)?;
        let flat = x.reshape(((), c))?;
        let (mean, var) = if train {
            let m = mask.reshape(((), 1))?.to_dtype(x.dtype())?;
            let count = m
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?
                .max(1.0);
            let mean = (masked_row_sum(&flat, &m)? / count)?;
            let centred = (&flat - broadcast_rows(&mean, flat.dim(0)?)?)?;
            let var = (masked_row_sum(&centred.sqr()?, &m)? / count)?;
            self.update_running(&mean, &var, count)?;
            (mean, var)
        } else {
            self.running()
        };
        let scale = (self.weight.reshape((1, c))? / (var.reshape((1, c))? + self.eps)?.sqrt()?)?;
        // (x - mean) * scale + bias = x * scale + (bias - mean * scale).
        let shift = (self.bias.reshape((1, c))? - (mean.reshape((1, c))? * &scale)?)?;
        add_rows(&mul_rows(&flat, &scale)?, &shift)?.reshape(x.shape())
    }
}

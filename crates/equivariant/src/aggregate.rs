//! Permutation-equivariant linear layers between node (rank-1) and pair (rank-2) tensors
//! on dense masked layouts (Maron et al., arXiv:1812.09902; PELICAN, arXiv:2307.16506).
//!
//! Shapes: a pair tensor is `[B, N, N, C]`, a node tensor `[B, N, C]`, the node mask
//! `[B, N]` (1 for real nodes). Every aggregation is a masked mean (sums divided by the
//! number of real nodes n, or n^2 for the total), scaled by `(n / n_avg)^alpha` with a
//! learnable exponent per aggregation type and channel (alpha = 0 at initialisation:
//! plain means; alpha = 1: sums normalised by n_avg). Padded entries of the output are
//! zero. Everything is dense masked arithmetic (no `scatter_add`, whose backward is broken
//! in candle 0.11), and the gradients are checked against finite differences in the tests.

use candle_core::{Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

/// Masks and counts shared by the layers of one forward pass.
#[derive(Debug, Clone)]
pub struct PairMask {
    /// Node mask `[B, N]`.
    pub node: Tensor,
    /// Pair mask `[B, N, N, 1]`: m_i m_j (diagonal included).
    pub pair: Tensor,
    /// Identity `[1, N, N, 1]`.
    pub eye: Tensor,
    /// ln(n / n_avg) per jet, `[B, 1]`.
    pub log_ratio: Tensor,
    /// n per jet, `[B, 1]` (at least 1).
    pub count: Tensor,
}

impl PairMask {
    /// Builds the masks from a node mask `[B, N]`; `n_avg` is the typical number of real
    /// nodes (the scale of the `(n / n_avg)^alpha` factors).
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn new(node: &Tensor, n_avg: f64) -> Result<Self> {
        let n = node.dim(1)?;
        let pair = node
            .unsqueeze(2)?
            .broadcast_mul(&node.unsqueeze(1)?)?
            .unsqueeze(D::Minus1)?;
        let eye = Tensor::eye(n, node.dtype(), node.device())?
            .unsqueeze(0)?
            .unsqueeze(D::Minus1)?;
        let count = node.sum_keepdim(1)?.maximum(1.0)?;
        let log_ratio = (count.clone() / n_avg)?.log()?;
        Ok(Self {
            node: node.clone(),
            pair,
            eye,
            log_ratio,
            count,
        })
    }

    /// The `(n / n_avg)^alpha` factor for exponents `alpha` `[C]`: `[B, C]`.
    fn scale(&self, alpha: &Tensor) -> Result<Tensor> {
        self.log_ratio.broadcast_mul(&alpha.unsqueeze(0)?)?.exp()
    }
}

/// The rank-reducing aggregates of a masked pair tensor `t` `[B, N, N, C]` (zero outside
/// the mask): diagonal d_i = t_ii, row mean r_i = mean_k t_ik, column mean
/// c_i = mean_k t_ki (all `[B, N, C]`), trace mean tr = mean_k t_kk and total mean
/// s = mean_kl t_kl (`[B, C]`). Means are unscaled.
#[derive(Debug, Clone)]
pub struct PairAggregates {
    /// Diagonal, `[B, N, C]`.
    pub diag: Tensor,
    /// Row means, `[B, N, C]`.
    pub row: Tensor,
    /// Column means, `[B, N, C]`.
    pub col: Tensor,
    /// Trace mean, `[B, C]`.
    pub trace: Tensor,
    /// Total mean, `[B, C]`.
    pub total: Tensor,
}

impl PairAggregates {
    /// Computes the aggregates of `t` (which must already be zero outside `mask.pair`).
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn new(t: &Tensor, mask: &PairMask) -> Result<Self> {
        let n = mask.count.unsqueeze(D::Minus1)?; // [B, 1, 1]
        let diag = t.broadcast_mul(&mask.eye)?.sum(2)?;
        let row = t.sum(2)?.broadcast_div(&n)?;
        let col = t.sum(1)?.broadcast_div(&n)?;
        let trace = diag.sum(1)?.broadcast_div(&mask.count)?;
        let total = t.sum((1, 2))?.broadcast_div(&mask.count.sqr()?)?;
        Ok(Self {
            diag,
            row,
            col,
            trace,
            total,
        })
    }
}

/// Multiplies `x` `[..., C]` by `weight[k]` (`[C, C_out]`).
fn mix(x: &Tensor, weight: &Tensor, k: usize) -> Result<Tensor> {
    x.broadcast_matmul(&weight.get(k)?)
}

/// The general permutation-equivariant linear map from pair tensors to pair tensors: a
/// learned combination of the 15 basis operations, in this order:
/// `t_ij, t_ji, δ_ij d_i, d_i, d_j, r_i, c_i, r_j, c_j, δ_ij r_i, δ_ij c_i, tr, δ_ij tr,
/// s, δ_ij s` (d, r, c, tr, s as in [`PairAggregates`]), plus a bias and a diagonal bias.
///
/// Parameters: `weight` `[15, C_in, C_out]`, `bias` `[C_out]`, `diag_bias` `[C_out]`,
/// `alphas` `[4, C_in]` (scaling exponents of r, c, tr, s). Input `[B, N, N, C_in]`,
/// output `[B, N, N, C_out]`.
///
/// The broadcast operations are mixed on the node or jet tensors before broadcasting, so
/// only the first two cost O(N^2 C_in C_out).
#[derive(Debug, Clone)]
pub struct Eq2to2 {
    weight: Tensor,
    bias: Tensor,
    diag_bias: Tensor,
    alphas: Tensor,
    c_out: usize,
}

impl Eq2to2 {
    /// Builds (or loads) the layer under `vb`.
    ///
    /// # Errors
    /// Missing or mis-shaped tensors.
    pub fn new(c_in: usize, c_out: usize, vb: &VarBuilder) -> Result<Self> {
        let bound = 1.0 / ((15 * c_in) as f64).sqrt();
        let uniform = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Ok(Self {
            weight: vb.get_with_hints((15, c_in, c_out), "weight", uniform)?,
            bias: vb.get_with_hints(c_out, "bias", Init::Const(0.0))?,
            diag_bias: vb.get_with_hints(c_out, "diag_bias", Init::Const(0.0))?,
            alphas: vb.get_with_hints((4, c_in), "alphas", Init::Const(0.0))?,
            c_out,
        })
    }

    /// Applies the layer to `t` (zero outside the mask); the output is masked.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward(&self, t: &Tensor, mask: &PairMask) -> Result<Tensor> {
        let agg = PairAggregates::new(t, mask)?;
        let w = &self.weight;
        let scale = |k: usize| mask.scale(&self.alphas.get(k)?);
        let row = agg.row.broadcast_mul(&scale(0)?.unsqueeze(1)?)?;
        let col = agg.col.broadcast_mul(&scale(1)?.unsqueeze(1)?)?;
        let trace = (agg.trace * scale(2)?)?;
        let total = (agg.total * scale(3)?)?;
        let d = &agg.diag;

        let full = mix(t, w, 0)?;
        let transposed = mix(t, w, 1)?.transpose(1, 2)?;
        let node_i = (mix(d, w, 3)? + mix(&row, w, 5)? + mix(&col, w, 6)?)?;
        let node_j = (mix(d, w, 4)? + mix(&row, w, 7)? + mix(&col, w, 8)?)?;
        let node_diag = (mix(d, w, 2)? + mix(&row, w, 9)? + mix(&col, w, 10)?)?;
        let jet = (mix(&trace, w, 11)? + mix(&total, w, 13)?)?.broadcast_add(&self.bias)?;
        let jet_diag =
            (mix(&trace, w, 12)? + mix(&total, w, 14)?)?.broadcast_add(&self.diag_bias)?;
        let diag = node_diag.broadcast_add(&jet_diag.unsqueeze(1)?)?;
        let (b, n) = (t.dim(0)?, t.dim(1)?);
        let shape = (b, n, n, self.c_out);
        let out = (full + transposed)?
            .broadcast_add(&node_i.unsqueeze(2)?)?
            .broadcast_add(&node_j.unsqueeze(1)?)?
            .broadcast_add(&jet.unsqueeze(1)?.unsqueeze(1)?)?
            .broadcast_add(
                &diag
                    .unsqueeze(2)?
                    .broadcast_as(shape)?
                    .broadcast_mul(&mask.eye)?,
            )?;
        out.broadcast_mul(&mask.pair)
    }
}

/// The permutation-equivariant linear map from node tensors `[B, N, C_in]` to pair
/// tensors `[B, N, N, C_out]` (used to inject per-particle labels such as beam/particle):
/// `δ_ij l_i, l_i, l_j, mean l, δ_ij mean l`, plus a bias. Parameters `weight`
/// `[5, C_in, C_out]`, `bias` `[C_out]`.
#[derive(Debug, Clone)]
pub struct Eq1to2 {
    weight: Tensor,
    bias: Tensor,
}

impl Eq1to2 {
    /// Builds (or loads) the layer under `vb`.
    ///
    /// # Errors
    /// Missing or mis-shaped tensors.
    pub fn new(c_in: usize, c_out: usize, vb: &VarBuilder) -> Result<Self> {
        let bound = 1.0 / ((5 * c_in) as f64).sqrt();
        Ok(Self {
            weight: vb.get_with_hints(
                (5, c_in, c_out),
                "weight",
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )?,
            bias: vb.get_with_hints(c_out, "bias", Init::Const(0.0))?,
        })
    }

    /// Applies the layer to node features `l` `[B, N, C_in]`; the output is masked.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward(&self, l: &Tensor, mask: &PairMask) -> Result<Tensor> {
        let w = &self.weight;
        let l = l.broadcast_mul(&mask.node.unsqueeze(D::Minus1)?)?;
        let mean = l.sum(1)?.broadcast_div(&mask.count)?; // [B, C_in]
        let diag = (mix(&l, w, 0)?
            + mix(&mean, w, 4)?.unsqueeze(1)?.broadcast_as((
                l.dim(0)?,
                l.dim(1)?,
                self.bias.dim(0)?,
            ))?)?;
        let (b, n) = (l.dim(0)?, l.dim(1)?);
        let shape = (b, n, n, self.bias.dim(0)?);
        let out = mix(&l, w, 1)?
            .unsqueeze(2)?
            .broadcast_add(&mix(&l, w, 2)?.unsqueeze(1)?)?
            .broadcast_add(
                &mix(&mean, w, 3)?
                    .broadcast_add(&self.bias)?
                    .unsqueeze(1)?
                    .unsqueeze(1)?,
            )?
            .broadcast_add(
                &diag
                    .unsqueeze(2)?
                    .broadcast_as(shape)?
                    .broadcast_mul(&mask.eye)?,
            )?;
        out.broadcast_mul(&mask.pair)
    }
}

/// The permutation-invariant readout from pair tensors `[B, N, N, C_in]` to jet features
/// `[B, C_out]`: trace mean and total mean (scaled by `(n / n_avg)^alpha`), mixed
/// linearly. Parameters `weight` `[2, C_in, C_out]`, `bias` `[C_out]`, `alphas`
/// `[2, C_in]`.
#[derive(Debug, Clone)]
pub struct Eq2to0 {
    weight: Tensor,
    bias: Tensor,
    alphas: Tensor,
}

impl Eq2to0 {
    /// Builds (or loads) the layer under `vb`.
    ///
    /// # Errors
    /// Missing or mis-shaped tensors.
    pub fn new(c_in: usize, c_out: usize, vb: &VarBuilder) -> Result<Self> {
        let bound = 1.0 / ((2 * c_in) as f64).sqrt();
        Ok(Self {
            weight: vb.get_with_hints(
                (2, c_in, c_out),
                "weight",
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )?,
            bias: vb.get_with_hints(c_out, "bias", Init::Const(0.0))?,
            alphas: vb.get_with_hints((2, c_in), "alphas", Init::Const(0.0))?,
        })
    }

    /// Applies the readout to `t` (zero outside the mask).
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward(&self, t: &Tensor, mask: &PairMask) -> Result<Tensor> {
        let agg = PairAggregates::new(t, mask)?;
        let trace = (agg.trace * mask.scale(&self.alphas.get(0)?)?)?;
        let total = (agg.total * mask.scale(&self.alphas.get(1)?)?)?;
        (mix(&trace, &self.weight, 0)? + mix(&total, &self.weight, 1)?)?.broadcast_add(&self.bias)
    }
}

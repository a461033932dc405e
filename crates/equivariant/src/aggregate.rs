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

use candle_core::{DType, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use noether_quant::{fake_quantize, FixedType, LayerPrecision};

use crate::dense::{add_rows, PairRows};
use crate::fused::PairEquivariant;

/// Masks, counts and row indices shared by the layers of one forward pass. Pair
/// tensors are handled internally as `[B N N, C]` rows (row `(b, i, j)`), node tensors
/// as `[B N, C]`: reductions become `index_add` and broadcasts become `index_select`,
/// whose backward passes are contiguous row loops (see [`crate::dense`]).
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
    rows: PairRows,
    /// Row of (b, j, i) for every row (b, i, j).
    transposed: Tensor,
    /// Row of (b, i, i) for every node (b, i).
    diagonal: Tensor,
    /// Jet of every node, `[B N]`.
    node_jet: Tensor,
    /// Jet of every pair row, `[B N N]`.
    row_jet: Tensor,
    /// Pair mask as a column `[B N N, 1]`.
    pair_rows: Tensor,
    /// 1 on diagonal rows, `[B N N, 1]`.
    eye_rows: Tensor,
    /// n of each node's jet, `[B N, 1]`.
    node_count: Tensor,
    /// The typical number of real nodes.
    n_avg: f64,
}

impl PairMask {
    /// Builds the masks from a node mask `[B, N]`; `n_avg` is the typical number of real
    /// nodes (the scale of the `(n / n_avg)^alpha` factors).
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn new(node: &Tensor, n_avg: f64) -> Result<Self> {
        let (batch, n) = node.dims2()?;
        let device = node.device();
        let pair = node
            .unsqueeze(2)?
            .broadcast_mul(&node.unsqueeze(1)?)?
            .unsqueeze(D::Minus1)?;
        let eye = Tensor::eye(n, node.dtype(), device)?
            .unsqueeze(0)?
            .unsqueeze(D::Minus1)?;
        let count = node.sum_keepdim(1)?.maximum(1.0)?;
        let log_ratio = (count.clone() / n_avg)?.log()?;
        let index = |v: Vec<u32>| {
            let len = v.len();
            Tensor::from_vec(v, len, device)
        };
        let mut transposed = Vec::with_capacity(batch * n * n);
        let mut row_jet = Vec::with_capacity(batch * n * n);
        for b in 0..batch {
            for i in 0..n {
                for j in 0..n {
                    transposed.push(((b * n + j) * n + i) as u32);
                    row_jet.push(b as u32);
                }
            }
        }
        let diagonal = (0..batch * n).map(|k| (k * n + k % n) as u32).collect();
        let node_jet = (0..batch * n).map(|k| (k / n) as u32).collect();
        let node_jet = index(node_jet)?;
        let node_count = count.index_select(&node_jet, 0)?;
        Ok(Self {
            rows: PairRows::new(batch, n, device)?,
            transposed: index(transposed)?,
            diagonal: index(diagonal)?,
            row_jet: index(row_jet)?,
            node_jet,
            pair_rows: pair.reshape((batch * n * n, 1))?,
            eye_rows: eye
                .broadcast_as((batch, n, n, 1))?
                .reshape((batch * n * n, 1))?,
            node_count,
            n_avg,
            node: node.clone(),
            pair,
            eye,
            log_ratio,
            count,
        })
    }

    /// The `(n / n_avg)^alpha` factor for exponents `alpha` `[C]`: `[B, C]`.
    fn scale(&self, alpha: &Tensor) -> Result<Tensor> {
        self.log_ratio.matmul(&alpha.unsqueeze(0)?)?.exp()
    }

    /// Sums pair rows `[R, C]` into their jets: `[B, C]`.
    fn jet_sum(&self, rows: &Tensor, jets: usize) -> Result<Tensor> {
        Tensor::zeros((jets, rows.dim(1)?), rows.dtype(), rows.device())?.index_add(
            &self.row_jet,
            rows,
            0,
        )
    }
}

/// The rank-reducing aggregates of a masked pair tensor `t` `[B, N, N, C]` (zero outside
/// the mask): diagonal d_i = t_ii, row mean r_i = mean_k t_ik, column mean
/// c_i = mean_k t_ki (all `[B N, C]`, the nodes of all jets stacked), trace mean
/// tr = mean_k t_kk and total mean s = mean_kl t_kl (`[B, C]`). Means are unscaled.
#[derive(Debug, Clone)]
pub struct PairAggregates {
    /// Diagonal, `[B N, C]`.
    pub diag: Tensor,
    /// Row means, `[B N, C]`.
    pub row: Tensor,
    /// Column means, `[B N, C]`.
    pub col: Tensor,
    /// Trace mean, `[B, C]`.
    pub trace: Tensor,
    /// Total mean, `[B, C]`.
    pub total: Tensor,
}

impl PairAggregates {
    /// Computes the aggregates of `t` `[B, N, N, C]` (which must already be zero outside
    /// `mask.pair`).
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn new(t: &Tensor, mask: &PairMask) -> Result<Self> {
        let (b, n, _, c) = t.dims4()?;
        Self::of_rows(&t.reshape((b * n * n, c))?, mask, b)
    }

    /// The aggregates of a pair tensor given as rows `[B N N, C]` (node tensors come out
    /// as `[B N, C]`).
    fn of_rows(t: &Tensor, mask: &PairMask, batch: usize) -> Result<Self> {
        let sums = Self::sums_of_rows(t, mask, batch)?;
        Ok(Self {
            row: sums.row.broadcast_div(&mask.node_count)?,
            col: sums.col.broadcast_div(&mask.node_count)?,
            trace: sums.trace.broadcast_div(&mask.count)?,
            total: sums.total.broadcast_div(&mask.count.sqr()?)?,
            diag: sums.diag,
        })
    }

    /// The same with sums in place of means (what the fixed-point form scales).
    fn sums_of_rows(t: &Tensor, mask: &PairMask, batch: usize) -> Result<Self> {
        let nodes = mask.node_count.dim(0)?;
        let diag = t.index_select(&mask.diagonal, 0)?;
        let row = mask.rows.sum_over_second(t, nodes)?;
        let col = Tensor::zeros((nodes, t.dim(1)?), t.dtype(), t.device())?.index_add(
            &mask.rows.second,
            t,
            0,
        )?;
        let trace = Tensor::zeros((batch, t.dim(1)?), t.dtype(), t.device())?.index_add(
            &mask.node_jet,
            &diag,
            0,
        )?;
        let total = mask.jet_sum(t, batch)?;
        Ok(Self {
            diag,
            row,
            col,
            trace,
            total,
        })
    }

    /// The fixed-point aggregates: sums times `2^-shift` (the total `2^-2 shift`), each
    /// cast to the pool type; the diagonal as it is.
    fn quantized(t: &Tensor, mask: &PairMask, batch: usize, q: &PairQuant) -> Result<Self> {
        let sums = Self::sums_of_rows(t, mask, batch)?;
        let scale = (-f64::from(q.shift)).exp2();
        let cast = |x: Tensor, s: f64| fake_quantize(&(x * s)?, q.pool);
        Ok(Self {
            row: cast(sums.row, scale)?,
            col: cast(sums.col, scale)?,
            trace: cast(sums.trace, scale)?,
            total: cast(sums.total, scale * scale)?,
            diag: sums.diag,
        })
    }
}

/// The fixed-point arithmetic of an equivariant layer under quantisation: its
/// precisions, the aggregates' type and scale, and whether a ReLU follows (see
/// `noether_quant::PairStage` for the semantics, which the integer engine shares).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairQuant {
    /// Weights, biases, accumulator and result types.
    pub precision: LayerPrecision,
    /// The type every aggregate is cast to.
    pub pool: FixedType,
    /// Aggregates are sums times `2^-shift` (the total `2^-2 shift`).
    pub shift: u32,
    /// Whether a ReLU follows the result cast.
    pub relu: bool,
}

impl PairQuant {
    /// The accumulator and result casts of a finished sum, then the ReLU.
    fn finish(&self, y: &Tensor) -> Result<Tensor> {
        let mut y = y.clone();
        if let Some(accum) = self.precision.accum {
            y = fake_quantize(&y, accum)?;
        }
        y = fake_quantize(&y, self.precision.result)?;
        if self.relu {
            y = y.relu()?;
        }
        Ok(y)
    }

    /// `x` in f64 rounded to `ty` (a layer's parameters under quantisation).
    fn cast(x: &Tensor, ty: FixedType) -> Result<Tensor> {
        fake_quantize(&x.to_dtype(DType::F64)?, ty)
    }
}

/// A layer's parameters rounded to their types, in f64: weight, bias and (2 -> 2 only)
/// diagonal bias.
#[derive(Debug, Clone)]
pub struct QuantizedParameters {
    /// `[ops, C_in, C_out]`.
    pub weight: Tensor,
    /// `[C_out]`.
    pub bias: Tensor,
    /// `[C_out]`, for 2 -> 2 layers.
    pub diag_bias: Option<Tensor>,
}

/// Basis weights `[ops, C_in, C_out]`, uniform in +-1/sqrt(ops C_in) (PyTorch's Linear
/// bound for the concatenated basis outputs).
fn basis_weight(vb: &VarBuilder, ops: usize, c_in: usize, c_out: usize) -> Result<Tensor> {
    let bound = 1.0 / ((ops * c_in) as f64).sqrt();
    let init = Init::Uniform {
        lo: -bound,
        up: bound,
    };
    vb.get_with_hints((ops, c_in, c_out), "weight", init)
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
        Ok(Self {
            weight: basis_weight(vb, 15, c_in, c_out)?,
            bias: vb.get_with_hints(c_out, "bias", Init::Const(0.0))?,
            diag_bias: vb.get_with_hints(c_out, "diag_bias", Init::Const(0.0))?,
            alphas: vb.get_with_hints((4, c_in), "alphas", Init::Const(0.0))?,
            c_out,
        })
    }

    /// Output channels.
    pub fn c_out(&self) -> usize {
        self.c_out
    }

    /// Applies the layer to `t` `[B, N, N, C_in]` (zero outside the mask); the output
    /// `[B, N, N, C_out]` is masked. On the CPU in f32 and f64 the layer runs as one
    /// fused kernel ([`crate::fused::PairEquivariant`]), elsewhere as
    /// [`Self::forward_composed`]; the two agree to rounding.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward(&self, t: &Tensor, mask: &PairMask) -> Result<Tensor> {
        self.forward_activated(t, mask, None)
    }

    /// [`Self::forward`] followed by a LeakyReLU with negative slope `slope` when given
    /// (fused into the kernel on the CPU).
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward_activated(
        &self,
        t: &Tensor,
        mask: &PairMask,
        slope: Option<f64>,
    ) -> Result<Tensor> {
        self.forward_dropped(t, mask, slope, None)
    }

    /// [`Self::forward_activated`] with the output multiplied by a constant dropout mask
    /// `[B, N, N, C_out]` when given ([`crate::dropout_mask`]; in the kernel on the CPU,
    /// through [`crate::fused::mask_product`] elsewhere; no gradient flows to the mask).
    ///
    /// # Errors
    /// Shape mismatches, a dropout mask of another shape.
    pub fn forward_dropped(
        &self,
        t: &Tensor,
        mask: &PairMask,
        slope: Option<f64>,
        dropout: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, n, _, c) = t.dims4()?;
        let fused = t.device().is_cpu()
            && matches!(t.dtype(), DType::F32 | DType::F64)
            && mask.node.dtype() == t.dtype();
        if !fused {
            let out = self.forward_composed(t, mask)?;
            let out = match slope {
                Some(slope) => candle_nn::ops::leaky_relu(&out, slope)?,
                None => out,
            };
            return match dropout {
                Some(d) => crate::fused::mask_product(&out, d),
                None => Ok(out),
            };
        }
        let op = PairEquivariant {
            batch: b,
            nodes: n,
            c_in: c,
            c_out: self.c_out,
            n_avg: mask.n_avg,
            leaky_slope: slope,
        };
        let params =
            PairEquivariant::pack(&self.weight, &self.bias, &self.diag_bias, &self.alphas)?;
        // `[B, N, N, C]` in and out: no reshape nodes in candle's graph (each would cost a
        // zero-filled buffer and a sum of the whole gradient in the backward).
        op.apply_dropped(t, &mask.node, &params, dropout)
            .map_err(candle_core::Error::wrap)
    }

    /// The layer composed from candle operations, on any device and dtype (the
    /// reference the fused kernel is tested against).
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward_composed(&self, t: &Tensor, mask: &PairMask) -> Result<Tensor> {
        let (b, n, _, c) = t.dims4()?;
        let out = self.forward_rows(&t.reshape((b * n * n, c))?, mask, b)?;
        out.reshape((b, n, n, self.c_out))
    }

    /// The layer on pair rows `[B N N, C_in]` -> `[B N N, C_out]`.
    fn forward_rows(&self, t: &Tensor, mask: &PairMask, batch: usize) -> Result<Tensor> {
        let agg = PairAggregates::of_rows(t, mask, batch)?;
        let scale = |k: usize| mask.scale(&self.alphas.get(k)?);
        let per_node = |s: Tensor| s.index_select(&mask.node_jet, 0);
        let scaled = PairAggregates {
            row: (agg.row * per_node(scale(0)?)?)?,
            col: (agg.col * per_node(scale(1)?)?)?,
            trace: (agg.trace * scale(2)?)?,
            total: (agg.total * scale(3)?)?,
            diag: agg.diag,
        };
        combine(
            t,
            &scaled,
            (&self.weight, &self.bias, &self.diag_bias),
            mask,
        )
    }

    /// The weight, bias and diagonal bias rounded to `p`'s types, in f64.
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn quantized_parameters(&self, p: LayerPrecision) -> Result<QuantizedParameters> {
        Ok(QuantizedParameters {
            weight: PairQuant::cast(&self.weight, p.weight)?,
            bias: PairQuant::cast(&self.bias, p.bias)?,
            diag_bias: Some(PairQuant::cast(&self.diag_bias, p.bias)?),
        })
    }

    /// The fixed-point layer on `t` `[B, N, N, C_in]` (f64, values of the previous
    /// layer's result type, zero outside the mask): aggregates as [`PairQuant`] defines
    /// them (the learnable exponents are not used), exact sums, then the casts.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward_quantized(&self, t: &Tensor, mask: &PairMask, q: &PairQuant) -> Result<Tensor> {
        let (b, n, _, c) = t.dims4()?;
        let rows = t.reshape((b * n * n, c))?;
        let agg = PairAggregates::quantized(&rows, mask, b, q)?;
        let p = self.quantized_parameters(q.precision)?;
        let diag_bias = p
            .diag_bias
            .as_ref()
            .expect("a 2 -> 2 layer has a diagonal bias");
        let y = combine(&rows, &agg, (&p.weight, &p.bias, diag_bias), mask)?;
        q.finish(&y)?
            .broadcast_mul(&mask.pair_rows)?
            .reshape((b, n, n, self.c_out))
    }
}

/// The 15 basis operations of a 2 -> 2 layer on pair rows `t` `[B N N, C_in]` with their
/// (scaled) aggregates, mixed by `weight` `[15, C_in, C_out]` plus bias and diagonal bias:
/// `[B N N, C_out]`, masked.
fn combine(
    t: &Tensor,
    agg: &PairAggregates,
    (w, bias, diag_bias): (&Tensor, &Tensor, &Tensor),
    mask: &PairMask,
) -> Result<Tensor> {
    let per_node = |s: Tensor| s.index_select(&mask.node_jet, 0);
    let (d, row, col) = (&agg.diag, &agg.row, &agg.col);
    let full = t.matmul(&w.get(0)?)?;
    let transposed = t.matmul(&w.get(1)?)?.index_select(&mask.transposed, 0)?;
    let node_i = (mix(d, w, 3)? + mix(row, w, 5)? + mix(col, w, 6)?)?;
    let node_j = (mix(d, w, 4)? + mix(row, w, 7)? + mix(col, w, 8)?)?;
    let node_diag = (mix(d, w, 2)? + mix(row, w, 9)? + mix(col, w, 10)?)?;
    let jet = add_rows(&(mix(&agg.trace, w, 11)? + mix(&agg.total, w, 13)?)?, bias)?;
    let jet_diag = add_rows(
        &(mix(&agg.trace, w, 12)? + mix(&agg.total, w, 14)?)?,
        diag_bias,
    )?;
    let diag = (node_diag + per_node(jet_diag)?)?;
    let out = ((full + transposed)?
        + mask.rows.gather_first(&node_i)?
        + mask.rows.gather_second(&node_j)?
        + jet.index_select(&mask.row_jet, 0)?
        + mask
            .rows
            .gather_first(&diag)?
            .broadcast_mul(&mask.eye_rows)?)?;
    out.broadcast_mul(&mask.pair_rows)
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
        Ok(Self {
            weight: basis_weight(vb, 5, c_in, c_out)?,
            bias: vb.get_with_hints(c_out, "bias", Init::Const(0.0))?,
        })
    }

    /// Applies the layer to node features `l` `[B, N, C_in]`; the output is masked.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward(&self, l: &Tensor, mask: &PairMask) -> Result<Tensor> {
        let l = l.broadcast_mul(&mask.node.unsqueeze(D::Minus1)?)?;
        let mean = l.sum(1)?.broadcast_div(&mask.count)?; // [B, C_in]
        node_to_pair(&l, &mean, &self.weight, &self.bias, mask)
    }

    /// The weight and bias rounded to `p`'s types, in f64.
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn quantized_parameters(&self, p: LayerPrecision) -> Result<QuantizedParameters> {
        Ok(QuantizedParameters {
            weight: PairQuant::cast(&self.weight, p.weight)?,
            bias: PairQuant::cast(&self.bias, p.bias)?,
            diag_bias: None,
        })
    }

    /// The fixed-point layer on node features `l` (f64): the mean over nodes becomes
    /// the sum times `2^-shift` cast to the pool type, then exact sums and the casts.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward_quantized(&self, l: &Tensor, mask: &PairMask, q: &PairQuant) -> Result<Tensor> {
        let l = l.broadcast_mul(&mask.node.unsqueeze(D::Minus1)?)?;
        let sum = fake_quantize(&(l.sum(1)? * (-f64::from(q.shift)).exp2())?, q.pool)?;
        let p = self.quantized_parameters(q.precision)?;
        q.finish(&node_to_pair(&l, &sum, &p.weight, &p.bias, mask)?)?
            .broadcast_mul(&mask.pair)
    }
}

/// The five basis operations of a 1 -> 2 layer on masked node features `l`
/// `[B, N, C_in]` and their aggregate `[B, C_in]`, mixed by `w` plus `bias`; masked.
fn node_to_pair(
    l: &Tensor,
    aggregate: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    mask: &PairMask,
) -> Result<Tensor> {
    let (b, n, c_out) = (l.dim(0)?, l.dim(1)?, bias.dim(0)?);
    let diag = (mix(l, w, 0)?
        + mix(aggregate, w, 4)?
            .unsqueeze(1)?
            .broadcast_as((b, n, c_out))?)?;
    let out = mix(l, w, 1)?
        .unsqueeze(2)?
        .broadcast_add(&mix(l, w, 2)?.unsqueeze(1)?)?
        .broadcast_add(
            &mix(aggregate, w, 3)?
                .broadcast_add(bias)?
                .unsqueeze(1)?
                .unsqueeze(1)?,
        )?
        .broadcast_add(
            &diag
                .unsqueeze(2)?
                .broadcast_as((b, n, n, c_out))?
                .broadcast_mul(&mask.eye)?,
        )?;
    out.broadcast_mul(&mask.pair)
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
        Ok(Self {
            weight: basis_weight(vb, 2, c_in, c_out)?,
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

    /// The weight and bias rounded to `p`'s types, in f64.
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn quantized_parameters(&self, p: LayerPrecision) -> Result<QuantizedParameters> {
        Ok(QuantizedParameters {
            weight: PairQuant::cast(&self.weight, p.weight)?,
            bias: PairQuant::cast(&self.bias, p.bias)?,
            diag_bias: None,
        })
    }

    /// The fixed-point readout of `t` (f64, zero outside the mask): trace and total as
    /// [`PairQuant`] defines them, exact sums, then the casts: `[B, C_out]`.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward_quantized(&self, t: &Tensor, mask: &PairMask, q: &PairQuant) -> Result<Tensor> {
        let (b, n, _, c) = t.dims4()?;
        let agg = PairAggregates::quantized(&t.reshape((b * n * n, c))?, mask, b, q)?;
        let p = self.quantized_parameters(q.precision)?;
        let y = (mix(&agg.trace, &p.weight, 0)? + mix(&agg.total, &p.weight, 1)?)?
            .broadcast_add(&p.bias)?;
        q.finish(&y)
    }
}

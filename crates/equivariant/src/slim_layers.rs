//! The building blocks of L-GATr-slim, as `lgatr/layers/slim_layers.py` of the `lgatr` 2.0
//! package defines them: [`SlimLinear`], [`SlimRmsNorm`], [`SlimGlu`],
//! [`SlimSelfAttention`], [`SlimMlp`] and [`SlimBlock`], with the package's parameter names.
//!
//! Every layer acts on Lorentz vectors `[..., 4, v_channels]` (channel-last, as the package
//! keeps them inside the network) and scalars `[..., s_channels]`. Vectors and scalars mix
//! only through Minkowski inner products (the gates, the attention logits) and the joint
//! norm, so every layer is Lorentz equivariant.

use candle_core::{Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::attention::masked_attention;
use crate::linear::Linear;
use crate::mode::{dropout, Mode};
use crate::slim_ops::{
    metric_column, minkowski_channels, quantized_attention, quantized_gates, quantized_norm,
    AttentionQuant, GateQuant, NormQuant,
};
use noether_quant::{fake_quantize, FixedType};

type CResult<T> = candle_core::Result<T>;

/// `x [..., in] -> [..., out]` through a 2-d matrix product (candle's batched broadcast
/// is slower for tall inputs).
fn rows(x: &Tensor, layer: &Linear) -> CResult<Tensor> {
    let dims = x.dims().to_vec();
    let (lead, last) = dims.split_at(dims.len() - 1);
    let n: usize = lead.iter().product();
    let out = layer.forward_rows(&x.reshape((n, last[0]))?)?;
    let mut shape = lead.to_vec();
    shape.push(out.dim(1)?);
    out.reshape(shape)
}

/// Zeros shaped like `x` with `channels` in the last dimension: the output of a map from
/// or to no channels.
fn zeros_with_channels(x: &Tensor, channels: usize) -> CResult<Tensor> {
    let mut shape = x.dims().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = channels;
    }
    Tensor::zeros(shape, x.dtype(), x.device())
}

/// An element-wise nonlinearity of the package's `get_nonlinearity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Nonlinearity {
    /// max(0, x).
    Relu,
    /// 1 / (1 + e^-x).
    Sigmoid,
    /// tanh(x).
    Tanh,
    /// GELU in its tanh approximation (the package's `approximate="tanh"`).
    #[default]
    Gelu,
    /// x sigmoid(x).
    Silu,
}

impl Nonlinearity {
    /// Applies it.
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn apply(self, x: &Tensor) -> CResult<Tensor> {
        match self {
            Self::Relu => x.relu(),
            Self::Sigmoid => candle_nn::ops::sigmoid(x),
            Self::Tanh => x.tanh(),
            Self::Gelu => crate::fused::gelu_tanh(x),
            Self::Silu => x.silu(),
        }
    }
}

/// `SlimLinear`: vector channels mixed by one matrix `weight_v` `[out_v, in_v]` (the same
/// for the four components, so it commutes with every Lorentz transformation), scalars by
/// an ordinary linear layer `linear_s` (absent when either side has no scalars).
#[derive(Debug, Clone)]
pub struct SlimLinear {
    /// `weight_v` as a bias-free layer acting on the channel axis of every component.
    pub(crate) linear_v: Linear,
    pub(crate) linear_s: Option<Linear>,
    out_s: usize,
}

impl SlimLinear {
    /// `in_v -> out_v` vectors and `in_s -> out_s` scalars under `vb`, initialised as the
    /// package does: uniform in +-factor / sqrt(fan_in), biases zero, factor 1 (`default`)
    /// or 0.1 (`small`, the attention projections).
    ///
    /// # Errors
    /// Missing or mis-shaped tensors.
    pub fn new(
        (in_v, out_v): (usize, usize),
        (in_s, out_s): (usize, usize),
        bias: bool,
        small: bool,
        vb: &VarBuilder,
    ) -> CResult<Self> {
        let factor = if small { 0.1 } else { 1.0 };
        let uniform = |fan_in: usize| {
            let bound = factor / (fan_in.max(1) as f64).sqrt();
            Init::Uniform {
                lo: -bound,
                up: bound,
            }
        };
        let weight_v = vb.get_with_hints((out_v, in_v), "weight_v", uniform(in_v))?;
        let linear_s = if in_s > 0 && out_s > 0 {
            let vs = vb.pp("linear_s");
            let weight = vs.get_with_hints((out_s, in_s), "weight", uniform(in_s))?;
            let bias = bias
                .then(|| vs.get_with_hints(out_s, "bias", Init::Const(0.0)))
                .transpose()?;
            Some(Linear::from(candle_nn::Linear::new(weight, bias)))
        } else {
            None
        };
        Ok(Self {
            linear_v: Linear::from(candle_nn::Linear::new(weight_v, None)),
            linear_s,
            out_s,
        })
    }

    /// `([..., 4, in_v], [..., in_s]) -> ([..., 4, out_v], [..., out_s])`.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward(&self, v: &Tensor, s: &Tensor) -> CResult<(Tensor, Tensor)> {
        let (in_v, out_v) = self.linear_v.dims();
        let v_out = if out_v == 0 || in_v == 0 {
            zeros_with_channels(v, out_v)?
        } else {
            rows(v, &self.linear_v)?
        };
        let s_out = match &self.linear_s {
            Some(layer) => rows(s, layer)?,
            None => zeros_with_channels(s, self.out_s)?,
        };
        Ok((v_out, s_out))
    }

    /// The scalar layer, for LoRA and the layer listing.
    pub fn linear_s_mut(&mut self) -> Option<&mut Linear> {
        self.linear_s.as_mut()
    }
}

/// `SlimRMSNorm`: vectors and scalars divided by one root mean square per item, where a
/// vector contributes |v^2| (its Minkowski square can be negative), with optional learnable
/// gains `weight_v`, `weight_s` and the package's epsilon 0.01.
#[derive(Debug, Clone)]
pub struct SlimRmsNorm {
    /// Vector and scalar channels.
    pub(crate) channels: (usize, usize),
    pub(crate) weights: Option<(Tensor, Tensor)>,
    /// The fixed-point form (quantisation-aware training).
    pub(crate) quant: Option<NormQuant>,
}

/// The package's `SlimRMSNorm` epsilon.
pub(crate) const NORM_EPSILON: f64 = 0.01;

impl SlimRmsNorm {
    /// With gains (`weight_v` `[v]`, `weight_s` `[s]`, initialised to one) when `affine`.
    ///
    /// # Errors
    /// Missing or mis-shaped tensors.
    pub fn new(v: usize, s: usize, affine: bool, vb: &VarBuilder) -> CResult<Self> {
        let weights = if affine {
            Some((
                vb.get_with_hints(v, "weight_v", Init::Const(1.0))?,
                vb.get_with_hints(s, "weight_s", Init::Const(1.0))?,
            ))
        } else {
            None
        };
        Ok(Self {
            channels: (v, s),
            weights,
            quant: None,
        })
    }

    /// Vector and scalar channels.
    pub fn channels(&self) -> (usize, usize) {
        self.channels
    }

    /// Normalises `([..., 4, v], [..., s])`.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward(&self, v: &Tensor, s: &Tensor) -> CResult<(Tensor, Tensor)> {
        if let Some(q) = &self.quant {
            return quantized_norm(v, s, self.weights.as_ref(), q);
        }
        let (norm_v, norm_s) = rms_factors(v, s)?;
        let (v, s) = (v.broadcast_mul(&norm_v)?, s.broadcast_mul(&norm_s)?);
        match &self.weights {
            Some((wv, ws)) => Ok((v.broadcast_mul(wv)?, s.broadcast_mul(ws)?)),
            None => Ok((v, s)),
        }
    }
}

/// The factor 1 / sqrt(mean(|v^2|, s^2) + eps) shaped for vectors `[..., 1, 1]` and for
/// scalars `[..., 1]`.
fn rms_factors(v: &Tensor, s: &Tensor) -> CResult<(Tensor, Tensor)> {
    let channels = v.dim(D::Minus1)? + s.dim(D::Minus1)?;
    let v_sq = minkowski_channels(v, v)?.abs()?.sum(D::Minus1)?;
    let s_sq = s.sqr()?.sum_keepdim(D::Minus1)?;
    let mean = ((v_sq + s_sq)? / channels as f64)?;
    let norm_s = (mean + NORM_EPSILON)?.sqrt()?.recip()?;
    Ok((norm_s.unsqueeze(D::Minus1)?, norm_s))
}

/// `SlimGLU`: one [`SlimLinear`] to three vector and two scalar blocks; vectors are
/// gated by a nonlinearity of the Minkowski product of two of their blocks (times 1/2),
/// scalars by a nonlinearity of one of theirs.
#[derive(Debug, Clone)]
pub struct SlimGlu {
    pub(crate) linear: SlimLinear,
    pub(crate) act_s: Nonlinearity,
    pub(crate) act_v: Nonlinearity,
    /// The fixed-point form (quantisation-aware training).
    pub(crate) quant: Option<GateQuant>,
}

impl SlimGlu {
    /// `in -> out` channels, under `vb.pp("linear")`.
    ///
    /// # Errors
    /// Missing or mis-shaped tensors.
    pub fn new(
        v: (usize, usize),
        s: (usize, usize),
        act_s: Nonlinearity,
        act_v: Nonlinearity,
        vb: &VarBuilder,
    ) -> CResult<Self> {
        let linear = SlimLinear::new(
            (v.0, 3 * v.1),
            (s.0, 2 * s.1),
            true,
            false,
            &vb.pp("linear"),
        )?;
        Ok(Self {
            linear,
            act_s,
            act_v,
            quant: None,
        })
    }

    /// Applies the unit.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward(&self, v: &Tensor, s: &Tensor) -> CResult<(Tensor, Tensor)> {
        let (v_full, s_full) = self.linear.forward(v, s)?;
        let ov = v_full.dim(D::Minus1)? / 3;
        let os = s_full.dim(D::Minus1)? / 2;
        let pre = v_full.narrow(D::Minus1, 0, ov)?;
        if let Some(q) = &self.quant {
            return quantized_gates(&v_full, &s_full, q);
        }
        let gates = (minkowski_channels(
            &v_full.narrow(D::Minus1, ov, ov)?,
            &v_full.narrow(D::Minus1, 2 * ov, ov)?,
        )? * 0.5)?;
        let v_out = self.act_v.apply(&gates)?.broadcast_mul(&pre)?;
        let s_gates = s_full.narrow(D::Minus1, os, os)?;
        let s_out = (self.act_s.apply(&s_gates)? * s_full.narrow(D::Minus1, 0, os)?)?;
        Ok((v_out, s_out))
    }

    /// The linear layer inside.
    pub fn linear_mut(&mut self) -> &mut SlimLinear {
        &mut self.linear
    }
}

/// `SlimDropout`: one mask per (item, vector channel), shared by the four components (the
/// package's `dropout1d`), and ordinary dropout on scalars. Identity in evaluation.
///
/// # Errors
/// Only from the tensor backend.
pub fn slim_dropout(v: &Tensor, s: &Tensor, p: f64, mode: &mut Mode) -> CResult<(Tensor, Tensor)> {
    if !mode.is_train() || p <= 0.0 {
        return Ok((v.clone(), s.clone()));
    }
    let mut shape = v.dims().to_vec();
    let n = shape.len();
    shape[n - 2] = 1;
    let mask = dropout(&Tensor::ones(shape, v.dtype(), v.device())?, p, mode)?;
    Ok((v.broadcast_mul(&mask)?, dropout(s, p, mode)?))
}

/// `SlimSelfAttention`: queries, keys and values from one [`SlimLinear`] (no bias, small
/// initialisation), each head's q, k, v normalised by a non-affine [`SlimRmsNorm`], logits
/// `<q_v, k_v>_Minkowski + q_s . k_s` over `sqrt(4 hv + hs)`, padded keys masked, heads
/// merged by a second [`SlimLinear`]. Per head: `hv = max(attn_ratio v / heads, 1)` vector
/// and `hs = max(attn_ratio s / heads, 4)` scalar channels (the package's rule).
#[derive(Debug, Clone)]
pub struct SlimSelfAttention {
    pub(crate) linear_in: SlimLinear,
    pub(crate) linear_out: SlimLinear,
    pub(crate) heads: usize,
    pub(crate) hv: usize,
    pub(crate) hs: usize,
    dropout: Option<f64>,
    /// The fixed-point form (quantisation-aware training).
    pub(crate) quant: Option<AttentionQuant>,
}

impl SlimSelfAttention {
    /// Channels per head: the package's rule.
    pub fn head_channels(v: usize, s: usize, heads: usize, attn_ratio: usize) -> (usize, usize) {
        let heads = heads.max(1);
        (
            (attn_ratio * v / heads).max(1),
            (attn_ratio * s / heads).max(4),
        )
    }

    /// The layer for `v` vector and `s` scalar channels.
    ///
    /// # Errors
    /// Missing or mis-shaped tensors.
    pub fn new(
        (v, s): (usize, usize),
        heads: usize,
        attn_ratio: usize,
        dropout: Option<f64>,
        vb: &VarBuilder,
    ) -> CResult<Self> {
        let (hv, hs) = Self::head_channels(v, s, heads, attn_ratio);
        let linear_in = SlimLinear::new(
            (v, 3 * hv * heads),
            (s, 3 * hs * heads),
            false,
            true,
            &vb.pp("linear_in"),
        )?;
        let linear_out = SlimLinear::new(
            (hv * heads, v),
            (hs * heads, s),
            true,
            true,
            &vb.pp("linear_out"),
        )?;
        Ok(Self {
            linear_in,
            linear_out,
            heads,
            hv,
            hs,
            dropout,
            quant: None,
        })
    }

    /// Attention over the items of `v` `[B, N, 4, C]`, `s` `[B, N, S]` with the key bias
    /// `[B, 1, 1, N]` of [`crate::attention::key_bias`].
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward(
        &self,
        v: &Tensor,
        s: &Tensor,
        bias: &Tensor,
        mode: &mut Mode,
    ) -> CResult<(Tensor, Tensor)> {
        let (b, n, _, _) = v.dims4()?;
        let (h, hv, hs) = (self.heads, self.hv, self.hs);
        let (qkv_v, qkv_s) = self.linear_in.forward(v, s)?;
        // Output channel (t, c, head) with the head fastest, as the package unflattens.
        let qkv_v = qkv_v
            .reshape((b, n, 4, 3, hv, h))?
            .permute(vec![3, 0, 5, 1, 2, 4])?
            .contiguous()?; // [3, B, H, N, 4, hv]
        let qkv_s = qkv_s
            .reshape((b, n, 3, hs, h))?
            .permute(vec![2, 0, 4, 1, 3])?
            .contiguous()?; // [3, B, H, N, hs]
        let (qkv_v, qkv_s) = if let Some(q) = &self.quant {
            quantized_norm(&qkv_v, &qkv_s, None, &q.norm)?
        } else {
            let (norm_v, norm_s) = rms_factors(&qkv_v, &qkv_s)?;
            (qkv_v.broadcast_mul(&norm_v)?, qkv_s.broadcast_mul(&norm_s)?)
        };
        let metric = metric_column(v.dtype(), v.device())?;
        let part = |t: usize, lower: bool| -> CResult<Tensor> {
            let mut tv = qkv_v.get(t)?;
            if lower {
                tv = tv.broadcast_mul(&metric)?;
            }
            Tensor::cat(&[tv.reshape((b, h, n, 4 * hv))?, qkv_s.get(t)?], D::Minus1)
        };
        let (q, k, values) = (part(0, true)?, part(1, false)?, part(2, false)?);
        let out = match &self.quant {
            Some(quant) => quantized_attention(&q, &k, &values, bias, quant)?,
            None => masked_attention(&q, &k, &values, bias)?,
        };
        let h_v = out
            .narrow(D::Minus1, 0, 4 * hv)?
            .reshape((b, h, n, 4, hv))?
            .permute(vec![0, 2, 3, 1, 4])?
            .reshape((b, n, 4, h * hv))?;
        let h_s = out
            .narrow(D::Minus1, 4 * hv, hs)?
            .permute(vec![0, 2, 1, 3])?
            .reshape((b, n, h * hs))?;
        let (v_out, s_out) = self.linear_out.forward(&h_v, &h_s)?;
        match self.dropout {
            Some(p) => slim_dropout(&v_out, &s_out, p, mode),
            None => Ok((v_out, s_out)),
        }
    }

    /// The two linear layers (`linear_in`, `linear_out`).
    pub fn linears_mut(&mut self) -> [(&'static str, &mut SlimLinear); 2] {
        [
            ("linear_in", &mut self.linear_in),
            ("linear_out", &mut self.linear_out),
        ]
    }
}

/// `SlimMLP`: `num_layers - 1` [`SlimGlu`]s widening by `mlp_ratio` (each followed by
/// [`slim_dropout`] when dropout is set) and a final [`SlimLinear`] back to the width.
#[derive(Debug, Clone)]
pub struct SlimMlp {
    pub(crate) glus: Vec<SlimGlu>,
    pub(crate) last: SlimLinear,
    dropout: Option<f64>,
}

impl SlimMlp {
    /// The MLP, its layers under `vb.pp("layers.{k}")` (dropout layers count in `k`, as in
    /// the package's `ModuleList`).
    ///
    /// # Errors
    /// Missing or mis-shaped tensors.
    pub fn new(
        (v, s): (usize, usize),
        (act_s, act_v): (Nonlinearity, Nonlinearity),
        mlp_ratio: usize,
        num_layers: usize,
        dropout: Option<f64>,
        vb: &VarBuilder,
    ) -> CResult<Self> {
        let stride = 1 + usize::from(dropout.is_some());
        let width = |k: usize, c: usize| if k == 0 { c } else { mlp_ratio * c };
        let glus = (0..num_layers - 1)
            .map(|k| {
                SlimGlu::new(
                    (width(k, v), mlp_ratio * v),
                    (width(k, s), mlp_ratio * s),
                    act_s,
                    act_v,
                    &vb.pp(format!("layers.{}", k * stride)),
                )
            })
            .collect::<CResult<Vec<_>>>()?;
        let last = SlimLinear::new(
            (mlp_ratio * v, v),
            (mlp_ratio * s, s),
            true,
            false,
            &vb.pp(format!("layers.{}", (num_layers - 1) * stride)),
        )?;
        Ok(Self {
            glus,
            last,
            dropout,
        })
    }

    /// Applies the MLP.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward(&self, v: &Tensor, s: &Tensor, mode: &mut Mode) -> CResult<(Tensor, Tensor)> {
        let (mut v, mut s) = (v.clone(), s.clone());
        for glu in &self.glus {
            (v, s) = glu.forward(&v, &s)?;
            if let Some(p) = self.dropout {
                (v, s) = slim_dropout(&v, &s, p, mode)?;
            }
        }
        self.last.forward(&v, &s)
    }

    /// Entries of the package's `ModuleList` per layer: 2 with dropout layers, else 1.
    pub fn stride(&self) -> usize {
        1 + usize::from(self.dropout.is_some())
    }

    /// Every linear layer with its path below the MLP (`layers.0.linear`, `layers.1`).
    pub fn linears_mut(&mut self) -> Vec<(String, &mut SlimLinear)> {
        let stride = self.stride();
        let n = self.glus.len();
        let glus = self.glus.iter_mut().enumerate();
        glus.map(|(k, g)| (format!("layers.{}.linear", k * stride), g.linear_mut()))
            .chain(std::iter::once((
                format!("layers.{}", n * stride),
                &mut self.last,
            )))
            .collect()
    }
}

/// How a [`SlimBlock`] is shaped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlimBlockShape {
    /// Vector and scalar channels.
    pub channels: (usize, usize),
    /// Attention heads.
    pub heads: usize,
    /// Scalar-gate and vector-gate nonlinearities.
    pub acts: (Nonlinearity, Nonlinearity),
    /// MLP widening.
    pub mlp_ratio: usize,
    /// Attention widening.
    pub attn_ratio: usize,
    /// Layers of the MLP (>= 2).
    pub num_layers_mlp: usize,
    /// Dropout probability (`None`: no dropout layers).
    pub dropout: Option<f64>,
    /// Whether the two norms learn gains.
    pub affine: bool,
}

/// `SlimBlock`: pre-norm self-attention with a residual, then pre-norm MLP with a
/// residual.
#[derive(Debug, Clone)]
pub struct SlimBlock {
    pub(crate) norm1: SlimRmsNorm,
    pub(crate) attention: SlimSelfAttention,
    pub(crate) norm2: SlimRmsNorm,
    pub(crate) mlp: SlimMlp,
    /// The residual stream's fixed-point type (quantisation-aware training).
    pub(crate) residual: Option<FixedType>,
}

impl SlimBlock {
    /// The block under `vb` (`norm1`, `attention`, `norm2`, `mlp`).
    ///
    /// # Errors
    /// Missing or mis-shaped tensors.
    pub fn new(shape: &SlimBlockShape, vb: &VarBuilder) -> CResult<Self> {
        let (v, s) = shape.channels;
        Ok(Self {
            norm1: SlimRmsNorm::new(v, s, shape.affine, &vb.pp("norm1"))?,
            attention: SlimSelfAttention::new(
                (v, s),
                shape.heads,
                shape.attn_ratio,
                shape.dropout,
                &vb.pp("attention"),
            )?,
            norm2: SlimRmsNorm::new(v, s, shape.affine, &vb.pp("norm2"))?,
            mlp: SlimMlp::new(
                (v, s),
                shape.acts,
                shape.mlp_ratio,
                shape.num_layers_mlp,
                shape.dropout,
                &vb.pp("mlp"),
            )?,
            residual: None,
        })
    }

    /// Applies the block to `v` `[B, N, 4, C]`, `s` `[B, N, S]` with the key bias.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward(
        &self,
        v: &Tensor,
        s: &Tensor,
        bias: &Tensor,
        mode: &mut Mode,
    ) -> CResult<(Tensor, Tensor)> {
        let (hv, hs) = self.norm1.forward(v, s)?;
        let (hv, hs) = self.attention.forward(&hv, &hs, bias, mode)?;
        let (v, s) = self.residual(v, s, &hv, &hs)?;
        let (hv, hs) = self.norm2.forward(&v, &s)?;
        let (hv, hs) = self.mlp.forward(&hv, &hs, mode)?;
        self.residual(&v, &s, &hv, &hs)
    }

    /// The stream plus a sub-layer's output (cast to the residual type when quantised).
    fn residual(
        &self,
        v: &Tensor,
        s: &Tensor,
        hv: &Tensor,
        hs: &Tensor,
    ) -> CResult<(Tensor, Tensor)> {
        let (v, s) = ((v + hv)?, (s + hs)?);
        match self.residual {
            Some(ty) => Ok((fake_quantize(&v, ty)?, fake_quantize(&s, ty)?)),
            None => Ok((v, s)),
        }
    }

    /// Every linear layer with its path below the block.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut SlimLinear)> {
        let attention = self
            .attention
            .linears_mut()
            .into_iter()
            .map(|(name, l)| (format!("attention.{name}"), l));
        let mlp = self
            .mlp
            .linears_mut()
            .into_iter()
            .map(|(name, l)| (format!("mlp.{name}"), l));
        attention.chain(mlp).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn head_channels_follow_the_package_rule() {
        assert_eq!(SlimSelfAttention::head_channels(32, 128, 8, 1), (4, 16));
        assert_eq!(SlimSelfAttention::head_channels(4, 8, 8, 1), (1, 4));
        assert_eq!(SlimSelfAttention::head_channels(16, 64, 4, 2), (8, 32));
    }

    #[test]
    fn rms_norm_uses_the_absolute_minkowski_square() {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &dev);
        let norm = SlimRmsNorm::new(1, 1, true, &vb).unwrap();
        // v = (1, 2, 0, 0): v^2 = -3, |v^2| = 3; s = 1: mean = 2.
        let v = Tensor::new(&[[[1f64], [2.0], [0.0], [0.0]]], &dev).unwrap();
        let s = Tensor::new(&[[1f64]], &dev).unwrap();
        let (nv, ns) = norm.forward(&v, &s).unwrap();
        let factor = 1.0 / (2.0f64 + 0.01).sqrt();
        let got = ns.flatten_all().unwrap().to_vec1::<f64>().unwrap()[0];
        assert!((got - factor).abs() < 1e-15);
        let got = nv.flatten_all().unwrap().to_vec1::<f64>().unwrap()[1];
        assert!((got - 2.0 * factor).abs() < 1e-15);
    }
}

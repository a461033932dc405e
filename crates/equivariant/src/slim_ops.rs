//! The tensor operations the L-GATr-slim layers share: Minkowski products of vector
//! channels, and the fixed-point forms of the norm, the gates and the attention (their
//! settings set by `slim_quantized`, their semantics `noether_quant::SlimStage`'s).

use candle_core::{DType, Device, Tensor, D};
use noether_quant::{fake_quantize, table_lookup, FixedType, Table};

type CResult<T> = candle_core::Result<T>;

/// The metric diag(1, -1, -1, -1) as a `[4, 1]` column (it multiplies the component axis
/// of `[..., 4, channels]` vectors).
pub(crate) fn metric_column(dtype: DType, device: &Device) -> CResult<Tensor> {
    Tensor::new(&[1f64, -1.0, -1.0, -1.0], device)?
        .to_dtype(dtype)?
        .reshape((4, 1))
}

/// Minkowski products `<a_c, b_c>` per channel: `[..., 4, C] x [..., 4, C] -> [..., 1, C]`.
pub(crate) fn minkowski_channels(a: &Tensor, b: &Tensor) -> CResult<Tensor> {
    (a * b)?
        .broadcast_mul(&metric_column(a.dtype(), a.device())?)?
        .sum_keepdim(D::Minus2)
}

/// A norm's fixed-point settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NormQuant {
    pub(crate) gain: FixedType,
    pub(crate) table: Table,
    pub(crate) result: FixedType,
}

/// A gated unit's fixed-point settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GateQuant {
    pub(crate) gate_v: Table,
    pub(crate) gate_s: Table,
    pub(crate) result: FixedType,
}

/// The attention's fixed-point settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttentionQuant {
    pub(crate) norm: NormQuant,
    pub(crate) exp: Table,
    pub(crate) recip: Table,
    pub(crate) probabilities: FixedType,
    pub(crate) heads: FixedType,
}

/// The RMS norm in fixed point: the exact sum of squares through the factor's table,
/// times the values and the quantised gains, cast to the result type.
pub(crate) fn quantized_norm(
    v: &Tensor,
    s: &Tensor,
    gains: Option<&(Tensor, Tensor)>,
    q: &NormQuant,
) -> CResult<(Tensor, Tensor)> {
    let squares =
        (minkowski_channels(v, v)?.abs()?.sum(D::Minus1)? + s.sqr()?.sum_keepdim(D::Minus1)?)?;
    let factor = table_lookup(&squares, q.table)?;
    let mut v = v.broadcast_mul(&factor.unsqueeze(D::Minus1)?)?;
    let mut s = s.broadcast_mul(&factor)?;
    if let Some((gv, gs)) = gains {
        let gain = |g: &Tensor| fake_quantize(&g.to_dtype(DType::F64)?, q.gain);
        v = v.broadcast_mul(&gain(gv)?)?;
        s = s.broadcast_mul(&gain(gs)?)?;
    }
    Ok((fake_quantize(&v, q.result)?, fake_quantize(&s, q.result)?))
}

/// The gated unit's gates in fixed point, from the linear map's outputs.
pub(crate) fn quantized_gates(
    v_full: &Tensor,
    s_full: &Tensor,
    q: &GateQuant,
) -> CResult<(Tensor, Tensor)> {
    let ov = v_full.dim(D::Minus1)? / 3;
    let os = s_full.dim(D::Minus1)? / 2;
    let block = |k: usize| v_full.narrow(D::Minus1, k * ov, ov);
    let products = minkowski_channels(&block(1)?, &block(2)?)?;
    let v = table_lookup(&products, q.gate_v)?.broadcast_mul(&block(0)?)?;
    let s_gates = table_lookup(&s_full.narrow(D::Minus1, os, os)?, q.gate_s)?;
    let s = (s_gates * s_full.narrow(D::Minus1, 0, os)?)?;
    Ok((fake_quantize(&v, q.result)?, fake_quantize(&s, q.result)?))
}

/// Attention in fixed point for queries (metric applied), keys and values
/// `[B, H, N, d]` and the key bias: exact logits minus their maximum over real keys
/// through the exponential table, the sum of real numerators through the reciprocal
/// table, probabilities and weighted values cast to their types.
pub(crate) fn quantized_attention(
    q: &Tensor,
    k: &Tensor,
    values: &Tensor,
    bias: &Tensor,
    quant: &AttentionQuant,
) -> CResult<Tensor> {
    let bias = bias.to_dtype(DType::F64)?;
    let logits = q.contiguous()?.matmul(&k.contiguous()?.t()?)?;
    // The maximum over real keys (a padded key's bias is -1e30, a real one's zero).
    let max = logits
        .broadcast_add(&bias)?
        .max_keepdim(D::Minus1)?
        .detach();
    let real = bias.eq(0.0)?.to_dtype(DType::F64)?;
    let numerators = table_lookup(&logits.broadcast_sub(&max)?, quant.exp)?.broadcast_mul(&real)?;
    let recip = table_lookup(
        &fake_quantize(&numerators.sum_keepdim(D::Minus1)?, quant.recip.input)?,
        quant.recip,
    )?;
    let probabilities = fake_quantize(&numerators.broadcast_mul(&recip)?, quant.probabilities)?;
    fake_quantize(&probabilities.matmul(&values.contiguous()?)?, quant.heads)
}

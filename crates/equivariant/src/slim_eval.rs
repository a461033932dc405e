//! L-GATr-slim's evaluation pass as one kernel per jet, for passes no backward can follow.
//!
//! The composed forward (`slim_layers`) runs every layer as a chain of candle operations
//! on the padded batch: each writes a fresh tensor, the attention's head split and merge
//! are strided copies, and the norms, gates and softmax are separate element-wise maps.
//! Evaluating a jet of 54 tokens with the paper's size 0 spent about half its time there.
//! Here, when neither the inputs nor any weight is tracked (a model built for inference,
//! such as `noether eval`'s), in evaluation mode, on the CPU, in f32 or f64, without
//! fixed-point settings or unmerged LoRA adapters, each jet runs through plain loops and
//! the GEMM on its real tokens only (padded tokens are never attended to, so their values
//! cannot reach a real token's), and with a class-token readout the last block computes
//! only the class token after its keys and values. Jets run in parallel. The weights are
//! read in place from their storage (a model built for inference shares it with the
//! training variables, so nothing is copied or cached).
//!
//! Equal to the composed forward up to rounding (the sums run in another order):
//! `slim_eval::tests`, 1e-12 in f64 and 1e-5 in f32 relative to the largest logit.

use candle_core::{DType, Layout, Storage, Tensor, WithDType};
use num_traits::Float;
use rayon::prelude::*;

use crate::fused::gemm::{matmul, MatRef};
use crate::fused::vector_math::{lane_sum, VectorMath};
use crate::linear::Linear;
use crate::slim_layers::{Nonlinearity, SlimBlock, SlimLinear, NORM_EPSILON};
use crate::tokens::TokenInput;

type CResult<T> = candle_core::Result<T>;

/// The float types the pass runs in.
trait Real: VectorMath {}
impl<T: VectorMath> Real for T {}

fn constant<T: Real>(x: f64) -> T {
    T::from(x).expect("a finite constant")
}

/// A [`SlimLinear`]'s weights: `weight_v` `[out_v, in_v]`, the scalar layer's weight
/// `[out_s, in_s]` and bias; dims as (in, out).
struct LinearW<W> {
    v: W,
    v_dims: (usize, usize),
    s: W,
    bias: Option<W>,
    s_dims: (usize, usize),
}

/// A gated unit of the MLP: its linear layer and (scalar, vector) nonlinearities.
struct GluW<W> {
    linear: LinearW<W>,
    act_s: Nonlinearity,
    act_v: Nonlinearity,
}

/// A [`SlimBlock`]'s weights and attention shape.
struct BlockW<W> {
    norm1: Option<(W, W)>,
    attn_in: LinearW<W>,
    attn_out: LinearW<W>,
    heads: usize,
    hv: usize,
    hs: usize,
    norm2: Option<(W, W)>,
    glus: Vec<GluW<W>>,
    last: LinearW<W>,
}

/// The network: input layer, blocks, output layer.
struct NetW<W> {
    linear_in: LinearW<W>,
    blocks: Vec<BlockW<W>>,
    linear_out: LinearW<W>,
}

/// A float layer's weight and bias; `None` for a fixed-point layer or one with an unmerged
/// adapter (its forward is not the plain product).
fn plain(layer: &Linear) -> Option<(&Tensor, Option<&Tensor>)> {
    let float = layer.precision().is_none() && (layer.adapter().is_none() || layer.is_merged());
    float.then(|| (layer.weight(), layer.bias()))
}

/// The weights of `linear`, each handed to `take` (in one fixed order).
fn linear_w<'t, W>(
    linear: &'t SlimLinear,
    take: &mut impl FnMut(&'t Tensor) -> W,
) -> Option<LinearW<W>> {
    let (v, _) = plain(&linear.linear_v)?;
    let (s, bias) = plain(linear.linear_s.as_ref()?)?;
    let s_dims = linear.linear_s.as_ref()?.dims();
    Some(LinearW {
        v: take(v),
        v_dims: linear.linear_v.dims(),
        s: take(s),
        bias: bias.map(|b| take(b)),
        s_dims,
    })
}

fn gains_w<'t, W>(
    gains: Option<&'t (Tensor, Tensor)>,
    take: &mut impl FnMut(&'t Tensor) -> W,
) -> Option<(W, W)> {
    gains.map(|(v, s)| (take(v), take(s)))
}

fn block_w<'t, W>(
    block: &'t SlimBlock,
    take: &mut impl FnMut(&'t Tensor) -> W,
) -> Option<BlockW<W>> {
    let attention = &block.attention;
    let float = block.residual.is_none()
        && block.norm1.quant.is_none()
        && block.norm2.quant.is_none()
        && attention.quant.is_none()
        && block.mlp.glus.iter().all(|g| g.quant.is_none());
    if !float {
        return None;
    }
    Some(BlockW {
        norm1: gains_w(block.norm1.weights.as_ref(), take),
        attn_in: linear_w(&attention.linear_in, take)?,
        attn_out: linear_w(&attention.linear_out, take)?,
        heads: attention.heads,
        hv: attention.hv,
        hs: attention.hs,
        norm2: gains_w(block.norm2.weights.as_ref(), take),
        glus: block
            .mlp
            .glus
            .iter()
            .map(|g| {
                Some(GluW {
                    linear: linear_w(&g.linear, take)?,
                    act_s: g.act_s,
                    act_v: g.act_v,
                })
            })
            .collect::<Option<_>>()?,
        last: linear_w(&block.mlp.last, take)?,
    })
}

/// The network's layers, as `LGatrSlimNet` holds them.
#[derive(Clone, Copy)]
pub(crate) struct SlimLayers<'a> {
    /// `linear_in`.
    pub(crate) linear_in: &'a SlimLinear,
    /// `blocks`.
    pub(crate) blocks: &'a [SlimBlock],
    /// `linear_out`.
    pub(crate) linear_out: &'a SlimLinear,
}

fn net_w<'t, W>(layers: SlimLayers<'t>, take: &mut impl FnMut(&'t Tensor) -> W) -> Option<NetW<W>> {
    Some(NetW {
        linear_in: linear_w(layers.linear_in, take)?,
        blocks: layers
            .blocks
            .iter()
            .map(|b| block_w(b, take))
            .collect::<Option<_>>()?,
        linear_out: linear_w(layers.linear_out, take)?,
    })
}

/// The logits `[jets, classes]` of the tagger's evaluation pass (the class token's scalar
/// outputs, or their masked mean with `mean`), or `None` where this pass does not apply
/// (a tracked tensor, another device or dtype, fixed point, an unmerged adapter, a mask
/// other than 0/1, a masked class token, vector inputs of more than one channel): the
/// caller then runs the composed forward.
///
/// # Errors
/// Only from the tensor backend.
pub(crate) fn logits(
    layers: SlimLayers<'_>,
    input: &TokenInput,
    mean: bool,
) -> CResult<Option<Tensor>> {
    match input.scalars.dtype() {
        DType::F32 => run::<f32>(layers, input, mean),
        DType::F64 => run::<f64>(layers, input, mean),
        _ => Ok(None),
    }
}

/// The values of a contiguous CPU tensor of type `T`.
fn host<'g, T: WithDType>(storage: &'g Storage, layout: &Layout) -> Option<&'g [T]> {
    let Storage::Cpu(cpu) = storage else {
        return None;
    };
    let (start, end) = layout.contiguous_offsets()?;
    cpu.as_slice::<T>().ok().map(|all| &all[start..end])
}

fn run<T: Real>(layers: SlimLayers<'_>, input: &TokenInput, mean: bool) -> CResult<Option<Tensor>> {
    let device = input.scalars.device();
    let inputs = [&input.vectors, &input.scalars, &input.mask];
    let mut tensors: Vec<&Tensor> = Vec::new();
    if !device.is_cpu() || net_w(layers, &mut |t| tensors.push(t)).is_none() {
        return Ok(None);
    }
    tensors.extend(inputs);
    if tensors
        .iter()
        .any(|t| t.track_op() || t.dtype() != T::DTYPE)
    {
        return Ok(None);
    }
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let Some(slices) = guards
        .iter()
        .map(|(storage, layout)| host::<T>(storage, layout))
        .collect::<Option<Vec<&[T]>>>()
    else {
        return Ok(None);
    };
    let (weights, data) = slices.split_at(slices.len() - inputs.len());
    let mut next = weights.iter().copied();
    let Some(net) = net_w(layers, &mut |_| {
        next.next().expect("the walk of the first pass")
    }) else {
        return Ok(None);
    };
    let (jets, tokens) = input.mask.dims2()?;
    let (vectors, scalars, mask) = (data[0], data[1], data[2]);
    let binary = mask.iter().all(|&m| m == T::zero() || m == T::one());
    let class_real = mean || mask.chunks_exact(tokens.max(1)).all(|m| m[0] == T::one());
    if net.linear_in.v_dims.0 != 1 || !binary || !class_real || tokens == 0 {
        return Ok(None);
    }
    let in_s = net.linear_in.s_dims.0;
    let classes = net.linear_out.s_dims.1;
    let mut out = vec![T::zero(); jets * classes];
    out.par_chunks_mut(classes.max(1))
        .enumerate()
        .for_each(|(jet, logits)| {
            let tokens = Jet {
                vectors: &vectors[jet * tokens * 4..(jet + 1) * tokens * 4],
                scalars: &scalars[jet * tokens * in_s..(jet + 1) * tokens * in_s],
                mask: &mask[jet * tokens..(jet + 1) * tokens],
                in_s,
            };
            jet_logits(&net, &tokens, mean, logits);
        });
    Tensor::from_vec(out, (jets, classes), device).map(Some)
}

/// One jet's padded tokens.
struct Jet<'a, T> {
    vectors: &'a [T],
    scalars: &'a [T],
    mask: &'a [T],
    in_s: usize,
}

/// The token stream, feature-major (so that each layer's `W x^T` reads both operands in
/// the layouts gemm multiplies without repacking the weights): vectors `[v, tokens 4]`
/// (column `4 token + component`), scalars `[s, tokens]`.
struct Stream<T> {
    v: Vec<T>,
    s: Vec<T>,
    tokens: usize,
}

impl<T: Real> Stream<T> {
    /// Keeps the first `tokens` columns.
    fn keep(&mut self, tokens: usize) {
        if tokens == self.tokens {
            return;
        }
        let n = self.tokens;
        self.v = self
            .v
            .chunks_exact(4 * n)
            .flat_map(|row| &row[..4 * tokens])
            .copied()
            .collect();
        self.s = self
            .s
            .chunks_exact(n)
            .flat_map(|row| &row[..tokens])
            .copied()
            .collect();
        self.tokens = tokens;
    }
}

fn jet_logits<T: Real>(net: &NetW<&[T]>, jet: &Jet<'_, T>, mean: bool, logits: &mut [T]) {
    let real: Vec<usize> = (0..jet.mask.len())
        .filter(|&t| jet.mask[t] == T::one())
        .collect();
    let n = real.len();
    let in_s = jet.in_s;
    let v_in: Vec<T> = real
        .iter()
        .flat_map(|&t| &jet.vectors[4 * t..4 * t + 4])
        .copied()
        .collect();
    let s_in: Vec<T> = (0..in_s)
        .flat_map(|c| real.iter().map(move |&t| jet.scalars[t * in_s + c]))
        .collect();
    let mut stream = Stream {
        v: Vec::new(),
        s: Vec::new(),
        tokens: n,
    };
    linear(
        &net.linear_in,
        (&v_in, &s_in),
        n,
        &mut stream.v,
        &mut stream.s,
    );
    let mut work = Work::default();
    let last = net.blocks.len().saturating_sub(1);
    for (i, block) in net.blocks.iter().enumerate() {
        // With a class token, the last block only needs the class token's output.
        let queries = if i == last && !mean { 1 } else { n };
        block_forward(block, &mut stream, queries, &mut work);
    }
    let tokens = if mean { stream.tokens } else { 1 };
    stream.keep(tokens);
    let (mut out_v, mut out_s) = (Vec::new(), Vec::new());
    // The tagger's linear_out has no vector outputs; its vector product is empty.
    linear(
        &net.linear_out,
        (&stream.v, &stream.s),
        tokens,
        &mut out_v,
        &mut out_s,
    );
    let count: T = constant(tokens as f64);
    for (l, row) in logits.iter_mut().zip(out_s.chunks_exact(tokens)) {
        *l = lane_sum(tokens, |t| row[t]) / count;
    }
}

/// Working buffers of a block, reused across blocks.
#[derive(Default)]
struct Work<T> {
    norm_v: Vec<T>,
    norm_s: Vec<T>,
    wide_v: Vec<T>,
    wide_s: Vec<T>,
    narrow_v: Vec<T>,
    narrow_s: Vec<T>,
    per_token: Vec<T>,
    gates: Vec<T>,
    heads: HeadWork<T>,
}

/// One head's queries, keys, values, scores and outputs (token-major, `[tokens, 4 hv + hs]`).
#[derive(Default)]
struct HeadWork<T> {
    q: Vec<T>,
    k: Vec<T>,
    values: Vec<T>,
    scores: Vec<T>,
    out: Vec<T>,
}

/// `out_v [out_v, 4 tokens] = W_v v`, `out_s [out_s, tokens] = W_s s + b` on feature-major
/// inputs.
fn linear<T: Real>(
    layer: &LinearW<&[T]>,
    (v, s): (&[T], &[T]),
    tokens: usize,
    out_v: &mut Vec<T>,
    out_s: &mut Vec<T>,
) {
    let (iv, ov) = layer.v_dims;
    let (is, os) = layer.s_dims;
    out_v.resize(ov * 4 * tokens, T::zero());
    matmul(
        out_v,
        MatRef::row_major(layer.v, ov, iv),
        MatRef::row_major(&v[..iv * 4 * tokens], iv, 4 * tokens),
        false,
    );
    out_s.resize(os * tokens, T::zero());
    matmul(
        out_s,
        MatRef::row_major(layer.s, os, is),
        MatRef::row_major(&s[..is * tokens], is, tokens),
        false,
    );
    if let Some(bias) = layer.bias {
        for (row, &b) in out_s.chunks_exact_mut(tokens.max(1)).zip(bias) {
            row.iter_mut().for_each(|x| *x = *x + b);
        }
    }
}

/// `SlimRMSNorm` of the stream into `out_v`, `out_s` (`factors`: scratch per token).
fn rms_norm<T: Real>(
    stream: &Stream<T>,
    gains: Option<&(&[T], &[T])>,
    factors: &mut Vec<T>,
    (out_v, out_s): (&mut Vec<T>, &mut Vec<T>),
) {
    let n = stream.tokens;
    let (cv, cs) = (stream.v.len() / (4 * n), stream.s.len() / n);
    factors.clear();
    factors.resize(n, T::zero());
    for row in stream.v.chunks_exact(4 * n) {
        for (f, v) in factors.iter_mut().zip(row.chunks_exact(4)) {
            *f = *f + (v[0] * v[0] - v[1] * v[1] - v[2] * v[2] - v[3] * v[3]).abs();
        }
    }
    for row in stream.s.chunks_exact(n) {
        for (f, &x) in factors.iter_mut().zip(row) {
            *f = *f + x * x;
        }
    }
    let (channels, eps): (T, T) = (constant((cv + cs) as f64), constant(NORM_EPSILON));
    factors
        .iter_mut()
        .for_each(|f| *f = T::one() / (*f / channels + eps).sqrt());
    let gain = |g: Option<&[T]>, c: usize| g.map_or(T::one(), |g| g[c]);
    out_v.resize(stream.v.len(), T::zero());
    let rows = stream
        .v
        .chunks_exact(4 * n)
        .zip(out_v.chunks_exact_mut(4 * n));
    for (c, (row, out)) in rows.enumerate() {
        let g = gain(gains.map(|g| g.0), c);
        for ((o, v), &f) in out
            .chunks_exact_mut(4)
            .zip(row.chunks_exact(4))
            .zip(&*factors)
        {
            for (o, &x) in o.iter_mut().zip(v) {
                *o = x * f * g;
            }
        }
    }
    out_s.resize(stream.s.len(), T::zero());
    let rows = stream.s.chunks_exact(n).zip(out_s.chunks_exact_mut(n));
    for (c, (row, out)) in rows.enumerate() {
        let g = gain(gains.map(|g| g.1), c);
        for ((o, &x), &f) in out.iter_mut().zip(row).zip(&*factors) {
            *o = x * f * g;
        }
    }
}

/// One pre-norm block on `stream`; afterwards the stream holds its first `queries` tokens.
fn block_forward<T: Real>(
    block: &BlockW<&[T]>,
    stream: &mut Stream<T>,
    queries: usize,
    w: &mut Work<T>,
) {
    let n = stream.tokens;
    rms_norm(
        stream,
        block.norm1.as_ref(),
        &mut w.per_token,
        (&mut w.norm_v, &mut w.norm_s),
    );
    linear(
        &block.attn_in,
        (&w.norm_v, &w.norm_s),
        n,
        &mut w.wide_v,
        &mut w.wide_s,
    );
    attention(block, n, queries, w);
    let merged = (&w.norm_v[..], &w.norm_s[..]);
    linear(
        &block.attn_out,
        merged,
        queries,
        &mut w.narrow_v,
        &mut w.narrow_s,
    );
    stream.keep(queries);
    add(&mut stream.v, &w.narrow_v);
    add(&mut stream.s, &w.narrow_s);

    rms_norm(
        stream,
        block.norm2.as_ref(),
        &mut w.per_token,
        (&mut w.norm_v, &mut w.norm_s),
    );
    for glu in &block.glus {
        linear(
            &glu.linear,
            (&w.norm_v, &w.norm_s),
            queries,
            &mut w.wide_v,
            &mut w.wide_s,
        );
        let wide = (&w.wide_v[..], &w.wide_s[..]);
        gate(
            glu,
            wide,
            queries,
            &mut w.gates,
            (&mut w.norm_v, &mut w.norm_s),
        );
    }
    let hidden = (&w.norm_v[..], &w.norm_s[..]);
    linear(
        &block.last,
        hidden,
        queries,
        &mut w.narrow_v,
        &mut w.narrow_s,
    );
    add(&mut stream.v, &w.narrow_v);
    add(&mut stream.s, &w.narrow_s);
}

fn add<T: Real>(stream: &mut [T], update: &[T]) {
    for (x, &u) in stream.iter_mut().zip(update) {
        *x = *x + u;
    }
}

/// `SlimGLU`'s gates on the unit's linear outputs `v` `[3 ov, 4 tokens]`, `s`
/// `[2 os, tokens]` (feature-major).
fn gate<T: Real>(
    glu: &GluW<&[T]>,
    (v, s): (&[T], &[T]),
    tokens: usize,
    gates: &mut Vec<T>,
    (out_v, out_s): (&mut Vec<T>, &mut Vec<T>),
) {
    let ov = glu.linear.v_dims.1 / 3;
    let os = glu.linear.s_dims.1 / 2;
    let width = 4 * tokens;
    // Vector gates: act_v(<a_c, b_c> / 2) of the second and third blocks of channels.
    let half: T = constant(0.5);
    gates.clear();
    for c in 0..ov {
        let a = &v[(ov + c) * width..(ov + c + 1) * width];
        let b = &v[(2 * ov + c) * width..(2 * ov + c + 1) * width];
        gates.extend(
            a.chunks_exact(4)
                .zip(b.chunks_exact(4))
                .map(|(a, b)| (a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3]) * half),
        );
    }
    activation(glu.act_v, gates);
    out_v.resize(ov * width, T::zero());
    let rows = out_v.chunks_exact_mut(width).zip(v.chunks_exact(width));
    for ((out, pre), g) in rows.zip(gates.chunks_exact(tokens)) {
        for ((o, x), &g) in out.chunks_exact_mut(4).zip(pre.chunks_exact(4)).zip(g) {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = g * x;
            }
        }
    }
    // Scalar gates: act_s of the second block times the first.
    gates.clear();
    gates.extend_from_slice(&s[os * tokens..2 * os * tokens]);
    activation(glu.act_s, gates);
    out_s.resize(os * tokens, T::zero());
    for ((o, &g), &x) in out_s.iter_mut().zip(&*gates).zip(&s[..os * tokens]) {
        *o = g * x;
    }
}

/// The element-wise nonlinearity `act` on every value, as [`Nonlinearity::apply`]
/// computes it up to rounding (sigmoid, SiLU and GELU through [`VectorMath::exp_in_place`];
/// GELU as `x sigmoid(2 u)`, which equals `x (1 + tanh u) / 2`).
fn activation<T: Real>(act: Nonlinearity, values: &mut [T]) {
    let one = T::one();
    match act {
        Nonlinearity::Relu => values
            .iter_mut()
            .for_each(|x| *x = Float::max(*x, T::zero())),
        Nonlinearity::Tanh => values.iter_mut().for_each(|x| *x = x.tanh()),
        Nonlinearity::Sigmoid => {
            let mut e: Vec<T> = values.iter().map(|&x| -x).collect();
            T::exp_in_place(&mut e);
            values
                .iter_mut()
                .zip(&e)
                .for_each(|(x, &e)| *x = one / (one + e));
        }
        Nonlinearity::Silu => {
            let mut e: Vec<T> = values.iter().map(|&x| -x).collect();
            T::exp_in_place(&mut e);
            values
                .iter_mut()
                .zip(&e)
                .for_each(|(x, &e)| *x = *x / (one + e));
        }
        Nonlinearity::Gelu => {
            let (c, k): (T, T) = (
                constant(-2.0 * crate::fused::SQRT_TWO_OVER_PI),
                constant(crate::fused::GELU_CUBIC),
            );
            let mut e: Vec<T> = values.iter().map(|&x| c * x * (one + k * x * x)).collect();
            T::exp_in_place(&mut e);
            values
                .iter_mut()
                .zip(&e)
                .for_each(|(x, &e)| *x = *x / (one + e));
        }
    }
}

/// The block's attention on the projections in `w.wide_v` `[3 hv heads, 4 n]` and
/// `w.wide_s` `[3 hs heads, n]` (row `(t c) heads + head`), for the first `queries`
/// tokens: the merged heads land in `w.norm_v` `[heads hv, 4 queries]` and `w.norm_s`
/// `[heads hs, queries]` (row `head hv + c`).
fn attention<T: Real>(block: &BlockW<&[T]>, n: usize, queries: usize, w: &mut Work<T>) {
    let (heads, hv, hs) = (block.heads, block.hv, block.hs);
    let d = 4 * hv + hs;
    let scale = T::one() / constant::<T>(d as f64).sqrt();
    w.norm_v.resize(heads * hv * 4 * queries, T::zero());
    w.norm_s.resize(heads * hs * queries, T::zero());
    let h = &mut w.heads;
    for head in 0..heads {
        let split = |part: usize, rows: usize, dst: &mut Vec<T>| {
            let wide = (&w.wide_v[..], &w.wide_s[..]);
            split_head(wide, n, (heads, hv, hs), (part, head), rows, dst);
        };
        split(0, queries, &mut h.q);
        split(1, n, &mut h.k);
        split(2, n, &mut h.values);
        for q in h.q.chunks_exact_mut(d) {
            for x in &mut q[hv..4 * hv] {
                *x = -*x;
            }
            for x in q.iter_mut() {
                *x = *x * scale;
            }
        }
        h.scores.resize(queries * n, T::zero());
        matmul(
            &mut h.scores,
            MatRef::row_major(&h.q, queries, d),
            MatRef::transposed(&h.k, d, n),
            false,
        );
        for row in h.scores.chunks_exact_mut(n) {
            softmax(row);
        }
        h.out.resize(queries * d, T::zero());
        matmul(
            &mut h.out,
            MatRef::row_major(&h.scores, queries, n),
            MatRef::row_major(&h.values, n, d),
            false,
        );
        for (i, o) in h.out.chunks_exact(d).enumerate() {
            for c in 0..hv {
                let row = (head * hv + c) * 4 * queries;
                for comp in 0..4 {
                    w.norm_v[row + 4 * i + comp] = o[comp * hv + c];
                }
            }
            for c in 0..hs {
                w.norm_s[(head * hs + c) * queries + i] = o[4 * hv + c];
            }
        }
    }
}

/// Head `head`'s part `part` (0 queries, 1 keys, 2 values) of the first `rows` of the `n`
/// tokens, token-major `[rows, 4 hv + hs]` (components, then scalars), each row divided
/// by its RMS factor.
fn split_head<T: Real>(
    (wide_v, wide_s): (&[T], &[T]),
    n: usize,
    (heads, hv, hs): (usize, usize, usize),
    (part, head): (usize, usize),
    rows: usize,
    dst: &mut Vec<T>,
) {
    let d = 4 * hv + hs;
    dst.resize(rows * d, T::zero());
    for c in 0..hv {
        let src = &wide_v[((part * hv + c) * heads + head) * 4 * n..];
        for (i, row) in dst.chunks_exact_mut(d).enumerate() {
            for comp in 0..4 {
                row[comp * hv + c] = src[4 * i + comp];
            }
        }
    }
    for c in 0..hs {
        let src = &wide_s[((part * hs + c) * heads + head) * n..];
        for (row, &x) in dst.chunks_exact_mut(d).zip(src) {
            row[4 * hv + c] = x;
        }
    }
    let channels: T = constant((hv + hs) as f64);
    let eps: T = constant(NORM_EPSILON);
    for row in dst.chunks_exact_mut(d) {
        let (v, s) = row.split_at(4 * hv);
        let squares = lane_sum(hv, |c| {
            let (t, x, y, z) = (v[c], v[hv + c], v[2 * hv + c], v[3 * hv + c]);
            (t * t - x * x - y * y - z * z).abs()
        }) + lane_sum(hs, |c| s[c] * s[c]);
        let f = T::one() / (squares / channels + eps).sqrt();
        row.iter_mut().for_each(|x| *x = *x * f);
    }
}

/// The softmax of one row in place.
fn softmax<T: Real>(row: &mut [T]) {
    let max = row.iter().copied().fold(T::neg_infinity(), Float::max);
    for x in row.iter_mut() {
        *x = *x - max;
    }
    T::exp_in_place(row);
    let inv = T::one() / lane_sum(row.len(), |i| row[i]);
    for x in row.iter_mut() {
        *x = *x * inv;
    }
}

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
use crate::linear::Linear;
use crate::slim_layers::{Nonlinearity, SlimBlock, SlimLinear, NORM_EPSILON};
use crate::tokens::TokenInput;

type CResult<T> = candle_core::Result<T>;

/// The float types the pass runs in.
trait Real: WithDType + Float + Default + Send + Sync + 'static {}
impl Real for f32 {}
impl Real for f64 {}

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

/// The token stream: vectors `[tokens, 4, v]`, scalars `[tokens, s]`.
struct Stream<T> {
    v: Vec<T>,
    s: Vec<T>,
    tokens: usize,
}

fn jet_logits<T: Real>(net: &NetW<&[T]>, jet: &Jet<'_, T>, mean: bool, logits: &mut [T]) {
    let real: Vec<usize> = (0..jet.mask.len())
        .filter(|&t| jet.mask[t] == T::one())
        .collect();
    let n = real.len();
    let in_s = jet.in_s;
    let mut v_in = Vec::with_capacity(4 * n);
    let mut s_in = Vec::with_capacity(n * in_s);
    for &t in &real {
        v_in.extend_from_slice(&jet.vectors[4 * t..4 * t + 4]);
        s_in.extend_from_slice(&jet.scalars[t * in_s..(t + 1) * in_s]);
    }
    let mut stream = Stream {
        v: Vec::new(),
        s: Vec::new(),
        tokens: n,
    };
    linear(
        &net.linear_in,
        &v_in,
        &s_in,
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
    let rows = if mean { stream.tokens } else { 1 };
    let (mut out_v, mut out_s) = (Vec::new(), Vec::new());
    // The tagger's linear_out has no vector outputs; its vector product is empty.
    linear(
        &net.linear_out,
        &stream.v,
        &stream.s,
        rows,
        &mut out_v,
        &mut out_s,
    );
    let classes = logits.len();
    logits.fill(T::zero());
    for row in out_s.chunks_exact(classes.max(1)) {
        for (l, &x) in logits.iter_mut().zip(row) {
            *l = *l + x;
        }
    }
    let count: T = constant(rows as f64);
    for l in logits.iter_mut() {
        *l = *l / count;
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
    heads: HeadWork<T>,
}

/// One head's queries, keys, values, scores and outputs.
#[derive(Default)]
struct HeadWork<T> {
    q: Vec<T>,
    k: Vec<T>,
    values: Vec<T>,
    scores: Vec<T>,
    out: Vec<T>,
}

/// `out_v [4 rows, out_v] = v W_v^T`, `out_s [rows, out_s] = s W_s^T + b`.
fn linear<T: Real>(
    layer: &LinearW<&[T]>,
    v: &[T],
    s: &[T],
    rows: usize,
    out_v: &mut Vec<T>,
    out_s: &mut Vec<T>,
) {
    let (iv, ov) = layer.v_dims;
    let (is, os) = layer.s_dims;
    out_v.resize(4 * rows * ov, T::zero());
    matmul(
        out_v,
        MatRef::row_major(&v[..4 * rows * iv], 4 * rows, iv),
        MatRef::transposed(layer.v, iv, ov),
        false,
    );
    out_s.resize(rows * os, T::zero());
    matmul(
        out_s,
        MatRef::row_major(&s[..rows * is], rows, is),
        MatRef::transposed(layer.s, is, os),
        false,
    );
    if let Some(bias) = layer.bias {
        for row in out_s.chunks_exact_mut(os.max(1)) {
            for (x, &b) in row.iter_mut().zip(bias) {
                *x = *x + b;
            }
        }
    }
}

/// |<a, a>| for the component-major `[4, channels]` vector block `a` at channel `c`.
fn abs_square<T: Real>(a: &[T], channels: usize, c: usize) -> T {
    let (t, x, y, z) = (
        a[c],
        a[channels + c],
        a[2 * channels + c],
        a[3 * channels + c],
    );
    (t * t - x * x - y * y - z * z).abs()
}

/// 1 / sqrt(mean(|v_c^2|, s^2) + eps) of one token (`v` `[4, cv]`, `s` `[cs]`).
fn rms_factor<T: Real>(v: &[T], cv: usize, s: &[T]) -> T {
    let vectors = (0..cv).fold(T::zero(), |acc, c| acc + abs_square(v, cv, c));
    let sum = s.iter().fold(vectors, |acc, &x| acc + x * x);
    let channels: T = constant((cv + s.len()) as f64);
    T::one() / (sum / channels + constant(NORM_EPSILON)).sqrt()
}

/// `SlimRMSNorm` of the first `rows` tokens of `stream` into `out_v`, `out_s`.
fn rms_norm<T: Real>(
    stream: &Stream<T>,
    rows: usize,
    gains: Option<&(&[T], &[T])>,
    out_v: &mut Vec<T>,
    out_s: &mut Vec<T>,
) {
    let cv = stream.v.len() / (4 * stream.tokens).max(1);
    let cs = stream.s.len() / stream.tokens.max(1);
    out_v.resize(4 * rows * cv, T::zero());
    out_s.resize(rows * cs, T::zero());
    let tokens = stream.v.chunks_exact(4 * cv).zip(stream.s.chunks_exact(cs));
    let outs = out_v
        .chunks_exact_mut(4 * cv)
        .zip(out_s.chunks_exact_mut(cs));
    for ((v, s), (ov, os)) in tokens.zip(outs).take(rows) {
        let f = rms_factor(v, cv, s);
        for (ov, v) in ov.chunks_exact_mut(cv).zip(v.chunks_exact(cv)) {
            for (c, (o, &x)) in ov.iter_mut().zip(v).enumerate() {
                *o = x * f * gains.map_or(T::one(), |g| g.0[c]);
            }
        }
        for (c, (o, &x)) in os.iter_mut().zip(s).enumerate() {
            *o = x * f * gains.map_or(T::one(), |g| g.1[c]);
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
        n,
        block.norm1.as_ref(),
        &mut w.norm_v,
        &mut w.norm_s,
    );
    linear(
        &block.attn_in,
        &w.norm_v,
        &w.norm_s,
        n,
        &mut w.wide_v,
        &mut w.wide_s,
    );
    attention(block, n, queries, w);
    linear(
        &block.attn_out,
        &w.norm_v,
        &w.norm_s,
        queries,
        &mut w.narrow_v,
        &mut w.narrow_s,
    );
    stream.v.truncate(w.narrow_v.len());
    stream.s.truncate(w.narrow_s.len());
    stream.tokens = queries;
    add(&mut stream.v, &w.narrow_v);
    add(&mut stream.s, &w.narrow_s);

    rms_norm(
        stream,
        queries,
        block.norm2.as_ref(),
        &mut w.norm_v,
        &mut w.norm_s,
    );
    for glu in &block.glus {
        linear(
            &glu.linear,
            &w.norm_v,
            &w.norm_s,
            queries,
            &mut w.wide_v,
            &mut w.wide_s,
        );
        gate(
            glu,
            queries,
            &w.wide_v,
            &w.wide_s,
            &mut w.norm_v,
            &mut w.norm_s,
        );
    }
    linear(
        &block.last,
        &w.norm_v,
        &w.norm_s,
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

/// `SlimGLU`'s gates on the unit's linear outputs `v` `[4 rows, 3 ov]`, `s` `[rows, 2 os]`.
fn gate<T: Real>(
    glu: &GluW<&[T]>,
    rows: usize,
    v: &[T],
    s: &[T],
    out_v: &mut Vec<T>,
    out_s: &mut Vec<T>,
) {
    let ov = glu.linear.v_dims.1 / 3;
    let os = glu.linear.s_dims.1 / 2;
    out_v.resize(4 * rows * ov, T::zero());
    out_s.resize(rows * os, T::zero());
    let half: T = constant(0.5);
    for (v, o) in v.chunks_exact(12 * ov).zip(out_v.chunks_exact_mut(4 * ov)) {
        for c in 0..ov {
            let row = |comp: usize, block: usize| v[comp * 3 * ov + block * ov + c];
            let product = row(0, 1) * row(0, 2)
                - row(1, 1) * row(1, 2)
                - row(2, 1) * row(2, 2)
                - row(3, 1) * row(3, 2);
            let g = activation(glu.act_v, product * half);
            for comp in 0..4 {
                o[comp * ov + c] = g * row(comp, 0);
            }
        }
    }
    for (s, o) in s.chunks_exact(2 * os).zip(out_s.chunks_exact_mut(os)) {
        for c in 0..os {
            o[c] = activation(glu.act_s, s[os + c]) * s[c];
        }
    }
}

/// The element-wise nonlinearity `act` at `x`, as [`Nonlinearity::apply`] computes it.
fn activation<T: Real>(act: Nonlinearity, x: T) -> T {
    match act {
        Nonlinearity::Relu => Float::max(x, T::zero()),
        Nonlinearity::Sigmoid => T::one() / (T::one() + (-x).exp()),
        Nonlinearity::Tanh => x.tanh(),
        Nonlinearity::Gelu => {
            let (c, k): (T, T) = (
                constant(crate::fused::SQRT_TWO_OVER_PI),
                constant(crate::fused::GELU_CUBIC),
            );
            constant::<T>(0.5) * x * (T::one() + (c * x * (T::one() + k * x * x)).tanh())
        }
        Nonlinearity::Silu => x / (T::one() + (-x).exp()),
    }
}

/// The block's attention on the projections in `w.wide_v` `[4 n, 3 hv heads]` and
/// `w.wide_s` `[n, 3 hs heads]` (channel `(t c) heads + head`), for the first `queries`
/// tokens: the merged heads land in `w.norm_v` `[4 queries, heads hv]` and `w.norm_s`
/// `[queries, heads hs]` (channel `head hv + c`).
fn attention<T: Real>(block: &BlockW<&[T]>, n: usize, queries: usize, w: &mut Work<T>) {
    let (heads, hv, hs) = (block.heads, block.hv, block.hs);
    let d = 4 * hv + hs;
    let scale = T::one() / constant::<T>(d as f64).sqrt();
    w.norm_v.resize(4 * queries * heads * hv, T::zero());
    w.norm_s.resize(queries * heads * hs, T::zero());
    let h = &mut w.heads;
    for head in 0..heads {
        let split = |part: usize, rows: usize, dst: &mut Vec<T>| {
            split_head(
                &w.wide_v,
                &w.wide_s,
                (heads, hv, hs),
                (part, head),
                rows,
                dst,
            );
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
            for comp in 0..4 {
                let dst = (i * 4 + comp) * heads * hv + head * hv;
                w.norm_v[dst..dst + hv].copy_from_slice(&o[comp * hv..(comp + 1) * hv]);
            }
            let dst = i * heads * hs + head * hs;
            w.norm_s[dst..dst + hs].copy_from_slice(&o[4 * hv..]);
        }
    }
}

/// Head `head`'s part `part` (0 queries, 1 keys, 2 values) of the first `rows` tokens,
/// `[rows, 4 hv + hs]` (components, then scalars), each row divided by its RMS factor.
fn split_head<T: Real>(
    wide_v: &[T],
    wide_s: &[T],
    (heads, hv, hs): (usize, usize, usize),
    (part, head): (usize, usize),
    rows: usize,
    dst: &mut Vec<T>,
) {
    let d = 4 * hv + hs;
    let (width_v, width_s) = (3 * hv * heads, 3 * hs * heads);
    dst.resize(rows * d, T::zero());
    for (i, row) in dst.chunks_exact_mut(d).enumerate() {
        for comp in 0..4 {
            let src = &wide_v[(i * 4 + comp) * width_v..];
            for c in 0..hv {
                row[comp * hv + c] = src[(part * hv + c) * heads + head];
            }
        }
        let src = &wide_s[i * width_s..];
        for c in 0..hs {
            row[4 * hv + c] = src[(part * hs + c) * heads + head];
        }
        let f = rms_factor(&row[..4 * hv], hv, &row[4 * hv..]);
        for x in row.iter_mut() {
            *x = *x * f;
        }
    }
}

/// The softmax of one row in place.
fn softmax<T: Real>(row: &mut [T]) {
    let max = row.iter().copied().fold(T::neg_infinity(), Float::max);
    let mut sum = T::zero();
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum = sum + *x;
    }
    let inv = T::one() / sum;
    for x in row.iter_mut() {
        *x = *x * inv;
    }
}

//! The token stage of [`crate::slim`] in raw integers: real tokens only (padding is
//! never read: attention masks it and the readout is the class token), every buffer
//! sized once for [`MAX_TOKENS`].

use crate::fixed::{Cast, FixedType};
use crate::int_dense::IntDense;
use crate::slim::{
    SlimAttentionLayer, SlimBlockLayer, SlimGluLayer, SlimLinearLayer, SlimNormLayer, SlimStage,
    MAX_TOKENS,
};
use crate::table::Table;

/// The Minkowski metric's signs.
const METRIC: [i64; 4] = [1, -1, -1, -1];

/// A table as raw entries.
#[derive(Debug, Clone)]
struct IntTable {
    entries: Vec<i64>,
    min: i64,
    /// The cast of the exact sum before the table to its input type.
    cast: Cast,
}

impl IntTable {
    /// `table`, read at sums with `from_fraction` fraction bits.
    fn new(table: &Table, from_fraction: i32) -> Self {
        Self {
            entries: table.raw_entries(),
            min: table.input.min_raw(),
            cast: Cast::new(from_fraction, table.input),
        }
    }

    /// The entry for the exact sum `raw`.
    #[inline]
    fn at(&self, raw: i64) -> i64 {
        self.entries[(self.cast.apply(raw) - self.min) as usize]
    }
}

/// A linear map: vectors as `[rows * 4, in_v]`, scalars as `[rows, in_s]`.
#[derive(Debug, Clone)]
struct IntSlimLinear {
    vectors: Option<IntDense>,
    scalars: Option<IntDense>,
    outputs: (usize, usize),
    fraction: i32,
}

impl IntSlimLinear {
    fn new(layer: &SlimLinearLayer, input: FixedType) -> Self {
        Self {
            vectors: layer.vectors.as_ref().map(|d| IntDense::new(d, input)),
            scalars: layer.scalars.as_ref().map(|d| IntDense::new(d, input)),
            outputs: layer.outputs(),
            fraction: layer.result().unwrap_or(input).fraction(),
        }
    }

    /// `tokens` rows of `(v, s)` into `(v_out, s_out)`.
    fn run(
        &self,
        tokens: usize,
        (v, s): (&[i64], &[i64]),
        (v_out, s_out): (&mut [i64], &mut [i64]),
    ) {
        let (ov, os) = self.outputs;
        match &self.vectors {
            Some(d) => d.run_rows(&v[..tokens * 4 * d.inputs], &mut v_out[..tokens * 4 * ov]),
            None => v_out[..tokens * 4 * ov].fill(0),
        }
        match &self.scalars {
            Some(d) => d.run_rows(&s[..tokens * d.inputs], &mut s_out[..tokens * os]),
            None => s_out[..tokens * os].fill(0),
        }
    }
}

/// An RMS norm.
#[derive(Debug, Clone)]
struct IntNorm {
    channels: (usize, usize),
    gains: Option<(Vec<i64>, Vec<i64>)>,
    table: IntTable,
    result: Cast,
}

impl IntNorm {
    fn new(layer: &SlimNormLayer, input: FixedType) -> Self {
        let raw = |g: &[f64]| g.iter().map(|&x| layer.gain.quantize_raw(x)).collect();
        let gains = layer.gains.as_ref().map(|(v, s)| (raw(v), raw(s)));
        let gain_fraction = if gains.is_some() {
            layer.gain.fraction()
        } else {
            0
        };
        Self {
            channels: layer.channels,
            gains,
            table: IntTable::new(&layer.table, 2 * input.fraction()),
            result: Cast::new(
                input.fraction() + layer.table.output.fraction() + gain_fraction,
                layer.result,
            ),
        }
    }

    /// One token, in place: vectors `[4, v]` and scalars `[s]` times the factor and the
    /// gains, exact (the caller casts whole tensors to the result type).
    #[inline]
    fn scale_token(&self, v: &mut [i64], s: &mut [i64]) {
        let (nv, ns) = self.channels;
        let (v, s) = (&mut v[..4 * nv], &mut s[..ns]);
        let mut sum = 0i64;
        for c in 0..nv {
            let square: i64 = (0..4).map(|k| METRIC[k] * v[k * nv + c].pow(2)).sum();
            sum += square.abs();
        }
        sum += s.iter().map(|x| x * x).sum::<i64>();
        let factor = self.table.at(sum);
        if let Some((gv, gs)) = &self.gains {
            for component in v.chunks_exact_mut(nv) {
                for (x, g) in component.iter_mut().zip(gv) {
                    *x *= factor * g;
                }
            }
            for (x, g) in s.iter_mut().zip(gs) {
                *x *= factor * g;
            }
        } else {
            for x in v.iter_mut().chain(s.iter_mut()) {
                *x *= factor;
            }
        }
    }

    /// Every token of a stream `[tokens, 4, v]`, `[tokens, s]` in place.
    fn run(&self, tokens: usize, v: &mut [i64], s: &mut [i64]) {
        let (nv, ns) = self.channels;
        let (v, s) = (&mut v[..tokens * 4 * nv], &mut s[..tokens * ns]);
        for (tv, ts) in v.chunks_exact_mut(4 * nv).zip(s.chunks_exact_mut(ns)) {
            self.scale_token(tv, ts);
        }
        self.result.apply_all(v, i64::MIN);
        self.result.apply_all(s, i64::MIN);
    }
}

/// A gated unit.
#[derive(Debug, Clone)]
struct IntGlu {
    linear: IntSlimLinear,
    gate_v: IntTable,
    gate_s: IntTable,
    result_v: Cast,
    result_s: Cast,
}

impl IntGlu {
    fn new(layer: &SlimGluLayer, input: FixedType) -> Self {
        let linear = IntSlimLinear::new(&layer.linear, input);
        let f = linear.fraction;
        Self {
            gate_v: IntTable::new(&layer.gate_v, 2 * f),
            gate_s: IntTable::new(&layer.gate_s, f),
            result_v: Cast::new(f + layer.gate_v.output.fraction(), layer.result),
            result_s: Cast::new(f + layer.gate_s.output.fraction(), layer.result),
            linear,
        }
    }

    /// Output vector and scalar channels.
    fn outputs(&self) -> (usize, usize) {
        (self.linear.outputs.0 / 3, self.linear.outputs.1 / 2)
    }

    /// `(v, s)` -> `(v_out, s_out)` through `wide` (the linear map's outputs).
    fn run(
        &self,
        tokens: usize,
        input: (&[i64], &[i64]),
        (wide_v, wide_s): (&mut [i64], &mut [i64]),
        (v_out, s_out): (&mut [i64], &mut [i64]),
    ) {
        self.linear.run(tokens, input, (&mut *wide_v, &mut *wide_s));
        let (ov, os) = self.outputs();
        let (v_out, s_out) = (&mut v_out[..tokens * 4 * ov], &mut s_out[..tokens * os]);
        for t in 0..tokens {
            let w = &wide_v[t * 12 * ov..(t + 1) * 12 * ov];
            for c in 0..ov {
                let dot: i64 = (0..4)
                    .map(|k| METRIC[k] * w[k * 3 * ov + ov + c] * w[k * 3 * ov + 2 * ov + c])
                    .sum();
                let gate = self.gate_v.at(dot);
                for k in 0..4 {
                    v_out[(t * 4 + k) * ov + c] = gate * w[k * 3 * ov + c];
                }
            }
            let w = &wide_s[t * 2 * os..(t + 1) * 2 * os];
            for c in 0..os {
                s_out[t * os + c] = self.gate_s.at(w[os + c]) * w[c];
            }
        }
        self.result_v.apply_all(v_out, i64::MIN);
        self.result_s.apply_all(s_out, i64::MIN);
    }
}

/// Self-attention.
#[derive(Debug, Clone)]
struct IntAttention {
    heads: usize,
    hv: usize,
    hs: usize,
    linear_in: IntSlimLinear,
    norm: IntNorm,
    exp: IntTable,
    recip: IntTable,
    probabilities: Cast,
    heads_result: Cast,
    linear_out: IntSlimLinear,
}

impl IntAttention {
    fn new(layer: &SlimAttentionLayer, input: FixedType) -> Self {
        let linear_in = IntSlimLinear::new(&layer.linear_in, input);
        let x = layer.linear_in.result().unwrap_or(input);
        let n = layer.norm.result.fraction();
        let (fe, fr) = (layer.exp.output.fraction(), layer.recip.output.fraction());
        Self {
            heads: layer.heads,
            hv: layer.head_channels.0,
            hs: layer.head_channels.1,
            norm: IntNorm::new(&layer.norm, x),
            exp: IntTable::new(&layer.exp, 2 * n),
            recip: IntTable::new(&layer.recip, fe),
            probabilities: Cast::new(fe + fr, layer.probabilities),
            heads_result: Cast::new(layer.probabilities.fraction() + n, layer.heads_result),
            linear_out: IntSlimLinear::new(&layer.linear_out, layer.heads_result),
            linear_in,
        }
    }

    /// Attention of the stream `(v, s)`; the result in `out`.
    fn run(
        &self,
        tokens: usize,
        input: (&[i64], &[i64]),
        scratch: &mut Scratch,
        out: (&mut [i64], &mut [i64]),
    ) {
        let (h, hv, hs) = (self.heads, self.hv, self.hs);
        let d = 4 * hv + hs;
        let Scratch {
            wide_v: qv,
            wide_s: qs,
            heads,
            merged_v,
            merged_s,
            row: logits,
            numerators,
            head_row: lowered,
            acc,
            ..
        } = scratch;
        self.linear_in
            .run(tokens, input, (&mut qv[..], &mut qs[..]));
        // Every head's q, k and v rows `[part][head][token][4 hv + hs]`, normalised: the
        // projection's channel (part, c, head) sits at (part * hv + c) * h + head.
        let (cv, cs) = (3 * hv * h, 3 * hs * h);
        let at = |part: usize, head: usize, t: usize| ((part * h + head) * tokens + t) * d;
        for t in 0..tokens {
            for part in 0..3 {
                for head in 0..h {
                    let row = &mut heads[at(part, head, t)..at(part, head, t) + d];
                    for k in 0..4 {
                        for c in 0..hv {
                            row[k * hv + c] = qv[t * 4 * cv + k * cv + (part * hv + c) * h + head];
                        }
                    }
                    for c in 0..hs {
                        row[4 * hv + c] = qs[t * cs + (part * hs + c) * h + head];
                    }
                    let (rv, rs) = row.split_at_mut(4 * hv);
                    self.norm.scale_token(rv, rs);
                }
            }
        }
        self.norm
            .result
            .apply_all(&mut heads[..3 * h * tokens * d], i64::MIN);
        let (merged_v, merged_s) = (
            &mut merged_v[..tokens * 4 * h * hv],
            &mut merged_s[..tokens * h * hs],
        );
        let probabilities = &mut numerators[..tokens * tokens];
        for head in 0..h {
            for (i, row) in probabilities.chunks_exact_mut(tokens).enumerate() {
                // The query with the metric applied to its vector components.
                let q = &heads[at(0, head, i)..at(0, head, i) + d];
                for (x, (l, &qx)) in lowered[..d].iter_mut().zip(q).enumerate() {
                    *l = if x < hv || x >= 4 * hv { qx } else { -qx };
                }
                for (j, logit) in logits[..tokens].iter_mut().enumerate() {
                    let k = &heads[at(1, head, j)..at(1, head, j) + d];
                    *logit = lowered[..d].iter().zip(k).map(|(a, b)| a * b).sum();
                }
                let max = logits[..tokens].iter().copied().max().unwrap_or(0);
                let mut total = 0i64;
                for (e, &l) in row.iter_mut().zip(&logits[..tokens]) {
                    *e = self.exp.at(l - max);
                    total += *e;
                }
                let recip = self.recip.at(total);
                for e in row.iter_mut() {
                    *e *= recip;
                }
            }
            self.probabilities.apply_all(probabilities, i64::MIN);
            // The weighted values, summed exactly, then placed in the merged heads
            // (head-major).
            for (i, row) in probabilities.chunks_exact(tokens).enumerate() {
                let acc = &mut acc[..d];
                acc.fill(0);
                for (j, &p) in row.iter().enumerate() {
                    if p != 0 {
                        let v = &heads[at(2, head, j)..at(2, head, j) + d];
                        for (a, &x) in acc.iter_mut().zip(v) {
                            *a += p * x;
                        }
                    }
                }
                for k in 0..4 {
                    let dst = (i * 4 + k) * h * hv + head * hv;
                    merged_v[dst..dst + hv].copy_from_slice(&acc[k * hv..(k + 1) * hv]);
                }
                let dst = i * h * hs + head * hs;
                merged_s[dst..dst + hs].copy_from_slice(&acc[4 * hv..]);
            }
        }
        self.heads_result.apply_all(merged_v, i64::MIN);
        self.heads_result.apply_all(merged_s, i64::MIN);
        self.linear_out
            .run(tokens, (&merged_v[..], &merged_s[..]), out);
    }
}

/// The sum of a stream and a sub-layer's output, cast to the residual type.
#[derive(Debug, Clone)]
struct IntResidual {
    stream_shift: u32,
    update_shift: u32,
    cast: Cast,
}

impl IntResidual {
    fn new(stream: i32, update: i32, residual: FixedType) -> Self {
        let f = stream.max(update);
        Self {
            stream_shift: (f - stream) as u32,
            update_shift: (f - update) as u32,
            cast: Cast::new(f, residual),
        }
    }

    fn run(&self, stream: &mut [i64], update: &[i64]) {
        for (x, &u) in stream.iter_mut().zip(update) {
            *x = (*x << self.stream_shift) + (u << self.update_shift);
        }
        self.cast.apply_all(stream, i64::MIN);
    }
}

#[derive(Debug, Clone)]
struct IntBlock {
    norm1: IntNorm,
    attention: IntAttention,
    residual1: IntResidual,
    norm2: IntNorm,
    glus: Vec<IntGlu>,
    last: IntSlimLinear,
    residual2: IntResidual,
}

impl IntBlock {
    fn new(block: &SlimBlockLayer, input: FixedType) -> Self {
        let attention_out = block
            .attention
            .linear_out
            .result()
            .unwrap_or(block.attention.heads_result);
        let mut ty = block.norm2.result;
        let glus = block
            .glus
            .iter()
            .map(|g| {
                let glu = IntGlu::new(g, ty);
                ty = g.result;
                glu
            })
            .collect();
        let last_out = block.last.result().unwrap_or(ty);
        Self {
            norm1: IntNorm::new(&block.norm1, input),
            attention: IntAttention::new(&block.attention, block.norm1.result),
            residual1: IntResidual::new(input.fraction(), attention_out.fraction(), block.residual),
            norm2: IntNorm::new(&block.norm2, block.residual),
            glus,
            last: IntSlimLinear::new(&block.last, ty),
            residual2: IntResidual::new(
                block.residual.fraction(),
                last_out.fraction(),
                block.residual,
            ),
        }
    }

    fn run(&self, tokens: usize, channels: (usize, usize), b: &mut Buffers) {
        let (nv, ns) = (tokens * 4 * channels.0, tokens * channels.1);
        b.normed_v[..nv].copy_from_slice(&b.stream_v[..nv]);
        b.normed_s[..ns].copy_from_slice(&b.stream_s[..ns]);
        self.norm1.run(tokens, &mut b.normed_v, &mut b.normed_s);
        self.attention.run(
            tokens,
            (&b.normed_v, &b.normed_s),
            &mut b.scratch,
            (&mut b.out_v, &mut b.out_s),
        );
        self.residual1.run(&mut b.stream_v[..nv], &b.out_v[..nv]);
        self.residual1.run(&mut b.stream_s[..ns], &b.out_s[..ns]);
        b.normed_v[..nv].copy_from_slice(&b.stream_v[..nv]);
        b.normed_s[..ns].copy_from_slice(&b.stream_s[..ns]);
        self.norm2.run(tokens, &mut b.normed_v, &mut b.normed_s);
        for glu in &self.glus {
            glu.run(
                tokens,
                (&b.normed_v, &b.normed_s),
                (&mut b.scratch.wide_v, &mut b.scratch.wide_s),
                (&mut b.out_v, &mut b.out_s),
            );
            std::mem::swap(&mut b.normed_v, &mut b.out_v);
            std::mem::swap(&mut b.normed_s, &mut b.out_s);
        }
        self.last.run(
            tokens,
            (&b.normed_v, &b.normed_s),
            (&mut b.out_v, &mut b.out_s),
        );
        self.residual2.run(&mut b.stream_v[..nv], &b.out_v[..nv]);
        self.residual2.run(&mut b.stream_s[..ns], &b.out_s[..ns]);
    }
}

/// The stage's buffers, each sized for [`MAX_TOKENS`] at its widest use.
#[derive(Debug, Clone, Default)]
struct Buffers {
    stream_v: Vec<i64>,
    stream_s: Vec<i64>,
    normed_v: Vec<i64>,
    normed_s: Vec<i64>,
    out_v: Vec<i64>,
    out_s: Vec<i64>,
    /// What the attention and the gated units work in.
    scratch: Scratch,
}

/// The sub-layers' working buffers.
#[derive(Debug, Clone, Default)]
struct Scratch {
    /// A linear map's outputs before its gates or heads split them.
    wide_v: Vec<i64>,
    wide_s: Vec<i64>,
    merged_v: Vec<i64>,
    merged_s: Vec<i64>,
    /// Every head's normalised q, k and v rows.
    heads: Vec<i64>,
    row: Vec<i64>,
    numerators: Vec<i64>,
    /// One head's query with the metric applied.
    head_row: Vec<i64>,
    /// One head's weighted values for one query.
    acc: Vec<i64>,
}

/// The token stage in raw integers.
#[derive(Debug, Clone)]
pub(crate) struct IntSlimStage {
    scalars: usize,
    input: FixedType,
    linear_in: IntSlimLinear,
    blocks: Vec<IntBlock>,
    channels: (usize, usize),
    buffers: Buffers,
}

impl IntSlimStage {
    /// The stage of a validated graph with inputs of type `input`.
    pub(crate) fn new(stage: &SlimStage, input: FixedType) -> Self {
        let mut ty = stage.linear_in.result().unwrap_or(input);
        let blocks = stage
            .blocks
            .iter()
            .map(|b| {
                let block = IntBlock::new(b, ty);
                ty = b.residual;
                block
            })
            .collect();
        // The widest vector and scalar tensors any layer reads or writes.
        let mut widths = vec![stage.linear_in.outputs(), (1, stage.scalars)];
        for b in &stage.blocks {
            widths.push(b.attention.linear_in.outputs());
            for g in &b.glus {
                widths.push(g.linear.outputs());
            }
        }
        let (wv, ws) = widths
            .iter()
            .fold((1, 1), |(v, s), &(a, b)| (v.max(a), s.max(b)));
        let buffer = |w: usize| vec![0i64; MAX_TOKENS * w];
        Self {
            scalars: stage.scalars,
            input,
            linear_in: IntSlimLinear::new(&stage.linear_in, input),
            blocks,
            channels: stage.channels(),
            buffers: Buffers {
                stream_v: buffer(4 * wv),
                stream_s: buffer(ws),
                normed_v: buffer(4 * wv),
                normed_s: buffer(ws),
                out_v: buffer(4 * wv),
                out_s: buffer(ws),
                scratch: Scratch {
                    wide_v: buffer(4 * wv),
                    wide_s: buffer(ws),
                    merged_v: buffer(4 * wv),
                    merged_s: buffer(ws),
                    heads: buffer(4 * wv + ws),
                    row: vec![0; MAX_TOKENS],
                    numerators: vec![0; MAX_TOKENS * MAX_TOKENS],
                    head_row: vec![0; 4 * wv + ws],
                    acc: vec![0; 4 * wv + ws],
                },
            },
        }
    }

    /// Features per token.
    pub(crate) fn features(&self) -> usize {
        4 + self.scalars
    }

    /// Runs the stage on the real tokens of one jet (`features` `[tokens, 4 + scalars]`,
    /// `mask` `[tokens]`, the class token first and real) and writes the class token's
    /// scalar channels to `out`; returns their count.
    pub(crate) fn run(&mut self, features: &[f32], mask: &[f32], out: &mut [i64]) -> usize {
        let width = self.features();
        let b = &mut self.buffers;
        // The inputs of the real tokens, vectors as one channel `[tokens, 4, 1]`.
        let mut tokens = 0;
        for (row, _) in features
            .chunks_exact(width)
            .zip(mask)
            .filter(|(_, m)| **m > 0.0)
        {
            for (k, &x) in row[..4].iter().enumerate() {
                b.normed_v[tokens * 4 + k] = self.input.quantize_raw(f64::from(x));
            }
            for (c, &x) in row[4..].iter().enumerate() {
                b.normed_s[tokens * self.scalars + c] = self.input.quantize_raw(f64::from(x));
            }
            tokens += 1;
        }
        self.linear_in.run(
            tokens,
            (&b.normed_v, &b.normed_s),
            (&mut b.stream_v, &mut b.stream_s),
        );
        for block in &self.blocks {
            block.run(tokens, self.channels, b);
        }
        let s = self.channels.1;
        out[..s].copy_from_slice(&b.stream_s[..s]);
        s
    }
}

//! The integer engine of a [`PairStage`]: PELICAN's embedding, labels, message layers,
//! 2 -> 2 blocks and readout on the real nodes of one jet, in raw integers. Pair tensors
//! are `[n, n, C]` row-major over the `n` real nodes only (padding never enters a sum);
//! the buffers grow to the largest jet seen and are then reused.

use crate::fixed::{Cast, FixedType};
use crate::int_dense::IntDense;
use crate::pairs::{
    embed_log, embed_with_log, label_type, pair_sum_fraction, pair_to_pair_ops, PairLayer, PairOps,
    PairStage,
};

/// A pair layer in raw integers.
#[derive(Debug, Clone)]
struct IntPair {
    inputs: usize,
    outputs: usize,
    /// Raw weights `[ops][inputs][outputs]`, each shifted to the sum's fraction bits.
    weight: Vec<i64>,
    /// Raw biases aligned to the sum's fraction bits.
    bias: Vec<i64>,
    diag_bias: Vec<i64>,
    accum: Option<Cast>,
    result: Cast,
    relu: bool,
    /// The cast of a sum over nodes (times `2^-shift`) to the pool type.
    node_sum: Cast,
    /// The cast of the total over pairs (times `2^-2 shift`) to the pool type.
    total_sum: Cast,
}

impl IntPair {
    fn new(p: &PairLayer, input: FixedType, pool: FixedType, shift: u32) -> Self {
        let fraction = pair_sum_fraction(p, input, pool);
        let (w, b) = (p.precision.weight, p.precision.bias);
        let block = p.inputs * p.outputs;
        let weight = p
            .weight
            .iter()
            .enumerate()
            .map(|(index, &v)| {
                let x = if p.ops.reads_aggregate(index / block) {
                    pool
                } else {
                    input
                };
                w.quantize_raw(v) << (fraction - w.fraction() - x.fraction())
            })
            .collect();
        let align = |values: &[f64]| -> Vec<i64> {
            values
                .iter()
                .map(|&v| b.quantize_raw(v) << (fraction - b.fraction()))
                .collect()
        };
        let shift = shift as i32;
        Self {
            inputs: p.inputs,
            outputs: p.outputs,
            weight,
            bias: align(&p.bias),
            diag_bias: align(&p.diag_bias),
            accum: p.precision.accum.map(|a| Cast::new(fraction, a)),
            result: Cast::new(
                p.precision.accum.map_or(fraction, |a| a.fraction()),
                p.precision.result,
            ),
            relu: p.relu,
            node_sum: Cast::new(input.fraction() + shift, pool),
            total_sum: Cast::new(input.fraction() + 2 * shift, pool),
        }
    }

    /// Adds `W_k x` to `acc` (`x` one node's or the jet's `inputs` values).
    #[inline]
    fn mix(&self, k: usize, x: &[i64], acc: &mut [i64]) {
        let block = self.inputs * self.outputs;
        let w = &self.weight[k * block..(k + 1) * block];
        for (&xc, column) in x.iter().zip(w.chunks_exact(self.outputs)) {
            if xc != 0 {
                for (a, &wc) in acc.iter_mut().zip(column) {
                    *a += wc * xc;
                }
            }
        }
    }

    /// The accumulator and result casts of a finished sum, with the ReLU.
    #[inline]
    fn finish(&self, y: &mut [i64]) {
        if let Some(accum) = &self.accum {
            accum.apply_all(y, i64::MIN);
        }
        self.result
            .apply_all(y, if self.relu { 0 } else { i64::MIN });
    }
}

/// Per-node and per-jet intermediates of one layer.
#[derive(Debug, Clone, Default)]
struct NodeBuffers {
    diag: Vec<i64>,
    row: Vec<i64>,
    col: Vec<i64>,
    trace: Vec<i64>,
    total: Vec<i64>,
    /// `W3 d_i + W5 r_i + W6 c_i`, added to every pair (i, .).
    first: Vec<i64>,
    /// `W4 d_j + W7 r_j + W8 c_j`, added to every pair (., j).
    second: Vec<i64>,
    /// `W2 d_i + W9 r_i + W10 c_i`, added to (i, i).
    on_diag: Vec<i64>,
    /// Bias and jet terms added everywhere, and on the diagonal.
    jet: Vec<i64>,
    jet_diag: Vec<i64>,
}

/// `v` as `len` zeros (an accumulator).
fn resize(v: &mut Vec<i64>, len: usize) {
    v.clear();
    v.resize(len, 0);
}

/// `v` with `len` values, whatever they are: for outputs written in full, which need no
/// zeroing (the pair tensors' `memset` was 7% of the engine's instructions).
fn fit(v: &mut Vec<i64>, len: usize) {
    v.resize(len, 0);
}

impl NodeBuffers {
    /// Diagonal, scaled row, column, trace and total sums of `t` `[n, n, c]`, the
    /// aggregates cast to the pool type.
    fn aggregate(&mut self, layer: &IntPair, t: &[i64], n: usize) {
        let c = layer.inputs;
        for v in [&mut self.diag, &mut self.row, &mut self.col] {
            resize(v, n * c);
        }
        resize(&mut self.trace, c);
        resize(&mut self.total, c);
        for i in 0..n {
            for j in 0..n {
                let x = &t[(i * n + j) * c..(i * n + j + 1) * c];
                let (row, col) = (
                    &mut self.row[i * c..(i + 1) * c],
                    &mut self.col[j * c..(j + 1) * c],
                );
                for (k, &v) in x.iter().enumerate() {
                    row[k] += v;
                    col[k] += v;
                    self.total[k] += v;
                }
                if i == j {
                    self.diag[i * c..(i + 1) * c].copy_from_slice(x);
                    for (s, &v) in self.trace.iter_mut().zip(x) {
                        *s += v;
                    }
                }
            }
        }
        for v in [&mut self.row, &mut self.col, &mut self.trace] {
            layer.node_sum.apply_all(v, i64::MIN);
        }
        layer.total_sum.apply_all(&mut self.total, i64::MIN);
    }

    /// The jet terms `bias + W_a tr + W_b s` into `jet` and, for 2 -> 2 layers,
    /// `diag_bias + W12 tr + W14 s` into `jet_diag`.
    fn jet_terms(&mut self, layer: &IntPair, ops: PairOps) {
        self.jet.clone_from(&layer.bias);
        let (tr, s) = match ops {
            PairOps::PairToJet => (0, 1),
            _ => (pair_to_pair_ops::JET[0], pair_to_pair_ops::JET[1]),
        };
        layer.mix(tr, &self.trace, &mut self.jet);
        layer.mix(s, &self.total, &mut self.jet);
        if ops == PairOps::PairToPair {
            self.jet_diag.clone_from(&layer.diag_bias);
            let [tr, s] = pair_to_pair_ops::JET_DIAGONAL;
            layer.mix(tr, &self.trace, &mut self.jet_diag);
            layer.mix(s, &self.total, &mut self.jet_diag);
        }
    }

    /// The node terms of a 2 -> 2 layer.
    fn node_terms(&mut self, layer: &IntPair, n: usize) {
        let (c, o) = (layer.inputs, layer.outputs);
        for v in [&mut self.first, &mut self.second, &mut self.on_diag] {
            resize(v, n * o);
        }
        for i in 0..n {
            let (d, r, cl) = (
                &self.diag[i * c..(i + 1) * c],
                &self.row[i * c..(i + 1) * c],
                &self.col[i * c..(i + 1) * c],
            );
            for (ops, out) in [
                (pair_to_pair_ops::ROWS, &mut self.first),
                (pair_to_pair_ops::COLUMNS, &mut self.second),
                (pair_to_pair_ops::DIAGONAL, &mut self.on_diag),
            ] {
                let acc = &mut out[i * o..(i + 1) * o];
                layer.mix(ops[0], d, acc);
                layer.mix(ops[1], r, acc);
                layer.mix(ops[2], cl, acc);
            }
        }
    }
}

/// The pair stage in raw integers, with its buffers.
#[derive(Debug, Clone)]
pub(crate) struct IntPairStage {
    alphas: Vec<f32>,
    input: FixedType,
    labels: IntPair,
    blocks: Vec<(IntDense, IntPair)>,
    readout_message: IntDense,
    readout: IntPair,
    /// Real nodes of the current jet.
    real: Vec<usize>,
    /// Pair tensors: the current one and the next.
    t: Vec<i64>,
    fresh: Vec<i64>,
    nodes: NodeBuffers,
}

impl IntPairStage {
    /// The stage of a validated graph with input type `input`.
    pub(crate) fn new(stage: &PairStage, input: FixedType) -> Self {
        let pair = |p: &PairLayer, ty: FixedType| IntPair::new(p, ty, stage.pool, stage.shift);
        let mut ty = input;
        let blocks: Vec<(IntDense, IntPair)> = stage
            .blocks
            .iter()
            .map(|(message, eq)| {
                let block = (
                    IntDense::new(message, ty),
                    pair(eq, message.precision.result),
                );
                ty = eq.precision.result;
                block
            })
            .collect();
        Self {
            alphas: stage.alphas.clone(),
            input,
            labels: pair(&stage.labels, label_type()),
            readout_message: IntDense::new(&stage.readout_message, ty),
            readout: pair(&stage.readout, stage.readout_message.precision.result),
            blocks,
            real: Vec::new(),
            t: Vec::new(),
            fresh: Vec::new(),
            nodes: NodeBuffers::default(),
        }
    }

    /// Runs the stage on one jet: `features` `[nodes, nodes + 2]` (per node its products
    /// with every node, then its two labels), `mask` `[nodes]`; writes the jet features
    /// into `out` and returns their number.
    pub(crate) fn run(&mut self, features: &[f32], mask: &[f32], out: &mut [i64]) -> usize {
        let nodes = mask.len();
        let stride = nodes + 2;
        self.real.clear();
        self.real.extend((0..nodes).filter(|&i| mask[i] > 0.0));
        let n = self.real.len();
        self.embed(features, stride, n);
        for (message, eq) in &self.blocks {
            per_pair(message, &self.t, &mut self.fresh, n);
            std::mem::swap(&mut self.t, &mut self.fresh);
            pair_to_pair(eq, &self.t, &mut self.fresh, n, &mut self.nodes);
            std::mem::swap(&mut self.t, &mut self.fresh);
        }
        per_pair(&self.readout_message, &self.t, &mut self.fresh, n);
        let r = &self.readout;
        self.nodes.aggregate(r, &self.fresh, n);
        self.nodes.jet_terms(r, PairOps::PairToJet);
        let y = &mut out[..r.outputs];
        y.copy_from_slice(&self.nodes.jet);
        r.finish(y);
        r.outputs
    }

    /// The first pair tensor: the embedded products rounded to the input type, then the
    /// labels layer's channels.
    fn embed(&mut self, features: &[f32], stride: usize, n: usize) {
        let (e, l) = (self.alphas.len(), self.labels.outputs);
        let c = e + l;
        fit(&mut self.t, n * n * c);
        for (a, &i) in self.real.iter().enumerate() {
            for (b, &j) in self.real.iter().enumerate() {
                let dot = features[i * stride + j];
                let (here, mirror) = ((a * n + b) * c, (b * n + a) * c);
                // Products are symmetric in practice: reuse the mirror's when it holds
                // the same bits (it was computed for b < a).
                if b < a && features[j * stride + i].to_bits() == dot.to_bits() {
                    self.t.copy_within(mirror..mirror + e, here);
                    continue;
                }
                let log = embed_log(dot);
                for (v, &alpha) in self.t[here..here + e].iter_mut().zip(&self.alphas) {
                    *v = self
                        .input
                        .quantize_raw(embed_with_log(log, dot < 0.0, alpha));
                }
            }
        }
        // Labels: 0/1 per node; S = their sum over nodes, scaled and cast to the pool.
        let layer = &self.labels;
        let label = |i: usize, k: usize| i64::from(features[i * stride + stride - 2 + k] > 0.0);
        let nb = &mut self.nodes;
        resize(&mut nb.total, 2);
        for &i in &self.real {
            for k in 0..2 {
                nb.total[k] += label(i, k);
            }
        }
        layer.node_sum.apply_all(&mut nb.total, i64::MIN);
        nb.jet.clone_from(&layer.bias);
        layer.mix(3, &nb.total, &mut nb.jet);
        resize(&mut nb.jet_diag, l);
        layer.mix(4, &nb.total, &mut nb.jet_diag);
        for v in [&mut nb.first, &mut nb.second, &mut nb.on_diag] {
            resize(v, n * l);
        }
        for (a, &i) in self.real.iter().enumerate() {
            let x = [label(i, 0), label(i, 1)];
            layer.mix(1, &x, &mut nb.first[a * l..(a + 1) * l]);
            layer.mix(2, &x, &mut nb.second[a * l..(a + 1) * l]);
            layer.mix(0, &x, &mut nb.on_diag[a * l..(a + 1) * l]);
        }
        let labels = &mut self.fresh;
        fit(labels, n * n * l);
        for a in 0..n {
            for b in 0..n {
                let y = &mut labels[(a * n + b) * l..(a * n + b + 1) * l];
                for (k, v) in y.iter_mut().enumerate() {
                    *v = nb.jet[k] + nb.first[a * l + k] + nb.second[b * l + k];
                    if a == b {
                        *v += nb.on_diag[a * l + k] + nb.jet_diag[k];
                    }
                }
            }
        }
        layer.finish(labels);
        for (pair, y) in self.t.chunks_exact_mut(c).zip(labels.chunks_exact(l)) {
            pair[e..].copy_from_slice(y);
        }
    }
}

/// A dense layer on every pair of `t` `[n, n, inputs]` into `out` `[n, n, outputs]`.
fn per_pair(layer: &IntDense, t: &[i64], out: &mut Vec<i64>, n: usize) {
    fit(out, n * n * layer.outputs);
    layer.run_rows(t, out);
}

/// A 2 -> 2 layer on `t` `[n, n, inputs]` into `out` `[n, n, outputs]`.
fn pair_to_pair(layer: &IntPair, t: &[i64], out: &mut Vec<i64>, n: usize, nb: &mut NodeBuffers) {
    let (ci, co) = (layer.inputs, layer.outputs);
    nb.aggregate(layer, t, n);
    nb.jet_terms(layer, PairOps::PairToPair);
    nb.node_terms(layer, n);
    fit(out, n * n * co);
    let (w0, w1) = (
        &layer.weight[..ci * co],
        &layer.weight[ci * co..2 * ci * co],
    );
    for i in 0..n {
        let first = &nb.first[i * co..(i + 1) * co];
        for j in 0..n {
            let y = &mut out[(i * n + j) * co..(i * n + j + 1) * co];
            let second = &nb.second[j * co..(j + 1) * co];
            for (k, v) in y.iter_mut().enumerate() {
                *v = nb.jet[k] + first[k] + second[k];
            }
            if i == j {
                let on_diag = &nb.on_diag[i * co..(i + 1) * co];
                for (k, v) in y.iter_mut().enumerate() {
                    *v += on_diag[k] + nb.jet_diag[k];
                }
            }
            // t_ij W0 + t_ji W1 in one pass over the outputs (ReLU zeros skipped).
            let (tij, tji) = (
                &t[(i * n + j) * ci..(i * n + j + 1) * ci],
                &t[(j * n + i) * ci..(j * n + i + 1) * ci],
            );
            for ((&a, &b), (r0, r1)) in tij
                .iter()
                .zip(tji)
                .zip(w0.chunks_exact(co).zip(w1.chunks_exact(co)))
            {
                if a == 0 && b == 0 {
                    continue;
                }
                for ((v, &p), &q) in y.iter_mut().zip(r0).zip(r1) {
                    *v += p * a + q * b;
                }
            }
        }
    }
    layer.finish(out);
}

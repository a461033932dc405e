//! ParticleNet's EdgeConv edge stage (weaver-core's `EdgeConvBlock` after its first 1x1
//! convolution) as one CPU kernel with its own backward: the gathered first layer
//! `centre_i + other_j` over the k neighbours of every real point, then per layer masked
//! BatchNorm, ReLU and the next 1x1 convolution, and the mean over the neighbours.
//!
//! Composed from candle operations the stage runs on every padded position of the batch
//! (about half of them for top-tagging jets padded to the longest) and makes ten to
//! fifteen passes over `[jets x points x k, C]` tensors forward and more backward, each
//! into a fresh buffer. Here only the edges of real points are formed (a point whose
//! neighbour row is all [`EdgeConvStage::PADDED`] is padding: its output is zero), in
//! fixed chunks of [`CHUNK_POINTS`] points; normalisation and ReLU are applied as each
//! chunk enters the next layer's GEMM and only the pre-normalisation activations of each
//! layer are kept for the backward. BatchNorm's training statistics are exact: per layer
//! a pass sums the activations per chunk (in f64) for the mean and a second the squared
//! deviations from it for the (biased) variance, as the composed layer does; chunk sums
//! merge in chunk order, and the gradients of the weights are summed the same way, so
//! results do not depend on the thread count.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor, WithDType};
use num_traits::{Float, NumAssign};
use rayon::prelude::*;

use super::gemm::{matmul, MatRef};
use super::{contiguous_values, cpu_storage};
use crate::error::{ModelError, Result};

/// The kernel's name in errors.
const KERNEL: &str = "fused EdgeConv stage";

/// Points per chunk: the unit of work and of the BatchNorm sums (small enough that one
/// jet of a few dozen particles still spreads over the threads).
const CHUNK_POINTS: usize = 16;

/// Points per chunk of the weight gradients, whose per-chunk partial products (`C_j x
/// C_{j-1}` each) are summed in chunk order.
const WEIGHT_CHUNK_POINTS: usize = 64;

/// The fused edge stage's shapes and settings: `k` neighbours, the widths of the block's
/// 1x1 convolutions (the first one's is the width of each half of `parts`), BatchNorm's
/// `eps`, batch statistics when `train` (else the running ones).
#[derive(Debug, Clone)]
pub struct EdgeConvStage {
    /// Neighbours per point.
    pub k: usize,
    /// Output channels of each convolution layer of the block.
    pub widths: Vec<usize>,
    /// BatchNorm's epsilon.
    pub eps: f64,
    /// Batch statistics over the real edges (training) or the running ones.
    pub train: bool,
    /// Whether the forward keeps its activations for a backward: set by [`Self::apply`]
    /// when training or when an input tracks gradients; an evaluation pass without
    /// gradients runs every layer of a chunk of points in turn instead, through two
    /// scratch buffers per thread.
    keep_activations: bool,
    /// The forward's pre-normalisation activations and statistics, for the backward.
    saved: Arc<Mutex<Option<Saved>>>,
}

/// The stage's output: the mean over neighbours `[points, C_last]` (zero on padded
/// points) and, in training, each layer's batch statistics (mean and biased variance
/// `[C_j]`, detached) with the number of real edges, for the caller to fold into the
/// running ones.
#[derive(Debug, Clone)]
pub struct EdgeConvOutput {
    /// `[points, C_last]`.
    pub pooled: Tensor,
    /// Per layer: mean and biased variance (training only).
    pub batch_stats: Option<Vec<(Tensor, Tensor)>>,
    /// Real edges (points with neighbours x k).
    pub edges: usize,
}

impl EdgeConvStage {
    /// The neighbour index of a padded point (every entry of its row).
    pub const PADDED: u32 = u32::MAX;

    /// A stage of `k` neighbours and convolution `widths`.
    pub fn new(k: usize, widths: Vec<usize>, eps: f64, train: bool) -> Self {
        Self {
            k,
            widths,
            eps,
            train,
            keep_activations: true,
            saved: Arc::default(),
        }
    }

    /// Length of the packed parameters: per layer j, the convolution weight `[C_j,
    /// C_{j-1}]` (PyTorch's layout; not for the first layer, whose product is `parts`),
    /// then BatchNorm's weight, bias, running mean and running variance `[C_j]` each,
    /// flattened and concatenated.
    pub fn parameter_len(&self) -> usize {
        let mut len = 0;
        for (j, &c) in self.widths.iter().enumerate() {
            if j > 0 {
                len += c * self.widths[j - 1];
            }
            len += 4 * c;
        }
        len
    }

    /// Packs parameters in [`Self::parameter_len`]'s order (differentiable: gradients
    /// flow back to each; pass the running statistics detached).
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn pack(parts: &[&Tensor]) -> candle_core::Result<Tensor> {
        let flat = parts
            .iter()
            .map(|t| t.flatten_all())
            .collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::cat(&flat, 0)
    }

    /// The stage on `parts` `[points, 2 C_0]` (per point, `(W1 - W2) x_i` then `W2 x_i`
    /// for the first convolution `[W1 W2]` on `[x_i, x_j - x_i]`), `neighbours` u32
    /// `[points, k]` (row indices into `parts`, or all [`Self::PADDED`] for a padded
    /// point) and the packed parameters.
    ///
    /// # Errors
    /// [`ModelError::BadInput`] naming the tensor for shapes that do not fit, dtypes other
    /// than f32 and f64 (`parts` and `params` alike), tensors not on the CPU, neighbour
    /// indices out of range and rows mixing [`Self::PADDED`] with indices.
    pub fn apply(
        &self,
        parts: &Tensor,
        neighbours: &Tensor,
        params: &Tensor,
    ) -> Result<EdgeConvOutput> {
        let (points, edges) = self.check(parts, neighbours, params)?;
        let last = *self.widths.last().unwrap_or(&0);
        let op = Self {
            keep_activations: self.train || parts.track_op() || params.track_op(),
            ..self.clone()
        };
        let run = || -> candle_core::Result<EdgeConvOutput> {
            let out = parts.contiguous()?.apply_op3(
                &neighbours.contiguous()?,
                &params.contiguous()?,
                op,
            )?;
            let pooled = out.narrow(0, 0, points * last)?.reshape((points, last))?;
            let batch_stats = if self.train {
                let tail = out.narrow(0, points * last, out.dim(0)? - points * last)?;
                let tail = tail.detach();
                let mut stats = Vec::new();
                let mut at = 0;
                for &c in &self.widths {
                    stats.push((tail.narrow(0, at, c)?, tail.narrow(0, at + c, c)?));
                    at += 2 * c;
                }
                Some(stats)
            } else {
                None
            };
            Ok(EdgeConvOutput {
                pooled,
                batch_stats,
                edges,
            })
        };
        run().map_err(|source| ModelError::Candle {
            context: "fused EdgeConv stage".into(),
            source,
        })
    }

    /// Validates the inputs; returns the number of points and of real edges.
    fn check(
        &self,
        parts: &Tensor,
        neighbours: &Tensor,
        params: &Tensor,
    ) -> Result<(usize, usize)> {
        let bad = |input: &'static str, expected: String, t: &Tensor| ModelError::BadInput {
            input,
            expected,
            found: t.dims().to_vec(),
        };
        if self.k == 0 || self.widths.is_empty() || self.widths.contains(&0) {
            return Err(ModelError::BadInput {
                input: "fused EdgeConv stage",
                expected: "k >= 1 and at least one layer, each with at least one channel".into(),
                found: [vec![self.k], self.widths.clone()].concat(),
            });
        }
        let c0 = self.widths[0];
        let points = match parts.dims() {
            [points, c] if *c == 2 * c0 => *points,
            _ => return Err(bad("parts", format!("[points, {}]", 2 * c0), parts)),
        };
        if neighbours.dims() != [points, self.k] {
            let expected = format!("[{points}, {}] (k per point of parts)", self.k);
            return Err(bad("neighbours", expected, neighbours));
        }
        let len = self.parameter_len();
        if params.dims() != [len] {
            return Err(bad("params", format!("[{len}] (packed)"), params));
        }
        let dtype = parts.dtype();
        for (name, t) in [("parts", parts), ("params", params)] {
            if !matches!(t.dtype(), DType::F32 | DType::F64) || t.dtype() != dtype {
                let expected = format!("f32 or f64, both alike (parts is {dtype:?})");
                return Err(bad(name, expected, t));
            }
        }
        if neighbours.dtype() != DType::U32 {
            return Err(bad("neighbours", "u32 indices".into(), neighbours));
        }
        for (name, t) in [
            ("parts", parts),
            ("neighbours", neighbours),
            ("params", params),
        ] {
            if !t.device().is_cpu() {
                return Err(bad(name, "a CPU tensor (a fused CPU kernel)".into(), t));
            }
        }
        let index = neighbours
            .flatten_all()
            .and_then(|t| t.to_vec1::<u32>())
            .map_err(|source| ModelError::Candle {
                context: "fused EdgeConv stage: reading the neighbours".into(),
                source,
            })?;
        let mut real = 0;
        for row in index.chunks(self.k) {
            let padded = row.iter().filter(|&&j| j == Self::PADDED).count();
            if padded == self.k {
                continue;
            }
            if padded > 0 || row.iter().any(|&j| j as usize >= points) {
                let expected =
                    format!("indices below {points} or a row all PADDED (u32::MAX) in every row");
                return Err(bad("neighbours", expected, neighbours));
            }
            real += 1;
        }
        Ok((points, real * self.k))
    }
}

/// One layer's packed parameters, split.
struct Layer<'a, T> {
    /// `[C_j, C_{j-1}]`; `None` for the first layer.
    weight: Option<&'a [T]>,
    gamma: &'a [T],
    beta: &'a [T],
    running_mean: &'a [T],
    running_var: &'a [T],
}

/// A layer's normalisation `y = x * scale + shift` and the statistics behind it.
#[derive(Debug, Clone)]
struct Norm<T> {
    mean: Vec<T>,
    var: Vec<T>,
    inv_std: Vec<T>,
    scale: Vec<T>,
    shift: Vec<T>,
}

/// What the backward needs of the forward, per dtype.
#[derive(Debug)]
enum Saved {
    F32(Activations<f32>),
    F64(Activations<f64>),
}

/// Each layer's pre-normalisation activations `[edges, C_j]` and normalisation.
#[derive(Debug)]
struct Activations<T> {
    x: Vec<Vec<T>>,
    norms: Vec<Norm<T>>,
}

/// Conversion between the saved activations and their dtype.
trait Store: Sized {
    fn store(a: Activations<Self>) -> Saved;
    fn load(s: &Saved) -> Option<&Activations<Self>>;
}

impl Store for f32 {
    fn store(a: Activations<Self>) -> Saved {
        Saved::F32(a)
    }
    fn load(s: &Saved) -> Option<&Activations<Self>> {
        match s {
            Saved::F32(a) => Some(a),
            Saved::F64(_) => None,
        }
    }
}

impl Store for f64 {
    fn store(a: Activations<Self>) -> Saved {
        Saved::F64(a)
    }
    fn load(s: &Saved) -> Option<&Activations<Self>> {
        match s {
            Saved::F64(a) => Some(a),
            Saved::F32(_) => None,
        }
    }
}

/// The kernel's arithmetic on one dtype.
struct Stage<'a, T> {
    op: &'a EdgeConvStage,
    parts: &'a [T],
    neighbours: &'a [u32],
    layers: Vec<Layer<'a, T>>,
    /// The real points, in order: edge row `r k + n` is neighbour n of point `real[r]`.
    real: Vec<usize>,
}

impl<'a, T: WithDType + Float + NumAssign + Send + Sync> Stage<'a, T> {
    fn new(op: &'a EdgeConvStage, parts: &'a [T], neighbours: &'a [u32], p: &'a [T]) -> Self {
        let mut rest = p;
        let mut take = |n: usize| {
            let (head, tail) = rest.split_at(n);
            rest = tail;
            head
        };
        let mut layers = Vec::new();
        for (j, &c) in op.widths.iter().enumerate() {
            let weight = (j > 0).then(|| take(c * op.widths[j - 1]));
            layers.push(Layer {
                weight,
                gamma: take(c),
                beta: take(c),
                running_mean: take(c),
                running_var: take(c),
            });
        }
        let real = neighbours
            .chunks(op.k)
            .enumerate()
            .filter(|(_, row)| row[0] != EdgeConvStage::PADDED)
            .map(|(i, _)| i)
            .collect();
        Self {
            op,
            parts,
            neighbours,
            layers,
            real,
        }
    }

    fn edges(&self) -> usize {
        self.real.len() * self.op.k
    }

    fn points(&self) -> usize {
        self.neighbours.len() / self.op.k
    }

    fn cast(v: f64) -> T {
        T::from(v).expect("a finite constant")
    }

    /// Edge rows per chunk.
    fn chunk_rows(&self) -> usize {
        CHUNK_POINTS * self.op.k
    }

    /// The first layer's input: `centre_i + other_j` for every real edge.
    fn gathered(&self) -> Vec<T> {
        let (k, c) = (self.op.k, self.op.widths[0]);
        let mut x = vec![T::zero(); self.edges() * c];
        x.par_chunks_mut(k * c)
            .enumerate()
            .for_each(|(r, rows)| self.gather_into(r, rows));
        x
    }

    /// The first layer's input rows of the real points from the `r`-th on, as many as
    /// `rows` holds (`k x C_0` values each).
    fn gather_into(&self, r: usize, rows: &mut [T]) {
        let (k, c) = (self.op.k, self.op.widths[0]);
        for (point, rows) in rows.chunks_mut(k * c).enumerate() {
            let i = self.real[r + point];
            let centre = &self.parts[i * 2 * c..i * 2 * c + c];
            for (n, row) in rows.chunks_mut(c).enumerate() {
                let j = self.neighbours[i * k + n] as usize;
                let other = &self.parts[j * 2 * c + c..(j + 1) * 2 * c];
                for ((v, &o), &m) in row.iter_mut().zip(other).zip(centre) {
                    *v = o + m;
                }
            }
        }
    }

    /// Per-chunk sums of `f(channel, value)` over the rows of `x` (`[edges, c]`), in
    /// f64, merged in chunk order.
    fn sums(&self, x: &[T], c: usize, f: impl Fn(usize, T) -> f64 + Sync) -> Vec<f64> {
        let partial: Vec<Vec<f64>> = x
            .par_chunks(self.chunk_rows() * c)
            .map(|chunk| {
                let mut s = vec![0.0; c];
                for row in chunk.chunks(c) {
                    for (ch, &v) in row.iter().enumerate() {
                        s[ch] += f(ch, v);
                    }
                }
                s
            })
            .collect();
        let mut total = vec![0.0; c];
        for s in partial {
            for (t, v) in total.iter_mut().zip(s) {
                *t += v;
            }
        }
        total
    }

    /// Layer j's normalisation of its activations `x`: batch statistics over the real
    /// edges (training) or the running ones; as the composed layer, `scale = gamma /
    /// sqrt(var + eps)` and `shift = beta - mean * scale` in the layer's dtype.
    fn norm(&self, j: usize, x: &[T]) -> Norm<T> {
        let (c, layer) = (self.op.widths[j], &self.layers[j]);
        let (mean, var) = if self.op.train {
            let count = Self::cast(self.edges().max(1) as f64);
            let mean: Vec<T> = self
                .sums(x, c, |_, v| WithDType::to_f64(v))
                .into_iter()
                .map(|s| Self::cast(s) / count)
                .collect();
            let var = self
                .sums(x, c, |ch, v| WithDType::to_f64(v - mean[ch]).powi(2))
                .into_iter()
                .map(|s| Self::cast(s) / count)
                .collect();
            (mean, var)
        } else {
            (layer.running_mean.to_vec(), layer.running_var.to_vec())
        };
        let eps = Self::cast(self.op.eps);
        let inv_std: Vec<T> = var.iter().map(|&v| (v + eps).sqrt().recip()).collect();
        let scale: Vec<T> = (0..c)
            .map(|ch| layer.gamma[ch] / (var[ch] + eps).sqrt())
            .collect();
        let shift = (0..c)
            .map(|ch| layer.beta[ch] - mean[ch] * scale[ch])
            .collect();
        Norm {
            mean,
            var,
            inv_std,
            scale,
            shift,
        }
    }

    /// `relu(x * scale + shift)` of the rows `x` into `h`.
    fn activate(x: &[T], norm: &Norm<T>, h: &mut [T]) {
        let c = norm.scale.len();
        for (out, row) in h.chunks_mut(c).zip(x.chunks(c)) {
            for (((o, &v), &scale), &shift) in
                out.iter_mut().zip(row).zip(&norm.scale).zip(&norm.shift)
            {
                *o = Float::max(v * scale + shift, T::zero());
            }
        }
    }

    /// Layer `j + 1`'s activations: `relu(BN_j(x_j)) W_{j+1}^T`, chunk by chunk.
    fn next_layer(&self, j: usize, x: &[T], norm: &Norm<T>) -> Vec<T> {
        let rows = self.chunk_rows();
        let (c_in, c_out) = (self.op.widths[j], self.op.widths[j + 1]);
        let mut next = vec![T::zero(); self.edges() * c_out];
        next.par_chunks_mut(rows * c_out)
            .zip(x.par_chunks(rows * c_in))
            .for_each(|(out, x)| {
                let mut h = vec![T::zero(); x.len()];
                Self::activate(x, norm, &mut h);
                self.convolve(j + 1, &h, out);
            });
        next
    }

    /// Layer `j`'s 1x1 convolution of activated rows of layer `j - 1`: `out = h W_j^T`.
    fn convolve(&self, j: usize, h: &[T], out: &mut [T]) {
        let (c_in, c_out) = (self.op.widths[j - 1], self.op.widths[j]);
        let weight = self.layers[j].weight.expect("a later layer has a weight");
        matmul(
            out,
            MatRef::row_major(h, h.len() / c_in, c_in),
            MatRef::transposed(weight, c_in, c_out),
            false,
        );
    }

    /// The pooled output `[points, C_last]`, then each layer's mean and variance (zeros
    /// in evaluation), and the activations the backward needs.
    fn forward(&self) -> (Vec<T>, Activations<T>) {
        let (k, depth) = (self.op.k, self.op.widths.len());
        let mut x = vec![self.gathered()];
        let mut norms = Vec::with_capacity(depth);
        for j in 0..depth {
            norms.push(self.norm(j, &x[j]));
            if j + 1 < depth {
                let next = self.next_layer(j, &x[j], &norms[j]);
                x.push(next);
            }
        }
        let c = self.op.widths[depth - 1];
        let (last, norm) = (&x[depth - 1], &norms[depth - 1]);
        let mut sums = vec![T::zero(); self.real.len() * c];
        sums.par_chunks_mut(c)
            .zip(last.par_chunks(k * c))
            .for_each(|(sum, rows)| {
                let mut h = vec![T::zero(); rows.len()];
                Self::neighbour_sum(rows, norm, &mut h, sum);
            });
        let out = self.assemble(&sums, &norms);
        (out, Activations { x, norms })
    }

    /// The forward of an evaluation pass without a backward: every layer of a chunk of
    /// [`CHUNK_POINTS`] points in turn, in two scratch buffers per thread, so nothing the
    /// size of all edges is allocated (the same products and sums in the same order as
    /// [`Self::forward`], so the same bits).
    fn forward_streaming(&self) -> Vec<T> {
        let (k, depth) = (self.op.k, self.op.widths.len());
        let norms: Vec<Norm<T>> = (0..depth).map(|j| self.norm(j, &[])).collect();
        let widest = self.op.widths.iter().copied().max().unwrap_or(0);
        let c = self.op.widths[depth - 1];
        let mut sums = vec![T::zero(); self.real.len() * c];
        sums.par_chunks_mut(CHUNK_POINTS * c)
            .enumerate()
            .for_each_init(
                || (Vec::new(), Vec::new()),
                |(a, b): &mut (Vec<T>, Vec<T>), (chunk, sums)| {
                    let rows = sums.len() / c * k;
                    a.resize(rows * widest, T::zero());
                    b.resize(rows * widest, T::zero());
                    self.gather_into(chunk * CHUNK_POINTS, &mut a[..rows * self.op.widths[0]]);
                    let layers = self.op.widths.windows(2).zip(&norms);
                    for (j, (widths, norm)) in layers.enumerate() {
                        let (c_in, c_out) = (widths[0], widths[1]);
                        Self::activate(&a[..rows * c_in], norm, &mut b[..rows * c_in]);
                        self.convolve(j + 1, &b[..rows * c_in], &mut a[..rows * c_out]);
                    }
                    let (last, h) = (&a[..rows * c], &mut b[..rows * c]);
                    for ((rows, h), sum) in last
                        .chunks(k * c)
                        .zip(h.chunks_mut(k * c))
                        .zip(sums.chunks_mut(c))
                    {
                        Self::neighbour_sum(rows, &norms[depth - 1], h, sum);
                    }
                },
            );
        self.assemble(&sums, &norms)
    }

    /// Adds to `sum` (zero, `[C_last]`) one point's `k` edge rows of the last layer's
    /// `relu(BN(x))` (`h`: scratch of the rows' size).
    fn neighbour_sum(rows: &[T], norm: &Norm<T>, h: &mut [T], sum: &mut [T]) {
        let c = norm.scale.len();
        Self::activate(rows, norm, h);
        for row in h.chunks(c) {
            for (s, &v) in sum.iter_mut().zip(row) {
                *s += v;
            }
        }
    }

    /// The kernel's output from the neighbour sums of the real points (in order, `C_last`
    /// each): their means at the points' rows of `[points, C_last]` (zero elsewhere),
    /// then each layer's mean and variance (training) or zeros.
    fn assemble(&self, sums: &[T], norms: &[Norm<T>]) -> Vec<T> {
        let c = *self.op.widths.last().expect("at least one layer");
        let inv_k = Self::cast(1.0 / self.op.k as f64);
        let mut out = vec![T::zero(); self.points() * c];
        for (&i, sum) in self.real.iter().zip(sums.chunks(c)) {
            for (o, &s) in out[i * c..(i + 1) * c].iter_mut().zip(sum) {
                *o = s * inv_k;
            }
        }
        for norm in norms {
            if self.op.train {
                out.extend_from_slice(&norm.mean);
                out.extend_from_slice(&norm.var);
            } else {
                out.extend(std::iter::repeat_n(T::zero(), 2 * norm.mean.len()));
            }
        }
        out
    }

    /// The gradients of `parts` `[points, 2 C_0]` and of the packed parameters, from the
    /// gradient `g` of the output (its pooled part) and the forward's activations.
    fn backward(&self, saved: &Activations<T>, g: &[T]) -> (Vec<T>, Vec<T>) {
        let (k, depth) = (self.op.k, self.op.widths.len());
        let rows = WEIGHT_CHUNK_POINTS * k;
        let last = self.op.widths[depth - 1];
        // The mean over neighbours: every edge of point i receives g_i / k.
        let inv_k = Self::cast(1.0 / k as f64);
        let mut dh = vec![T::zero(); self.edges() * last];
        dh.par_chunks_mut(k * last)
            .enumerate()
            .for_each(|(r, edge_rows)| {
                let i = self.real[r];
                for row in edge_rows.chunks_mut(last) {
                    for (d, &v) in row.iter_mut().zip(&g[i * last..(i + 1) * last]) {
                        *d = v * inv_k;
                    }
                }
            });
        let mut dp = vec![T::zero(); self.op.parameter_len()];
        let mut offsets = Vec::with_capacity(depth);
        let mut at = 0;
        for (j, &c) in self.op.widths.iter().enumerate() {
            offsets.push(at);
            at += 4 * c + if j > 0 { c * self.op.widths[j - 1] } else { 0 };
        }
        for j in (0..depth).rev() {
            let c = self.op.widths[j];
            let (x, norm) = (&saved.x[j], &saved.norms[j]);
            let (d_gamma, d_beta) = self.relu_and_sums(&mut dh, x, norm);
            self.through_norm(j, &mut dh, x, norm, &d_gamma, &d_beta);
            let weight_len = if j > 0 { c * self.op.widths[j - 1] } else { 0 };
            let at = offsets[j] + weight_len;
            dp[at..at + c].copy_from_slice(&d_gamma);
            dp[at + c..at + 2 * c].copy_from_slice(&d_beta);
            if j > 0 {
                let c_in = self.op.widths[j - 1];
                let (prev, prev_norm) = (&saved.x[j - 1], &saved.norms[j - 1]);
                let weight = self.layers[j].weight.expect("a later layer has a weight");
                let mut d_prev = vec![T::zero(); self.edges() * c_in];
                let partial: Vec<Vec<T>> = d_prev
                    .par_chunks_mut(rows * c_in)
                    .zip(dh.par_chunks(rows * c))
                    .zip(prev.par_chunks(rows * c_in))
                    .map(|((d_prev, dx), prev)| {
                        let n = dx.len() / c;
                        let mut h = vec![T::zero(); prev.len()];
                        Self::activate(prev, prev_norm, &mut h);
                        let mut dw = vec![T::zero(); c * c_in];
                        let dx_t = MatRef::transposed(dx, c, n);
                        matmul(&mut dw, dx_t, MatRef::row_major(&h, n, c_in), false);
                        let w = MatRef::row_major(weight, c, c_in);
                        matmul(d_prev, MatRef::row_major(dx, n, c), w, false);
                        dw
                    })
                    .collect();
                let dw = &mut dp[offsets[j]..offsets[j] + weight_len];
                for part in partial {
                    for (d, v) in dw.iter_mut().zip(part) {
                        *d += v;
                    }
                }
                dh = d_prev;
            }
        }
        (self.scatter_first(&dh), dp)
    }

    /// ReLU's backward in place on `dh` (candle's rule: the gradient passes where the
    /// normalised value is >= 0), with BatchNorm's sums `(sum dy xhat, sum dy)`.
    fn relu_and_sums(&self, dh: &mut [T], x: &[T], norm: &Norm<T>) -> (Vec<T>, Vec<T>) {
        let c = norm.scale.len();
        let rows = self.chunk_rows();
        let partial: Vec<(Vec<T>, Vec<T>)> = dh
            .par_chunks_mut(rows * c)
            .zip(x.par_chunks(rows * c))
            .map(|(dh, x)| {
                let (mut d_gamma, mut d_beta) = (vec![T::zero(); c], vec![T::zero(); c]);
                for (d_row, x_row) in dh.chunks_mut(c).zip(x.chunks(c)) {
                    for ch in 0..c {
                        let v = x_row[ch];
                        if v * norm.scale[ch] + norm.shift[ch] < T::zero() {
                            d_row[ch] = T::zero();
                        }
                        let xhat = (v - norm.mean[ch]) * norm.inv_std[ch];
                        d_gamma[ch] += d_row[ch] * xhat;
                        d_beta[ch] += d_row[ch];
                    }
                }
                (d_gamma, d_beta)
            })
            .collect();
        let (mut d_gamma, mut d_beta) = (vec![T::zero(); c], vec![T::zero(); c]);
        for (gm, b) in partial {
            for ch in 0..c {
                d_gamma[ch] += gm[ch];
                d_beta[ch] += b[ch];
            }
        }
        (d_gamma, d_beta)
    }

    /// BatchNorm's backward in place: `dy` -> `dx` (through the batch statistics in
    /// training).
    fn through_norm(
        &self,
        j: usize,
        dy: &mut [T],
        x: &[T],
        norm: &Norm<T>,
        d_gamma: &[T],
        d_beta: &[T],
    ) {
        let c = norm.scale.len();
        let gamma = self.layers[j].gamma;
        let count = Self::cast(self.edges().max(1) as f64);
        dy.par_chunks_mut(c)
            .zip(x.par_chunks(c))
            .for_each(|(d_row, x_row)| {
                for ch in 0..c {
                    d_row[ch] = if self.op.train {
                        let xhat = (x_row[ch] - norm.mean[ch]) * norm.inv_std[ch];
                        gamma[ch]
                            * norm.inv_std[ch]
                            * (d_row[ch] - d_beta[ch] / count - xhat * d_gamma[ch] / count)
                    } else {
                        d_row[ch] * norm.scale[ch]
                    };
                }
            });
    }

    /// The gradient of `parts` from the first layer's `dx`: the centre half sums each
    /// point's k edges, the other half gathers every edge into its neighbour (in edge
    /// order, so the sums do not depend on the thread count).
    fn scatter_first(&self, dx: &[T]) -> Vec<T> {
        let (k, c) = (self.op.k, self.op.widths[0]);
        let mut d_parts = vec![T::zero(); self.points() * 2 * c];
        for (r, &i) in self.real.iter().enumerate() {
            for n in 0..k {
                let row = &dx[(r * k + n) * c..(r * k + n + 1) * c];
                for (d, &v) in d_parts[i * 2 * c..i * 2 * c + c].iter_mut().zip(row) {
                    *d += v;
                }
                let j = self.neighbours[i * k + n] as usize;
                for (d, &v) in d_parts[j * 2 * c + c..(j + 1) * 2 * c].iter_mut().zip(row) {
                    *d += v;
                }
            }
        }
        d_parts
    }
}

impl EdgeConvStage {
    fn forward_typed<T: WithDType + Float + NumAssign + Send + Sync + Store>(
        &self,
        parts: &[T],
        neighbours: &[u32],
        params: &[T],
    ) -> Vec<T> {
        let stage = || Stage::new(self, parts, neighbours, params);
        let (out, saved) = if self.keep_activations {
            let (out, activations) = super::in_pool(|| stage().forward());
            (out, Some(T::store(activations)))
        } else {
            (super::in_pool(|| stage().forward_streaming()), None)
        };
        *self
            .saved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = saved;
        out
    }

    fn backward_typed<T: WithDType + Float + NumAssign + Send + Sync + Store>(
        &self,
        parts: &Tensor,
        neighbours: &Tensor,
        params: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (d_parts, dp) = {
            let guards = [parts, neighbours, params, grad].map(Tensor::storage_and_layout);
            let parts_v =
                contiguous_values::<T>(cpu_storage(&guards[0].0, KERNEL)?, guards[0].1, KERNEL)?;
            let index =
                contiguous_values::<u32>(cpu_storage(&guards[1].0, KERNEL)?, guards[1].1, KERNEL)?;
            let params_v =
                contiguous_values::<T>(cpu_storage(&guards[2].0, KERNEL)?, guards[2].1, KERNEL)?;
            let grad_v =
                contiguous_values::<T>(cpu_storage(&guards[3].0, KERNEL)?, guards[3].1, KERNEL)?;
            let saved = self
                .saved
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(activations) = saved.as_ref().and_then(T::load) else {
                return Err(candle_core::Error::Msg(
                    "fused EdgeConv stage: backward without its forward".into(),
                ));
            };
            super::in_pool(|| {
                Stage::new(self, parts_v, index, params_v).backward(activations, grad_v)
            })
        };
        Ok((
            Tensor::from_vec(d_parts, parts.shape(), parts.device())?,
            Tensor::from_vec(dp, params.shape(), params.device())?,
        ))
    }
}

impl CustomOp3 for EdgeConvStage {
    fn name(&self) -> &'static str {
        "particlenet-edgeconv"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let index = contiguous_values::<u32>(s2, l2, KERNEL)?;
        let (storage, len) = match s1 {
            CpuStorage::F32(_) => {
                let out = self.forward_typed(
                    contiguous_values::<f32>(s1, l1, KERNEL)?,
                    index,
                    contiguous_values(s3, l3, KERNEL)?,
                );
                let len = out.len();
                (CpuStorage::F32(out), len)
            }
            CpuStorage::F64(_) => {
                let out = self.forward_typed(
                    contiguous_values::<f64>(s1, l1, KERNEL)?,
                    index,
                    contiguous_values(s3, l3, KERNEL)?,
                );
                let len = out.len();
                (CpuStorage::F64(out), len)
            }
            _ => {
                return Err(candle_core::Error::Msg(
                    "fused EdgeConv stage: f32 or f64 only".into(),
                ))
            }
        };
        Ok((storage, Shape::from(len)))
    }

    fn bwd(
        &self,
        parts: &Tensor,
        neighbours: &Tensor,
        params: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (d_parts, dp) = match parts.dtype() {
            DType::F32 => self.backward_typed::<f32>(parts, neighbours, params, &grad)?,
            DType::F64 => self.backward_typed::<f64>(parts, neighbours, params, &grad)?,
            _ => {
                return Err(candle_core::Error::Msg(
                    "fused EdgeConv stage: f32 or f64 only".into(),
                ))
            }
        };
        Ok((Some(d_parts), None, Some(dp)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Two points, each the other's neighbour (k = 1), one layer of 2 channels.
    fn inputs() -> (Tensor, Tensor, Tensor) {
        let device = Device::Cpu;
        let parts = Tensor::new(&[[1f64, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], &device).unwrap();
        let neighbours = Tensor::new(&[[1u32], [0]], &device).unwrap();
        let params = Tensor::new(&[1f64, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0], &device).unwrap();
        (parts, neighbours, params)
    }

    #[test]
    fn activations_are_kept_only_when_a_backward_may_follow() {
        let (parts, neighbours, params) = inputs();
        let stage = EdgeConvStage::new(1, vec![2], 1e-5, false);
        let kept = |stage: &EdgeConvStage| stage.saved.lock().unwrap().is_some();
        let detached = stage.apply(&parts, &neighbours, &params).unwrap();
        assert!(!kept(&stage), "an evaluation without gradients streams");
        let tracked = Var::from_tensor(&parts).unwrap();
        let with_grads = stage
            .apply(tracked.as_tensor(), &neighbours, &params)
            .unwrap();
        assert!(kept(&stage), "a tracked input keeps the activations");
        assert_eq!(
            detached.pooled.to_vec2::<f64>().unwrap(),
            with_grads.pooled.to_vec2::<f64>().unwrap()
        );
        // relu(x) with x = centre_i + other_j: point 0 gets (1 + 7, 2 + 8) / sqrt(1 + eps).
        let want = 8.0 / (1.0f64 + 1e-5).sqrt();
        assert!((detached.pooled.to_vec2::<f64>().unwrap()[0][0] - want).abs() < 1e-12);
    }
}

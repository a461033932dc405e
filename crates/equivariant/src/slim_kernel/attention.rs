//! `SlimSelfAttention` between its two linear layers, forward and backward, per (jet,
//! head) in parallel: the head's queries, keys and values taken from the projection
//! (output channel `(part c) heads + head`, as the package unflattens it), each token's
//! `[4 hv + hs]` features divided by its RMS factor, logits `<q_v, k_v> + q_s . k_s` over
//! `sqrt(4 hv + hs)` (the metric folded into the queries), softmax over the jet's real
//! tokens, and the weighted values merged head-major (channel `head hv + c`).
//!
//! A (jet, head) keeps its queries, keys and values feature-major, `[d, tokens]` with
//! feature `comp hv + c` for vector channel `c`'s component `comp` and `4 hv + c` for
//! scalar channel `c`: taking them from the projection (and merging the heads back) is
//! then a copy of contiguous runs, the norms and the metric are loops over tokens, and
//! every product is one gemm call on the stored layout.

use rayon::prelude::*;

use super::linear::Cols;
use super::pointwise::{minkowski_square, sign_of, softmax_rows};
use super::rows::{par_rows, Cursor};
use super::Real;
use crate::fused::gemm::{product, MatRef};
use crate::fused::vector_math::lane_sum;
use crate::slim_layers::NORM_EPSILON;

fn constant<T: Real>(x: f64) -> T {
    T::from(x).expect("a finite constant")
}

/// Heads, vector and scalar channels per head.
#[derive(Debug, Clone, Copy)]
pub(super) struct HeadShape {
    pub(super) heads: usize,
    pub(super) hv: usize,
    pub(super) hs: usize,
}

impl HeadShape {
    /// Features per token and head.
    fn width(self) -> usize {
        4 * self.hv + self.hs
    }

    /// The first value of row `(part, c, head)` of the vector projection over `total`
    /// columns, and of the scalar projection.
    fn rows(
        self,
        part: usize,
        head: usize,
        total: usize,
    ) -> (impl Fn(usize) -> usize, impl Fn(usize) -> usize) {
        let Self { heads, hv, hs } = self;
        (
            move |c: usize| ((part * hv + c) * heads + head) * 4 * total,
            move |c: usize| ((part * hs + c) * heads + head) * total,
        )
    }

    /// The metric's sign on feature `f` over `sqrt(d)`: what the queries are scaled by.
    fn query_scale<T: Real>(self, f: usize) -> T {
        let scale = T::one() / constant::<T>(self.width() as f64).sqrt();
        if (self.hv..4 * self.hv).contains(&f) {
            -scale
        } else {
            scale
        }
    }
}

/// One (jet, head)'s normalised queries `[d, q]`, keys and values `[d, n]` (in this order
/// in `qkv`), their RMS factors (`q + 2 n`), the queries times their scales
/// ([`HeadShape::query_scale`]) and the attention probabilities `[q, n]`.
pub(super) struct HeadKept<T> {
    qkv: Vec<T>,
    factors: Vec<T>,
    lowered: Vec<T>,
    p: Vec<T>,
}

impl<T> HeadKept<T> {
    /// Queries, keys and values for `q` queries of `d` features.
    fn parts(&self, d: usize, q: usize) -> (&[T], &[T], &[T]) {
        qkv_parts(&self.qkv, d, q)
    }
}

/// The queries `[d, q]`, keys and values `[d, n]` stored one after the other in `qkv`.
fn qkv_parts<T>(qkv: &[T], d: usize, q: usize) -> (&[T], &[T], &[T]) {
    let (queries, rest) = qkv.split_at(d * q);
    let (keys, values) = rest.split_at(rest.len() / 2);
    (queries, keys, values)
}

/// Vector channel `c`'s four component rows `[rows]` (t, x, y, z) in the feature-major
/// `x` of `hv` vector channels.
fn components<T>(x: &[T], hv: usize, c: usize, rows: usize) -> [&[T]; 4] {
    std::array::from_fn(|k| &x[(k * hv + c) * rows..][..rows])
}

/// Token `i`'s Minkowski square of vector channel `rows` ([`components`]).
fn square_at<T: Real>(rows: &[&[T]; 4], i: usize) -> T {
    minkowski_square(&[rows[0][i], rows[1][i], rows[2][i], rows[3][i]])
}

/// The merged heads: vectors `[heads hv, 4 Q]`, scalars `[heads hs, Q]`.
type Merged<T> = (Vec<T>, Vec<T>);

/// The (jet, head) pairs in task order.
fn tasks(jets: usize, heads: usize) -> Vec<(usize, usize)> {
    (0..jets)
        .flat_map(|j| (0..heads).map(move |h| (j, h)))
        .collect()
}

/// Appends one head's features feature-major (`[d, rows]`: each vector channel's four
/// components as rows, then the scalar channels) from the token-major runs
/// `vector_run(c)` `[rows, 4]` and the scalar runs `scalar_run(c)` `[rows]`; the inverse
/// of [`interleave`].
fn append_feature_major<'a, T: Real>(
    out: &mut Vec<T>,
    shape: HeadShape,
    vector_run: impl Fn(usize) -> &'a [T],
    scalar_run: impl Fn(usize) -> &'a [T],
) {
    for comp in 0..4 {
        for c in 0..shape.hv {
            out.extend(vector_run(c).chunks_exact(4).map(|x| x[comp]));
        }
    }
    for c in 0..shape.hs {
        out.extend_from_slice(scalar_run(c));
    }
}

/// Appends part `part` (0 queries, 1 keys, 2 values) of head `head` for the `rows`
/// columns from `first` to `out` (`[d, rows]`, normalised) and their factors to
/// `factors`.
fn gather<T: Real>(
    (wide_v, wide_s): (&[T], &[T]),
    shape: HeadShape,
    total: usize,
    (part, head): (usize, usize),
    (first, rows): (usize, usize),
    (out, factors): (&mut Vec<T>, &mut Vec<T>),
) {
    let hv = shape.hv;
    let (row_v, row_s) = shape.rows(part, head, total);
    let start = out.len();
    append_feature_major(
        out,
        shape,
        |c| &wide_v[row_v(c) + 4 * first..][..4 * rows],
        |c| &wide_s[row_s(c) + first..][..rows],
    );
    let x = &mut out[start..];
    let (vectors, scalars) = x.split_at(4 * hv * rows);
    // The RMS factor of each token: |<v_c, v_c>| summed over channels, plus s^2.
    let mut squares = vec![T::zero(); rows];
    for c in 0..hv {
        let channel = components(vectors, hv, c, rows);
        for (i, f) in squares.iter_mut().enumerate() {
            *f += square_at(&channel, i).abs();
        }
    }
    for row in scalars.chunks_exact(rows.max(1)) {
        for (f, &s) in squares.iter_mut().zip(row) {
            *f += s * s;
        }
    }
    let channels: T = constant((hv + shape.hs) as f64);
    let eps: T = constant(NORM_EPSILON);
    let own = factors.len();
    factors.extend(
        squares
            .iter()
            .map(|&s| T::one() / (s / channels + eps).sqrt()),
    );
    let f = &factors[own..];
    for row in x.chunks_exact_mut(rows.max(1)) {
        for (x, &f) in row.iter_mut().zip(f) {
            *x *= f;
        }
    }
}

/// `x` `[d, tokens]` times each feature's query scale ([`HeadShape::query_scale`]).
fn scaled_queries<T: Real>(x: &[T], shape: HeadShape, tokens: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    for (f, row) in x.chunks_exact(tokens.max(1)).enumerate() {
        let scale: T = shape.query_scale(f);
        out.extend(row.iter().map(|&x| x * scale));
    }
    out
}

/// One (jet, head)'s attention: its output `[d, q]` and what the backward needs.
fn head_forward<T: Real>(
    wide: (&[T], &[T]),
    shape: HeadShape,
    total: usize,
    head: usize,
    (first, n, q): (usize, usize, usize),
) -> (Vec<T>, HeadKept<T>) {
    let d = shape.width();
    let mut qkv = Vec::with_capacity(d * (q + 2 * n));
    let mut factors = Vec::with_capacity(q + 2 * n);
    for (part, rows) in [(0, q), (1, n), (2, n)] {
        gather(
            wide,
            shape,
            total,
            (part, head),
            (first, rows),
            (&mut qkv, &mut factors),
        );
    }
    let (queries, keys, values) = qkv_parts(&qkv, d, q);
    let lowered = scaled_queries(queries, shape, q);
    let mut p = product(
        MatRef::transposed(&lowered, q, d),
        MatRef::row_major(keys, d, n),
    );
    softmax_rows(&mut p, n);
    let out = product(
        MatRef::row_major(values, d, n),
        MatRef::transposed(&p, n, q),
    );
    let kept = HeadKept {
        qkv,
        factors,
        lowered,
        p,
    };
    (out, kept)
}

/// The attention of the projections `(wide_v [3 hv heads, 4 N], wide_s [3 hs heads, N])`
/// over the jets' columns `cols`, for the query columns `queries` (each jet's first):
/// the merged heads `([heads hv, 4 Q], [heads hs, Q])` and, with `keep`, what the
/// backward needs.
pub(super) fn attention_forward<T: Real>(
    shape: HeadShape,
    wide: (&[T], &[T]),
    cols: &Cols,
    queries: &Cols,
    keep: bool,
) -> (Merged<T>, Vec<HeadKept<T>>) {
    let total = cols.total();
    let tasks = tasks(cols.jets(), shape.heads);
    let results: Vec<(Vec<T>, Option<HeadKept<T>>)> = tasks
        .par_iter()
        .map(|&(j, head)| {
            let (first, n, q) = (
                cols.range(j).start,
                cols.range(j).len(),
                queries.range(j).len(),
            );
            let (out, kept) = head_forward(wide, shape, total, head, (first, n, q));
            (out, keep.then_some(kept))
        })
        .collect();
    let outputs: Vec<&[T]> = results.iter().map(|(out, _)| &out[..]).collect();
    let merged = merge(shape, &outputs, queries);
    let kept = results.into_iter().filter_map(|(_, k)| k).collect();
    (merged, kept)
}

/// Each (jet, head)'s output `[d, q]` (task order) merged into `([heads hv, 4 Q],
/// [heads hs, Q])`: row `head hv + c` gathers vector channel `c` of every jet's head.
fn merge<T: Real>(shape: HeadShape, outputs: &[&[T]], queries: &Cols) -> Merged<T> {
    let (heads, hv, hs) = (shape.heads, shape.hv, shape.hs);
    let q_total = queries.total();
    let merged_v = par_rows(heads * hv, 4 * q_total, |out| {
        let (head, c) = (out.index() / hv, out.index() % hv);
        out.fill_runs(|cursor| {
            for j in 0..queries.jets() {
                let rows = queries.range(j).len();
                interleave(outputs[j * heads + head], (hv, c, rows), cursor);
            }
        })
    });
    let merged_s = par_rows(heads * hs, q_total, |out| {
        let (head, c) = (out.index() / hs, out.index() % hs);
        out.fill_runs(|cursor| {
            for j in 0..queries.jets() {
                let rows = queries.range(j).len();
                cursor.push_slice(&outputs[j * heads + head][(4 * hv + c) * rows..][..rows]);
            }
        })
    });
    (merged_v, merged_s)
}

/// Appends vector channel `c`'s four feature rows of `x` `[d, rows]` (`hv` vector
/// channels) as one token-major run `[rows, 4]`.
fn interleave<T: Real>(x: &[T], (hv, c, rows): (usize, usize, usize), cursor: &mut Cursor<'_, T>) {
    cursor.push_interleaved(components(x, hv, c, rows));
}

/// The backward of a token-wise RMS normalisation without gains, in place: `x^` `[d,
/// rows]` the normalised features, `factors` their factors, `grad` the gradients of `x^`
/// on entry and of `x` on return.
fn unnormalise<T: Real>(x: &[T], factors: &[T], grad: &mut [T], shape: HeadShape) {
    let (hv, rows) = (shape.hv, factors.len());
    let channels: T = constant((hv + shape.hs) as f64);
    let width = rows.max(1);
    // dot = sum over features of x^ grad, per token, over the channel count.
    let mut dot = vec![T::zero(); rows];
    for (x, g) in x.chunks_exact(width).zip(grad.chunks_exact(width)) {
        for ((dot, &x), &g) in dot.iter_mut().zip(x).zip(g) {
            *dot += x * g;
        }
    }
    for d in &mut dot {
        *d /= channels;
    }
    let (grad_v, grad_s) = grad.split_at_mut(4 * hv * rows);
    let (x_v, x_s) = x.split_at(4 * hv * rows);
    let mut signed_dot = vec![T::zero(); rows];
    for c in 0..hv {
        let channel = components(x_v, hv, c, rows);
        for (i, s) in signed_dot.iter_mut().enumerate() {
            *s = sign_of(square_at(&channel, i)) * dot[i];
        }
        for k in 0..4 {
            let at = (k * hv + c) * rows;
            let (x, g) = (&x_v[at..][..rows], &mut grad_v[at..][..rows]);
            for i in 0..rows {
                let metric = if k == 0 {
                    signed_dot[i]
                } else {
                    -signed_dot[i]
                };
                g[i] = factors[i] * (g[i] - metric * x[i]);
            }
        }
    }
    for (x, g) in x_s.chunks_exact(width).zip(grad_s.chunks_exact_mut(width)) {
        for i in 0..rows {
            g[i] = factors[i] * (g[i] - dot[i] * x[i]);
        }
    }
}

/// The gradients of one (jet, head)'s queries `[d, q]`, keys and values `[d, n]` for
/// its output's gradients `d_out` `[d, q]`.
fn head_backward<T: Real>(
    shape: HeadShape,
    kept: &HeadKept<T>,
    d_out: &[T],
    (n, q): (usize, usize),
) -> [Vec<T>; 3] {
    let d = shape.width();
    let (queries, keys, values) = kept.parts(d, q);
    let p = &kept.p;
    let mut d_v = product(MatRef::row_major(d_out, d, q), MatRef::row_major(p, q, n));
    // The logits' gradients through the softmax.
    let mut d_s = product(
        MatRef::transposed(d_out, q, d),
        MatRef::row_major(values, d, n),
    );
    for (ds, p) in d_s.chunks_exact_mut(n.max(1)).zip(p.chunks_exact(n.max(1))) {
        let dot = lane_sum(n, |i| ds[i] * p[i]);
        for (x, &p) in ds.iter_mut().zip(p) {
            *x = p * (*x - dot);
        }
    }
    let mut d_q = product(
        MatRef::row_major(keys, d, n),
        MatRef::transposed(&d_s, n, q),
    );
    for (f, row) in d_q.chunks_exact_mut(q.max(1)).enumerate() {
        let scale: T = shape.query_scale(f);
        for x in row.iter_mut() {
            *x *= scale;
        }
    }
    let mut d_k = product(
        MatRef::row_major(&kept.lowered, d, q),
        MatRef::row_major(&d_s, q, n),
    );
    let (fq, rest) = kept.factors.split_at(q);
    let (fk, fv) = rest.split_at(n);
    unnormalise(queries, fq, &mut d_q, shape);
    unnormalise(keys, fk, &mut d_k, shape);
    unnormalise(values, fv, &mut d_v, shape);
    [d_q, d_k, d_v]
}

/// One (jet, head)'s output gradients `[d, q]` taken from the merged heads' gradients.
fn head_output_gradient<T: Real>(
    shape: HeadShape,
    (d_merged_v, d_merged_s): (&[T], &[T]),
    q_total: usize,
    head: usize,
    (start, q): (usize, usize),
) -> Vec<T> {
    let (hv, hs) = (shape.hv, shape.hs);
    let mut d_out = Vec::with_capacity(shape.width() * q);
    append_feature_major(
        &mut d_out,
        shape,
        |c| &d_merged_v[(head * hv + c) * 4 * q_total + 4 * start..][..4 * q],
        |c| &d_merged_s[(head * hs + c) * q_total + start..][..q],
    );
    d_out
}

/// The backward of [`attention_forward`] for the merged heads' gradients: the gradients
/// of the projections `(wide_v, wide_s)`.
pub(super) fn attention_backward<T: Real>(
    shape: HeadShape,
    kept: &[HeadKept<T>],
    d_merged: (&[T], &[T]),
    cols: &Cols,
    queries: &Cols,
) -> (Vec<T>, Vec<T>) {
    let (heads, hv, hs, d) = (shape.heads, shape.hv, shape.hs, shape.width());
    let (total, q_total) = (cols.total(), queries.total());
    let tasks = tasks(cols.jets(), heads);
    let grads: Vec<[Vec<T>; 3]> = tasks
        .par_iter()
        .zip(kept)
        .map(|(&(j, head), k)| {
            let (start, n, q) = (
                queries.range(j).start,
                cols.range(j).len(),
                queries.range(j).len(),
            );
            let d_out = head_output_gradient(shape, d_merged, q_total, head, (start, q));
            head_backward(shape, k, &d_out, (n, q))
        })
        .collect();
    // Part `part` of a (jet, head)'s gradients `[d, rows]`.
    let part = |j: usize, head: usize, part: usize| -> (&[T], usize) {
        let x = &grads[j * heads + head][part];
        (x, x.len() / d)
    };
    // Row `(part c) heads + head` of the projections' gradients gathers channel `c` of
    // part `part` of every jet's head.
    let d_wide_v = par_rows(3 * heads * hv, 4 * total, |out| {
        let r = out.index();
        let (which, c, head) = (r / heads / hv, r / heads % hv, r % heads);
        out.fill_runs(|cursor| {
            for j in 0..cols.jets() {
                let (x, rows) = part(j, head, which);
                interleave(x, (hv, c, rows), cursor);
                // Tokens past a jet's queries have no query gradient.
                cursor.push_repeated(T::zero(), 4 * (cols.range(j).len() - rows));
            }
        })
    });
    let d_wide_s = par_rows(3 * heads * hs, total, |out| {
        let r = out.index();
        let (which, c, head) = (r / heads / hs, r / heads % hs, r % heads);
        out.fill_runs(|cursor| {
            for j in 0..cols.jets() {
                let (x, rows) = part(j, head, which);
                cursor.push_slice(&x[(4 * hv + c) * rows..][..rows]);
                cursor.push_repeated(T::zero(), cols.range(j).len() - rows);
            }
        })
    });
    (d_wide_v, d_wide_s)
}

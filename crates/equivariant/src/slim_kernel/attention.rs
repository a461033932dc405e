//! `SlimSelfAttention` between its two linear layers, forward and backward, per (jet,
//! head) in parallel: the head's queries, keys and values taken from the projection
//! (output channel `(part c) heads + head`, as the package unflattens it), each token's
//! `[4 hv + hs]` row divided by its RMS factor, logits `<q_v, k_v> + q_s . k_s` over
//! `sqrt(4 hv + hs)` (the metric folded into the queries), softmax over the jet's real
//! tokens, and the weighted values merged head-major (channel `head hv + c`).

use rayon::prelude::*;

use super::linear::{min_rows, Cols};
use super::pointwise::softmax;
use super::Real;
use crate::fused::gemm::{matmul, MatRef};
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
    /// Values per token and head.
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
}

/// One (jet, head)'s normalised queries `[q, d]`, keys and values `[n, d]`, their RMS
/// factors and the attention probabilities `[q, n]`.
pub(super) struct HeadKept<T> {
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
    factors: [Vec<T>; 3],
    p: Vec<T>,
}

/// The merged heads: vectors `[heads hv, 4 Q]`, scalars `[heads hs, Q]`.
type Merged<T> = (Vec<T>, Vec<T>);

/// The (jet, head) pairs in task order.
fn tasks(jets: usize, heads: usize) -> Vec<(usize, usize)> {
    (0..jets)
        .flat_map(|j| (0..heads).map(move |h| (j, h)))
        .collect()
}

/// Part `part` (0 queries, 1 keys, 2 values) of head `head` for `rows` columns from
/// `first`, token-major `[rows, 4 hv + hs]`, normalised; and the factors.
fn split<T: Real>(
    (wide_v, wide_s): (&[T], &[T]),
    shape: HeadShape,
    total: usize,
    (part, head): (usize, usize),
    (first, rows): (usize, usize),
) -> (Vec<T>, Vec<T>) {
    let (hv, d) = (shape.hv, shape.width());
    let (row_v, row_s) = shape.rows(part, head, total);
    let mut out = vec![T::zero(); rows * d];
    for c in 0..hv {
        let src = &wide_v[row_v(c) + 4 * first..][..4 * rows];
        for (dst, x) in out.chunks_exact_mut(d).zip(src.chunks_exact(4)) {
            for comp in 0..4 {
                dst[comp * hv + c] = x[comp];
            }
        }
    }
    for c in 0..shape.hs {
        let src = &wide_s[row_s(c) + first..][..rows];
        for (dst, &x) in out.chunks_exact_mut(d).zip(src) {
            dst[4 * hv + c] = x;
        }
    }
    let channels: T = constant((hv + shape.hs) as f64);
    let eps: T = constant(NORM_EPSILON);
    let factors = out
        .chunks_exact_mut(d)
        .map(|row| {
            let (v, s) = row.split_at(4 * hv);
            let squares = lane_sum(hv, |c| {
                let (t, x, y, z) = (v[c], v[hv + c], v[2 * hv + c], v[3 * hv + c]);
                (t * t - x * x - y * y - z * z).abs()
            }) + lane_sum(s.len(), |c| s[c] * s[c]);
            let f = T::one() / (squares / channels + eps).sqrt();
            for x in row.iter_mut() {
                *x *= f;
            }
            f
        })
        .collect();
    (out, factors)
}

/// Normalised queries with the metric and `1 / sqrt(d)` folded in.
fn lowered<T: Real>(q: &[T], shape: HeadShape) -> Vec<T> {
    let (hv, d) = (shape.hv, shape.width());
    let scale = T::one() / constant::<T>(d as f64).sqrt();
    let mut out = q.to_vec();
    for row in out.chunks_exact_mut(d) {
        let (time, rest) = row.split_at_mut(hv);
        let (space, scalars) = rest.split_at_mut(3 * hv);
        time.iter_mut().chain(scalars).for_each(|x| *x *= scale);
        for x in space.iter_mut() {
            *x = -*x * scale;
        }
    }
    out
}

/// `a b` for small per-head products.
fn small_product<T: Real>(a: MatRef<'_, T>, b: MatRef<'_, T>) -> Vec<T> {
    let mut out = vec![T::zero(); a.rows() * b.cols()];
    matmul(&mut out, a, b, false);
    out
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
    let (hv, hs, d) = (shape.hv, shape.hs, shape.width());
    let (total, q_total) = (cols.total(), queries.total());
    let tasks = tasks(cols.jets(), shape.heads);
    let results: Vec<(Vec<T>, Option<HeadKept<T>>)> = tasks
        .par_iter()
        .map(|&(j, head)| {
            let (first, n, q) = (
                cols.range(j).start,
                cols.range(j).len(),
                queries.range(j).len(),
            );
            let (qh, fq) = split(wide, shape, total, (0, head), (first, q));
            let (kh, fk) = split(wide, shape, total, (1, head), (first, n));
            let (vh, fv) = split(wide, shape, total, (2, head), (first, n));
            let mut p = small_product(
                MatRef::row_major(&lowered(&qh, shape), q, d),
                MatRef::transposed(&kh, d, n),
            );
            p.chunks_exact_mut(n.max(1)).for_each(softmax);
            let out = small_product(MatRef::row_major(&p, q, n), MatRef::row_major(&vh, n, d));
            let kept = keep.then_some(HeadKept {
                q: qh,
                k: kh,
                v: vh,
                factors: [fq, fk, fv],
                p,
            });
            (out, kept)
        })
        .collect();
    // Row `head hv + c` of the merged vectors gathers channel `c` of every jet's head.
    let outputs: Vec<&[T]> = results.iter().map(|(out, _)| &out[..]).collect();
    let heads = shape.heads;
    let mut merged_v = vec![T::zero(); heads * hv * 4 * q_total];
    merged_v
        .par_chunks_mut((4 * q_total).max(1))
        .with_min_len(min_rows(4 * q_total))
        .enumerate()
        .for_each(|(r, row)| {
            let (head, c) = (r / hv, r % hv);
            for j in 0..queries.jets() {
                let start = queries.range(j).start;
                let out = outputs[j * heads + head];
                for (i, o) in out.chunks_exact(d).enumerate() {
                    for comp in 0..4 {
                        row[4 * (start + i) + comp] = o[comp * hv + c];
                    }
                }
            }
        });
    let mut merged_s = vec![T::zero(); heads * hs * q_total];
    merged_s
        .par_chunks_mut(q_total.max(1))
        .with_min_len(min_rows(q_total.max(1)))
        .enumerate()
        .for_each(|(r, row)| {
            let (head, c) = (r / hs, r % hs);
            for j in 0..queries.jets() {
                let start = queries.range(j).start;
                let out = outputs[j * heads + head];
                for (i, o) in out.chunks_exact(d).enumerate() {
                    row[start + i] = o[4 * hv + c];
                }
            }
        });
    let kept = results.into_iter().filter_map(|(_, k)| k).collect();
    ((merged_v, merged_s), kept)
}

/// The backward of a row-wise RMS normalisation without gains: `x^` the normalised rows,
/// `factors` their factors, `grad` the gradients of `x^`.
fn unnormalise<T: Real>(x: &[T], factors: &[T], grad: &[T], shape: HeadShape) -> Vec<T> {
    let (hv, d) = (shape.hv, shape.width());
    let channels: T = constant((hv + shape.hs) as f64);
    let mut out = vec![T::zero(); grad.len()];
    for (((x, g), &f), out) in x
        .chunks_exact(d)
        .zip(grad.chunks_exact(d))
        .zip(factors)
        .zip(out.chunks_exact_mut(d))
    {
        let dot = lane_sum(d, |i| x[i] * g[i]) / channels;
        for c in 0..hv {
            let (t, a, b, z) = (x[c], x[hv + c], x[2 * hv + c], x[3 * hv + c]);
            let square = t * t - a * a - b * b - z * z;
            let sign = if square > T::zero() {
                T::one()
            } else if square < T::zero() {
                -T::one()
            } else {
                T::zero()
            };
            for comp in 0..4 {
                let i = comp * hv + c;
                let metric = if comp == 0 { sign } else { -sign };
                out[i] = f * (g[i] - dot * metric * x[i]);
            }
        }
        for i in 4 * hv..d {
            out[i] = f * (g[i] - dot * x[i]);
        }
    }
    out
}

/// The backward of [`attention_forward`] for the merged heads' gradients: the gradients
/// of the projections `(wide_v, wide_s)`.
pub(super) fn attention_backward<T: Real>(
    shape: HeadShape,
    kept: &[HeadKept<T>],
    (d_merged_v, d_merged_s): (&[T], &[T]),
    cols: &Cols,
    queries: &Cols,
) -> (Vec<T>, Vec<T>) {
    let (hv, hs, d) = (shape.hv, shape.hs, shape.width());
    let (total, q_total) = (cols.total(), queries.total());
    let tasks = tasks(cols.jets(), shape.heads);
    let grads: Vec<[Vec<T>; 3]> = tasks
        .par_iter()
        .zip(kept)
        .map(|(&(j, head), k)| {
            let (start, n, q) = (
                queries.range(j).start,
                cols.range(j).len(),
                queries.range(j).len(),
            );
            let mut d_out = vec![T::zero(); q * d];
            for (i, row) in d_out.chunks_exact_mut(d).enumerate() {
                for c in 0..hv {
                    let at = (head * hv + c) * 4 * q_total + 4 * (start + i);
                    for comp in 0..4 {
                        row[comp * hv + c] = d_merged_v[at + comp];
                    }
                }
                for c in 0..hs {
                    row[4 * hv + c] = d_merged_s[(head * hs + c) * q_total + start + i];
                }
            }
            let q_low = lowered(&k.q, shape);
            let d_v = small_product(
                MatRef::transposed(&k.p, n, q),
                MatRef::row_major(&d_out, q, d),
            );
            let mut d_s = small_product(
                MatRef::row_major(&d_out, q, d),
                MatRef::transposed(&k.v, d, n),
            );
            for (ds, p) in d_s
                .chunks_exact_mut(n.max(1))
                .zip(k.p.chunks_exact(n.max(1)))
            {
                let dot = lane_sum(n, |i| ds[i] * p[i]);
                for (x, &p) in ds.iter_mut().zip(p) {
                    *x = p * (*x - dot);
                }
            }
            let d_q_low =
                small_product(MatRef::row_major(&d_s, q, n), MatRef::row_major(&k.k, n, d));
            let d_k = small_product(
                MatRef::transposed(&d_s, n, q),
                MatRef::row_major(&q_low, q, d),
            );
            let d_q = lowered(&d_q_low, shape);
            [
                unnormalise(&k.q, &k.factors[0], &d_q, shape),
                unnormalise(&k.k, &k.factors[1], &d_k, shape),
                unnormalise(&k.v, &k.factors[2], &d_v, shape),
            ]
        })
        .collect();
    // Row `(part c) heads + head` of the projections' gradients gathers channel `c` of
    // part `part` of every jet's head.
    let heads = shape.heads;
    let mut d_wide_v = vec![T::zero(); 3 * heads * hv * 4 * total];
    d_wide_v
        .par_chunks_mut((4 * total).max(1))
        .with_min_len(min_rows(4 * total))
        .enumerate()
        .for_each(|(r, row)| {
            let (part, c, head) = (r / heads / hv, r / heads % hv, r % heads);
            for j in 0..cols.jets() {
                let first = cols.range(j).start;
                let rows = &grads[j * heads + head][part];
                for (i, src) in rows.chunks_exact(d).enumerate() {
                    for comp in 0..4 {
                        row[4 * (first + i) + comp] = src[comp * hv + c];
                    }
                }
            }
        });
    let mut d_wide_s = vec![T::zero(); 3 * heads * hs * total];
    d_wide_s
        .par_chunks_mut(total.max(1))
        .with_min_len(min_rows(total.max(1)))
        .enumerate()
        .for_each(|(r, row)| {
            let (part, c, head) = (r / heads / hs, r / heads % hs, r % heads);
            for j in 0..cols.jets() {
                let first = cols.range(j).start;
                let rows = &grads[j * heads + head][part];
                for (i, src) in rows.chunks_exact(d).enumerate() {
                    row[first + i] = src[4 * hv + c];
                }
            }
        });
    (d_wide_v, d_wide_s)
}

//! [`SlimLinear`](crate::slim_layers::SlimLinear) forward and backward on feature-major
//! activations, and the column bookkeeping of a batch of jets.
//!
//! Activations are feature-major: scalars `[channels, columns]`, vectors
//! `[channels, 4 columns]` (column `4 token + component`), one column per real token of
//! every jet. A layer is then `Y = W X` with `W` `[out, in]` as the state dict stores it:
//! gemm reads both operands in place (with token-major activations it gathered the
//! whole weight matrix on every call, 24% of a single jet). Products are split into fixed
//! blocks of output rows, run in parallel: each output element is summed in the same
//! order whatever the thread count.

use std::ops::Range;

use rayon::prelude::*;

use super::weights::LinearW;
use super::Real;
use crate::fused::gemm::{par_product, par_product_split_inner, MatRef};
use crate::fused::vector_math::lane_sum;

/// Multiply-adds below which a product runs as one piece: splitting it costs more in
/// repacking the shared operand and handing out the work than it gains (a single jet's
/// layers stay whole).
const SMALL_PRODUCT: usize = 1 << 23;

/// Pieces a larger product is cut into (along the tokens): two, one per core of the
/// machines noether targets (eight cost 6% of a one-thread training step in repacking the
/// shared operand and narrower microkernel edges, and gained nothing on two cores).
const PIECES: usize = 2;

/// Tokens (columns of the output, or of the inner dimension of a weight gradient) per
/// parallel piece of an `m x k` by `k x n` product whose cut dimension is `len`: fixed by
/// the shape alone, so that the sums do not depend on the thread count.
fn token_block(m: usize, k: usize, n: usize, len: usize) -> usize {
    if m * k * n < SMALL_PRODUCT {
        len.max(1)
    } else {
        len.div_ceil(PIECES).max(1)
    }
}

/// Values a parallel task of the row-wise loops should at least hold: a single jet's
/// rows (54 or 216 values) then run on one thread, where splitting them cost more than it
/// gained (4.2 against 3.5 ms a jet at two threads).
const MIN_TASK: usize = 1 << 14;

/// Rows of `width` values per parallel task at least (see [`MIN_TASK`]).
pub(super) fn min_rows(width: usize) -> usize {
    (MIN_TASK / width.max(1)).max(1)
}

/// Which columns belong to which jet: jet `j` holds `offsets[j]..offsets[j + 1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cols {
    offsets: Vec<usize>,
}

impl Cols {
    /// Jets of `counts` columns each.
    pub(super) fn from_counts(counts: impl IntoIterator<Item = usize>) -> Self {
        let mut offsets = vec![0];
        for c in counts {
            offsets.push(offsets[offsets.len() - 1] + c);
        }
        Self { offsets }
    }

    /// All columns.
    pub(super) fn total(&self) -> usize {
        self.offsets[self.offsets.len() - 1]
    }

    /// Jets.
    pub(super) fn jets(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Jet `j`'s columns.
    pub(super) fn range(&self, j: usize) -> Range<usize> {
        self.offsets[j]..self.offsets[j + 1]
    }

    /// The first `q` columns of each jet (all of a jet's, where it has fewer).
    pub(super) fn first(&self, q: usize) -> Self {
        Self::from_counts((0..self.jets()).map(|j| self.range(j).len().min(q)))
    }
}

/// The columns `to` (each jet's first columns, [`Cols::first`]) of `x` (columns `from`,
/// `group` values per column: 4 for vectors).
pub(super) fn select<T: Real>(x: &[T], from: &Cols, to: &Cols, group: usize) -> Vec<T> {
    if from == to {
        return x.to_vec();
    }
    let (wx, wy) = (from.total() * group, to.total() * group);
    let mut out = vec![T::zero(); x.len() / wx.max(1) * wy];
    out.par_chunks_mut(wy.max(1))
        .with_min_len(min_rows(wy.max(1)))
        .zip(x.par_chunks(wx.max(1)))
        .for_each(|(out, row)| {
            for j in 0..from.jets() {
                let len = to.range(j).len() * group;
                out[to.range(j).start * group..][..len]
                    .copy_from_slice(&row[from.range(j).start * group..][..len]);
            }
        });
    out
}

/// Adds the columns `to` of `x` (columns `from`) to `y` (columns `to`): `y + select(x)`
/// without the copy.
pub(super) fn add_columns<T: Real>(y: &mut [T], x: &[T], from: &Cols, to: &Cols, group: usize) {
    if from == to {
        add(y, x);
        return;
    }
    let (wx, wy) = (from.total() * group, to.total() * group);
    y.par_chunks_mut(wy.max(1))
        .with_min_len(min_rows(wy.max(1)))
        .zip(x.par_chunks(wx.max(1)))
        .for_each(|(out, row)| {
            for j in 0..from.jets() {
                let len = to.range(j).len() * group;
                let target = &mut out[to.range(j).start * group..][..len];
                add(target, &row[from.range(j).start * group..][..len]);
            }
        });
}

/// Adds `y` (columns `to`) to the matching columns of `x` (columns `from`): the backward of
/// [`select`].
pub(super) fn add_selected<T: Real>(x: &mut [T], y: &[T], from: &Cols, to: &Cols, group: usize) {
    let (wx, wy) = (from.total() * group, to.total() * group);
    x.par_chunks_mut(wx.max(1))
        .with_min_len(min_rows(wx.max(1)))
        .zip(y.par_chunks(wy.max(1)))
        .for_each(|(row, update)| {
            for j in 0..from.jets() {
                let len = to.range(j).len() * group;
                let source = &update[to.range(j).start * group..][..len];
                let target = &mut row[from.range(j).start * group..][..len];
                add(target, source);
            }
        });
}

/// `a + b` element-wise into `a` (in parallel chunks).
pub(super) fn add<T: Real>(a: &mut [T], b: &[T]) {
    const CHUNK: usize = MIN_TASK;
    a.par_chunks_mut(CHUNK)
        .zip(b.par_chunks(CHUNK))
        .for_each(|(a, b)| {
            for (x, &y) in a.iter_mut().zip(b) {
                *x += y;
            }
        });
}

/// `a b` `[a.rows, b.cols]` for `b` `[features, tokens]`, blocks of [`token_block`]
/// output columns in parallel.
pub(super) fn product<T: Real>(a: MatRef<'_, T>, b: MatRef<'_, T>) -> Vec<T> {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    par_product(a, b, token_block(m, k, n, n))
}

/// `a b` `[a.rows, b.cols]` for the inner dimension the tokens (a weight gradient
/// `dY X^T`): blocks of [`token_block`] tokens summed in parallel, added in order.
fn product_over_tokens<T: Real>(a: MatRef<'_, T>, b: MatRef<'_, T>) -> Vec<T> {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    par_product_split_inner(a, b, token_block(m, k, n, k))
}

/// A [`SlimLinear`](crate::slim_layers::SlimLinear) on feature-major `(v, s)` of `cols`
/// columns: `(W_v v, W_s s + b)`.
pub(super) fn linear_forward<T: Real>(
    layer: &LinearW<&[T]>,
    (v, s): (&[T], &[T]),
    cols: usize,
) -> (Vec<T>, Vec<T>) {
    let (iv, ov) = layer.v_dims;
    let (is, os) = layer.s_dims;
    let out_v = product(
        MatRef::row_major(layer.v, ov, iv),
        MatRef::row_major(&v[..iv * 4 * cols], iv, 4 * cols),
    );
    let mut out_s = product(
        MatRef::row_major(layer.s, os, is),
        MatRef::row_major(&s[..is * cols], is, cols),
    );
    if let Some(bias) = layer.bias {
        out_s
            .par_chunks_mut(cols.max(1))
            .with_min_len(min_rows(cols))
            .zip(bias)
            .for_each(|(row, &b)| row.iter_mut().for_each(|x| *x += b));
    }
    (out_v, out_s)
}

/// The backward of [`linear_forward`] for the output gradients `(dv, ds)`: writes the
/// weight and bias gradients into `grad`, returns the input gradients when `inputs`.
pub(super) fn linear_backward<T: Real>(
    (layer, grad): (&LinearW<&[T]>, &mut LinearW<&mut [T]>),
    (v, s): (&[T], &[T]),
    (dv, ds): (&[T], &[T]),
    cols: usize,
    inputs: bool,
) -> Option<(Vec<T>, Vec<T>)> {
    let (iv, ov) = layer.v_dims;
    let (is, os) = layer.s_dims;
    let dw_v = product_over_tokens(
        MatRef::row_major(dv, ov, 4 * cols),
        MatRef::transposed(v, 4 * cols, iv),
    );
    grad.v.copy_from_slice(&dw_v);
    let dw_s = product_over_tokens(
        MatRef::row_major(ds, os, cols),
        MatRef::transposed(s, cols, is),
    );
    grad.s.copy_from_slice(&dw_s);
    if let Some(db) = grad.bias.as_deref_mut() {
        db.par_iter_mut()
            .with_min_len(min_rows(cols))
            .zip(ds.par_chunks(cols.max(1)))
            .for_each(|(b, row)| *b = lane_sum(row.len(), |i| row[i]));
    }
    inputs.then(|| {
        (
            product(
                MatRef::transposed(layer.v, iv, ov),
                MatRef::row_major(dv, ov, 4 * cols),
            ),
            product(
                MatRef::transposed(layer.s, is, os),
                MatRef::row_major(ds, os, cols),
            ),
        )
    })
}

//! Broadcasts and reductions over the rows of 2-D `[rows, C]` tensors written as matrix
//! products and gathers. candle 0.11 reduces over non-trailing dimensions with a
//! per-element divmod loop, and the backward pass of every broadcast (`x + bias`,
//! `x * scale`, `h_i + h_j`) is such a reduction: on `[32 x 52 x 52, 72]` edge tensors
//! these dominated training time. Written as `ones @ v` (whose backward is the matrix
//! product `ones^T @ grad`), `index_select` (backward: `index_add`) and `index_add`
//! (backward: `index_select`), the same maths runs through gemm and contiguous row loops.

use candle_core::{Result, Tensor};

/// `x + v` for `x` `[rows, C]` and `v` `[C]` (or `[1, C]`), with a matrix-product
/// backward.
///
/// # Errors
/// Shape mismatches.
pub fn add_rows(x: &Tensor, v: &Tensor) -> Result<Tensor> {
    x + broadcast_rows(v, x.dim(0)?)?
}

/// `x * v` row by row for `x` `[rows, C]` and `v` `[C]` (or `[1, C]`).
///
/// # Errors
/// Shape mismatches.
pub fn mul_rows(x: &Tensor, v: &Tensor) -> Result<Tensor> {
    x * broadcast_rows(v, x.dim(0)?)?
}

/// `v` repeated on `rows` rows, as `ones[rows, 1] @ v[1, C]`.
///
/// # Errors
/// Shape mismatches.
pub fn broadcast_rows(v: &Tensor, rows: usize) -> Result<Tensor> {
    let v = v.reshape((1, v.elem_count()))?;
    Tensor::ones((rows, 1), v.dtype(), v.device())?.matmul(&v)
}

/// Sum over the rows where `mask` `[rows, 1]` is 1: `mask^T @ x`, `[1, C]`.
///
/// # Errors
/// Shape mismatches.
pub fn masked_row_sum(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    mask.t()?.matmul(x)
}

/// Row indices that lay node tensors `[B N, C]` out over the pairs of a dense
/// `[B, N, N]` grid (row `(b, i, j)` of a `[B N N, C]` pair tensor).
#[derive(Debug, Clone)]
pub struct PairRows {
    /// For pair row (b, i, j): b N + i.
    pub first: Tensor,
    /// For pair row (b, i, j): b N + j.
    pub second: Tensor,
}

impl PairRows {
    /// The indices for `batch` graphs of `nodes` nodes.
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn new(batch: usize, nodes: usize, device: &candle_core::Device) -> Result<Self> {
        let mut first = Vec::with_capacity(batch * nodes * nodes);
        let mut second = Vec::with_capacity(batch * nodes * nodes);
        for b in 0..batch {
            for i in 0..nodes {
                for j in 0..nodes {
                    first.push((b * nodes + i) as u32);
                    second.push((b * nodes + j) as u32);
                }
            }
        }
        let len = first.len();
        Ok(Self {
            first: Tensor::from_vec(first, len, device)?,
            second: Tensor::from_vec(second, len, device)?,
        })
    }

    /// `a[(b,i)]` on every pair row: `[B N N, C]` from `[B N, C]` (backward: `index_add`).
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn gather_first(&self, a: &Tensor) -> Result<Tensor> {
        a.index_select(&self.first, 0)
    }

    /// `a[(b,j)]` on every pair row.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn gather_second(&self, a: &Tensor) -> Result<Tensor> {
        a.index_select(&self.second, 0)
    }

    /// Sum over j of pair rows `(b, i, j)`: `[B N, C]` from `[B N N, C]` (backward:
    /// `index_select`).
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn sum_over_second(&self, pairs: &Tensor, nodes: usize) -> Result<Tensor> {
        let c = pairs.dim(1)?;
        Tensor::zeros((nodes, c), pairs.dtype(), pairs.device())?.index_add(&self.first, pairs, 0)
    }
}

//! A bounds-checked, safe entry to the `gemm` crate (the GEMM candle itself links) for the
//! fused kernels' small per-tile products.

// `gemm::gemm` takes raw pointers and strides: the one unsafe call is wrapped here behind
// checks that every index the product touches lies inside its slice.
#![allow(unsafe_code)]

use num_traits::{One, Zero};

/// A read-only strided matrix view: element (r, c) is `data[r * row_stride + c * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A row-major `rows x cols` matrix stored densely.
    pub(crate) fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of the dense row-major `cols x rows` matrix in `data`, seen as
    /// `rows x cols` (a PyTorch `[out, in]` weight used as `W^T`).
    pub(crate) fn transposed(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: 1,
            col_stride: rows,
        }
    }

    /// Rows.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Rows `start..start + rows` of the view.
    ///
    /// # Panics
    /// When the block reaches past the view's rows (a bug in the caller).
    pub(crate) fn row_block(&self, start: usize, rows: usize) -> Self {
        assert!(start + rows <= self.rows, "row block outside the view");
        self.block_from(start * self.row_stride, rows, self.cols)
    }

    /// Columns `start..start + cols` of the view.
    ///
    /// # Panics
    /// When the block reaches past the view's columns (a bug in the caller).
    pub(crate) fn col_block(&self, start: usize, cols: usize) -> Self {
        assert!(start + cols <= self.cols, "column block outside the view");
        self.block_from(start * self.col_stride, self.rows, cols)
    }

    /// The `rows x cols` view (same strides) whose first element is `data[offset]`; an
    /// offset at or past the end (an empty block) leaves an empty slice.
    fn block_from(&self, offset: usize, rows: usize, cols: usize) -> Self {
        Self {
            data: &self.data[offset.min(self.data.len())..],
            rows,
            cols,
            ..*self
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// A destination shared by the tasks of one product, each writing its own columns.
struct SharedDst<T>(*mut T);

// SAFETY: the tasks holding it write disjoint elements (their own column blocks).
unsafe impl<T: Send> Sync for SharedDst<T> {}

impl<T> SharedDst<T> {
    fn at(&self, offset: usize) -> *mut T {
        self.0.wrapping_add(offset)
    }
}

/// `a b` as a new dense row-major `[a.rows, b.cols]` vector, its blocks of `block_cols`
/// output columns computed in parallel (rayon). Cutting the columns (the tokens, in the
/// kernels' feature-major layers) leaves every task its own part of the large operand to
/// pack, where cutting the rows had each task pack all of it (gemm alone on one thread, a
/// `96 x 32` by `32 x 6912` layer of L-GATr-slim: 77 GFLOP/s cut in two by rows, 92 by
/// columns, 92 whole). gemm writes every element of a product
/// it does not accumulate into, so the vector is not zero-filled first (with fresh buffers
/// for every layer, the fill and the page faults behind it were 10% of an L-GATr-slim
/// training step). The blocks are fixed by the caller, so the result does not depend on
/// the thread count.
///
/// # Panics
/// As [`matmul`], and for `block_cols` = 0.
pub(crate) fn par_product<T: Copy + One + Zero + Send + Sync + 'static>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    block_cols: usize,
) -> Vec<T> {
    use rayon::prelude::*;
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions");
    assert!(a.fits() && b.fits(), "matrix view outside its slice");
    assert!(block_cols > 0, "empty column blocks");
    if m == 0 || n == 0 || k == 0 {
        return vec![T::zero(); m * n];
    }
    let mut out: Vec<T> = Vec::with_capacity(m * n);
    let dst = SharedDst(out.as_mut_ptr());
    (0..n.div_ceil(block_cols)).into_par_iter().for_each(|j| {
        let first = j * block_cols;
        let block = b.col_block(first, block_cols.min(n - first));
        // SAFETY: the block's `m x block.cols` elements from column `first` (row stride
        // `n`) lie inside the `m * n` the vector holds, no other task writes them, and
        // gemm writes them all (no accumulation, so none is read); both views fit.
        unsafe { gemm_into(dst.at(first), n, a, block, false) };
    });
    // SAFETY: the blocks above initialised all `m * n` elements.
    unsafe { out.set_len(m * n) };
    out
}

/// `a b` as a new dense row-major `[a.rows, b.cols]` vector, the sum over the inner
/// dimension cut into blocks of `block_inner` computed in parallel and added in order (a
/// weight gradient `dY X^T`, whose inner dimension is the tokens: cutting its rows had
/// every task pack all of `X`). The blocks are fixed by the caller, so the result does not
/// depend on the thread count.
///
/// # Panics
/// As [`matmul`], and for `block_inner` = 0.
pub(crate) fn par_product_split_inner<T>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    block_inner: usize,
) -> Vec<T>
where
    T: Copy + One + Zero + Send + Sync + std::ops::AddAssign + 'static,
{
    use rayon::prelude::*;
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions");
    assert!(block_inner > 0, "empty inner blocks");
    let pieces = k.div_ceil(block_inner).max(1);
    let partials: Vec<Vec<T>> = (0..pieces)
        .into_par_iter()
        .map(|p| {
            let first = (p * block_inner).min(k);
            let len = block_inner.min(k - first);
            product(a.col_block(first, len), b.row_block(first, len))
        })
        .collect();
    let mut partials = partials.into_iter();
    let mut out = partials.next().unwrap_or_else(|| vec![T::zero(); m * n]);
    for partial in partials {
        for (x, &y) in out.iter_mut().zip(&partial) {
            *x += y;
        }
    }
    out
}

/// `a b` as a new dense row-major `[a.rows, b.cols]` vector, on the calling thread (for
/// products that callers already run many of in parallel, such as attention's per (jet,
/// head)); not zero-filled first, as [`par_product`].
///
/// # Panics
/// As [`matmul`].
pub(crate) fn product<T: Copy + One + Zero + 'static>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
) -> Vec<T> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions");
    assert!(a.fits() && b.fits(), "matrix view outside its slice");
    if m == 0 || n == 0 || k == 0 {
        return vec![T::zero(); m * n];
    }
    let mut out: Vec<T> = Vec::with_capacity(m * n);
    // SAFETY: the vector holds capacity for the `m * n` elements gemm writes (no
    // accumulation, so none is read); both views were checked to fit.
    unsafe {
        gemm_into(out.as_mut_ptr(), n, a, b, false);
        out.set_len(m * n);
    }
    out
}

/// `dst = a b` (`accumulate`: `dst += a b`) for a dense row-major `dst` of
/// `a.rows x b.cols`, single-threaded (the kernels parallelise over tiles).
///
/// # Panics
/// When the shapes disagree or a view does not fit its slice: a bug in the caller, never
/// a property of user input (the fused ops validate shapes before they get here).
pub(crate) fn matmul<T: Copy + One + Zero + 'static>(
    dst: &mut [T],
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions");
    assert!(dst.len() >= m * n, "destination too small");
    assert!(a.fits() && b.fits(), "matrix view outside its slice");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(T::zero());
        }
        return;
    }
    // SAFETY: `dst` holds at least `m * n` elements and, borrowed mutably, cannot alias
    // the shared borrows of `a` and `b`, which were checked to fit.
    unsafe { gemm_into(dst.as_mut_ptr(), n, a, b, accumulate) };
}

/// `dst = a b` (`accumulate`: `dst += a b`) into the dense row-major `a.rows x b.cols`
/// matrix at `dst`, single-threaded: the one call into `gemm::gemm`.
///
/// # Safety
/// `dst` must be valid for writes (and reads, with `accumulate`) of the `a.rows x b.cols`
/// elements at `dst + r * dst_row_stride + c`, which no other thread touches meanwhile
/// and which do not overlap `a` or `b`; `a.cols == b.rows`, both views fit their slices,
/// and no dimension is zero.
unsafe fn gemm_into<T: Copy + One + Zero + 'static>(
    dst: *mut T,
    dst_row_stride: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
) {
    let stride = |s: usize| isize::try_from(s).expect("stride fits isize");
    // SAFETY: every index (r * rs + c * cs) read from `a` or `b` lies inside its slice
    // and `dst` covers the product, as the caller guarantees.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            dst,
            1,
            stride(dst_row_stride),
            accumulate,
            a.data.as_ptr(),
            stride(a.col_stride),
            stride(a.row_stride),
            b.data.as_ptr(),
            stride(b.col_stride),
            stride(b.row_stride),
            T::one(),
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for r in 0..m {
            for c in 0..n {
                out[r * n + c] = (0..k).map(|i| a[r * k + i] * b[i * n + c]).sum();
            }
        }
        out
    }

    #[test]
    fn products_and_transposes_equal_the_textbook_sum() {
        let (m, k, n) = (7, 5, 3);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos()).collect();
        let expected = naive(&a, &b, m, k, n);
        let mut dst = vec![0.0; m * n];
        matmul(
            &mut dst,
            MatRef::row_major(&a, m, k),
            MatRef::row_major(&b, k, n),
            false,
        );
        for (x, y) in dst.iter().zip(&expected) {
            assert!((x - y).abs() < 1e-14);
        }
        // b^T stored as [n, k] row-major, read back as its transpose.
        let bt: Vec<f64> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        matmul(
            &mut dst,
            MatRef::row_major(&a, m, k),
            MatRef::transposed(&bt, k, n),
            true,
        );
        for (x, y) in dst.iter().zip(&expected) {
            assert!((x - 2.0 * y).abs() < 1e-14);
        }
    }

    #[test]
    fn parallel_products_in_column_and_inner_blocks_equal_the_textbook_sum() {
        let (m, k, n) = (13, 5, 7);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos()).collect();
        let expected = naive(&a, &b, m, k, n);
        for block in [1, 2, 4, 7, 100] {
            let by_cols = par_product(
                MatRef::row_major(&a, m, k),
                MatRef::row_major(&b, k, n),
                block,
            );
            let by_inner = par_product_split_inner(
                MatRef::row_major(&a, m, k),
                MatRef::row_major(&b, k, n),
                block,
            );
            assert_eq!((by_cols.len(), by_inner.len()), (m * n, m * n));
            for ((x, z), y) in by_cols.iter().zip(&by_inner).zip(&expected) {
                assert!((x - y).abs() < 1e-14 && (z - y).abs() < 1e-14);
            }
        }
        let empty = par_product(MatRef::row_major(&a, m, 0), MatRef::row_major(&b, 0, n), 4);
        assert_eq!(empty, vec![0.0; m * n]);
        let empty =
            par_product_split_inner(MatRef::row_major(&a, m, 0), MatRef::row_major(&b, 0, n), 4);
        assert_eq!(empty, vec![0.0; m * n]);
    }

    #[test]
    #[should_panic(expected = "outside its slice")]
    fn a_view_past_its_slice_is_refused() {
        let a = [1.0f32; 5];
        let mut dst = [0.0f32; 4];
        matmul(
            &mut dst,
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&a, 3, 2),
            false,
        );
    }
}

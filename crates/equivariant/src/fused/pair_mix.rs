//! PELICAN's 2 -> 2 layer ([`crate::Eq2to2`]) as one CPU kernel with its own backward.
//!
//! Composed from candle operations, the layer's 15 basis operations and their gradients
//! materialise about twenty `[B N N, C]` tensors per call (gathers, broadcasts, sums,
//! zero-filled gradient buffers). Here every jet is one task: its aggregates (diagonal,
//! scaled row and column means, trace and total), the two dense products `t W0` and
//! `(t W1)^T` through the GEMM, and the broadcast terms are written into the output in
//! one pass; the backward recomputes the aggregates (O(N^2 C_in), cheaper than keeping
//! them) and forms the input gradient, then per-jet parameter gradients that are summed
//! in jet order. Every jet's arithmetic is independent of the thread count, and so is
//! the order of every sum: results are bit-identical for any number of threads.
//!
//! The semantics are exactly those of the composed layer, including what it does
//! outside the mask: aggregates sum every entry of `t` (the caller's tensor is zero
//! outside the pair mask), the output is masked, the input gradient is not.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor, WithDType};
use num_traits::{Float, NumAssign};
use rayon::prelude::*;

use super::gemm::{matmul, MatRef};
use super::{contiguous_values, cpu_storage, with_channels};
use crate::error::{ModelError, Result};

/// The kernel's name in errors.
const KERNEL: &str = "fused 2->2 layer";

/// The operations of the 2 -> 2 basis, in [`crate::Eq2to2`]'s order.
const OPS: usize = 15;

/// Elements per parallel task of the element-wise loops.
const CHUNK: usize = 1 << 14;

/// Pair rows per product of the forward's dense products (six blocks for one jet of 52
/// nodes, so that a single jet's products also run on every thread).
const PRODUCT_ROWS: usize = 512;

/// The fused 2 -> 2 layer's shapes: `batch` jets of `nodes` nodes (padded), `c_in` input
/// and `c_out` output channels, `n_avg` the scale of the `(n / n_avg)^alpha` factors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairEquivariant {
    /// Jets.
    pub batch: usize,
    /// Nodes per jet (padded).
    pub nodes: usize,
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Typical number of real nodes.
    pub n_avg: f64,
    /// A LeakyReLU with this negative slope applied to the output (PELICAN's blocks), or
    /// none. Its backward reads the sign from the output, which has the sign of the
    /// pre-activation for a positive slope.
    pub leaky_slope: Option<f64>,
}

impl PairEquivariant {
    /// Length of the packed parameters: `weight` `[15, C_in, C_out]`, `bias` `[C_out]`,
    /// `diag_bias` `[C_out]`, `alphas` `[4, C_in]`, flattened and concatenated.
    pub fn parameter_len(&self) -> usize {
        OPS * self.c_in * self.c_out + 2 * self.c_out + 4 * self.c_in
    }

    /// Packs the layer's parameters in [`Self::parameter_len`]'s order (differentiable:
    /// gradients flow back to each).
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn pack(
        weight: &Tensor,
        bias: &Tensor,
        diag_bias: &Tensor,
        alphas: &Tensor,
    ) -> candle_core::Result<Tensor> {
        Tensor::cat(
            &[
                weight.flatten_all()?,
                bias.flatten_all()?,
                diag_bias.flatten_all()?,
                alphas.flatten_all()?,
            ],
            0,
        )
    }

    /// The layer on pair rows `t` `[B N N, C_in]` or `[B, N, N, C_in]` (row `(b, i, j)`,
    /// zero outside the pair mask) with node mask `[B, N]` and packed parameters: `t`'s
    /// shape with `C_out` channels, masked. (The pair tensor's own shape in and out: a
    /// reshape would be one more node in candle's graph, whose backward costs a zero-filled
    /// buffer and a sum of the whole gradient.)
    ///
    /// # Errors
    /// [`ModelError::BadInput`] naming the tensor for shapes that do not fit, dtypes
    /// other than f32 and f64 (all three alike) and tensors not on the CPU.
    pub fn apply(&self, t: &Tensor, node_mask: &Tensor, params: &Tensor) -> Result<Tensor> {
        self.apply_dropped(t, node_mask, params, None)
    }

    /// [`Self::apply`] with the output multiplied by a constant dropout mask of the
    /// output's shape when given (PELICAN's dropout after each block, in the same kernel:
    /// the product written with the output, its backward with the LeakyReLU's; no gradient
    /// flows to the mask).
    ///
    /// # Errors
    /// As [`Self::apply`], and for a `dropout` mask of another shape, dtype or device.
    pub fn apply_dropped(
        &self,
        t: &Tensor,
        node_mask: &Tensor,
        params: &Tensor,
        dropout: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.check(t, node_mask, params)?;
        if let Some(d) = dropout {
            let out = with_channels(t.dims(), self.c_out);
            if d.dims() != out || d.dtype() != t.dtype() || !d.device().is_cpu() {
                return Err(ModelError::BadInput {
                    input: "dropout",
                    expected: format!("{out:?} (the output's shape) on the CPU, t's dtype"),
                    found: d.dims().to_vec(),
                });
            }
        }
        let run = || -> candle_core::Result<Tensor> {
            let kernel = Kernel {
                op: *self,
                dropout: dropout.map(Tensor::contiguous).transpose()?,
            };
            t.contiguous()?
                .apply_op3(&node_mask.contiguous()?, &params.contiguous()?, kernel)
        };
        run().map_err(|source| ModelError::Candle {
            context: "fused PELICAN 2->2 layer".into(),
            source,
        })
    }

    fn rows(&self) -> usize {
        self.batch * self.nodes * self.nodes
    }

    fn check(&self, t: &Tensor, node_mask: &Tensor, params: &Tensor) -> Result<()> {
        let bad = |input: &'static str, expected: String, x: &Tensor| ModelError::BadInput {
            input,
            expected,
            found: x.dims().to_vec(),
        };
        if self.nodes == 0 || self.c_in == 0 || self.c_out == 0 || self.n_avg <= 0.0 {
            return Err(ModelError::BadInput {
                input: "fused 2->2 layer",
                expected: "at least one node and channel, n_avg > 0".into(),
                found: vec![self.nodes, self.c_in, self.c_out],
            });
        }
        let (b, n, c) = (self.batch, self.nodes, self.c_in);
        if t.dims() != [self.rows(), c] && t.dims() != [b, n, n, c] {
            let expected = format!(
                "[{}, {c}] (pair rows B N N, C_in) or [{b}, {n}, {n}, {c}]",
                self.rows()
            );
            return Err(bad("t", expected, t));
        }
        if node_mask.dims() != [self.batch, self.nodes] {
            let expected = format!("[{}, {}]", self.batch, self.nodes);
            return Err(bad("node_mask", expected, node_mask));
        }
        let len = self.parameter_len();
        if params.dims() != [len] {
            return Err(bad("params", format!("[{len}] (packed)"), params));
        }
        let dtype = t.dtype();
        for (name, x) in [("t", t), ("node_mask", node_mask), ("params", params)] {
            if !matches!(x.dtype(), DType::F32 | DType::F64) || x.dtype() != dtype {
                let expected = format!("f32 or f64, all three alike (t is {dtype:?})");
                return Err(bad(name, expected, x));
            }
            if !x.device().is_cpu() {
                return Err(bad(name, "a CPU tensor (a fused CPU kernel)".into(), x));
            }
        }
        Ok(())
    }
}

/// The packed parameters, split.
struct Params<'a, T> {
    weight: &'a [T],
    bias: &'a [T],
    diag_bias: &'a [T],
    alphas: &'a [T],
}

impl<'a, T> Params<'a, T> {
    fn split(op: &PairEquivariant, p: &'a [T]) -> Self {
        let (w, rest) = p.split_at(OPS * op.c_in * op.c_out);
        let (bias, rest) = rest.split_at(op.c_out);
        let (diag_bias, alphas) = rest.split_at(op.c_out);
        Self {
            weight: w,
            bias,
            diag_bias,
            alphas,
        }
    }
}

/// One jet's aggregates: the diagonal `[N, C_in]`, scaled row and column means
/// `[N, C_in]`, scaled trace and total means `[C_in]`; the scales `[4, C_in]`, `1 / n`
/// and `ln(n / n_avg)`.
struct Aggregates<T> {
    diag: Vec<T>,
    row: Vec<T>,
    col: Vec<T>,
    trace: Vec<T>,
    total: Vec<T>,
    scale: Vec<T>,
    inv_n: T,
    log_ratio: T,
}

/// A jet's node-level (`[N, C_out]`) and jet-level (`[C_out]`) output terms: those
/// broadcast over j (`node_i`), over i (`node_j`), on the diagonal (`node_diag`), to
/// every pair (`jet`, bias included) and to the diagonal (`jet_diag`).
struct JetTerms<T> {
    node_i: Vec<T>,
    node_j: Vec<T>,
    node_diag: Vec<T>,
    jet: Vec<T>,
    jet_diag: Vec<T>,
}

/// The custom op: the layer's shapes and the dropout mask multiplied into its output.
struct Kernel {
    op: PairEquivariant,
    dropout: Option<Tensor>,
}

/// The kernel's arithmetic on one dtype.
struct Jets<'a, T> {
    op: PairEquivariant,
    t: &'a [T],
    mask: &'a [T],
    p: Params<'a, T>,
    /// The dropout mask (the output's shape: `[B N N, C_out]` values), when given.
    dropout: Option<&'a [T]>,
}

impl<'a, T: WithDType + Float + NumAssign + Send + Sync> Jets<'a, T> {
    fn weight(&self, k: usize) -> MatRef<'a, T> {
        let block = self.op.c_in * self.op.c_out;
        MatRef::row_major(
            &self.p.weight[k * block..(k + 1) * block],
            self.op.c_in,
            self.op.c_out,
        )
    }

    /// `W_k^T` `[C_out, C_in]`.
    fn weight_t(&self, k: usize) -> MatRef<'a, T> {
        let block = self.op.c_in * self.op.c_out;
        MatRef::transposed(
            &self.p.weight[k * block..(k + 1) * block],
            self.op.c_out,
            self.op.c_in,
        )
    }

    fn jet_rows(&self, b: usize) -> &'a [T] {
        let (n, ci) = (self.op.nodes, self.op.c_in);
        &self.t[b * n * n * ci..(b + 1) * n * n * ci]
    }

    fn aggregates(&self, b: usize) -> Aggregates<T> {
        let (n, ci) = (self.op.nodes, self.op.c_in);
        let t = self.jet_rows(b);
        let mask = &self.mask[b * n..(b + 1) * n];
        let count = mask.iter().fold(T::zero(), |a, &m| a + m);
        let count = Float::max(count, T::one());
        let inv_n = count.recip();
        let log_ratio = (count / T::from(self.op.n_avg).expect("finite")).ln();
        let scale: Vec<T> = self
            .p
            .alphas
            .iter()
            .map(|&a| (log_ratio * a).exp())
            .collect();
        let (mut diag, mut row, mut col) = (
            vec![T::zero(); n * ci],
            vec![T::zero(); n * ci],
            vec![T::zero(); n * ci],
        );
        let (mut trace, mut total) = (vec![T::zero(); ci], vec![T::zero(); ci]);
        for i in 0..n {
            for j in 0..n {
                let x = &t[(i * n + j) * ci..(i * n + j + 1) * ci];
                for c in 0..ci {
                    row[i * ci + c] += x[c];
                    col[j * ci + c] += x[c];
                }
            }
            diag[i * ci..(i + 1) * ci].copy_from_slice(&t[(i * n + i) * ci..(i * n + i + 1) * ci]);
        }
        for i in 0..n {
            for c in 0..ci {
                trace[c] += diag[i * ci + c];
                total[c] += row[i * ci + c];
            }
        }
        for i in 0..n {
            for c in 0..ci {
                row[i * ci + c] = row[i * ci + c] * inv_n * scale[c];
                col[i * ci + c] = col[i * ci + c] * inv_n * scale[ci + c];
            }
        }
        for c in 0..ci {
            trace[c] = trace[c] * inv_n * scale[2 * ci + c];
            total[c] = total[c] * inv_n * inv_n * scale[3 * ci + c];
        }
        Aggregates {
            diag,
            row,
            col,
            trace,
            total,
            scale,
            inv_n,
            log_ratio,
        }
    }

    /// `Σ_k a_k W_{w_k}` for node tensors `a_k` `[rows, C_in]`: `[rows, C_out]`.
    fn mix(&self, terms: &[(&[T], usize)], rows: usize) -> Vec<T> {
        let mut out = vec![T::zero(); rows * self.op.c_out];
        for (k, &(a, w)) in terms.iter().enumerate() {
            let a = MatRef::row_major(a, rows, self.op.c_in);
            matmul(&mut out, a, self.weight(w), k > 0);
        }
        out
    }

    /// The block's LeakyReLU's factor for non-positive values (1 without one): the
    /// activation is a product with 1 or this (`v * 1` is `v` exactly), no branch on the
    /// sign, which the predictor misses on about half the pairs.
    fn negative_factor(&self) -> T {
        self.op
            .leaky_slope
            .map_or(T::one(), |slope| T::from(slope).expect("finite slope"))
    }

    /// Jet `b`'s node- and jet-level terms of the output.
    fn jet_terms(&self, b: usize) -> JetTerms<T> {
        let (n, co) = (self.op.nodes, self.op.c_out);
        let agg = self.aggregates(b);
        let (d, r, c) = (&agg.diag[..], &agg.row[..], &agg.col[..]);
        let mut jet = self.mix(&[(&agg.trace, 11), (&agg.total, 13)], 1);
        let mut jet_diag = self.mix(&[(&agg.trace, 12), (&agg.total, 14)], 1);
        for o in 0..co {
            jet[o] += self.p.bias[o];
            jet_diag[o] += self.p.diag_bias[o];
        }
        JetTerms {
            node_i: self.mix(&[(d, 3), (r, 5), (c, 6)], n),
            node_j: self.mix(&[(d, 4), (r, 7), (c, 8)], n),
            node_diag: self.mix(&[(d, 2), (r, 9), (c, 10)], n),
            jet,
            jet_diag,
        }
    }

    /// Output rows `(b, i, j)` for all j, `[N, C_out]`, from `y` holding `t_ij W0` and
    /// `tw1` every pair row's `t W1`: `t_ij W0 + t_ji W1` and the broadcast terms.
    fn forward_row(&self, (b, i): (usize, usize), terms: &JetTerms<T>, tw1: &[T], y: &mut [T]) {
        let (n, co) = (self.op.nodes, self.op.c_out);
        let dropped = self
            .dropout
            .map(|d| &d[(b * n + i) * n * co..(b * n + i + 1) * n * co]);
        let mask = &self.mask[b * n..(b + 1) * n];
        let node_i = &terms.node_i[i * co..(i + 1) * co];
        let node_diag = &terms.node_diag[i * co..(i + 1) * co];
        // LeakyReLU as a product with 1 or the slope (1 for none: `v * 1` is `v`).
        let (negative, one) = (self.negative_factor(), T::one());
        for (j, y) in y.chunks_mut(co).enumerate() {
            let m = mask[i] * mask[j];
            let node_j = &terms.node_j[j * co..(j + 1) * co];
            let transposed = &tw1[((b * n + j) * n + i) * co..((b * n + j) * n + i + 1) * co];
            // Zipped slices, the diagonal's loop apart: no bounds checks or branches in
            // the loops, so that they vectorise (the same sums in the same order).
            let sums = y
                .iter_mut()
                .zip(transposed)
                .zip(node_i.iter().zip(node_j).zip(&terms.jet));
            let activate = |v: T| (v * if v <= T::zero() { negative } else { one }) * m;
            if i == j {
                let diag = node_diag.iter().zip(&terms.jet_diag);
                for (((y, &tr), ((&ni, &nj), &jet)), (&nd, &jd)) in sums.zip(diag) {
                    *y = activate((*y + tr) + ni + nj + jet + (nd + jd));
                }
            } else {
                for ((y, &tr), ((&ni, &nj), &jet)) in sums {
                    *y = activate((*y + tr) + ni + nj + jet);
                }
            }
            if let Some(d) = dropped {
                for (y, &d) in y.iter_mut().zip(&d[j * co..(j + 1) * co]) {
                    *y *= d;
                }
            }
        }
    }

    /// `t W_k` for every pair row, `[B N N, C_out]`: one product per block of
    /// [`PRODUCT_ROWS`] rows, in parallel (the rows' sums do not depend on the blocks).
    fn pair_product(&self, k: usize) -> Vec<T> {
        let (ci, co) = (self.op.c_in, self.op.c_out);
        let mut out = vec![T::zero(); self.op.rows() * co];
        out.par_chunks_mut(PRODUCT_ROWS * co)
            .enumerate()
            .for_each(|(block, y)| {
                let (first, rows) = (block * PRODUCT_ROWS, y.len() / co);
                let t = MatRef::row_major(&self.t[first * ci..(first + rows) * ci], rows, ci);
                matmul(y, t, self.weight(k), false);
            });
        out
    }

    /// Every output row: the jets' terms in parallel over jets, the two dense products
    /// over all pair rows (a product per row `i` of each jet, with the weights packed
    /// anew for each, had run ~40% below the large products' rate), then the rows'
    /// sums and broadcast terms in parallel over (jet, i), so that one jet alone also
    /// uses every thread.
    fn forward(&self) -> Vec<T> {
        let (n, co) = (self.op.nodes, self.op.c_out);
        let terms: Vec<JetTerms<T>> = (0..self.op.batch)
            .into_par_iter()
            .map(|b| self.jet_terms(b))
            .collect();
        let mut out = self.pair_product(0);
        let tw1 = self.pair_product(1);
        out.par_chunks_mut(n * co).enumerate().for_each(|(row, y)| {
            let (b, i) = (row / n, row % n);
            self.forward_row((b, i), &terms[b], &tw1, y);
        });
        out
    }

    /// Jet `b`'s input gradient `[N N, C_in]` (written to `dt`) and parameter gradient
    /// (packed), from the output gradient `g` `[N N, C_out]`.
    #[allow(clippy::too_many_lines)]
    fn backward_jet(&self, b: usize, g: &[T], dt: &mut [T]) -> Vec<T> {
        let (n, ci, co) = (self.op.nodes, self.op.c_in, self.op.c_out);
        let agg = self.aggregates(b);
        let mask = &self.mask[b * n..(b + 1) * n];
        // The output is masked: its gradient too.
        let mut gm = vec![T::zero(); n * n * co];
        let mut gm_t = vec![T::zero(); n * n * co];
        let (mut g_i, mut g_j, mut g_d) = (
            vec![T::zero(); n * co],
            vec![T::zero(); n * co],
            vec![T::zero(); n * co],
        );
        // Zipped row slices: no index arithmetic or bounds checks in the inner loop, so
        // that it vectorises (the same sums in the same order).
        for i in 0..n {
            for j in 0..n {
                let m = mask[i] * mask[j];
                let (pair, transposed) = ((i * n + j) * co, (j * n + i) * co);
                let rows = g[pair..pair + co]
                    .iter()
                    .zip(&mut gm[pair..pair + co])
                    .zip(&mut gm_t[transposed..transposed + co]);
                let sums = g_i[i * co..(i + 1) * co]
                    .iter_mut()
                    .zip(&mut g_j[j * co..(j + 1) * co]);
                for (((&g, gm), gm_t), (g_i, g_j)) in rows.zip(sums) {
                    let v = g * m;
                    *gm = v;
                    *gm_t = v;
                    *g_i += v;
                    *g_j += v;
                }
            }
            g_d[i * co..(i + 1) * co].copy_from_slice(&gm[(i * n + i) * co..(i * n + i + 1) * co]);
        }
        let (mut g_jet, mut g_jet_diag) = (vec![T::zero(); co], vec![T::zero(); co]);
        for i in 0..n {
            for o in 0..co {
                g_jet[o] += g_i[i * co + o];
                g_jet_diag[o] += g_d[i * co + o];
            }
        }
        // Input gradient through the two dense products.
        let (gm_ref, gm_t_ref) = (
            MatRef::row_major(&gm, n * n, co),
            MatRef::row_major(&gm_t, n * n, co),
        );
        matmul(dt, gm_ref, self.weight_t(0), false);
        matmul(dt, gm_t_ref, self.weight_t(1), true);
        // Parameter gradient, packed.
        let mut dp = vec![T::zero(); self.op.parameter_len()];
        let block = ci * co;
        let t_t = MatRef::transposed(self.jet_rows(b), ci, n * n);
        matmul(&mut dp[..block], t_t, gm_ref, false);
        matmul(&mut dp[block..2 * block], t_t, gm_t_ref, false);
        let (d, r, c) = (&agg.diag[..], &agg.row[..], &agg.col[..]);
        for (k, a, gr) in [
            (2, d, &g_d),
            (3, d, &g_i),
            (4, d, &g_j),
            (5, r, &g_i),
            (6, c, &g_i),
            (7, r, &g_j),
            (8, c, &g_j),
            (9, r, &g_d),
            (10, c, &g_d),
        ] {
            let (a, gr) = (MatRef::transposed(a, ci, n), MatRef::row_major(gr, n, co));
            matmul(&mut dp[k * block..(k + 1) * block], a, gr, false);
        }
        for (k, a, gr) in [
            (11, &agg.trace, &g_jet),
            (12, &agg.trace, &g_jet_diag),
            (13, &agg.total, &g_jet),
            (14, &agg.total, &g_jet_diag),
        ] {
            for x in 0..ci {
                for o in 0..co {
                    dp[k * block + x * co + o] = a[x] * gr[o];
                }
            }
        }
        let biases = OPS * block;
        dp[biases..biases + co].copy_from_slice(&g_jet);
        dp[biases + co..biases + 2 * co].copy_from_slice(&g_jet_diag);
        // Gradients of the (scaled) aggregates.
        let back = |terms: &[(&[T], usize)], rows: usize| {
            let mut out = vec![T::zero(); rows * ci];
            for (k, &(gr, w)) in terms.iter().enumerate() {
                matmul(
                    &mut out,
                    MatRef::row_major(gr, rows, co),
                    self.weight_t(w),
                    k > 0,
                );
            }
            out
        };
        let d_diag = back(&[(&g_i, 3), (&g_j, 4), (&g_d, 2)], n);
        let d_row = back(&[(&g_i, 5), (&g_j, 7), (&g_d, 9)], n);
        let d_col = back(&[(&g_i, 6), (&g_j, 8), (&g_d, 10)], n);
        let d_trace = back(&[(&g_jet, 11), (&g_jet_diag, 12)], 1);
        let d_total = back(&[(&g_jet, 13), (&g_jet_diag, 14)], 1);
        // Exponents: d alpha = ln(n / n_avg) * sum(d scaled * scaled).
        let alphas = biases + 2 * co;
        for x in 0..ci {
            let (mut a_row, mut a_col) = (T::zero(), T::zero());
            for i in 0..n {
                a_row += d_row[i * ci + x] * r[i * ci + x];
                a_col += d_col[i * ci + x] * c[i * ci + x];
            }
            dp[alphas + x] = agg.log_ratio * a_row;
            dp[alphas + ci + x] = agg.log_ratio * a_col;
            dp[alphas + 2 * ci + x] = agg.log_ratio * d_trace[x] * agg.trace[x];
            dp[alphas + 3 * ci + x] = agg.log_ratio * d_total[x] * agg.total[x];
        }
        // Input gradient through the aggregates.
        let s = &agg.scale;
        let (inv_n, inv_n2) = (agg.inv_n, agg.inv_n * agg.inv_n);
        let per_row: Vec<T> = (0..n * ci).map(|k| d_row[k] * s[k % ci] * inv_n).collect();
        let per_col: Vec<T> = (0..n * ci)
            .map(|k| d_col[k] * s[ci + k % ci] * inv_n)
            .collect();
        // The per-channel constants once (the same products), the rows as zipped slices
        // and the diagonal's loop apart: the loops vectorise.
        let total: Vec<T> = (0..ci)
            .map(|x| d_total[x] * s[3 * ci + x] * inv_n2)
            .collect();
        let trace: Vec<T> = (0..ci)
            .map(|x| d_trace[x] * s[2 * ci + x] * inv_n)
            .collect();
        for (i, rows) in dt.chunks_exact_mut(n * ci).enumerate() {
            let (row_i, diag_i) = (
                &per_row[i * ci..(i + 1) * ci],
                &d_diag[i * ci..(i + 1) * ci],
            );
            for (j, y) in rows.chunks_exact_mut(ci).enumerate() {
                let terms = row_i.iter().zip(&per_col[j * ci..(j + 1) * ci]).zip(&total);
                if i == j {
                    for ((y, ((&r, &c), &t)), (&d, &tr)) in
                        y.iter_mut().zip(terms).zip(diag_i.iter().zip(&trace))
                    {
                        *y = *y + r + c + t + (d + tr);
                    }
                } else {
                    for (y, ((&r, &c), &t)) in y.iter_mut().zip(terms) {
                        *y = *y + r + c + t;
                    }
                }
            }
        }
        dp
    }

    /// The input gradient `[B N N, C_in]` and the packed parameter gradient, from the
    /// output gradient `g` and the output `res`.
    fn backward(&self, res: &[T], g: &[T]) -> (Vec<T>, Vec<T>) {
        let (n, ci, co) = (self.op.nodes, self.op.c_in, self.op.c_out);
        // The output gradient through the dropout mask and the LeakyReLU, whose slope
        // the output's sign selects (a dropped entry's zero gradient stays zero).
        let (dropout, slope) = (
            self.dropout,
            self.op
                .leaky_slope
                .map(|s| T::from(s).expect("finite slope")),
        );
        let factor = |y: T, slope: T| if y > T::zero() { T::one() } else { slope };
        // Chunks zipped rather than a collected map (the loops vectorise), written from `g`
        // rather than into a copy of it: `(g d) factor`, as in the forward.
        let mut scaled = vec![T::zero(); g.len()];
        scaled
            .par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(k, (out, g))| {
                let span = k * CHUNK..k * CHUNK + g.len();
                let (out_g, res) = (out.iter_mut().zip(g), &res[span.clone()]);
                match (dropout.map(|d| &d[span]), slope) {
                    (Some(d), Some(slope)) => {
                        for ((out, &g), (&d, &y)) in out_g.zip(d.iter().zip(res)) {
                            *out = g * d * factor(y, slope);
                        }
                    }
                    (Some(d), None) => {
                        out_g.zip(d).for_each(|((out, &g), &d)| *out = g * d);
                    }
                    (None, Some(slope)) => {
                        for ((out, &g), &y) in out_g.zip(res) {
                            *out = g * factor(y, slope);
                        }
                    }
                    (None, None) => out.copy_from_slice(g),
                }
            });
        let g = &scaled[..];
        let mut dt = vec![T::zero(); self.op.rows() * ci];
        let partial: Vec<Vec<T>> = dt
            .par_chunks_mut(n * n * ci)
            .enumerate()
            .map(|(b, d)| self.backward_jet(b, &g[b * n * n * co..(b + 1) * n * n * co], d))
            .collect();
        // Summed in jet order: independent of the thread count.
        let mut dp = vec![T::zero(); self.op.parameter_len()];
        for p in &partial {
            for (a, &x) in dp.iter_mut().zip(p) {
                *a += x;
            }
        }
        (dt, dp)
    }
}

/// The contiguous CPU values of a tensor held by its storage guard, or an error naming
/// the kernel.
fn guarded_values<'g, T: WithDType, G: std::ops::Deref<Target = candle_core::Storage>>(
    (storage, layout): &'g (G, &Layout),
) -> candle_core::Result<&'g [T]> {
    contiguous_values(cpu_storage(storage, KERNEL)?, layout, KERNEL)
}

impl Kernel {
    /// The output of the three inputs' storages in `T`.
    fn forward_typed<T: WithDType + Float + NumAssign + Send + Sync>(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<Vec<T>> {
        let guard = self.dropout.as_ref().map(Tensor::storage_and_layout);
        let dropout = guard.as_ref().map(guarded_values).transpose()?;
        Ok(self
            .jets(
                contiguous_values(s1, l1, KERNEL)?,
                contiguous_values(s2, l2, KERNEL)?,
                contiguous_values(s3, l3, KERNEL)?,
                dropout,
            )
            .forward())
    }

    fn jets<'a, T: WithDType + Float + NumAssign + Send + Sync>(
        &self,
        t: &'a [T],
        mask: &'a [T],
        params: &'a [T],
        dropout: Option<&'a [T]>,
    ) -> Jets<'a, T> {
        Jets {
            op: self.op,
            t,
            mask,
            p: Params::split(&self.op, params),
            dropout,
        }
    }

    fn backward_typed<T: WithDType + Float + NumAssign + Send + Sync>(
        &self,
        t: &Tensor,
        mask: &Tensor,
        params: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (dt, dp) = {
            let guards = [t, mask, params, res, grad].map(Tensor::storage_and_layout);
            let mut slices: [&[T]; 5] = [&[]; 5];
            for (slot, guard) in slices.iter_mut().zip(&guards) {
                *slot = guarded_values(guard)?;
            }
            let guard = self.dropout.as_ref().map(Tensor::storage_and_layout);
            let dropout = guard.as_ref().map(guarded_values).transpose()?;
            let [t, mask, params, res, grad] = slices;
            self.jets(t, mask, params, dropout).backward(res, grad)
        };
        Ok((
            Tensor::from_vec(dt, t.shape(), t.device())?,
            Tensor::from_vec(dp, params.shape(), params.device())?,
        ))
    }
}

impl CustomOp3 for Kernel {
    fn name(&self) -> &'static str {
        "pelican-eq2to2"
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
        super::in_pool(|| {
            let storage = match s1 {
                CpuStorage::F32(_) => CpuStorage::F32(self.forward_typed(s1, l1, s2, l2, s3, l3)?),
                CpuStorage::F64(_) => CpuStorage::F64(self.forward_typed(s1, l1, s2, l2, s3, l3)?),
                _ => {
                    return Err(candle_core::Error::Msg(
                        "fused 2->2 layer: f32 or f64 only".into(),
                    ))
                }
            };
            Ok((
                storage,
                Shape::from(with_channels(l1.dims(), self.op.c_out)),
            ))
        })
    }

    fn bwd(
        &self,
        t: &Tensor,
        mask: &Tensor,
        params: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        super::in_pool(|| {
            let grad = grad.contiguous()?;
            let (dt, dp) = match t.dtype() {
                DType::F32 => self.backward_typed::<f32>(t, mask, params, res, &grad)?,
                DType::F64 => self.backward_typed::<f64>(t, mask, params, res, &grad)?,
                _ => {
                    return Err(candle_core::Error::Msg(
                        "fused 2->2 layer: f32 or f64 only".into(),
                    ))
                }
            };
            Ok((Some(dt), None, Some(dp)))
        })
    }
}

//! LorentzNet's whole edge stage in one candle custom op with its own backward: for the
//! pairs (i, j) of padded graphs,
//!
//! ```text
//! pre_ij = P_i + Q_j + W3 a_ij        (the first edge layer, factorised: P = W1 h, Q = W2 h,
//!                                      a = (psi|x_i - x_j|^2, psi(x_i . x_j)))
//! z_ij   = BatchNorm(pre_ij)           (training: statistics over the real edges only)
//! ```
//!
//! then the message stage of [`super::edge_tile`] and the sums over j. The composed candle
//! graph makes about twenty `[B N N, H]` tensors per block and more in its backward; here
//! they exist only inside tiles of ~384 pair rows. When an input records gradients the
//! forward keeps two per tile (the products' activations, so that the backward runs no
//! product twice) and the pair rows.
//!
//! The pairs' geometry (x_i - x_j, the two invariants, the edge mask) is formed inside
//! from the nodes' coordinates and mask, and the backward hands back the coordinates'
//! gradient: as candle operations (gathers, Minkowski products, psi, a concatenation) it
//! made a dozen `[B N N, *]` tensors per block and their backward as many more, 8% of a
//! training step.
//!
//! BatchNorm in training is exact: the mean and variance of `pre` over the real edges come
//! first, as sums in f64 that the factorisation turns into sums over nodes and pair sums
//! of the invariants (no `pre` formed; `Inputs::batch_statistics`), then a pass normalises.
//! The backward reads those statistics back from the forward's output; its global sums
//! (`sum dz`, `sum dz x_hat`) and everything the first layer needs come from per-node and
//! per-channel sums of each tile's dz, taken while the tile is in cache
//! (`Inputs::backward`).
//!
//! Every sum over rows runs over a fixed partition of the rows, reduced in partition
//! order: results are bit-identical for any number of threads.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

use std::sync::Mutex;

use super::edge_geometry::{
    difference, minkowski, pair_geometry, psi_gradient, COORD_COLUMNS, NODE_MASK,
};
use super::edge_norm::{add_f64, BnBackward, GraphInvariantSums};
use super::edge_tile::{
    Kept, KeptState, KeptTiles, Real, Stage, Tile, EDGE_MASK, PAIR_COLUMNS, X_DIFF,
};
use super::vector_math::dot;
use super::{contiguous_values, cpu_storage};
use crate::error::{ModelError, Result};

/// The kernel's name in errors.
const KERNEL: &str = "fused edge stage";

/// Pair rows per tile (rounded to whole nodes i). 384 (364 rows at 52 nodes: eight
/// `[rows, 72]` buffers, 0.8 MB, in Zen 4's 1 MB L2) measured a training step 1.5-2.5%
/// faster than 256 and a two-thread single jet 4%; 512 no better, 128 3-4% slower.
const TILE_ROWS: usize = 384;
/// Tiles per chunk of the row reductions (fixed: thread-count independent).
const TILES_PER_CHUNK: usize = 8;

/// The fused edge stage of one LorentzNet block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LorentzEdges {
    /// Nodes per graph N (beams included).
    pub nodes: usize,
    /// Hidden width H.
    pub hidden: usize,
    /// Whether the block updates coordinates (every block but the last).
    pub coord: bool,
    /// Component-wise clamp of the coordinate terms (`f64::INFINITY`: none).
    pub clamp: f64,
    /// BatchNorm with batch statistics (training) or the running ones.
    pub train: bool,
    /// BatchNorm's epsilon.
    pub eps: f64,
}

/// What the stage returns, per node i of every graph.
#[derive(Debug, Clone)]
pub struct EdgeSums {
    /// `sum_j m_ij`, `[B N, H]`.
    pub messages: Tensor,
    /// `sum_j t_ij`, `[B N, 4]` (coordinate blocks).
    pub coords: Option<Tensor>,
    /// Training: the batch mean and biased variance `[H]` of `pre` over the real edges,
    /// and their number, for the running statistics.
    pub batch_stats: Option<(Tensor, Tensor, f64)>,
}

impl LorentzEdges {
    fn stage(&self) -> Stage {
        Stage::new(self.nodes, self.hidden, self.coord, self.clamp)
    }

    /// Length of the BatchNorm-and-input prefix of the packed parameters: `W3` `[H, 2]`,
    /// weight, bias, running mean, running variance `[H]` each.
    fn prefix(&self) -> usize {
        6 * self.hidden
    }

    /// Length of the packed parameter vector.
    pub fn parameter_len(&self) -> usize {
        self.prefix() + self.stage().len
    }

    /// Packs the parameters in the order the kernel reads them: `W3` `[H, 2]` (the first
    /// edge layer's columns for the two pair invariants), BatchNorm weight, bias, running
    /// mean and running variance, `W_out` `[H, H]` (PyTorch `[out, in]`), `b_out`,
    /// `w_att` `[1, H]`, `b_att` `[1]`, and with `coord` `W_x1` `[H, H]`, `b_x1`, `w_x2`
    /// `[1, H]`. Differentiable (a concatenation).
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

    /// Runs the stage on `node_parts` `[B N, 2H]` (`W1 h` then `W2 h`), `coords`
    /// `[B N, 5]` ([`COORD_COLUMNS`]: each node's x, then its mask; the edges are the pairs
    /// of distinct real nodes) and the packed parameters. Differentiable in all three (the
    /// mask column's gradient is 0).
    ///
    /// # Errors
    /// [`ModelError::BadInput`] naming the tensor for shapes that do not fit, dtypes other
    /// than f32 and f64, tensors not on the CPU and node masks other than 0 and 1.
    pub fn apply(&self, node_parts: &Tensor, coords: &Tensor, params: &Tensor) -> Result<EdgeSums> {
        let graph_nodes = self.check(node_parts, coords, params)?;
        let h = self.hidden;
        let run = || -> candle_core::Result<EdgeSums> {
            let keep = node_parts.track_op() || coords.track_op() || params.track_op();
            let kernel = Kernel {
                op: *self,
                keep,
                kept: Mutex::new(None),
            };
            let out = node_parts.contiguous()?.apply_op3(
                &coords.contiguous()?,
                &params.contiguous()?,
                kernel,
            )?;
            let sums = out
                .narrow(0, 0, graph_nodes * (h + 4))?
                .reshape((graph_nodes, h + 4))?;
            let batch_stats = if self.train {
                let stats = out.narrow(0, graph_nodes * (h + 4), 2 * h + 1)?.detach();
                let count = stats.get(2 * h)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                Some((stats.narrow(0, 0, h)?, stats.narrow(0, h, h)?, count))
            } else {
                None
            };
            Ok(EdgeSums {
                messages: sums.narrow(1, 0, h)?,
                coords: if self.coord {
                    Some(sums.narrow(1, h, 4)?)
                } else {
                    None
                },
                batch_stats,
            })
        };
        run().map_err(|source| ModelError::Candle {
            context: "fused LorentzNet edge stage".into(),
            source,
        })
    }

    /// Validates the inputs; returns B N.
    fn check(&self, node_parts: &Tensor, coords: &Tensor, params: &Tensor) -> Result<usize> {
        let (n, h) = (self.nodes, self.hidden);
        let bad = |input: &'static str, expected: String, t: &Tensor| ModelError::BadInput {
            input,
            expected,
            found: t.dims().to_vec(),
        };
        if n == 0 || h == 0 {
            return Err(ModelError::BadInput {
                input: "fused edge stage",
                expected: "at least one node and one hidden channel".into(),
                found: vec![n, h],
            });
        }
        let graph_nodes = match node_parts.dims() {
            [rows, width] if *width == 2 * h && rows % n == 0 => *rows,
            _ => {
                return Err(bad(
                    "node_parts",
                    format!("[graphs * {n}, {}] (W1 h, W2 h)", 2 * h),
                    node_parts,
                ))
            }
        };
        if coords.dims() != [graph_nodes, COORD_COLUMNS] {
            return Err(bad(
                "coords",
                format!("[{graph_nodes}, {COORD_COLUMNS}] (x, node mask)"),
                coords,
            ));
        }
        let len = self.parameter_len();
        if params.dims() != [len] {
            return Err(bad("params", format!("[{len}] (packed)"), params));
        }
        let dtype = node_parts.dtype();
        for (name, t) in [
            ("node_parts", node_parts),
            ("coords", coords),
            ("params", params),
        ] {
            if !matches!(t.dtype(), DType::F32 | DType::F64) || t.dtype() != dtype {
                return Err(bad(
                    name,
                    format!("f32 or f64, all three alike (node_parts is {dtype:?})"),
                    t,
                ));
            }
            if !t.device().is_cpu() {
                return Err(bad(name, "a CPU tensor (a fused CPU kernel)".into(), t));
            }
        }
        let mask = coords
            .narrow(1, NODE_MASK, 1)
            .and_then(|m| m.to_dtype(DType::F64))
            .and_then(|m| m.flatten_all())
            .and_then(|m| m.to_vec1::<f64>())
            .map_err(|source| ModelError::Candle {
                context: "reading the edge mask".into(),
                source,
            })?;
        if let Some(row) = mask.iter().position(|&m| m != 0.0 && m != 1.0) {
            return Err(bad(
                "coords",
                format!("a node mask of 0 or 1 (row {row} holds {})", mask[row]),
                coords,
            ));
        }
        Ok(graph_nodes)
    }

    /// Graph nodes (b, i) per tile.
    fn tile_nodes(&self) -> usize {
        (TILE_ROWS / self.nodes).max(1)
    }

    /// Rows per reduction chunk: whole tiles.
    fn chunk_rows(&self) -> usize {
        self.tile_nodes() * self.nodes * TILES_PER_CHUNK
    }
}

/// The kernel's view of one call's inputs.
struct Inputs<'a, T> {
    op: LorentzEdges,
    stage: Stage,
    nodes: &'a [T],
    /// `[B N, COORD_COLUMNS]`
    coords: &'a [T],
    /// The pair rows formed from `coords` ([`pair_geometry`]).
    pairs: &'a [T],
    params: &'a [T],
    /// The first edge layer's weights of the two pair invariants, `W3[:, 0]` and
    /// `W3[:, 1]` (interleaved in `params`), each contiguous so that [`Inputs::pre`]'s
    /// loop vectorises.
    w3: [Vec<T>; 2],
}

/// BatchNorm's per-channel statistics as the tiles use them. The variance is rounded
/// to T before `rstd` is formed, so that the forward and the backward (which reads the
/// statistics back from the forward's output) use identical values.
struct Norm<T> {
    mean: Vec<T>,
    var: Vec<T>,
    rstd: Vec<T>,
    count: f64,
}

impl<T: Real> Norm<T> {
    fn new(mean: Vec<T>, var: Vec<T>, count: f64, eps: f64) -> Self {
        let rstd = var
            .iter()
            .map(|&v| <T as WithDType>::from_f64(1.0 / (WithDType::to_f64(v) + eps).sqrt()))
            .collect();
        Self {
            mean,
            var,
            rstd,
            count,
        }
    }
}

/// What every tile of the backward's pass A reads besides its own rows: the statistics,
/// the output's gradient, the forward's kept activations, kappa w_k.
#[derive(Clone, Copy)]
struct PassA<'s, T> {
    norm: &'s Norm<T>,
    grad: &'s [T],
    kept: Option<&'s KeptTiles<T>>,
    kappa_w: &'s [Vec<T>; 2],
}

/// What pass A of the backward hands on from one chunk of rows: the message
/// parameters' gradients, the column sums `C_j` of dz for the graphs from `first_graph`
/// (`[graphs N, H]`) and `D_k = sum_e dz_e a_ke`.
struct ChunkSums<T> {
    dmsg: Vec<T>,
    first_graph: usize,
    columns: Vec<T>,
    d_inv: [Vec<T>; 2],
}

/// One graph's sums of `pre` and `pre^2` over its real edges, per channel, and their
/// number.
struct EdgeSums2 {
    count: f64,
    sum: Vec<f64>,
    squares: Vec<f64>,
}

impl<'a, T: Real> Inputs<'a, T> {
    fn h(&self) -> usize {
        self.op.hidden
    }

    fn message_params(&self) -> &'a [T] {
        &self.params[self.op.prefix()..]
    }

    /// `pre` of pair row `e` into `out` `[H]`.
    fn pre(&self, e: usize, out: &mut [T]) {
        let (n, h) = (self.op.nodes, self.h());
        let bi = e / n;
        let bj = bi / n * n + e % n;
        let p = &self.nodes[bi * 2 * h..bi * 2 * h + h];
        let q = &self.nodes[bj * 2 * h + h..(bj + 1) * 2 * h];
        let [a0, a1] = self.invariants(e);
        let [w0, w1] = &self.w3;
        for (((o, &p), &q), (&w0, &w1)) in out.iter_mut().zip(p).zip(q).zip(w0.iter().zip(w1)) {
            *o = p + q + (w0 * a0 + w1 * a1);
        }
    }

    fn edge_mask(&self, e: usize) -> T {
        self.pairs[e * PAIR_COLUMNS + EDGE_MASK]
    }

    /// The two invariants of pair row `e`.
    fn invariants(&self, e: usize) -> [T; 2] {
        [
            self.pairs[e * PAIR_COLUMNS],
            self.pairs[e * PAIR_COLUMNS + 1],
        ]
    }

    /// The real nodes of graph `g`.
    fn real_nodes(&self, g: usize) -> Vec<usize> {
        let n = self.op.nodes;
        (0..n)
            .filter(|&i| self.coords[(g * n + i) * COORD_COLUMNS + NODE_MASK] != T::zero())
            .collect()
    }

    /// Graph `g`'s sums of the invariants over its real edges (per row, column, products).
    fn invariant_sums(&self, g: usize) -> GraphInvariantSums {
        let n = self.op.nodes;
        let mut sums = GraphInvariantSums::new(n);
        for e in g * n * n..(g + 1) * n * n {
            if self.edge_mask(e) != T::zero() {
                let a = self.invariants(e).map(WithDType::to_f64);
                sums.push(e / n % n, e % n, a);
            }
        }
        sums
    }

    fn rows(&self) -> usize {
        self.pairs.len() / PAIR_COLUMNS
    }

    /// The batch mean and biased variance of `pre` over the real edges, and their number:
    /// exact sums in f64 from sums over nodes, no `pre` formed. With u = W3 a, over the
    /// pairs of distinct real nodes of a graph (k real nodes, each with k - 1 edges out
    /// and in)
    ///
    /// ```text
    /// sum pre   = (k-1) sum_i (P_i + Q_i) + W3 sum_e a
    /// sum pre^2 = (k-1) sum_i (P_i^2 + Q_i^2) + 2 (sum_i P_i sum_j Q_j - sum_i P_i Q_i)
    ///           + sum_e u^2 + 2 sum_i P_i (W3 sum_j a_ij) + 2 sum_j Q_j (W3 sum_i a_ij)
    /// ```
    ///
    /// and var = E[pre^2] - E[pre]^2 in f64 (from f32 values: the cancellation would
    /// need |mean| / std ~ 1e4 to reach f32's precision). Per graph in parallel, summed in
    /// graph order: the same bits on any thread count. (A Welford pass over every edge's
    /// `pre` took 3.6% of a training step.)
    fn batch_statistics(&self) -> (Vec<f64>, Vec<f64>, f64) {
        let (n, h) = (self.op.nodes, self.h());
        let graphs = self.rows() / (n * n);
        let per_graph: Vec<EdgeSums2> = (0..graphs)
            .into_par_iter()
            .map(|g| self.graph_edge_sums(g))
            .collect();
        let (mut count, mut sum, mut squares) = (0.0, vec![0.0; h], vec![0.0; h]);
        for g in &per_graph {
            count += g.count;
            add(&mut sum, &g.sum);
            add(&mut squares, &g.squares);
        }
        let total = count.max(1.0);
        let mean: Vec<f64> = sum.iter().map(|s| s / total).collect();
        let var = squares
            .iter()
            .zip(&mean)
            .map(|(q, m)| (q / total - m * m).max(0.0))
            .collect();
        (mean, var, count)
    }

    /// [`EdgeSums2`] of graph `g` (see [`Inputs::batch_statistics`]).
    fn graph_edge_sums(&self, g: usize) -> EdgeSums2 {
        let (n, h) = (self.op.nodes, self.h());
        let f = |x: T| WithDType::to_f64(x);
        let GraphInvariantSums {
            rows,
            columns,
            products,
            ..
        } = self.invariant_sums(g);
        let real = self.real_nodes(g);
        let k = real.len() as f64;
        let count = k * (k - 1.0);
        let (mut sum, mut squares) = (vec![0.0; h], vec![0.0; h]);
        if count == 0.0 {
            return EdgeSums2 {
                count,
                sum,
                squares,
            };
        }
        // Per channel: sum P, sum Q, sum (P^2 + Q^2), sum P Q, sum P (W3 row sums of a),
        // sum Q (W3 column sums of a).
        let [w0, w1] = &self.w3;
        let (mut sp, mut sq, mut s2, mut spq, mut cross) = (
            vec![0.0; h],
            vec![0.0; h],
            vec![0.0; h],
            vec![0.0; h],
            vec![0.0; h],
        );
        for &i in &real {
            let node = &self.nodes[(g * n + i) * 2 * h..(g * n + i + 1) * 2 * h];
            let (p, q) = node.split_at(h);
            let (r, c) = (rows[i], columns[i]);
            for ch in 0..h {
                let (p, q, w) = (f(p[ch]), f(q[ch]), [f(w0[ch]), f(w1[ch])]);
                sp[ch] += p;
                sq[ch] += q;
                s2[ch] += p * p + q * q;
                spq[ch] += p * q;
                cross[ch] += p * (w[0] * r[0] + w[1] * r[1]) + q * (w[0] * c[0] + w[1] * c[1]);
            }
        }
        let (a0, a1) = (
            rows.iter().map(|r| r[0]).sum::<f64>(),
            rows.iter().map(|r| r[1]).sum::<f64>(),
        );
        let degree = k - 1.0;
        for ch in 0..h {
            let w = [f(w0[ch]), f(w1[ch])];
            let uu = w[0] * w[0] * products[0]
                + 2.0 * w[0] * w[1] * products[1]
                + w[1] * w[1] * products[2];
            sum[ch] = degree * (sp[ch] + sq[ch]) + w[0] * a0 + w[1] * a1;
            squares[ch] =
                degree * s2[ch] + 2.0 * (sp[ch] * sq[ch] - spq[ch]) + uu + 2.0 * cross[ch];
        }
        EdgeSums2 {
            count,
            sum,
            squares,
        }
    }

    /// Training: the batch statistics; evaluation: the running ones.
    fn norm(&self) -> Norm<T> {
        let (h, eps) = (self.h(), self.op.eps);
        let cast =
            |v: &[f64]| -> Vec<T> { v.iter().map(|&x| <T as WithDType>::from_f64(x)).collect() };
        if self.op.train {
            let (mean, var, count) = self.batch_statistics();
            Norm::new(cast(&mean), cast(&var), count, eps)
        } else {
            let mean = self.params[4 * h..5 * h].to_vec();
            let var = self.params[5 * h..6 * h].to_vec();
            Norm::new(mean, var, 0.0, eps)
        }
    }

    /// The BatchNorm output z of rows `first..first + rows`.
    fn normalised(&self, norm: &Norm<T>, first: usize, rows: usize) -> Vec<T> {
        let h = self.h();
        let (weight, bias) = (&self.params[2 * h..3 * h], &self.params[3 * h..4 * h]);
        let mut x_hat = vec![T::zero(); h];
        let mut z = vec![T::zero(); rows * h];
        let per_channel = || {
            weight
                .iter()
                .zip(bias)
                .zip(norm.mean.iter().zip(&norm.rstd))
        };
        for (r, z) in z.chunks_exact_mut(h).enumerate() {
            self.pre(first + r, &mut x_hat);
            for ((x, z), ((&w, &b), (&mean, &rstd))) in x_hat.iter_mut().zip(z).zip(per_channel()) {
                *x = (*x - mean) * rstd;
                *z = w * *x + b;
            }
        }
        z
    }

    fn pair_rows(&self, first: usize, rows: usize) -> &'a [T] {
        &self.pairs[first * PAIR_COLUMNS..(first + rows) * PAIR_COLUMNS]
    }

    /// The output (the sums `[B N, H + 4]`, then the batch statistics: mean, biased
    /// variance `[H]`, count) and, with `keep`, each tile's activations for the backward.
    fn forward(&self, keep: bool) -> (Vec<T>, Option<KeptTiles<T>>) {
        let (n, h) = (self.op.nodes, self.h());
        let width = h + 4;
        let sums_len = self.rows() / n * width;
        let norm = self.norm();
        let mut out = vec![T::zero(); sums_len + 2 * h + 1];
        let (sums, stats) = out.split_at_mut(sums_len);
        let tile = self.op.tile_nodes();
        let kept: KeptTiles<T> = sums
            .par_chunks_mut(tile * width)
            .enumerate()
            .map(|(t, out)| {
                let (first, rows) = (t * tile * n, out.len() / width * n);
                let z = self.normalised(&norm, first, rows);
                let mut work = Tile::new(&self.stage, rows, h, self.pair_rows(first, rows));
                work.forward(&self.stage, &z, self.message_params());
                work.sums(&self.stage, out);
                if keep {
                    work.into_kept()
                } else {
                    (Vec::new(), Vec::new())
                }
            })
            .collect();
        if self.op.train {
            stats[..h].copy_from_slice(&norm.mean);
            stats[h..2 * h].copy_from_slice(&norm.var);
            stats[2 * h] = <T as WithDType>::from_f64(norm.count);
        }
        (out, keep.then_some(kept))
    }

    /// Gradients for node_parts, coords and params given the forward's output `res`
    /// (statistics and kept activations) and its gradient.
    ///
    /// Pass A runs the message stage's backward per tile and reduces each tile's dz on the
    /// spot: per node its row sums `R_i = sum_j dz_ij` and column sums `C_j = sum_i dz_ij`,
    /// per channel `D_k = sum_e dz_e a_ke`, per pair row `u_ke = (kappa w_k) . dz_e`
    /// (kappa = BatchNorm weight x rstd, `w_k` = W3's columns). BatchNorm's backward is
    /// linear in dz and x_hat, and x_hat is linear in the factorised pre, so every
    /// gradient of the first layer follows from these sums and the nodes' P and Q
    /// ([`BnBackward`], pass B per graph: O(N H) per graph, O(1) per pair row): no
    /// `[rows, H]` dz is kept and no pre is formed again.
    fn backward(
        &self,
        res: &[T],
        grad: &[T],
        kept: Option<&KeptTiles<T>>,
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        let (n, h) = (self.op.nodes, self.h());
        let rows_total = self.rows();
        let node_count = rows_total / n;
        let norm = if self.op.train {
            let stats = &res[node_count * (h + 4)..];
            let count = WithDType::to_f64(stats[2 * h]);
            Norm::new(
                stats[..h].to_vec(),
                stats[h..2 * h].to_vec(),
                count,
                self.op.eps,
            )
        } else {
            self.norm()
        };
        let prefix = self.op.prefix();
        let chunk = self.op.chunk_rows();
        let weight = &self.params[2 * h..3 * h];
        let kappa: Vec<T> = weight
            .iter()
            .zip(&norm.rstd)
            .map(|(&w, &r)| w * r)
            .collect();
        let kappa_w: [Vec<T>; 2] = [0, 1].map(|k| {
            self.w3[k]
                .iter()
                .zip(&kappa)
                .map(|(&w, &q)| w * q)
                .collect()
        });
        // Pass A.
        let context = PassA {
            norm: &norm,
            grad,
            kept,
            kappa_w: &kappa_w,
        };
        let mut row_sums = vec![T::zero(); node_count * h];
        let mut dpairs = vec![T::zero(); rows_total * PAIR_COLUMNS];
        let partials: Vec<ChunkSums<T>> = row_sums
            .par_chunks_mut(chunk / n * h)
            .zip(dpairs.par_chunks_mut(chunk * PAIR_COLUMNS))
            .enumerate()
            .map(|(c, (rs, dp))| self.message_backward(c * chunk, &context, rs, dp))
            .collect();
        let mut dparams = vec![T::zero(); self.params.len()];
        let mut column_sums = vec![T::zero(); node_count * h];
        let mut d_inv = [vec![T::zero(); h], vec![T::zero(); h]];
        for part in partials {
            add(&mut dparams[prefix..], &part.dmsg);
            let at = part.first_graph * n * h;
            add(&mut column_sums[at..at + part.columns.len()], &part.columns);
            for (d, p) in d_inv.iter_mut().zip(&part.d_inv) {
                add(d, p);
            }
        }
        let bn = BnBackward::new(
            self.op.train,
            (&norm.mean, &norm.rstd, norm.count),
            (&self.params[2 * h..3 * h], &self.w3),
            self.nodes,
            (&row_sums, &column_sums, &d_inv),
        );
        // d weight = sum dz x_hat, d bias = sum dz.
        for c in 0..h {
            dparams[2 * h + c] = <T as WithDType>::from_f64(bn.sx[c]);
            dparams[3 * h + c] = <T as WithDType>::from_f64(bn.s[c]);
        }
        // Pass B, per graph.
        let mut dnodes = vec![T::zero(); node_count * 2 * h];
        let mut dcoords = vec![T::zero(); node_count * COORD_COLUMNS];
        let per_graph: Vec<GraphInvariantSums> = dnodes
            .par_chunks_mut(n * 2 * h)
            .zip(dcoords.par_chunks_mut(n * COORD_COLUMNS))
            .enumerate()
            .map(|(g, (dn, dx))| {
                let sums = (&row_sums[..], &column_sums[..], &dpairs[..]);
                self.graph_backward(g, &bn, sums, dn, dx)
            })
            .collect();
        let dw3 = bn.dw3(&d_inv, &per_graph);
        for (c, pair) in dparams[..2 * h].chunks_exact_mut(2).enumerate() {
            pair[0] = <T as WithDType>::from_f64(dw3[0][c]);
            pair[1] = <T as WithDType>::from_f64(dw3[1][c]);
        }
        (dnodes, dcoords, dparams)
    }

    /// Pass A over the chunk of rows from `first` (whole tiles): the message stage's
    /// backward per tile, the tile's dz reduced into `row_sums` (the chunk's nodes), the
    /// returned column sums and `D_k`, and `u_ke` into `dpairs`' first two columns.
    fn message_backward(
        &self,
        first: usize,
        context: &PassA<'_, T>,
        row_sums: &mut [T],
        dpairs: &mut [T],
    ) -> ChunkSums<T> {
        let PassA {
            norm,
            grad,
            kept,
            kappa_w,
        } = *context;
        let (n, h) = (self.op.nodes, self.h());
        let rows = dpairs.len() / PAIR_COLUMNS;
        let tile_rows = self.op.tile_nodes() * n;
        let first_graph = first / (n * n);
        let graphs = (first + rows - 1) / (n * n) + 1 - first_graph;
        let mut sums = ChunkSums {
            dmsg: vec![T::zero(); self.stage.len],
            first_graph,
            columns: vec![T::zero(); graphs * n * h],
            d_inv: [vec![T::zero(); h], vec![T::zero(); h]],
        };
        let mut dz = vec![T::zero(); tile_rows.min(rows) * h];
        for start in (0..rows).step_by(tile_rows) {
            let len = tile_rows.min(rows - start);
            let row0 = first + start;
            let z = self.normalised(norm, row0, len);
            let mut work = Tile::new(&self.stage, len, h, self.pair_rows(row0, len));
            if let Some(tiles) = kept {
                let tile = &tiles[row0 / tile_rows];
                work.restore(&self.stage, &z, self.message_params(), tile);
            } else {
                work.forward(&self.stage, &z, self.message_params());
            }
            let dz = &mut dz[..len * h];
            work.backward(
                &self.stage,
                self.message_params(),
                &grad[row0 / n * (h + 4)..(row0 + len) / n * (h + 4)],
                dz,
                &mut dpairs[start * PAIR_COLUMNS..(start + len) * PAIR_COLUMNS],
                &mut sums.dmsg,
            );
            for (r, d) in dz.chunks_exact(h).enumerate() {
                let e = row0 + r;
                // dz is 0 on padded edges and i = j.
                if self.edge_mask(e) == T::zero() {
                    continue;
                }
                let i = e / n - first / n;
                add(&mut row_sums[i * h..(i + 1) * h], d);
                let j = (e / (n * n) - first_graph) * n + e % n;
                add(&mut sums.columns[j * h..(j + 1) * h], d);
                let [a0, a1] = self.invariants(e);
                let [d0, d1] = &mut sums.d_inv;
                for ((d0, d1), &x) in d0.iter_mut().zip(d1.iter_mut()).zip(d) {
                    *d0 += x * a0;
                    *d1 += x * a1;
                }
                let u = &mut dpairs[(start + r) * PAIR_COLUMNS..(start + r) * PAIR_COLUMNS + 2];
                u[0] = dot(d, &kappa_w[0]);
                u[1] = dot(d, &kappa_w[1]);
            }
        }
        sums
    }

    /// Pass B for graph `g`: the gradients of its nodes' P and Q into `dnodes` (`[N, 2H]`),
    /// of its pair rows' invariants from [`BnBackward`] and through them and x_i - x_j
    /// (`dpairs`' columns from pass A) into `dcoords` (`[N, COORD_COLUMNS]`); returns the
    /// graph's sums for `d W3`.
    fn graph_backward(
        &self,
        g: usize,
        bn: &BnBackward,
        (row_sums, column_sums, dpairs): (&[T], &[T], &[T]),
        dnodes: &mut [T],
        dcoords: &mut [T],
    ) -> GraphInvariantSums {
        let (n, h) = (self.op.nodes, self.h());
        let f = |x: T| WithDType::to_f64(x);
        let rows0 = g * n * n;
        let mut inv = self.invariant_sums(g);
        let node = |i: usize| {
            let at = (g * n + i) * 2 * h;
            self.nodes[at..at + 2 * h].split_at(h)
        };
        let real = self.real_nodes(g);
        let degree = real.len().saturating_sub(1) as f64;
        let (mut sp, mut sq) = (vec![0.0; h], vec![0.0; h]);
        for &i in &real {
            let (p, q) = node(i);
            add_f64(&mut sp, p);
            add_f64(&mut sq, q);
        }
        // Per real node: dP, dQ, and theta_k . P, theta_k . Q for the rows' d a.
        let mut node_theta = vec![[0.0f64; 4]; n];
        for &i in &real {
            let (p, q) = node(i);
            let at = (g * n + i) * h;
            let (r, c) = (&row_sums[at..at + h], &column_sums[at..at + h]);
            let (dp, dq) = dnodes[i * 2 * h..(i + 1) * 2 * h].split_at_mut(h);
            bn.node_gradient(dp, r, p, q, (&sq, degree, inv.rows[i]));
            bn.node_gradient(dq, c, q, p, (&sp, degree, inv.columns[i]));
            node_theta[i] = bn.node_theta(p, q);
            inv.add_node(i, p, q);
        }
        for e in rows0..rows0 + n * n {
            if self.edge_mask(e) == T::zero() {
                continue;
            }
            let (i, j) = ((e - rows0) / n, e % n);
            let row = &dpairs[e * PAIR_COLUMNS..(e + 1) * PAIR_COLUMNS];
            let a = self.invariants(e).map(f);
            let da = bn.invariant_gradient([f(row[0]), f(row[1])], node_theta[i], node_theta[j], a);
            let da = da.map(<T as WithDType>::from_f64);
            let [gi, gj] = self.geometry_backward(e, da, &row[X_DIFF..X_DIFF + 4]);
            add(&mut dcoords[i * COORD_COLUMNS..i * COORD_COLUMNS + 4], &gi);
            add(&mut dcoords[j * COORD_COLUMNS..j * COORD_COLUMNS + 4], &gj);
        }
        inv
    }

    /// Coordinates `x_i`, `x_j` of pair row `e`.
    fn pair_coords(&self, e: usize) -> (&'a [T], &'a [T]) {
        let n = self.op.nodes;
        let (i, j) = (e / n, e / n / n * n + e % n);
        (
            &self.coords[i * COORD_COLUMNS..i * COORD_COLUMNS + 4],
            &self.coords[j * COORD_COLUMNS..j * COORD_COLUMNS + 4],
        )
    }

    /// The gradients of x_i and x_j from row e's: `da` of its two invariants (after psi)
    /// and `dx_diff` of x_i - x_j, through the products as candle's `dot4` forms them.
    fn geometry_backward(&self, e: usize, da: [T; 2], dx_diff: &[T]) -> [[T; 4]; 2] {
        let (xi, xj) = self.pair_coords(e);
        let diff = difference(xi, xj);
        let d_square = psi_gradient(minkowski(&diff, &diff), da[0]);
        let d_product = psi_gradient(minkowski(xi, xj), da[1]);
        let (mut gi, mut gj) = ([T::zero(); 4], [T::zero(); 4]);
        for k in 0..4 {
            // d (p . q) / d p_k = eta_k q_k with the metric eta = (+, -, -, -).
            let (ds, dp) = if k == 0 {
                (d_square, d_product)
            } else {
                (-d_square, -d_product)
            };
            // |x_i - x_j|^2: x_i - x_j is both factors.
            let dd = dx_diff[k] + (ds * diff[k] + ds * diff[k]);
            gi[k] = dd + dp * xj[k];
            gj[k] = dp * xi[k] - dd;
        }
        [gi, gj]
    }
}

fn add<T: Real>(acc: &mut [T], x: &[T]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += v;
    }
}

impl LorentzEdges {
    fn inputs<'a, T: Real>(
        &self,
        nodes: &'a [T],
        coords: &'a [T],
        pairs: &'a [T],
        params: &'a [T],
    ) -> Inputs<'a, T> {
        let h = self.hidden;
        let column = |k: usize| params[..2 * h].iter().skip(k).step_by(2).copied().collect();
        Inputs {
            op: *self,
            stage: self.stage(),
            nodes,
            coords,
            pairs,
            params,
            w3: [column(0), column(1)],
        }
    }
}

/// The custom op: the stage and, when an input records gradients, the activations its
/// forward keeps for the backward (PyTorch's `ctx.save_for_backward`; the op lives in the
/// autograd graph as long as the output).
struct Kernel {
    op: LorentzEdges,
    keep: bool,
    kept: Mutex<Option<Kept>>,
}

impl Kernel {
    /// The forward on three CPU inputs of type T; keeps the tiles' activations if asked.
    fn run<T: Real>(&self, inputs: [(&CpuStorage, &Layout); 3]) -> candle_core::Result<Vec<T>> {
        let [nodes, coords, params] = inputs;
        let coords = contiguous_values(coords.0, coords.1, KERNEL)?;
        let pairs = pair_geometry(coords, self.op.nodes);
        let (out, tiles) = self
            .op
            .inputs(
                contiguous_values(nodes.0, nodes.1, KERNEL)?,
                coords,
                &pairs,
                contiguous_values(params.0, params.1, KERNEL)?,
            )
            .forward(self.keep);
        *self
            .kept
            .lock()
            .map_err(|_| candle_core::Error::Msg("fused edge stage: a poisoned lock".into()))? =
            tiles.map(|tiles| T::keep(KeptState { pairs, tiles }));
        Ok(out)
    }

    fn backward_tensors<T: Real>(
        &self,
        tensors: [&Tensor; 5],
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let guards = tensors.map(Tensor::storage_and_layout);
        let mut slices: [&[T]; 5] = [&[]; 5];
        for (slot, (storage, layout)) in slices.iter_mut().zip(&guards) {
            let cpu = cpu_storage(storage, KERNEL)?;
            *slot = contiguous_values(cpu, layout, KERNEL)?;
        }
        let [nodes, coords, params, res, grad] = slices;
        let kept = self
            .kept
            .lock()
            .map_err(|_| candle_core::Error::Msg("fused edge stage: a poisoned lock".into()))?;
        let state = kept.as_ref().and_then(T::kept);
        // The forward's pair rows when it kept them, else formed again (the same bits).
        let formed;
        let pairs = if let Some(state) = state {
            &state.pairs
        } else {
            formed = pair_geometry(coords, self.op.nodes);
            &formed
        };
        let (dn, dp, dw) = self.op.inputs(nodes, coords, pairs, params).backward(
            res,
            grad,
            state.map(|s| &s.tiles),
        );
        drop(kept);
        drop(guards);
        let dev = tensors[0].device();
        Ok((
            Tensor::from_vec(dn, tensors[0].shape(), dev)?,
            Tensor::from_vec(dp, tensors[1].shape(), dev)?,
            Tensor::from_vec(dw, tensors[2].shape(), dev)?,
        ))
    }
}

impl CustomOp3 for Kernel {
    fn name(&self) -> &'static str {
        "lorentznet-edges"
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
            let inputs = [(s1, l1), (s2, l2), (s3, l3)];
            let (storage, len) = match s1 {
                CpuStorage::F32(_) => {
                    let out = self.run::<f32>(inputs)?;
                    let len = out.len();
                    (CpuStorage::F32(out), len)
                }
                CpuStorage::F64(_) => {
                    let out = self.run::<f64>(inputs)?;
                    let len = out.len();
                    (CpuStorage::F64(out), len)
                }
                _ => {
                    return Err(candle_core::Error::Msg(
                        "fused edge stage: f32 or f64 only".into(),
                    ))
                }
            };
            Ok((storage, Shape::from(len)))
        })
    }

    fn bwd(
        &self,
        nodes: &Tensor,
        coords: &Tensor,
        params: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        super::in_pool(|| {
            let grad = grad.contiguous()?;
            let tensors = [nodes, coords, params, res, &grad];
            let (dn, dp, dw) = match nodes.dtype() {
                DType::F32 => self.backward_tensors::<f32>(tensors)?,
                DType::F64 => self.backward_tensors::<f64>(tensors)?,
                _ => {
                    return Err(candle_core::Error::Msg(
                        "fused edge stage: f32 or f64 only".into(),
                    ))
                }
            };
            Ok((Some(dn), Some(dp), Some(dw)))
        })
    }
}

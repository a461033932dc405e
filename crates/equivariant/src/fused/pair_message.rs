//! PELICAN's per-pair message layer (Linear, LeakyReLU, masked BatchNorm, mask) as one
//! CPU kernel with its own backward.
//!
//! Composed from candle operations the layer is about ten passes over `[B N N, C]`
//! tensors forward and more backward, each into a fresh buffer. Here the rows are cut
//! into fixed chunks of [`CHUNK_ROWS`]: the linear map runs through the GEMM per chunk
//! and the activation, normalisation and mask are applied in the same pass. BatchNorm's
//! training statistics are exact: a first pass sums the masked activations per chunk
//! (in f64) for the mean, a second the squared deviations from it for the (biased)
//! variance, as the composed layer computes them; the chunk sums merge in chunk order,
//! so the result does not depend on the thread count. The backward reads the
//! pre-activations and batch statistics the forward kept (recomputing the pre-activations
//! had cost a GEMM per layer and step), forms the activations where it reads them, and
//! reduces the BatchNorm sums over all rows before any input gradient is formed.
//!
//! The output has the input's shape with `C_out` channels and the batch statistics are
//! kept beside it (not appended to it): each narrow or reshape between the kernels would
//! be a node in candle's graph whose backward costs a zero-filled buffer and a sum of the
//! whole gradient.

use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor, WithDType};
use num_traits::{Float, NumAssign};
use rayon::prelude::*;

use super::gemm::{matmul, MatRef};
use super::{contiguous_values, cpu_storage, with_channels};
use crate::error::{ModelError, Result};

/// The kernel's name in errors.
const KERNEL: &str = "fused message layer";

/// Rows per chunk: the unit of work and of every partial sum.
const CHUNK_ROWS: usize = 1024;

/// The fused message layer's shapes and settings: `c_in -> c_out`, LeakyReLU with
/// `slope`, BatchNorm with `eps`, batch statistics when `train` (else the running ones).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairMessage {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// LeakyReLU's negative slope.
    pub slope: f64,
    /// BatchNorm's epsilon.
    pub eps: f64,
    /// Batch statistics over the real rows (training) or the running ones.
    pub train: bool,
}

/// The layer's output (zero on padded rows) and, in training, the batch
/// statistics (mean and biased variance `[C_out]`, detached, and the number of real rows)
/// for the caller to fold into the running ones.
#[derive(Debug, Clone)]
pub struct MessageOutput {
    /// The input's shape with `C_out` channels, masked.
    pub output: Tensor,
    /// Mean, biased variance and count of the real rows (training only).
    pub batch_stats: Option<(Tensor, Tensor, f64)>,
}

impl PairMessage {
    /// Length of the packed parameters: the linear weight `[C_out, C_in]` (PyTorch's
    /// layout) and bias `[C_out]`, BatchNorm's weight, bias, running mean and running
    /// variance `[C_out]` each, flattened and concatenated.
    pub fn parameter_len(&self) -> usize {
        self.c_out * self.c_in + 5 * self.c_out
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

    /// The layer on rows `x` `[..., C_in]` (rows: the leading dimensions, e.g. PELICAN's
    /// `[B, N, N, C_in]` pairs) with the row mask `[rows]` (1 for real pairs, 0 for
    /// padding) and the packed parameters; the output has `x`'s shape with `C_out`
    /// channels.
    ///
    /// # Errors
    /// [`ModelError::BadInput`] naming the tensor for shapes that do not fit, dtypes other
    /// than f32 and f64 (all three alike), tensors not on the CPU and masks other than 0
    /// and 1.
    pub fn apply(&self, x: &Tensor, mask: &Tensor, params: &Tensor) -> Result<MessageOutput> {
        self.check(x, mask, params)?;
        let run = || -> candle_core::Result<MessageOutput> {
            let kernel = Kernel {
                op: *self,
                kept: Arc::default(),
            };
            let kept = Arc::clone(&kernel.kept);
            let output =
                x.contiguous()?
                    .apply_op3(&mask.contiguous()?, &params.contiguous()?, kernel)?;
            let guard = kept.lock().unwrap_or_else(PoisonError::into_inner);
            let batch_stats = match guard.as_ref().and_then(|k| k.stats.as_ref()) {
                Some(stats) if self.train => {
                    let channels =
                        |v: &[f64]| Tensor::from_slice(v, v.len(), x.device())?.to_dtype(x.dtype());
                    Some((channels(&stats.mean)?, channels(&stats.var)?, stats.count))
                }
                _ => None,
            };
            Ok(MessageOutput {
                output,
                batch_stats,
            })
        };
        run().map_err(|source| ModelError::Candle {
            context: "fused PELICAN message layer".into(),
            source,
        })
    }

    /// Validates the inputs; returns the number of rows.
    fn check(&self, x: &Tensor, mask: &Tensor, params: &Tensor) -> Result<usize> {
        let bad = |input: &'static str, expected: String, t: &Tensor| ModelError::BadInput {
            input,
            expected,
            found: t.dims().to_vec(),
        };
        if self.c_in == 0 || self.c_out == 0 {
            return Err(ModelError::BadInput {
                input: "fused message layer",
                expected: "at least one input and one output channel".into(),
                found: vec![self.c_in, self.c_out],
            });
        }
        let rows = match x.dims() {
            [leading @ .., c] if *c == self.c_in && !leading.is_empty() => {
                leading.iter().product::<usize>()
            }
            _ => return Err(bad("x", format!("[..., {}] (rows, C_in)", self.c_in), x)),
        };
        if mask.dims() != [rows] {
            return Err(bad("mask", format!("[{rows}] (one per row of x)"), mask));
        }
        let len = self.parameter_len();
        if params.dims() != [len] {
            return Err(bad("params", format!("[{len}] (packed)"), params));
        }
        let dtype = x.dtype();
        for (name, t) in [("x", x), ("mask", mask), ("params", params)] {
            if !matches!(t.dtype(), DType::F32 | DType::F64) || t.dtype() != dtype {
                let expected = format!("f32 or f64, all three alike (x is {dtype:?})");
                return Err(bad(name, expected, t));
            }
            if !t.device().is_cpu() {
                return Err(bad(name, "a CPU tensor (a fused CPU kernel)".into(), t));
            }
        }
        let soft = mask
            .to_dtype(DType::F64)
            .and_then(|m| m.to_vec1::<f64>())
            .map_err(|source| ModelError::Candle {
                context: "fused message layer: reading the mask".into(),
                source,
            })?
            .into_iter()
            .any(|m| m != 0.0 && m != 1.0);
        if soft {
            return Err(bad("mask", "0 or 1 in every row".into(), mask));
        }
        Ok(rows)
    }
}

/// The batch statistics of a training forward, kept for its backward and the caller:
/// mean and biased variance per channel (the kernel's dtype's values, exactly) and the
/// number of real rows.
#[derive(Debug, Clone)]
struct BatchStats {
    mean: Vec<f64>,
    var: Vec<f64>,
    count: f64,
}

/// What a forward keeps for its backward: the pre-activations `x W^T + b` (in the
/// kernel's dtype; recomputing them had cost a GEMM per backward) and, in training, the
/// batch statistics.
struct Kept {
    pre_activations: CpuStorage,
    stats: Option<BatchStats>,
}

/// The custom op candle runs: the layer's settings and what its forward keeps (candle
/// holds the op with the output and calls its backward on it; an output that records no
/// graph drops it at once).
struct Kernel {
    op: PairMessage,
    kept: Arc<Mutex<Option<Kept>>>,
}

/// The packed parameters, split.
struct Params<'a, T> {
    weight: &'a [T],
    bias: &'a [T],
    gamma: &'a [T],
    beta: &'a [T],
    running_mean: &'a [T],
    running_var: &'a [T],
}

/// The kernel's arithmetic on one dtype.
struct Rows<'a, T> {
    op: PairMessage,
    x: &'a [T],
    mask: &'a [T],
    p: Params<'a, T>,
}

/// A per-channel normalisation: `y = a * scale + shift`, and the statistics behind it.
struct Norm<T> {
    mean: Vec<T>,
    var: Vec<T>,
    count: T,
    scale: Vec<T>,
    shift: Vec<T>,
}

impl<'a, T: WithDType + Float + NumAssign + Send + Sync> Rows<'a, T> {
    fn new(op: PairMessage, x: &'a [T], mask: &'a [T], p: &'a [T]) -> Self {
        let (co, ci) = (op.c_out, op.c_in);
        let (weight, rest) = p.split_at(co * ci);
        let (bias, rest) = rest.split_at(co);
        let (gamma, rest) = rest.split_at(co);
        let (beta, rest) = rest.split_at(co);
        let (running_mean, running_var) = rest.split_at(co);
        Self {
            op,
            x,
            mask,
            p: Params {
                weight,
                bias,
                gamma,
                beta,
                running_mean,
                running_var,
            },
        }
    }

    fn rows(&self) -> usize {
        self.mask.len()
    }

    fn slope(&self) -> T {
        T::from(self.op.slope).expect("finite slope")
    }

    /// `z = x W^T + b` of chunk `k` into `z` (`[rows of the chunk, C_out]`).
    fn linear(&self, k: usize, z: &mut [T]) {
        let (ci, co) = (self.op.c_in, self.op.c_out);
        let start = k * CHUNK_ROWS;
        let rows = z.len() / co;
        let x = MatRef::row_major(&self.x[start * ci..(start + rows) * ci], rows, ci);
        for row in z.chunks_mut(co) {
            row.copy_from_slice(self.p.bias);
        }
        matmul(z, x, MatRef::transposed(self.p.weight, ci, co), true);
    }

    /// Per-chunk sums of `f(value, per_channel[channel])` over the real rows, in f64,
    /// merged in chunk order.
    fn masked_sums(&self, a: &[T], per_channel: &[T], f: impl Fn(T, T) -> f64 + Sync) -> Vec<f64> {
        let co = self.op.c_out;
        let partial: Vec<Vec<f64>> = a
            .par_chunks(CHUNK_ROWS * co)
            .zip(self.mask.par_chunks(CHUNK_ROWS))
            .map(|(chunk, mask)| {
                let mut s = vec![0.0; co];
                // Zipped slices: no index arithmetic or bounds checks in the inner loop.
                for (row, &m) in chunk.chunks_exact(co).zip(mask) {
                    if m == T::zero() {
                        continue;
                    }
                    for ((s, &v), &p) in s.iter_mut().zip(row).zip(per_channel) {
                        *s += f(v, p);
                    }
                }
                s
            })
            .collect();
        let mut total = vec![0.0; co];
        for s in partial {
            for (t, v) in total.iter_mut().zip(s) {
                *t += v;
            }
        }
        total
    }

    /// The normalisation: batch statistics of the activations `a` (training) or the
    /// running ones; as the composed layer, `scale = gamma / sqrt(var + eps)` and
    /// `shift = beta - mean * scale` in the layer's dtype.
    fn norm(&self, a: &[T]) -> Norm<T> {
        let co = self.op.c_out;
        let cast = |v: f64| T::from(v).expect("finite");
        let (mean, var, count) = if self.op.train {
            let count = self
                .mask
                .iter()
                .fold(0.0, |s, &m| s + WithDType::to_f64(m))
                .max(1.0);
            let mean: Vec<T> = self
                .masked_sums(a, &vec![T::zero(); co], |v, _| WithDType::to_f64(v))
                .into_iter()
                .map(|s| cast(s) / cast(count))
                .collect();
            let var = self
                .masked_sums(a, &mean, |v, mu| WithDType::to_f64(v - mu).powi(2))
                .into_iter()
                .map(|s| cast(s) / cast(count))
                .collect();
            (mean, var, cast(count))
        } else {
            (
                self.p.running_mean.to_vec(),
                self.p.running_var.to_vec(),
                T::zero(),
            )
        };
        let eps = cast(self.op.eps);
        let scale: Vec<T> = (0..co)
            .map(|c| self.p.gamma[c] / (var[c] + eps).sqrt())
            .collect();
        let shift = (0..co)
            .map(|c| self.p.beta[c] - mean[c] * scale[c])
            .collect();
        Norm {
            mean,
            var,
            count,
            scale,
            shift,
        }
    }

    /// The pre-activations `x W^T + b` of every row, `[rows, C_out]`.
    fn pre_activations(&self) -> Vec<T> {
        let co = self.op.c_out;
        let mut z = vec![T::zero(); self.rows() * co];
        z.par_chunks_mut(CHUNK_ROWS * co)
            .enumerate()
            .for_each(|(k, chunk)| self.linear(k, chunk));
        z
    }

    /// The activations `leaky(z)`.
    fn activations(&self, z: &[T]) -> Vec<T> {
        let leaky = self.leaky_fn();
        let chunk = CHUNK_ROWS * self.op.c_out;
        // Chunks zipped rather than a collected map: the loop vectorises.
        let mut a = vec![T::zero(); z.len()];
        a.par_chunks_mut(chunk)
            .zip(z.par_chunks(chunk))
            .for_each(|(a, z)| a.iter_mut().zip(z).for_each(|(a, &z)| *a = leaky(z)));
        a
    }

    /// LeakyReLU as a product with 1 or the slope (`z * 1` is `z` exactly): no branch on
    /// the sign, which the predictor misses on about half the pairs; the slope read once,
    /// for the element loops.
    fn leaky_fn(&self) -> impl Fn(T) -> T + Sync {
        let (zero, one, slope) = (T::zero(), T::one(), self.slope());
        move |z| z * if z > zero { one } else { slope }
    }

    /// The output rows, the pre-activations (for the backward) and, in training, the
    /// batch statistics.
    fn forward(&self) -> (Vec<T>, Vec<T>, Option<BatchStats>) {
        let co = self.op.c_out;
        let z = self.pre_activations();
        let mut a = self.activations(&z);
        let norm = self.norm(&a);
        a.par_chunks_mut(co).enumerate().for_each(|(r, row)| {
            let m = self.mask[r];
            for ((v, &scale), &shift) in row.iter_mut().zip(&norm.scale).zip(&norm.shift) {
                *v = (*v * scale + shift) * m;
            }
        });
        let f64s = |v: &[T]| v.iter().map(|&x| WithDType::to_f64(x)).collect();
        let stats = self.op.train.then(|| BatchStats {
            mean: f64s(&norm.mean),
            var: f64s(&norm.var),
            count: WithDType::to_f64(norm.count),
        });
        (a, z, stats)
    }

    /// The input gradient `[rows, C_in]` and the packed parameter gradient, from the
    /// output gradient `g`, the forward's pre-activations `z` and its batch statistics
    /// (training).
    #[allow(clippy::too_many_lines)]
    fn backward(&self, stats: Option<&BatchStats>, z: &[T], g: &[T]) -> (Vec<T>, Vec<T>) {
        let (ci, co, rows) = (self.op.c_in, self.op.c_out, self.rows());
        // The activations `a = leaky(z)` formed where they are read, not kept.
        let leaky = self.leaky_fn();
        let (mean, var, count) = if let Some(stats) = stats {
            let cast = |v: f64| T::from(v).expect("a value of T");
            (
                stats.mean.iter().map(|&v| cast(v)).collect::<Vec<T>>(),
                stats.var.iter().map(|&v| cast(v)).collect(),
                cast(stats.count),
            )
        } else {
            (
                self.p.running_mean.to_vec(),
                self.p.running_var.to_vec(),
                T::one(),
            )
        };
        let eps = T::from(self.op.eps).expect("finite");
        let inv_std: Vec<T> = var.iter().map(|&v| (v + eps).sqrt().recip()).collect();
        // Rows as slices zipped with the per-channel constants (no index arithmetic or
        // bounds checks in the loops, so that they vectorise; the same operations in the
        // same order as `xhat = (a - mean) inv_std` per element).
        // BatchNorm's sums over the real rows: d beta = sum g, d gamma = sum g xhat.
        let partial: Vec<(Vec<T>, Vec<T>)> = (0..rows.div_ceil(CHUNK_ROWS))
            .into_par_iter()
            .map(|k| {
                let (mut d_beta, mut d_gamma) = (vec![T::zero(); co], vec![T::zero(); co]);
                let span = k * CHUNK_ROWS..((k + 1) * CHUNK_ROWS).min(rows);
                let chunk = self.mask[span.clone()]
                    .iter()
                    .zip(g[span.start * co..span.end * co].chunks_exact(co))
                    .zip(z[span.start * co..span.end * co].chunks_exact(co));
                for ((&m, g_row), z_row) in chunk {
                    if m == T::zero() {
                        continue;
                    }
                    let per_channel = d_beta.iter_mut().zip(&mut d_gamma).zip(&mean).zip(&inv_std);
                    for ((((db, dg), &mu), &is), (&g, &z)) in
                        per_channel.zip(g_row.iter().zip(z_row))
                    {
                        let a = leaky(z);
                        let gm = g * m;
                        *db += gm;
                        *dg += gm * ((a - mu) * is);
                    }
                }
                (d_beta, d_gamma)
            })
            .collect();
        let (mut d_beta, mut d_gamma) = (vec![T::zero(); co], vec![T::zero(); co]);
        for (b, gm) in partial {
            for c in 0..co {
                d_beta[c] += b[c];
                d_gamma[c] += gm[c];
            }
        }
        // d z per row: through the normalisation (batch statistics in training), then
        // LeakyReLU; zero on padded rows. Branch-free inner loops, so that they vectorise:
        // `d_beta / count` once per channel (the same quotient), LeakyReLU's slope as a
        // factor (1 or the slope: `da * 1` is `da` exactly).
        let (zero, one, slope) = (T::zero(), T::one(), self.slope());
        let train = self.op.train;
        let gamma = self.p.gamma;
        let beta_mean: Vec<T> = d_beta.iter().map(|&b| b / count).collect();
        let mut dz = vec![T::zero(); rows * co];
        dz.par_chunks_mut(co)
            .with_min_len(CHUNK_ROWS / 4)
            .zip(self.mask.par_iter())
            .zip(g.par_chunks(co).zip(z.par_chunks(co)))
            .for_each(|((row, &m), (g_row, z_row))| {
                if m == zero {
                    return;
                }
                let inputs = g_row.iter().zip(z_row);
                let factor = |z: T| if z > zero { one } else { slope };
                if train {
                    let per_channel =
                        (gamma.iter().zip(&inv_std)).zip(mean.iter().zip(&beta_mean).zip(&d_gamma));
                    for ((out, ((&gam, &is), ((&mu, &bm), &dg))), (&g, &z)) in
                        row.iter_mut().zip(per_channel).zip(inputs)
                    {
                        let gm = g * m;
                        let da = gam * is * (gm - bm - (leaky(z) - mu) * is * dg / count);
                        *out = da * factor(z);
                    }
                } else {
                    for ((out, (&gam, &is)), (&g, &z)) in
                        row.iter_mut().zip(gamma.iter().zip(&inv_std)).zip(inputs)
                    {
                        *out = g * m * gam * is * factor(z);
                    }
                }
            });
        // The linear map: dx = dz W, dW = dz^T x, db = sum dz (chunk partials in order).
        let mut dx = vec![T::zero(); rows * ci];
        let weight = MatRef::row_major(self.p.weight, co, ci);
        let partial: Vec<Vec<T>> = dx
            .par_chunks_mut(CHUNK_ROWS * ci)
            .enumerate()
            .map(|(k, dx_chunk)| {
                let n = dx_chunk.len() / ci;
                let start = k * CHUNK_ROWS;
                let dz_chunk = &dz[start * co..(start + n) * co];
                matmul(dx_chunk, MatRef::row_major(dz_chunk, n, co), weight, false);
                let mut dw = vec![T::zero(); co * ci + co];
                let x = MatRef::row_major(&self.x[start * ci..(start + n) * ci], n, ci);
                matmul(&mut dw, MatRef::transposed(dz_chunk, co, n), x, false);
                for row in dz_chunk.chunks(co) {
                    for c in 0..co {
                        dw[co * ci + c] += row[c];
                    }
                }
                dw
            })
            .collect();
        let mut dp = vec![T::zero(); self.op.parameter_len()];
        for part in partial {
            for (d, v) in dp.iter_mut().zip(part) {
                *d += v;
            }
        }
        let affine = co * ci + co;
        dp[affine..affine + co].copy_from_slice(&d_gamma);
        dp[affine + co..affine + 2 * co].copy_from_slice(&d_beta);
        (dx, dp)
    }
}

impl Kernel {
    /// The output of the three inputs' storages in `T`; keeps the batch statistics.
    fn forward_typed<T: WithDType + Float + NumAssign + Send + Sync>(
        &self,
        (s1, l1): (&CpuStorage, &Layout),
        (s2, l2): (&CpuStorage, &Layout),
        (s3, l3): (&CpuStorage, &Layout),
    ) -> candle_core::Result<Vec<T>> {
        let (out, z, stats) = Rows::new(
            self.op,
            contiguous_values(s1, l1, KERNEL)?,
            contiguous_values(s2, l2, KERNEL)?,
            contiguous_values(s3, l3, KERNEL)?,
        )
        .forward();
        *self.kept.lock().unwrap_or_else(PoisonError::into_inner) = Some(Kept {
            pre_activations: T::to_cpu_storage_owned(z),
            stats,
        });
        Ok(out)
    }

    fn backward_typed<T: WithDType + Float + NumAssign + Send + Sync>(
        &self,
        tensors: [&Tensor; 4],
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let guard = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(kept) = guard
            .as_ref()
            .filter(|k| k.stats.is_some() || !self.op.train)
        else {
            return Err(candle_core::Error::Msg(format!(
                "{KERNEL}: backward without what the forward keeps"
            )));
        };
        let z = T::cpu_storage_as_slice(&kept.pre_activations)?;
        let (dx, dp) = {
            let guards = tensors.map(Tensor::storage_and_layout);
            let mut slices: [&[T]; 4] = [&[]; 4];
            for (slot, (storage, layout)) in slices.iter_mut().zip(&guards) {
                let cpu = cpu_storage(storage, KERNEL)?;
                *slot = contiguous_values(cpu, layout, KERNEL)?;
            }
            let [x, mask, params, grad] = slices;
            Rows::new(self.op, x, mask, params).backward(kept.stats.as_ref(), z, grad)
        };
        let [x, _, params, _] = tensors;
        Ok((
            Tensor::from_vec(dx, x.shape(), x.device())?,
            Tensor::from_vec(dp, params.shape(), params.device())?,
        ))
    }
}

impl CustomOp3 for Kernel {
    fn name(&self) -> &'static str {
        "pelican-message"
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
            let inputs = ((s1, l1), (s2, l2), (s3, l3));
            let storage = match s1 {
                CpuStorage::F32(_) => {
                    CpuStorage::F32(self.forward_typed(inputs.0, inputs.1, inputs.2)?)
                }
                CpuStorage::F64(_) => {
                    CpuStorage::F64(self.forward_typed(inputs.0, inputs.1, inputs.2)?)
                }
                _ => {
                    return Err(candle_core::Error::Msg(
                        "fused message layer: f32 or f64 only".into(),
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
        x: &Tensor,
        mask: &Tensor,
        params: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        super::in_pool(|| {
            let grad = grad.contiguous()?;
            let tensors = [x, mask, params, &grad];
            let (dx, dp) = match x.dtype() {
                DType::F32 => self.backward_typed::<f32>(tensors)?,
                DType::F64 => self.backward_typed::<f64>(tensors)?,
                _ => {
                    return Err(candle_core::Error::Msg(
                        "fused message layer: f32 or f64 only".into(),
                    ))
                }
            };
            Ok((Some(dx), None, Some(dp)))
        })
    }
}

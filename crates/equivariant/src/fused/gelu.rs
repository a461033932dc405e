//! GELU in its tanh approximation with a one-pass backward.
//!
//! candle's own `gelu` has the same forward, but its backward is a graph of nine
//! element-wise operations (a cube through `powf`, `tanh` again, squares, products and
//! sums, each into a fresh buffer) whose constants are rounded to six digits: `perf` put
//! 13% of an L-GATr-slim training step in its `expm1f` / `powf` / `tanhf` calls and more
//! in the maps around them. Here the forward is candle's formula element by element (the
//! same bits) and the backward is the exact derivative in one pass.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_values, cpu_storage};

/// The kernel's name in errors.
const KERNEL: &str = "gelu";

/// sqrt(2 / pi), as candle spells it.
pub(crate) const SQRT_TWO_OVER_PI: f64 = 0.797_884_560_802_865_4;
/// The cubic coefficient of the tanh approximation.
pub(crate) const CUBIC: f64 = 0.044715;
/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` element-wise, with an exact
/// backward; on the CPU in f32 and f64 as one custom op (the forward equals candle's
/// `Tensor::gelu` bit for bit), elsewhere `Tensor::gelu`.
///
/// # Errors
/// Only from the tensor backend.
pub fn gelu_tanh(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        x.contiguous()?.apply_op1(GeluTanh)
    } else {
        x.gelu()
    }
}

/// The custom op behind [`gelu_tanh`].
struct GeluTanh;

fn forward_f32(v: f32) -> f32 {
    // candle's expression, operation for operation.
    #[allow(clippy::cast_possible_truncation)]
    let (c, k) = (SQRT_TWO_OVER_PI as f32, CUBIC as f32);
    0.5 * v * (1.0 + f32::tanh(c * v * (1.0 + k * v * v)))
}

fn forward_f64(v: f64) -> f64 {
    0.5 * v * (1.0 + f64::tanh(SQRT_TWO_OVER_PI * v * (1.0 + CUBIC * v * v)))
}

/// d gelu / dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 0.044715 x^2),
/// u = sqrt(2/pi) (x + 0.044715 x^3), in f64.
fn derivative(x: f64) -> f64 {
    let t = (SQRT_TWO_OVER_PI * x * (1.0 + CUBIC * x * x)).tanh();
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_TWO_OVER_PI * (1.0 + 3.0 * CUBIC * x * x)
}

fn map<T: Copy + Send + Sync>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    let mut out = x.to_vec();
    out.par_chunks_mut(CHUNK)
        .for_each(|chunk| chunk.iter_mut().for_each(|v| *v = f(*v)));
    out
}

impl CustomOp1 for GeluTanh {
    fn name(&self) -> &'static str {
        "gelu-tanh"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        super::in_pool(|| {
            let out = match s {
                CpuStorage::F32(_) => {
                    CpuStorage::F32(map(contiguous_values::<f32>(s, l, KERNEL)?, forward_f32))
                }
                CpuStorage::F64(_) => {
                    CpuStorage::F64(map(contiguous_values::<f64>(s, l, KERNEL)?, forward_f64))
                }
                _ => return Err(candle_core::Error::Msg("gelu: f32 or f64 only".into())),
            };
            Ok((out, l.shape().clone()))
        })
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        super::in_pool(|| {
            let grad = grad.contiguous()?;
            let (a, al) = arg.storage_and_layout();
            let (g, gl) = grad.storage_and_layout();
            let (a, g) = (cpu_storage(&a, KERNEL)?, cpu_storage(&g, KERNEL)?);
            let out = match (a, g) {
                (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                    let (x, g) = (
                        contiguous_values::<f32>(a, al, KERNEL)?,
                        contiguous_values::<f32>(g, gl, KERNEL)?,
                    );
                    #[allow(clippy::cast_possible_truncation)]
                    let d: Vec<f32> = x
                        .par_iter()
                        .zip(g)
                        .with_min_len(CHUNK)
                        .map(|(&x, &g)| g * derivative(f64::from(x)) as f32)
                        .collect();
                    Tensor::from_vec(d, arg.shape(), arg.device())?
                }
                (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                    let (x, g) = (
                        contiguous_values::<f64>(a, al, KERNEL)?,
                        contiguous_values::<f64>(g, gl, KERNEL)?,
                    );
                    let d: Vec<f64> = x
                        .par_iter()
                        .zip(g)
                        .with_min_len(CHUNK)
                        .map(|(&x, &g)| g * derivative(x))
                        .collect();
                    Tensor::from_vec(d, arg.shape(), arg.device())?
                }
                _ => return Err(candle_core::Error::Msg("gelu: f32 or f64 only".into())),
            };
            Ok(Some(out))
        })
    }
}

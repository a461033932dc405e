//! The product of a tensor with a constant mask (dropout's), with a backward that forms
//! only the tensor's gradient.
//!
//! As `x * mask`, candle's backward of a product forms both operands' gradients: for a
//! mask that no parameter depends on, `grad * x`, a zero-filled buffer and a sum are
//! computed and thrown away. On PELICAN's `[B, N, N, C]` pair tensors (four dropouts per
//! step) that product's maps and fills were ~15% of a one-thread training step (`perf`).
//! Here the forward is the same element-wise product (the same bits) and the backward
//! `grad * mask` alone, candle's own product for the tensor's gradient.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_values, cpu_storage};

/// The kernel's name in errors.
const KERNEL: &str = "mask-product";
/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// `x * mask` element-wise for a `mask` of `x`'s shape and dtype that is a constant (no
/// gradient flows to it); on the CPU in f32 and f64 as one custom op whose backward forms
/// only `x`'s gradient, elsewhere candle's product.
///
/// # Errors
/// Shapes or dtypes that differ; otherwise only from the tensor backend.
pub fn mask_product(x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    if x.shape() != mask.shape() || x.dtype() != mask.dtype() {
        return Err(candle_core::Error::Msg(format!(
            "{KERNEL}: mask of shape {:?} ({:?}) for a tensor of shape {:?} ({:?})",
            mask.dims(),
            mask.dtype(),
            x.dims(),
            x.dtype()
        )));
    }
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        x.contiguous()?.apply_op1(MaskProduct {
            mask: mask.contiguous()?,
        })
    } else {
        x * mask
    }
}

/// The custom op behind [`mask_product`]: the mask it multiplies by.
struct MaskProduct {
    mask: Tensor,
}

fn product<T: Copy + Send + Sync + std::ops::Mul<Output = T>>(x: &[T], mask: &[T]) -> Vec<T> {
    let mut out = x.to_vec();
    out.par_chunks_mut(CHUNK)
        .zip(mask.par_chunks(CHUNK))
        .for_each(|(out, mask)| out.iter_mut().zip(mask).for_each(|(v, &m)| *v = *v * m));
    out
}

impl CustomOp1 for MaskProduct {
    fn name(&self) -> &'static str {
        KERNEL
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (mask, ml) = self.mask.storage_and_layout();
        let mask = cpu_storage(&mask, KERNEL)?;
        super::in_pool(|| {
            let out = match s {
                CpuStorage::F32(_) => CpuStorage::F32(product(
                    contiguous_values::<f32>(s, l, KERNEL)?,
                    contiguous_values::<f32>(mask, ml, KERNEL)?,
                )),
                CpuStorage::F64(_) => CpuStorage::F64(product(
                    contiguous_values::<f64>(s, l, KERNEL)?,
                    contiguous_values::<f64>(mask, ml, KERNEL)?,
                )),
                _ => {
                    return Err(candle_core::Error::Msg(format!(
                        "{KERNEL}: f32 or f64 only"
                    )))
                }
            };
            Ok((out, l.shape().clone()))
        })
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        grad.mul(&self.mask).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::mask_product;

    #[test]
    fn equals_the_product_and_passes_the_gradient_through_the_mask_only() {
        let dev = Device::Cpu;
        let x = Var::new(&[[1.5f64, -2.0, 3.0], [0.25, 4.0, -1.0]], &dev).unwrap();
        let mask = Tensor::new(&[[0.0f64, 1.25, 1.25], [1.25, 0.0, 1.25]], &dev).unwrap();
        let fused = mask_product(x.as_tensor(), &mask).unwrap();
        let composed = (x.as_tensor() * &mask).unwrap();
        assert_eq!(
            fused.to_vec2::<f64>().unwrap(),
            composed.to_vec2::<f64>().unwrap()
        );
        let weights = Tensor::new(&[[1.0f64, 2.0, 3.0], [4.0, 5.0, 6.0]], &dev).unwrap();
        let grads = (fused * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        // d/dx sum(w * x * m) = w * m.
        assert_eq!(
            grads.get(x.as_tensor()).unwrap().to_vec2::<f64>().unwrap(),
            vec![vec![0.0, 2.5, 3.75], vec![5.0, 0.0, 7.5]]
        );
    }

    #[test]
    fn a_mask_of_another_shape_or_dtype_is_refused() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 3), candle_core::DType::F32, &dev).unwrap();
        let short = Tensor::zeros((2, 2), candle_core::DType::F32, &dev).unwrap();
        let wide = Tensor::zeros((2, 3), candle_core::DType::F64, &dev).unwrap();
        for mask in [short, wide] {
            let err = mask_product(&x, &mask).unwrap_err().to_string();
            assert!(err.contains("mask-product: mask of shape"), "{err}");
        }
    }
}

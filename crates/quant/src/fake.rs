//! Fake quantisation for quantisation-aware training: the forward pass rounds every
//! element to a [`FixedType`] (exactly as the C++ type does, so the values are the
//! hardware's), the backward pass lets the gradient through unchanged where the value
//! was in range and stops it where `AP_SAT` clamped it (the straight-through estimator
//! with clipping, as Brevitas and QKeras' saturating quantisers define it; with
//! `AP_WRAP` it passes everywhere).

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

use crate::fixed::{FixedType, Overflow};

/// The fake-quantisation op.
struct FakeQuant(FixedType);

impl CustomOp1 for FakeQuant {
    fn name(&self) -> &'static str {
        "noether-fake-quant"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let ty = self.0;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("fake quantisation: the input must be contiguous");
        };
        let out = match storage {
            CpuStorage::F64(v) => {
                CpuStorage::F64(v[start..end].iter().map(|&x| ty.quantize(x)).collect())
            }
            // f32 values are widened exactly; types of up to 24 bits come back exactly.
            CpuStorage::F32(v) => CpuStorage::F32(
                v[start..end]
                    .iter()
                    .map(|&x| ty.quantize(f64::from(x)) as f32)
                    .collect(),
            ),
            _ => candle_core::bail!("fake quantisation: only f32 and f64 are supported"),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let ty = self.0;
        if ty.overflow() == Overflow::Wrap {
            return Ok(Some(grad_res.clone()));
        }
        let lo = ty.value(ty.min_raw());
        let hi = ty.value(ty.max_raw());
        let inside = (arg.ge(lo)?.to_dtype(DType::U8)? * arg.le(hi)?.to_dtype(DType::U8)?)?;
        Ok(Some(inside.to_dtype(grad_res.dtype())?.mul(grad_res)?))
    }
}

/// `x` with every element rounded to `ty` (f32 or f64, any layout, on the CPU), with the
/// clipped straight-through gradient.
///
/// # Errors
/// Other dtypes or devices than f32/f64 on the CPU.
pub fn fake_quantize(x: &Tensor, ty: FixedType) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(FakeQuant(ty))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn forward_rounds_and_backward_passes_only_unsaturated_elements() {
        let ty: FixedType = "ap_fixed<4,2,AP_RND_CONV,AP_SAT>".parse().unwrap();
        let x = Var::new(&[0.3f64, -0.375, 1.9, -3.0, 5.0, 0.125], &Device::Cpu).unwrap();
        let y = fake_quantize(x.as_tensor(), ty).unwrap();
        // lsb 0.25, range [-2, 1.75].
        assert_eq!(
            y.to_vec1::<f64>().unwrap(),
            [0.25, -0.5, 1.75, -2.0, 1.75, 0.0]
        );
        let weights = Tensor::new(&[1f64, 2.0, 3.0, 4.0, 5.0, 6.0], &Device::Cpu).unwrap();
        let grads = (y * weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g = grads.get(x.as_tensor()).unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(g, [1.0, 2.0, 0.0, 0.0, 0.0, 6.0]);
    }

    #[test]
    fn f32_and_strided_inputs_agree_with_the_scalar_conversion() {
        let ty: FixedType = "ap_ufixed<6,3,AP_RND>".parse().unwrap();
        let x = Tensor::new(&[[0.1f32, 7.9], [3.3, -0.2]], &Device::Cpu).unwrap();
        let y = fake_quantize(&x.t().unwrap(), ty).unwrap();
        let want: Vec<Vec<f32>> = [[0.1f32, 3.3], [7.9, -0.2]]
            .iter()
            .map(|r| {
                r.iter()
                    .map(|&v| ty.quantize(f64::from(v)) as f32)
                    .collect()
            })
            .collect();
        assert_eq!(y.to_vec2::<f32>().unwrap(), want);
    }
}

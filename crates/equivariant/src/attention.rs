//! Scaled dot-product attention over padded particles, as
//! `torch.nn.functional.scaled_dot_product_attention` computes it with a boolean key mask
//! (`attn_mask[b, 0, 0, j]`: particle `j` of jet `b` may be attended to), and the
//! softmax it needs with its own backward (candle's fused `softmax_last_dim` has none).
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use noether_equivariant::attention::{key_bias, masked_attention};
//! let dev = Device::Cpu;
//! // One jet, one head, three particles of which the last is padding.
//! let q = Tensor::new(&[[[[1f32, 0.0], [0.0, 1.0], [1.0, 1.0]]]], &dev)?;
//! let v = Tensor::new(&[[[[1f32, 0.0], [0.0, 1.0], [9.0, 9.0]]]], &dev)?;
//! let bias = key_bias(&Tensor::new(&[[1f32, 1.0, 0.0]], &dev)?)?;
//! let out = masked_attention(&q, &q, &v, &bias)?;
//! // The padded particle's value never reaches the output.
//! let first = out.get(0)?.get(0)?.get(0)?.to_vec1::<f32>()?;
//! assert!(first.iter().all(|x| *x < 1.0));
//! # Ok::<(), candle_core::Error>(())
//! ```

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType, D};

/// What a masked key adds to the attention logits: large enough that `exp` underflows to
/// exactly zero in f32 and f64, finite so that no `inf - inf` can appear.
const MASKED: f64 = -1e30;

/// The additive key bias `[jets, 1, 1, tokens]` of a `[jets, tokens]` mask (1 real, 0
/// padding): 0 for real keys, a large negative number for padded ones.
///
/// # Errors
/// Only from the tensor backend.
pub fn key_bias(mask: &Tensor) -> Result<Tensor> {
    let (jets, tokens) = mask.dims2()?;
    ((mask - 1.0)? * -MASKED)?.reshape((jets, 1, 1, tokens))
}

/// `softmax(q k^T / sqrt(d) + bias) v` for `q, k, v` `[jets, heads, tokens, d]` and a
/// key bias from [`key_bias`]; `[jets, heads, tokens, d_v]`.
///
/// # Errors
/// Shape mismatches.
pub fn masked_attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let d = q.dim(D::Minus1)?;
    let scores = (q.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?;
    let weights = softmax_last_dim(&scores.broadcast_add(bias)?)?;
    weights.matmul(&v.contiguous()?)
}

/// The softmax over the last dimension in one pass per row, with the backward
/// `dx = y * (dy - sum(dy * y))` (candle's fused op records no gradient; its composed
/// `softmax` makes four full-size temporaries).
///
/// # Errors
/// Only from the tensor backend (non-float dtypes).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    x.apply_op1(Softmax)
}

struct Softmax;

fn softmax_rows<T: WithDType + num_traits::Float>(src: &[T], dim: usize) -> Vec<T> {
    let mut out = vec![T::zero(); src.len()];
    for (row, dst) in src.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let max = row
            .iter()
            .copied()
            .fold(T::neg_infinity(), num_traits::Float::max);
        let mut sum = T::zero();
        for (d, &s) in dst.iter_mut().zip(row) {
            *d = (s - max).exp();
            sum += *d;
        }
        let inv = T::one() / sum;
        for d in dst.iter_mut() {
            *d *= inv;
        }
    }
    out
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "noether-softmax-last-dim"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("softmax: the input must be contiguous");
        };
        let dim = layout.dims().last().copied().unwrap_or(1).max(1);
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(softmax_rows(&v[start..end], dim)),
            CpuStorage::F64(v) => CpuStorage::F64(softmax_rows(&v[start..end], dim)),
            _ => candle_core::bail!("softmax: only f32 and f64 are supported"),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let dot = (grad_res * res)?.sum_keepdim(D::Minus1)?;
        Ok(Some((grad_res.broadcast_sub(&dot)? * res)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    #[test]
    fn softmax_matches_candle_and_its_gradient_matches_the_composed_one() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(
            &Tensor::new(&[[0.3f64, -1.2, 2.0, 0.0], [5.0, 5.0, -3.0, 1.0]], &dev).unwrap(),
        )
        .unwrap();
        let w = Tensor::new(&[[1f64, -2.0, 0.5, 3.0], [0.1, 0.2, -0.7, 1.0]], &dev).unwrap();
        let ours = softmax_last_dim(x.as_tensor()).unwrap();
        let reference = candle_nn::ops::softmax(x.as_tensor(), D::Minus1).unwrap();
        let diff = (&ours - &reference)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f64>().unwrap() < 1e-15);
        let g_ours = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g_ref = (reference * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (a, b) = (g_ours.get(&x).unwrap(), g_ref.get(&x).unwrap());
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f64>().unwrap() < 1e-15);
    }

    #[test]
    fn masked_keys_get_exactly_zero_weight() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (2, 3, 5, 4), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (2, 3, 5, 4), &dev).unwrap();
        let mask = Tensor::new(&[[1f32, 1.0, 1.0, 0.0, 0.0], [1.0; 5]], &dev).unwrap();
        let out = masked_attention(&q, &q, &v, &key_bias(&mask).unwrap()).unwrap();
        // Changing the padded values of jet 0 changes nothing.
        let noise = (Tensor::ones((2, 3, 5, 4), DType::F32, &dev).unwrap() * 100.0).unwrap();
        let keep = mask.reshape((2, 1, 5, 1)).unwrap();
        let v2 = (&v + noise.broadcast_mul(&(1.0 - keep).unwrap()).unwrap()).unwrap();
        let out2 = masked_attention(&q, &q, &v2, &key_bias(&mask).unwrap()).unwrap();
        let diff = (out - out2).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }
}

//! The models' linear layer: `y = x W^T + b`, optionally with a LoRA adapter (Hu et al.,
//! arXiv:2106.09685) in HuggingFace PEFT's form `y += (alpha / r) (x A^T) B^T`, A `[r, in]`,
//! B `[out, r]`. Every model exposes its layers by their checkpoint path
//! (`LGEBs.0.phi_e.0`) so that adapters can be attached after the model is built.
//! Quantisation-aware training sets a layer's fixed-point precisions the same way
//! ([`Linear::set_precision`]).

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;
use noether_quant::{fake_quantize, LayerPrecision};

/// A LoRA adapter: the low-rank update `scaling * B A`.
#[derive(Debug, Clone)]
pub struct LowRank {
    /// A `[r, in]`.
    pub a: Tensor,
    /// B `[out, r]`.
    pub b: Tensor,
    /// alpha / r.
    pub scaling: f64,
}

impl LowRank {
    /// The update `scaling * B A` `[out, in]`.
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn delta(&self) -> Result<Tensor> {
        self.b.matmul(&self.a)? * self.scaling
    }
}

/// A linear layer with an optional LoRA adapter.
#[derive(Debug, Clone)]
pub struct Linear {
    base: candle_nn::Linear,
    adapter: Option<LowRank>,
    /// The base weights before [`Linear::merge`] (restored by [`Linear::unmerge`]).
    unmerged: Option<Tensor>,
    /// Fixed-point precisions (quantisation-aware training).
    precision: Option<LayerPrecision>,
}

impl Linear {
    /// `in_dim -> out_dim` with a bias, under `vb` (`weight`, `bias`).
    ///
    /// # Errors
    /// Missing or mis-shaped tensors.
    pub fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        candle_nn::linear(in_dim, out_dim, vb).map(Self::from)
    }

    /// `in_dim -> out_dim` without a bias.
    ///
    /// # Errors
    /// Missing or mis-shaped tensors.
    pub fn no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        candle_nn::linear_no_bias(in_dim, out_dim, vb).map(Self::from)
    }

    /// The weight `[out, in]` the layer applies (merged adapter included).
    pub fn weight(&self) -> &Tensor {
        self.base.weight()
    }

    /// The weight the layer acts with, `W + scaling B A` while an adapter is attached and
    /// not merged (differentiable in A and B): for callers that split the weight, such
    /// as LorentzNet's factorised edge layer.
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn effective_weight(&self) -> Result<Tensor> {
        match (&self.adapter, self.is_merged()) {
            (Some(adapter), false) => self.base.weight() + adapter.delta()?,
            _ => Ok(self.base.weight().clone()),
        }
    }

    /// The bias `[out]`.
    pub fn bias(&self) -> Option<&Tensor> {
        self.base.bias()
    }

    /// (in, out) features.
    pub fn dims(&self) -> (usize, usize) {
        let d = self.base.weight().dims();
        (d[1], d[0])
    }

    /// The adapter, if one is attached.
    pub fn adapter(&self) -> Option<&LowRank> {
        self.adapter.as_ref()
    }

    /// Attaches a LoRA adapter (replacing any previous one).
    ///
    /// # Errors
    /// A `[r, in]` / B `[out, r]` shapes that do not fit the layer.
    pub fn attach(&mut self, adapter: LowRank) -> Result<()> {
        let (input, out) = self.dims();
        let (r, a_in) = adapter.a.dims2()?;
        let (b_out, b_r) = adapter.b.dims2()?;
        if a_in != input || b_out != out || b_r != r {
            candle_core::bail!(
                "adapter A {:?}, B {:?} do not fit a {input} -> {out} layer",
                adapter.a.dims(),
                adapter.b.dims()
            );
        }
        self.unmerge()?;
        self.adapter = Some(adapter);
        Ok(())
    }

    /// Folds the adapter into the weight (inference without the two extra matmuls).
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn merge(&mut self) -> Result<()> {
        if let (Some(adapter), None) = (&self.adapter, &self.unmerged) {
            let weight = self.base.weight().clone();
            let merged = (&weight + adapter.delta()?)?;
            self.base = candle_nn::Linear::new(merged, self.base.bias().cloned());
            self.unmerged = Some(weight);
        }
        Ok(())
    }

    /// Undoes [`Linear::merge`], restoring the base weight exactly.
    ///
    /// # Errors
    /// Never in practice (kept fallible for symmetry with `merge`).
    pub fn unmerge(&mut self) -> Result<()> {
        if let Some(weight) = self.unmerged.take() {
            self.base = candle_nn::Linear::new(weight, self.base.bias().cloned());
        }
        Ok(())
    }

    /// Whether the adapter is folded into the weight.
    pub fn is_merged(&self) -> bool {
        self.unmerged.is_some()
    }

    /// Makes the layer compute in fixed point (`None`: in floating point again): its
    /// forward then runs in f64 on the quantised weight and bias, casts the sum to the
    /// accumulator and result types, and returns f64 values of the result type.
    pub fn set_precision(&mut self, precision: Option<LayerPrecision>) {
        self.precision = precision;
    }

    /// The fixed-point precisions, when quantised.
    pub fn precision(&self) -> Option<&LayerPrecision> {
        self.precision.as_ref()
    }

    /// The quantised weight `[out, in]` and bias `[out]` in f64 (differentiable through
    /// the straight-through estimator), or `None` for a float layer.
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn quantized_parameters(&self) -> Result<Option<(Tensor, Option<Tensor>)>> {
        let Some(p) = self.precision else {
            return Ok(None);
        };
        let weight = fake_quantize(&self.effective_weight()?.to_dtype(DType::F64)?, p.weight)?;
        let bias = match self.base.bias() {
            Some(b) => Some(fake_quantize(&b.to_dtype(DType::F64)?, p.bias)?),
            None => None,
        };
        Ok(Some((weight, bias)))
    }

    /// The fixed-point forward: `x` is cast to f64 (its values are those of the previous
    /// layer's type), the products summed exactly (the graph checks that the sums fit
    /// f64's mantissa), then cast to the accumulator and result types.
    fn forward_quantized(&self, x: &Tensor, p: LayerPrecision) -> Result<Tensor> {
        let (weight, bias) = self.quantized_parameters()?.expect("a quantised layer");
        let mut y = candle_nn::Linear::new(weight, bias).forward(&x.to_dtype(DType::F64)?)?;
        if let Some(accum) = p.accum {
            y = fake_quantize(&y, accum)?;
        }
        fake_quantize(&y, p.result)
    }

    /// `x` `[rows, in]` -> `[rows, out]` with the bias added by broadcasting rows (faster
    /// than candle's batched broadcast for tall inputs).
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward_rows(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(p) = self.precision {
            return self.forward_quantized(x, p);
        }
        let y = x.matmul(&self.effective_weight()?.t()?)?;
        match self.base.bias() {
            Some(b) => crate::dense::add_rows(&y, b),
            None => Ok(y),
        }
    }
}

impl From<candle_nn::Linear> for Linear {
    fn from(base: candle_nn::Linear) -> Self {
        Self {
            base,
            adapter: None,
            unmerged: None,
            precision: None,
        }
    }
}

/// With an adapter (and no adapter dropout, which noether does not offer) PEFT's
/// `x W^T + s (x A^T) B^T` equals `x (W + s B A)^T`. The second form is what runs: the
/// `[out, in]` update is tiny, while the first materialises two more `[rows, out]`
/// tensors per layer and keeps them, with their gradients, for backward. On LorentzNet's
/// `[B N N, C]` edge tensors that was the difference between a LoRA run fitting in
/// memory or not (14 GB for the official model at 32 jets). Gradients still reach only
/// A and B when the base weight is frozen.
impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(p) = self.precision {
            return self.forward_quantized(x, p);
        }
        match (&self.adapter, self.is_merged()) {
            (Some(_), false) => {
                candle_nn::Linear::new(self.effective_weight()?, self.base.bias().cloned())
                    .forward(x)
            }
            _ => self.base.forward(x),
        }
    }
}

/// A model whose linear layers can be visited by their checkpoint path (the prefix of
/// their `weight` tensor), in a fixed order.
pub trait LinearLayers {
    /// Every linear layer with its path (`LGEBs.0.phi_e.0`, `head`, ...).
    fn linear_layers_mut(&mut self) -> Vec<(String, &mut Linear)>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn layer() -> Linear {
        let w = Tensor::arange(0f32, 12.0, &Device::Cpu)
            .unwrap()
            .reshape((3, 4))
            .unwrap();
        let b = Tensor::new(&[1f32, -1.0, 0.5], &Device::Cpu).unwrap();
        Linear::from(candle_nn::Linear::new(w, Some(b)))
    }

    #[test]
    fn adapter_adds_scaled_low_rank_update_and_merge_agrees() {
        let dev = Device::Cpu;
        let mut l = layer();
        let x = Tensor::new(&[[1f32, 2.0, -1.0, 0.5], [0.0, 1.0, 1.0, -2.0]], &dev).unwrap();
        let plain = l.forward(&x).unwrap();
        let a = Tensor::new(&[[0.5f32, -1.0, 0.0, 2.0]], &dev).unwrap();
        let b = Tensor::new(&[[1f32], [0.0], [-3.0]], &dev).unwrap();
        l.attach(LowRank { a, b, scaling: 2.0 }).unwrap();
        let adapted = l.forward(&x).unwrap();
        // x A^T = [-0.5, -5.0] (rows); update = 2 * (x A^T) B^T.
        let diff = (adapted.clone() - &plain)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(diff, vec![vec![-1.0, 0.0, 3.0], vec![-10.0, 0.0, 30.0]]);
        let rows = l.forward_rows(&x).unwrap();
        assert_eq!(
            rows.to_vec2::<f32>().unwrap(),
            adapted.to_vec2::<f32>().unwrap()
        );
        l.merge().unwrap();
        let merged = l.forward(&x).unwrap();
        let err = (merged - &adapted)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(err < 1e-6, "merged differs by {err}");
        l.unmerge().unwrap();
        assert_eq!(
            l.weight().to_vec2::<f32>().unwrap(),
            layer().weight().to_vec2::<f32>().unwrap()
        );
    }

    #[test]
    fn misfit_adapter_is_rejected() {
        let dev = Device::Cpu;
        let mut l = layer();
        let a = Tensor::zeros((2, 5), DType::F32, &dev).unwrap();
        let b = Tensor::zeros((3, 2), DType::F32, &dev).unwrap();
        let err = l.attach(LowRank { a, b, scaling: 1.0 }).unwrap_err();
        assert!(
            err.to_string().contains("do not fit a 4 -> 3 layer"),
            "{err}"
        );
    }
}

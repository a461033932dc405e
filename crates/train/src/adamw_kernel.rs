//! AdamW's update of one parameter in three passes over its values on the CPU, where the
//! tensor formulation ([`crate::optim`]'s `adamw_direction`) runs a dozen candle
//! operations, each allocating and writing a fresh tensor: on L-GATr-slim's 1.4 million
//! parameters those were 3.5% of a one-thread training step (`perf`), this pass about a
//! tenth of that.
//!
//! The same update as the tensor formulation, `PyTorch`'s `torch.optim.AdamW`:
//! `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
//! `w = w (1 - lr wd) - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`, evaluated in
//! the parameter's dtype in the same order (equal to it up to rounding; the test in
//! `optim` holds them to 1e-6 relative in f32).

use candle_core::{DType, Tensor, WithDType};
use noether_equivariant::fused::host_slice;
use num_traits::Float;

/// The constants of one AdamW step of one parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamWStep {
    /// Decay rates of the moments.
    pub(crate) betas: [f64; 2],
    /// Adam's epsilon.
    pub(crate) eps: f64,
    /// The step number `t` (from 1).
    pub(crate) t: i32,
    /// The parameter's learning rate.
    pub(crate) lr: f64,
    /// The decoupled weight decay.
    pub(crate) weight_decay: f64,
}

/// The new weights and moments `(w, m, v)` of an AdamW step on the CPU for contiguous
/// f32 or f64 tensors of one dtype (the moments `None` before the first step), or `None`
/// where the pass does not apply (another device or dtype, a strided tensor): the caller
/// then runs the tensor formulation.
///
/// # Errors
/// Only from the tensor backend.
pub(crate) fn adamw_values(
    w: &Tensor,
    g: &Tensor,
    moments: (Option<&Tensor>, Option<&Tensor>),
    step: AdamWStep,
) -> candle_core::Result<Option<[Tensor; 3]>> {
    match w.dtype() {
        DType::F32 => typed::<f32>(w, g, moments, step),
        DType::F64 => typed::<f64>(w, g, moments, step),
        _ => Ok(None),
    }
}

fn typed<T: WithDType + Float>(
    w: &Tensor,
    g: &Tensor,
    (m, v): (Option<&Tensor>, Option<&Tensor>),
    step: AdamWStep,
) -> candle_core::Result<Option<[Tensor; 3]>> {
    let tensors: Vec<&Tensor> = [Some(w), Some(g), m, v].into_iter().flatten().collect();
    if tensors
        .iter()
        .any(|t| t.dtype() != T::DTYPE || t.shape() != w.shape() || !t.device().is_cpu())
    {
        return Ok(None);
    }
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let Some(values) = guards
        .iter()
        .map(|(storage, layout)| host_slice::<T>(storage, layout))
        .collect::<Option<Vec<&[T]>>>()
    else {
        return Ok(None);
    };
    let (w_old, g) = (values[0], values[1]);
    // The moments that are there follow the weights and the gradient, in this order.
    let mut moments = values[2..].iter().copied();
    let (m_old, v_old) = (
        m.and_then(|_| moments.next()),
        v.and_then(|_| moments.next()),
    );
    let c = |x: f64| T::from_f64(x);
    let [b1, b2] = step.betas;
    // Before the first step the moments are zero: `b m` vanishes.
    let m_new: Vec<T> = match m_old {
        Some(m) => m
            .iter()
            .zip(g)
            .map(|(&m, &g)| m * c(b1) + g * c(1.0 - b1))
            .collect(),
        None => g.iter().map(|&g| g * c(1.0 - b1)).collect(),
    };
    let v_new: Vec<T> = match v_old {
        Some(v) => v
            .iter()
            .zip(g)
            .map(|(&v, &g)| v * c(b2) + g * g * c(1.0 - b2))
            .collect(),
        None => g.iter().map(|&g| g * g * c(1.0 - b2)).collect(),
    };
    let (m_scale, v_scale) = (
        c(1.0 / (1.0 - b1.powi(step.t))),
        c(1.0 / (1.0 - b2.powi(step.t))),
    );
    let (decay, lr, eps) = (
        c(1.0 - step.lr * step.weight_decay),
        c(step.lr),
        c(step.eps),
    );
    let w_new: Vec<T> = w_old
        .iter()
        .zip(m_new.iter().zip(&v_new))
        .map(|(&w, (&m, &v))| w * decay - (m * m_scale) / ((v * v_scale).sqrt() + eps) * lr)
        .collect();
    drop(guards);
    let shape = w.shape();
    Ok(Some([
        Tensor::from_vec(w_new, shape, w.device())?,
        Tensor::from_vec(m_new, shape, w.device())?,
        Tensor::from_vec(v_new, shape, w.device())?,
    ]))
}

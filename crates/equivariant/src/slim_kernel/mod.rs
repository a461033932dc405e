//! L-GATr-slim's network as one CPU kernel, forward and backward, on the real tokens of a
//! batch.
//!
//! The composed network (`slim_layers`) runs every layer as a chain of candle operations
//! on the padded batch: each writes a fresh tensor, the attention's head split and merge
//! are strided copies, the norms, gates and softmax are separate element-wise maps, and
//! GELU is glibc's scalar `tanhf`. Here each layer is a few loops over feature-major
//! activations ([`linear`]: `Y = W X` with the weights read in place) on the jets' real
//! tokens only (padded tokens are never attended to, so they cannot reach a real token),
//! the exponentials are vectorised ([`crate::fused::vector_math`]), and with a class-token
//! readout the last block computes only the class token after its keys and values.
//!
//! - [`eval_logits`]: evaluation passes no backward can follow (neither the inputs nor a
//!   weight tracked, as `noether eval` builds its model); the weights are read in place
//!   from their storage (a model built for inference shares it with the training
//!   variables, so nothing is copied or cached).
//! - [`train_logits`]: training passes: the weights packed into one tracked tensor (a
//!   concatenation, whose backward hands each variable its part) and a custom op whose
//!   forward keeps what its backward needs.
//!
//! Both apply in f32 and f64 on the CPU to float layers (no fixed point, no unmerged
//! LoRA adapter; training also without dropout), with 0/1 masks, a real class token and one
//! vector input channel; elsewhere they answer `None` and the caller runs the composed
//! network. Equal to it up to rounding (the sums run in another order; the tests in
//! `lgatr_slim`: logits and every gradient to 1e-12 in f64); the same bits with any thread
//! count (every parallel loop writes its own outputs, summed in a fixed order).

mod attention;
mod linear;
mod network;
mod pointwise;
mod rows;
mod weights;

use std::ops::Range;
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

use crate::fused::vector_math::VectorMath;
use crate::fused::{contiguous_values, cpu_storage, host_slice};
use crate::tokens::TokenInput;
use network::{backward, forward, Kept, Tokens};
use weights::NetW;
pub(crate) use weights::SlimLayers;

type CResult<T> = candle_core::Result<T>;

/// The float types the kernel runs in.
trait Real: VectorMath {}
impl<T: VectorMath> Real for T {}

/// The kernel's name in errors.
const KERNEL: &str = "L-GATr-slim kernel";

/// The real tokens of `input` (host values of type `T`), or `None` where the kernel does
/// not apply to them: masks other than 0/1, a jet without tokens, a masked class token.
fn real_tokens<T: Real>(input: &TokenInput, in_s: usize, mean: bool) -> CResult<Option<Tokens<T>>> {
    let (jets, width) = input.mask.dims2()?;
    let tensors = [&input.vectors, &input.scalars, &input.mask];
    if tensors.iter().any(|t| t.dtype() != T::DTYPE) || input.scalars.dims3()?.2 != in_s {
        return Ok(None);
    }
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let Some(data) = guards
        .iter()
        .map(|(storage, layout)| host_slice::<T>(storage, layout))
        .collect::<Option<Vec<&[T]>>>()
    else {
        return Ok(None);
    };
    let (vectors, scalars, mask) = (data[0], data[1], data[2]);
    if mask.iter().any(|&m| m != T::zero() && m != T::one()) || width == 0 {
        return Ok(None);
    }
    let real: Vec<Vec<usize>> = mask
        .chunks_exact(width)
        .map(|m| (0..width).filter(|&t| m[t] == T::one()).collect())
        .collect();
    let class_real = mean || mask.chunks_exact(width).all(|m| m[0] == T::one());
    if !class_real || real.iter().any(Vec::is_empty) {
        return Ok(None);
    }
    let token = |j: usize, t: usize| j * width + t;
    let v = real
        .iter()
        .enumerate()
        .flat_map(|(j, r)| {
            r.iter()
                .flat_map(move |&t| &vectors[4 * token(j, t)..][..4])
        })
        .copied()
        .collect();
    let s = (0..in_s)
        .flat_map(|c| {
            let real = &real;
            real.iter()
                .enumerate()
                .flat_map(move |(j, r)| r.iter().map(move |&t| scalars[token(j, t) * in_s + c]))
        })
        .collect();
    debug_assert_eq!(real.len(), jets);
    Ok(Some(Tokens {
        v,
        s,
        cols: Cols::from_counts(real.iter().map(Vec::len)),
    }))
}

use linear::Cols;

/// The logits `[jets, classes]` of an evaluation pass (the class token's scalar outputs,
/// or their mean over the jet's tokens with `mean`), or `None` where the kernel does not
/// apply (see the module docs, and any tracked tensor): the caller then runs the composed
/// network.
///
/// # Errors
/// Only from the tensor backend.
pub(crate) fn eval_logits(
    layers: SlimLayers<'_>,
    input: &TokenInput,
    mean: bool,
) -> CResult<Option<Tensor>> {
    match input.scalars.dtype() {
        DType::F32 => eval_typed::<f32>(layers, input, mean),
        DType::F64 => eval_typed::<f64>(layers, input, mean),
        _ => Ok(None),
    }
}

fn eval_typed<T: Real>(
    layers: SlimLayers<'_>,
    input: &TokenInput,
    mean: bool,
) -> CResult<Option<Tensor>> {
    let device = input.scalars.device();
    let mut tensors: Vec<&Tensor> = Vec::new();
    let Some(shape) = NetW::walk(layers, &mut |t| tensors.push(t)) else {
        return Ok(None);
    };
    let inputs = [&input.vectors, &input.scalars, &input.mask];
    let tracked = tensors.iter().chain(&inputs).any(|t| t.track_op());
    if tracked || !kernel_takes::<T>(device, &tensors, shape.linear_in.v_dims.0) {
        return Ok(None);
    }
    let Some(tokens) = real_tokens::<T>(input, shape.linear_in.s_dims.0, mean)? else {
        return Ok(None);
    };
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let Some(slices) = guards
        .iter()
        .map(|(storage, layout)| host_slice::<T>(storage, layout))
        .collect::<Option<Vec<&[T]>>>()
    else {
        return Ok(None);
    };
    let mut next = slices.iter().copied();
    let net = shape.map(&mut |(): &()| next.next().expect("one slice per weight"));
    let (logits, _) = forward(&net, &tokens, mean, false);
    let classes = net.linear_out.s_dims.1;
    Tensor::from_vec(logits, (tokens.cols.jets(), classes), device).map(Some)
}

/// Whether the kernel takes these weights: on the CPU, every one of dtype `T`, and the
/// tagger's one vector input channel (the four-momentum).
fn kernel_takes<T: Real>(device: &Device, weights: &[&Tensor], vector_inputs: usize) -> bool {
    device.is_cpu() && vector_inputs == 1 && weights.iter().all(|t| t.dtype() == T::DTYPE)
}

/// The logits of a training pass through the kernel, differentiable in every weight, or
/// `None` where the kernel does not apply (see the module docs).
///
/// # Errors
/// Only from the tensor backend.
pub(crate) fn train_logits(
    layers: SlimLayers<'_>,
    input: &TokenInput,
    mean: bool,
) -> CResult<Option<Tensor>> {
    match input.scalars.dtype() {
        DType::F32 => train_typed::<f32>(layers, input, mean),
        DType::F64 => train_typed::<f64>(layers, input, mean),
        _ => Ok(None),
    }
}

fn train_typed<T: Real>(
    layers: SlimLayers<'_>,
    input: &TokenInput,
    mean: bool,
) -> CResult<Option<Tensor>> {
    let device = input.scalars.device();
    let mut tensors: Vec<&Tensor> = Vec::new();
    let mut offset = 0;
    let Some(net) = NetW::walk(layers, &mut |t: &Tensor| {
        tensors.push(t);
        let range = offset..offset + t.elem_count();
        offset = range.end;
        range
    }) else {
        return Ok(None);
    };
    if !kernel_takes::<T>(device, &tensors, net.linear_in.v_dims.0) {
        return Ok(None);
    }
    let Some(tokens) = real_tokens::<T>(input, net.linear_in.s_dims.0, mean)? else {
        return Ok(None);
    };
    // Empty weights (the tagger's `linear_out.weight_v`) stay out: given a gradient, an
    // optimizer would try to step them, and candle refuses to set a variable to itself.
    let flat = tensors
        .iter()
        .filter(|t| t.elem_count() > 0)
        .map(|t| t.flatten_all())
        .collect::<CResult<Vec<_>>>()?;
    let packed = Tensor::cat(&flat, 0)?;
    let op = SlimTrain {
        net,
        tokens,
        mean,
        kept: Arc::new(Mutex::new(None)),
    };
    packed.apply_op1(op).map(Some)
}

/// The training pass as a custom op on the packed weights.
struct SlimTrain<T> {
    net: NetW<Range<usize>>,
    tokens: Tokens<T>,
    mean: bool,
    kept: Arc<Mutex<Option<Kept<T>>>>,
}

impl<T: Real> CustomOp1 for SlimTrain<T> {
    fn name(&self) -> &'static str {
        "lgatr-slim"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CResult<(CpuStorage, Shape)> {
        let packed = contiguous_values::<T>(storage, layout, KERNEL)?;
        let (logits, kept) = forward(&self.net.slices(packed), &self.tokens, self.mean, true);
        *self
            .kept
            .lock()
            .map_err(|_| candle_core::Error::Msg(format!("{KERNEL}: a poisoned lock")))? = kept;
        let shape = Shape::from((
            self.tokens.cols.jets(),
            logits.len() / self.tokens.cols.jets(),
        ));
        Ok((T::to_cpu_storage_owned(logits), shape))
    }

    fn bwd(&self, packed: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        let grad = grad.contiguous()?;
        let (g_storage, g_layout) = grad.storage_and_layout();
        let d_logits = contiguous_values::<T>(cpu_storage(&g_storage, KERNEL)?, g_layout, KERNEL)?;
        let (p_storage, p_layout) = packed.storage_and_layout();
        let weights = contiguous_values::<T>(cpu_storage(&p_storage, KERNEL)?, p_layout, KERNEL)?;
        let kept = self
            .kept
            .lock()
            .map_err(|_| candle_core::Error::Msg(format!("{KERNEL}: a poisoned lock")))?;
        let kept = kept
            .as_ref()
            .ok_or_else(|| candle_core::Error::Msg(format!("{KERNEL}: backward before forward")))?;
        let mut grads = vec![T::zero(); weights.len()];
        // candle calls this on the thread that runs the backward pass; on one of the
        // pool's threads the loops below hand work over once, not once per loop.
        crate::fused::in_pool(|| {
            backward(
                &self.net.slices(weights),
                &mut self.net.slices_mut(&mut grads),
                &self.tokens,
                kept,
                d_logits,
            );
        });
        Tensor::from_vec(grads, packed.shape(), packed.device()).map(Some)
    }
}

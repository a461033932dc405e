//! Fused CPU kernels: candle custom ops with their own backward for the stages of the
//! equivariant models where candle's one-buffer-per-operation graph spends its time.
//!
//! - [`LorentzEdges`]: LorentzNet's edge stage from the nodes' coordinates: the pairs'
//!   geometry and invariants, the factorised first edge layer, its BatchNorm (exact batch
//!   statistics over the real edges in training), the per-pair MLP, the message and
//!   coordinate gates and the masked sums over j.
//! - [`PairMessage`]: PELICAN's per-pair message layer (Linear, LeakyReLU, masked
//!   BatchNorm with exact batch statistics, mask).
//! - [`mask_product`]: a product with a constant mask (dropout's) whose backward forms
//!   only the tensor's gradient.
//! - [`gelu_tanh`]: GELU (tanh approximation) with a one-pass exact backward
//!   (L-GATr-slim's and the Transformer's activation).
//! - [`PairEquivariant`]: PELICAN's 2 -> 2 layer (the 15 basis operations, their
//!   scaled aggregates, biases and mask) per jet.
//! - [`EdgeConvStage`]: ParticleNet's EdgeConv block after its factorised first
//!   convolution (the gathered edges of the real points, masked BatchNorm with exact batch
//!   statistics, ReLU, the further 1x1 convolutions, the mean over neighbours).
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use noether_equivariant::fused::LorentzEdges;
//! // One graph of two nodes, hidden width 1, no coordinate update, running statistics.
//! let op = LorentzEdges { nodes: 2, hidden: 1, coord: false, clamp: f64::INFINITY, train: false, eps: 0.0 };
//! let dev = Device::Cpu;
//! let node_parts = Tensor::new(&[[1f32, 0.0], [2.0, 0.0]], &dev)?; // W1 h, W2 h per node
//! // Both nodes real (last column), at rest: the edges (0, 1) and (1, 0).
//! let coords = Tensor::new(&[[1f32, 0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0, 1.0]], &dev)?;
//! // W3 = 0, BatchNorm (weight 1, bias 0, mean 0, var 1), W_out = 1, b_out = 0, w_att = 0,
//! // b_att = 0.
//! let params = Tensor::new(&[0f32, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0], &dev)?;
//! let sums = op.apply(&node_parts, &coords, &params)?;
//! // m_01 = sigmoid(0) * relu(1) = 0.5, m_10 = 0.5 * relu(2) = 1.
//! assert_eq!(sums.messages.flatten_all()?.to_vec1::<f32>()?, vec![0.5, 1.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod edge_conv;
mod edge_geometry;
mod edge_norm;
mod edge_tile;
mod gelu;
pub(crate) mod gemm;
mod lorentz_edges;
mod mask_product;
mod pair_message;
mod pair_mix;
pub(crate) mod vector_math;

pub use edge_conv::{EdgeConvOutput, EdgeConvStage};
pub use edge_geometry::COORD_COLUMNS;
pub use gelu::gelu_tanh;
pub(crate) use gelu::{CUBIC as GELU_CUBIC, SQRT_TWO_OVER_PI};
pub use lorentz_edges::{EdgeSums, LorentzEdges};
pub use mask_product::mask_product;
pub use pair_message::{MessageOutput, PairMessage};
pub use pair_mix::PairEquivariant;

/// Runs `work` on a thread of rayon's pool: called from outside it, each of a kernel's
/// dozens of parallel loops would otherwise wake a worker and sleep on a futex (11% of a
/// single-jet ParticleNet forward at one thread, `perf`); inside it they run on the worker.
pub(crate) fn in_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    let mut result = None;
    rayon::scope(|_| result = Some(work()));
    result.expect("the scope ran its closure")
}

/// A model's forward pass on `device`: on the CPU the whole pass runs on a thread of
/// rayon's pool ([`in_pool`]), so that its kernels and candle's threaded operations hand
/// work over once per pass instead of once per parallel loop (a single ParticleNet jet
/// 8-10% faster at one thread, `noether latency`); other devices run it as it is.
pub(crate) fn model_pass<R: Send>(
    device: &candle_core::Device,
    work: impl FnOnce() -> R + Send,
) -> R {
    if device.is_cpu() {
        in_pool(work)
    } else {
        work()
    }
}

/// The values of a tensor's storage of type `T`, or `None` where they are not one
/// contiguous run of host memory (another device, another dtype, a strided layout):
/// for code that runs its own loop over a tensor and otherwise falls back to candle's
/// operations (the L-GATr-slim kernel, noether-train's one-pass AdamW).
pub fn host_slice<'g, T: candle_core::WithDType>(
    storage: &'g candle_core::Storage,
    layout: &candle_core::Layout,
) -> Option<&'g [T]> {
    let candle_core::Storage::Cpu(cpu) = storage else {
        return None;
    };
    let (start, end) = layout.contiguous_offsets()?;
    cpu.as_slice::<T>().ok().map(|all| &all[start..end])
}

/// The values of a contiguous CPU tensor, as a kernel's `cpu_fwd` or backward receives it;
/// `kernel` names the kernel in the error (the public entry points make every input
/// contiguous, so the error marks a bug, not bad user input).
pub(crate) fn contiguous_values<'a, T: candle_core::WithDType>(
    storage: &'a candle_core::CpuStorage,
    layout: &candle_core::Layout,
    kernel: &str,
) -> candle_core::Result<&'a [T]> {
    let all = storage.as_slice::<T>()?;
    layout.contiguous_offsets().map_or_else(
        || {
            Err(candle_core::Error::Msg(format!(
                "{kernel}: contiguous inputs only"
            )))
        },
        |(start, end)| Ok(&all[start..end]),
    )
}

/// `dims` with the last (channel) dimension replaced by `channels`: the output shape of
/// a per-row kernel that keeps its input's leading dimensions (PELICAN's pair tensors in
/// and out, no reshape nodes in candle's graph).
pub(crate) fn with_channels(dims: &[usize], channels: usize) -> Vec<usize> {
    let mut out = dims.to_vec();
    if let Some(last) = out.last_mut() {
        *last = channels;
    }
    out
}

/// The CPU storage behind a tensor's storage, or an error naming `kernel`.
pub(crate) fn cpu_storage<'a>(
    storage: &'a candle_core::Storage,
    kernel: &str,
) -> candle_core::Result<&'a candle_core::CpuStorage> {
    match storage {
        candle_core::Storage::Cpu(cpu) => Ok(cpu),
        _ => Err(candle_core::Error::Msg(format!(
            "{kernel}: tensors must be on the CPU"
        ))),
    }
}

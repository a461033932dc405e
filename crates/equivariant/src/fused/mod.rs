//! Fused CPU kernels: candle custom ops with their own backward for the stages of the
//! equivariant models where candle's one-buffer-per-operation graph spends its time.
//!
//! - [`LorentzEdges`]: LorentzNet's edge stage: the factorised first edge layer, its
//!   BatchNorm (exact batch statistics over the real edges in training), the per-pair
//!   MLP, the message and coordinate gates and the masked sums over j.

mod edge_tile;
mod gemm;
mod lorentz_edges;

pub use edge_tile::PAIR_COLUMNS;
pub use lorentz_edges::{EdgeSums, LorentzEdges};

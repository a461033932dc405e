//! # noether-equivariant
//!
//! Lorentz- and permutation-equivariant models on candle. Work in progress: LorentzNet
//! with the official checkpoint's parameter layout.

mod batch_norm;
mod error;
mod lorentznet;
pub mod minkowski;

pub use batch_norm::MaskedBatchNorm;
pub use error::{ModelError, Result};
pub use lorentznet::{LorentzBlock, LorentzNet, LorentzNetConfig, LorentzNetInput};

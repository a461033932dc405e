//! # noether-equivariant
//!
//! Lorentz- and permutation-equivariant models on candle. This release has LorentzNet
//! (Gong et al., arXiv:2201.08187) with the official checkpoint's parameter layout: the
//! published top-tagging weights load directly and reproduce the PyTorch logits to
//! 2e-5 relative. Inputs are dense padded batches (`[batch, nodes, 4]` momenta with the
//! beams first, `[batch, nodes]` mask); padded nodes change nothing.
//!
//! Symmetry: with exact node masses ([`LorentzNetInput::masses`]) and the coordinate
//! clamp disabled ([`LorentzNetConfig::coord_clamp`]), the model is Lorentz invariant in
//! f64 to 1e-9 up to rapidity 4 (tested with the official weights). The reference code's
//! +-100 clamp of the coordinate updates is active for TeV jets and breaks invariance, and
//! sqrt|p^2| of f32-rounded massless momenta turns rounding noise into O(sqrt(eps) E)
//! masses; both are kept by default for parity with the published model.
//!
//! ```
//! use candle_core::{DType, Device};
//! use candle_nn::{VarBuilder, VarMap};
//! use noether_equivariant::{LorentzNet, LorentzNetConfig, LorentzNetInput};
//!
//! let config = LorentzNetConfig { n_hidden: 8, n_layers: 2, ..LorentzNetConfig::default() };
//! let varmap = VarMap::new();
//! let model = LorentzNet::new(&config, &VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
//! let s2 = std::f32::consts::SQRT_2;
//! let momenta = [s2, 0., 0., 1., s2, 0., 0., -1., 50., 30., 40., 0., 20., 0., 12., 16.];
//! let input = LorentzNetInput::from_flat(&momenta, &[1.0; 4], 1, 4, 2)?;
//! let logits = model.forward(&input)?;
//! assert_eq!(logits.dims(), &[1, 2]);
//! # Ok::<(), noether_equivariant::ModelError>(())
//! ```

mod batch_norm;
mod error;
mod lorentznet;
pub mod minkowski;

pub use batch_norm::MaskedBatchNorm;
pub use error::{ModelError, Result};
pub use lorentznet::{LorentzBlock, LorentzNet, LorentzNetConfig, LorentzNetInput};

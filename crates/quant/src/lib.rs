//! # noether-quant
//!
//! The time-limited regime: trigger taggers in the fixed-point arithmetic of the FPGA
//! firmware hls4ml generates.
//!
//! - [`FixedType`]: `ap_fixed<W, I, Q, O>` / `ap_ufixed` semantics, checked against the
//!   C++ headers hls4ml ships.
//! - [`QuantConfig`]: the `[quant]` section of a run config (per-tensor, per-layer
//!   precisions), [`fake_quantize`]: the op quantisation-aware training inserts.
//! - [`Table`]: a nonlinear function as hardware computes it, a lookup table over the
//!   values of a fixed-point type ([`table_lookup`] in quantisation-aware training).
//! - [`QuantGraph`]: a quantised model in hardware terms; [`Engine`]: runs it in integer
//!   arithmetic, bit-exactly as the fake-quantised forward computes it;
//!   [`export_qonnx`]: writes it as QONNX for hls4ml and FINN.
//!
//! ```
//! use noether_quant::{Dense, Engine, FixedType, QuantConfig, QuantGraph};
//!
//! let t: FixedType = "ap_fixed<8,3,AP_RND,AP_SAT>".parse()?;
//! assert_eq!(t.quantize(0.1), 0.09375); // 3 / 32: the nearest multiple of 2^-5
//! assert_eq!(t.quantize(100.0), 3.96875); // saturates at (2^7 - 1) / 32
//!
//! // A one-layer tagger on two jet features, in the default ap_fixed<16,6> types.
//! let q = QuantConfig::default();
//! let head = Dense {
//!     name: "head".into(),
//!     inputs: 2,
//!     outputs: 1,
//!     weight: vec![0.5, -0.25],
//!     bias: vec![0.125],
//!     precision: q.layer("head"),
//!     relu: false,
//! };
//! let graph = QuantGraph { model: "mlp".into(), input: q.input, particles: None, pairs: None, slim: None, jet_features: 2, jet: vec![head] };
//! let mut engine = Engine::new(&graph)?;
//! assert_eq!(engine.run(&[1.0, 2.0], &[])?, &[0.125]);
//! # Ok::<(), noether_quant::QuantError>(())
//! ```

mod config;
mod dense;
mod engine;
mod error;
mod fake;
mod fixed;
mod graph;
mod int_dense;
pub mod onnx;
mod pair_engine;
mod pairs;
mod qonnx;
mod qonnx_builder;
mod qonnx_pairs;
mod qonnx_pairs_per_particle;
mod qonnx_slim;
mod slim;
mod slim_engine;
mod table;

pub use config::{default_table, default_table_input, LayerOverride, LayerPrecision, QuantConfig};
pub use dense::{product_bits, sum_bits, Dense, EXACT_BITS};
pub use engine::Engine;
pub use error::{QuantError, Result};
pub use fake::fake_quantize;
pub use fixed::{Cast, FixedType, Overflow, Rounding, MAX_WIDTH};
pub use graph::{ParticleStage, Pooling, QuantGraph, MAX_PARTICLES};
pub use pairs::{
    embed_dot, embed_log, embed_with_log, pair_sum_bits, PairLayer, PairOps, PairStage, MAX_NODES,
};
pub use qonnx::{export_qonnx, qonnx_model, ParticleLayout, QonnxReport};
pub use slim::{
    SlimAttentionLayer, SlimBlockLayer, SlimGluLayer, SlimLinearLayer, SlimNormLayer, SlimStage,
    MAX_TOKENS,
};
pub use table::{table_lookup, Activation, Table, TableFn, MAX_TABLE_BITS};

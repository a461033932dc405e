//! The interface every tagger implements ([`TaggerModel`]) and the one its inputs
//! implement ([`ModelInput`]), in the spirit of candle-nn's `Module` / `ModuleT`. The
//! trainer, fine-tuning, the diagnostics and the command line see models only through
//! the registry built on these traits ([`crate::Tagger`]).
//!
//! # Adding a model
//! 1. Write the model in its own file: a serde config, a struct built from a
//!    `VarBuilder` under names that mirror its PyTorch module, its input type.
//! 2. `impl ModelInput` for the input (computed once per data set from f64 momenta) and
//!    `impl TaggerModel` for the model. Every method is required: a model without a
//!    head, without depths or without a config check does not compile.
//! 3. Add one line to the registry in `registry.rs`.
//!
//! ```
//! use candle_core::Tensor;
//! use candle_nn::{Module, VarBuilder};
//! use noether_equivariant::{
//!     Context, Linear, LinearLayers, Mode, ModelInput, PaddedJets, Placement, Result,
//!     TaggerModel,
//! };
//!
//! /// A toy tagger: a linear map of the jet's summed (E, px, py, pz) in TeV.
//! #[derive(Debug, Clone)]
//! struct SumTagger { head: Linear, config: () }
//!
//! /// Its input: `[jets, 4]`.
//! #[derive(Debug, Clone)]
//! struct SumInput(Tensor);
//!
//! impl ModelInput for SumInput {
//!     fn compute(jets: &PaddedJets, place: &Placement) -> Result<Self> {
//!         let mut sums = vec![0.0; jets.jets * 4];
//!         for b in 0..jets.jets {
//!             for i in (0..jets.nodes).filter(|&i| jets.is_real(b, i)) {
//!                 for (c, x) in jets.node(b, i).iter().enumerate() {
//!                     sums[b * 4 + c] += x / 1e3;
//!                 }
//!             }
//!         }
//!         let t = Tensor::from_vec(sums, (jets.jets, 4), &place.device)
//!             .and_then(|t| t.to_dtype(place.dtype));
//!         Ok(Self(t.context("sums")?))
//!     }
//!     fn select(&self, rows: &Tensor) -> Result<Self> {
//!         Ok(Self(self.0.index_select(rows, 0).context("rows")?))
//!     }
//!     fn cat(parts: &[Self]) -> Result<Self> {
//!         let all: Vec<Tensor> = parts.iter().map(|p| p.0.clone()).collect();
//!         Ok(Self(Tensor::cat(&all, 0).context("cat")?))
//!     }
//!     fn len(&self) -> usize {
//!         self.0.dims()[0]
//!     }
//! }
//!
//! impl LinearLayers for SumTagger {
//!     fn linear_layers_mut(&mut self) -> Vec<(String, &mut Linear)> {
//!         vec![("head".into(), &mut self.head)]
//!     }
//! }
//!
//! impl TaggerModel for SumTagger {
//!     type Config = ();
//!     type Input = SumInput;
//!     const BEAMS: &'static [[f32; 4]] = &[];
//!
//!     fn check_config(_: &()) -> Result<()> {
//!         Ok(())
//!     }
//!     fn new(_: &(), vb: &VarBuilder) -> Result<Self> {
//!         let head = Linear::new(4, 2, vb.pp("head")).context("building head")?;
//!         Ok(Self { head, config: () })
//!     }
//!     fn config(&self) -> &() {
//!         &self.config
//!     }
//!     fn forward_t(&self, input: &SumInput, _: &mut Mode) -> Result<Tensor> {
//!         self.head.forward(&input.0).context("forward")
//!     }
//!     fn head(_: &()) -> &'static str {
//!         r"^head\."
//!     }
//!     fn depth(_: &(), name: &str) -> Option<(usize, usize)> {
//!         name.starts_with("head.").then_some((0, 0))
//!     }
//! }
//!
//! // Registered, it would be one line in `registry.rs`:
//! //     Sum("sum"): SumTagger = Option::unwrap_or_default;
//! let varmap = candle_nn::VarMap::new();
//! let place = Placement::cpu();
//! let vb = VarBuilder::from_varmap(&varmap, place.dtype, &place.device);
//! let model = SumTagger::new(&(), &vb)?;
//! let momenta = [100.0, 30.0, 40.0, 80.0, 50.0, -10.0, 20.0, 40.0];
//! let jets = PaddedJets { momenta: &momenta, mask: &[1.0, 1.0], jets: 1, nodes: 2, beams: 0 };
//! let logits = model.forward_t(&SumInput::compute(&jets, &place)?, &mut Mode::Eval)?;
//! assert_eq!(logits.dims(), &[1, 2]);
//! # Ok::<(), noether_equivariant::ModelError>(())
//! ```

use std::fmt::Debug;

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Result;
use crate::linear::LinearLayers;
use crate::mode::Mode;
use crate::placement::Placement;

/// Jets as every model input is computed from them: padded four-momenta in f64 with
/// the model's beams first, and the node mask.
#[derive(Debug, Clone, Copy)]
pub struct PaddedJets<'a> {
    /// (E, px, py, pz) per node, `[jets, nodes, 4]` row-major, zero for padding.
    pub momenta: &'a [f64],
    /// 1 for beams and constituents, 0 for padding, `[jets, nodes]`.
    pub mask: &'a [f32],
    /// Jets.
    pub jets: usize,
    /// Nodes per jet (beams + constituents kept).
    pub nodes: usize,
    /// Leading beam nodes of every jet.
    pub beams: usize,
}

impl PaddedJets<'_> {
    /// Checks lengths and finiteness.
    ///
    /// # Errors
    /// [`crate::ModelError::BadInput`], [`crate::ModelError::NonFinite`].
    pub fn check(&self) -> Result<()> {
        crate::check_flat(self.momenta, self.mask, self.jets, self.nodes)
    }

    /// Node `i` of jet `b`, `[E, px, py, pz]`.
    pub fn node(&self, b: usize, i: usize) -> [f64; 4] {
        let k = (b * self.nodes + i) * 4;
        [
            self.momenta[k],
            self.momenta[k + 1],
            self.momenta[k + 2],
            self.momenta[k + 3],
        ]
    }

    /// Whether node `i` of jet `b` is real (not padding).
    pub fn is_real(&self, b: usize, i: usize) -> bool {
        self.mask[b * self.nodes + i] > 0.0
    }
}

/// The input of flat padded f64 momenta, checked, on the CPU in f32: the convenience
/// path behind the models' `from_flat` constructors (tests, single jets).
pub(crate) fn cpu_input_f64<I: ModelInput>(
    momenta: &[f64],
    mask: &[f32],
    jets: usize,
    nodes: usize,
    beams: usize,
) -> Result<I> {
    let jets = PaddedJets {
        momenta,
        mask,
        jets,
        nodes,
        beams,
    };
    jets.check()?;
    I::compute(&jets, &Placement::cpu())
}

/// [`cpu_input_f64`] of f32 momenta (widened exactly).
pub(crate) fn cpu_input<I: ModelInput>(
    momenta: &[f32],
    mask: &[f32],
    jets: usize,
    nodes: usize,
    beams: usize,
) -> Result<I> {
    let wide: Vec<f64> = momenta.iter().map(|&x| f64::from(x)).collect();
    cpu_input_f64(&wide, mask, jets, nodes, beams)
}

/// A model's input for a set of jets, tensors with the jet index first. Computed once
/// per data set ([`ModelInput::compute`], in f64, cast to the model's dtype once) and
/// cut into batches by rows ([`ModelInput::select`]).
pub trait ModelInput: Sized + Clone + Debug + Send + Sync {
    /// The input of `jets` on `place`.
    ///
    /// # Errors
    /// Bad lengths or non-finite momenta; tensor errors.
    fn compute(jets: &PaddedJets, place: &Placement) -> Result<Self>;

    /// The jets at `rows` (a `u32` index tensor), in that order.
    ///
    /// # Errors
    /// Rows out of range.
    fn select(&self, rows: &Tensor) -> Result<Self>;

    /// The concatenation of inputs computed in chunks.
    ///
    /// # Errors
    /// Inconsistent shapes.
    fn cat(parts: &[Self]) -> Result<Self>;

    /// Jets held.
    fn len(&self) -> usize;

    /// Whether no jet is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A jet tagger: what it reads, how it runs, and what fine-tuning needs to know about
/// its parameters. See the module docs for a worked example and how to register one.
///
/// Buffers (tensors a model updates itself, not by gradient: BatchNorm running
/// statistics) are named by one rule, [`crate::is_buffer`], which every layer with
/// buffers follows.
pub trait TaggerModel: LinearLayers + Clone + Debug + Send + Sync + Sized {
    /// Hyper-parameters (a TOML section of the run config).
    type Config: Clone + Debug + PartialEq + Default + Serialize + DeserializeOwned;
    /// What the model reads from a batch.
    type Input: ModelInput;
    /// Beam four-vectors placed before every jet's constituents (empty: none).
    const BEAMS: &'static [[f32; 4]];

    /// Rejects configurations that cannot build a model (zero widths, dropout outside
    /// [0, 1)), naming the key relative to the model's section.
    ///
    /// # Errors
    /// [`crate::ModelError::BadConfig`].
    fn check_config(config: &Self::Config) -> Result<()>;

    /// Builds the model under `vb` (weights named as in the PyTorch module).
    ///
    /// # Errors
    /// Missing or mis-shaped tensors.
    fn new(config: &Self::Config, vb: &VarBuilder) -> Result<Self>;

    /// The configuration it was built with.
    fn config(&self) -> &Self::Config;

    /// Logits `[batch, n_class]`, in training (batch statistics, dropout) or evaluation
    /// mode.
    ///
    /// # Errors
    /// Inputs inconsistent with the model.
    fn forward_t(&self, input: &Self::Input, mode: &mut Mode) -> Result<Tensor>;

    /// Regex of the classification head's parameters (LP-FT trains only these first;
    /// head replacement swaps them).
    fn head(config: &Self::Config) -> &'static str;

    /// Depth `(d, D)` of a parameter for layer-wise learning-rate decay: the input
    /// embedding at 0, block `i` at `i + 1`, the readout and head at `D`; `None` for a
    /// name the model does not have.
    fn depth(config: &Self::Config, name: &str) -> Option<(usize, usize)>;
}

/// The block index of `name` under `prefix` (`"LGEBs."`, `"LGEBs.3.phi_e.0.weight"` ->
/// 3): the helper every [`TaggerModel::depth`] uses.
pub fn block_index(name: &str, prefix: &str) -> Option<usize> {
    name.strip_prefix(prefix)?.split('.').next()?.parse().ok()
}

/// A [`crate::ModelError::BadConfig`] unless `value >= 1`.
///
/// # Errors
/// As described.
pub fn at_least_one(key: &str, value: usize) -> Result<()> {
    if value >= 1 {
        Ok(())
    } else {
        Err(crate::ModelError::BadConfig {
            key: key.to_owned(),
            value: value.to_string(),
            reason: "must be at least 1".into(),
        })
    }
}

/// A [`crate::ModelError::BadConfig`] unless `0 <= p < 1`.
///
/// # Errors
/// As described.
pub fn check_dropout(key: &str, p: f64) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(crate::ModelError::BadConfig {
            key: key.to_owned(),
            value: p.to_string(),
            reason: "must be in [0, 1)".into(),
        })
    }
}

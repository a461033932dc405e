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
//!     fn classes(_: &()) -> usize {
//!         2
//!     }
//!     fn activation_elements(_: &(), jets: usize, nodes: usize) -> u128 {
//!         noether_equivariant::elements(jets, nodes, 1, 4)
//!     }
//!     fn forward_flops(_: &(), _: usize) -> u128 {
//!         0
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
use noether_quant::{QuantConfig, QuantGraph};

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

    /// Rejects configurations that cannot build a model (zero or absurd widths, dropout
    /// outside [0, 1), non-finite numbers), naming the key relative to the model's
    /// section.
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

    /// The input of `jets` on `place`: [`ModelInput::compute`] unless the input depends on
    /// the configuration (ParticleNet builds the inputs its weaver data config defines).
    ///
    /// # Errors
    /// As [`ModelInput::compute`].
    fn input(&self, jets: &PaddedJets, place: &Placement) -> Result<Self::Input> {
        Self::Input::compute(jets, place)
    }

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

    /// The logits per jet (`n_class`).
    fn classes(config: &Self::Config) -> usize;

    /// Elements of the largest tensor a forward pass over `jets` jets of `nodes` nodes
    /// (beams included) makes, such as LorentzNet's and PELICAN's `jets x nodes^2 x
    /// width` pair tensors: checked against the machine's memory before a run allocates
    /// anything.
    fn activation_elements(config: &Self::Config, jets: usize, nodes: usize) -> u128;

    /// FLOPs of one jet's forward pass at `nodes` padded nodes (beams included), counted
    /// as PyTorch's `FlopCounterMode` counts the architecture's reference implementation:
    /// 2 per multiply-add of every matrix product (linear layers, 1x1 convolutions, the
    /// pair MLPs on every pair the reference forms, kNN distance products), nothing for
    /// element-wise maps, normalisation or sums. The convention of the published FLOP
    /// figures (tagging-guide), and the unit of a run's `train_flops` (3 x forward per
    /// training jet and epoch); noether's own kernels may need fewer.
    fn forward_flops(config: &Self::Config, nodes: usize) -> u128;

    /// Makes the model compute in the fixed-point arithmetic `quant` describes
    /// (quantisation-aware training: fake-quantised inputs, weights, sums and outputs
    /// with straight-through gradients). `None`: the model has no fixed-point form (only
    /// the models a trigger FPGA can hold implement one). The registry then checks the
    /// model's [`TaggerModel::quant_graph`] ([`noether_quant::QuantGraph::validate`]).
    ///
    /// # Errors
    /// (inside the `Some`) [`crate::ModelError::Quant`] for settings the model cannot use.
    fn quantize(&mut self, quant: &QuantConfig) -> Option<Result<()>> {
        let _ = quant;
        None
    }

    /// The quantised model in hardware terms, for the integer engine and export; `None`
    /// for a model without a fixed-point form or one not quantised.
    ///
    /// # Errors
    /// (inside the `Some`) Tensor errors reading the weights; graph checks.
    fn quant_graph(&self) -> Option<Result<QuantGraph>> {
        None
    }
}

/// Multiply-adds of a stack of dense layers of widths `input -> sizes[0] -> ...`.
pub fn stack_macs(input: usize, sizes: &[usize]) -> u128 {
    let mut width = input as u128;
    sizes
        .iter()
        .map(|&s| {
            let macs = width * s as u128;
            width = s as u128;
            macs
        })
        .sum()
}

/// `jets x nodes^k x width` in u128 (no overflow for any config that passes its checks).
pub fn elements(jets: usize, nodes: usize, k: u32, width: usize) -> u128 {
    jets as u128 * (nodes as u128).pow(k) * width as u128
}

/// The block index of `name` under `prefix` (`"LGEBs."`, `"LGEBs.3.phi_e.0.weight"` ->
/// 3): the helper every [`TaggerModel::depth`] uses.
pub fn block_index(name: &str, prefix: &str) -> Option<usize> {
    name.strip_prefix(prefix)?.split('.').next()?.parse().ok()
}

/// [`TaggerModel::depth`] of a model laid out as `linear_in`, `blocks.{i}` (`i <
/// blocks`) and `linear_out` (the transformers): the input layer at 0, block `i` at
/// `i + 1`, the output layer at the top, `blocks + 1`.
pub fn stack_depth(name: &str, blocks: usize) -> Option<(usize, usize)> {
    let top = blocks + 1;
    if name.starts_with("linear_in.") {
        Some((0, top))
    } else if name.starts_with("linear_out.") {
        Some((top, top))
    } else {
        block_index(name, "blocks.")
            .filter(|&i| i < blocks)
            .map(|i| (i + 1, top))
    }
}

/// The widest layer a config may ask for: beyond it a typo (`n_hidden = 720000`) would
/// abort on a failed allocation instead of being named.
pub const MAX_WIDTH: usize = 1 << 16;

/// The most layers (or blocks) a config may ask for.
pub const MAX_LAYERS: usize = 256;

/// A [`crate::ModelError::BadConfig`] for `key`.
pub(crate) fn bad(key: &str, value: &impl ToString, reason: String) -> crate::ModelError {
    crate::ModelError::BadConfig {
        key: key.to_owned(),
        value: value.to_string(),
        reason,
    }
}

/// A [`crate::ModelError::BadConfig`] unless `1 <= value <=` [`MAX_WIDTH`]: a layer
/// width, a class count.
///
/// # Errors
/// As described.
pub fn check_width(key: &str, value: usize) -> Result<()> {
    if (1..=MAX_WIDTH).contains(&value) {
        Ok(())
    } else {
        Err(bad(
            key,
            &value,
            format!("must be between 1 and {MAX_WIDTH}"),
        ))
    }
}

/// A [`crate::ModelError::BadConfig`] unless `value <=` [`MAX_LAYERS`].
///
/// # Errors
/// As described.
pub fn check_layers(key: &str, value: usize) -> Result<()> {
    if value <= MAX_LAYERS {
        Ok(())
    } else {
        Err(bad(key, &value, format!("must be at most {MAX_LAYERS}")))
    }
}

/// The widths of a list of layers ([`check_width`] each, 1 to [`MAX_LAYERS`] of them).
///
/// # Errors
/// As described.
pub fn check_widths(key: &str, widths: &[usize]) -> Result<()> {
    if widths.is_empty() {
        return Err(bad(key, &"[]", "needs at least one layer".into()));
    }
    check_layers(&format!("{key} (layers)"), widths.len())?;
    for (k, &width) in widths.iter().enumerate() {
        check_width(&format!("{key}[{k}]"), width)?;
    }
    Ok(())
}

/// A [`crate::ModelError::BadConfig`] unless `value` is a positive finite number.
///
/// # Errors
/// As described.
pub fn check_positive(key: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(bad(key, &value, "must be a positive number".into()))
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
        Err(bad(key, &p, "must be in [0, 1)".into()))
    }
}

//! The registry of taggers: one line per model generates its [`ModelKind`] (the
//! `model = "..."` name), its [`ModelConfig`] variant, its [`TaggerInput`] variant and
//! its [`Network`] variant (what a [`Tagger`] runs), with
//! every dispatch an exhaustive `match`. Adding a model is
//! its file plus one line below; forgetting a piece of [`TaggerModel`] does not compile.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::deepsets::{FlowConfig, FlowKind, FlowNetwork};
use crate::error::{ModelError, Result};
use crate::lgatr_slim::LGatrSlim;
use crate::linear::{Linear, LinearLayers};
use crate::lorentznet::LorentzNet;
use crate::mlp::Mlp;
use crate::mode::Mode;
use crate::model::{ModelInput, PaddedJets, TaggerModel};
use crate::particlenet::ParticleNet;
use crate::pelican::Pelican;
use crate::placement::Placement;
use crate::transformer::Transformer;
use noether_quant::{QuantConfig, QuantError, QuantGraph};

/// The PFN section resolved: always a PFN, whatever `kind` says.
fn as_pfn(config: Option<FlowConfig>) -> FlowConfig {
    FlowConfig {
        kind: FlowKind::Pfn,
        ..config.unwrap_or_default()
    }
}

/// The EFN section resolved: always an EFN.
fn as_efn(config: Option<FlowConfig>) -> FlowConfig {
    FlowConfig {
        kind: FlowKind::Efn,
        ..config.unwrap_or_default()
    }
}

macro_rules! registry {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident($name:literal): $model:ty = $resolve:expr;
    )+) => {
        /// Which model a run trains: the `model = "..."` key of a run config.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ModelKind {
            $( $(#[doc = $doc])* #[serde(rename = $name)] $variant, )+
        }

        impl ModelKind {
            /// Every registered model, in registry order.
            pub const ALL: &'static [ModelKind] = &[$(Self::$variant),+];

            /// The name in configs and on the command line (`lorentznet`).
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }

            /// The kind called `name`.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(Self::$variant),)+ _ => None }
            }

            /// The beams this model expects before every jet's constituents.
            pub fn beams(self) -> &'static [[f32; 4]] {
                match self { $(Self::$variant => <$model as TaggerModel>::BEAMS),+ }
            }
        }

        /// A model's configuration, tagged with its kind.
        #[derive(Debug, Clone, PartialEq)]
        pub enum ModelConfig {
            $( $(#[doc = $doc])* $variant(<$model as TaggerModel>::Config), )+
        }

        impl ModelConfig {
            /// Its kind.
            pub fn kind(&self) -> ModelKind {
                match self { $(Self::$variant(_) => ModelKind::$variant),+ }
            }

            /// The configuration of `kind` from its section (`None`: the model's
            /// defaults), as a run config resolves it.
            ///
            /// # Errors
            /// The deserializer's error for unknown keys or wrong types.
            pub fn from_section<'de, D: serde::Deserializer<'de>>(
                kind: ModelKind,
                section: Option<D>,
            ) -> std::result::Result<Self, D::Error> {
                Ok(match kind {
                    $(ModelKind::$variant => {
                        let config = section
                            .map(<<$model as TaggerModel>::Config as Deserialize>::deserialize)
                            .transpose()?;
                        Self::$variant(($resolve)(config))
                    })+
                })
            }

            /// The defaults of `kind`.
            pub fn default_for(kind: ModelKind) -> Self {
                match kind { $(ModelKind::$variant => Self::$variant(($resolve)(None))),+ }
            }

            /// [`TaggerModel::check_config`].
            ///
            /// # Errors
            /// [`ModelError::BadConfig`] naming the key within the section.
            pub fn check(&self) -> Result<()> {
                match self { $(Self::$variant(c) => <$model as TaggerModel>::check_config(c)),+ }
            }

            /// [`TaggerModel::head`].
            pub fn head(&self) -> &'static str {
                match self { $(Self::$variant(c) => <$model as TaggerModel>::head(c)),+ }
            }

            /// [`TaggerModel::depth`].
            pub fn depth(&self, name: &str) -> Option<(usize, usize)> {
                match self { $(Self::$variant(c) => <$model as TaggerModel>::depth(c, name)),+ }
            }

            /// [`TaggerModel::classes`].
            pub fn classes(&self) -> usize {
                match self { $(Self::$variant(c) => <$model as TaggerModel>::classes(c)),+ }
            }

            /// FLOPs of one jet's forward pass with up to `n_max` constituents (beams
            /// added): [`TaggerModel::forward_flops`].
            pub fn forward_flops(&self, n_max: usize) -> u128 {
                match self {
                    $(Self::$variant(c) => <$model as TaggerModel>::forward_flops(
                        c, n_max + <$model as TaggerModel>::BEAMS.len())),+
                }
            }

            /// [`TaggerModel::activation_elements`] for `jets` jets of up to `n_max`
            /// constituents (the model's beams added).
            pub fn activation_elements(&self, jets: usize, n_max: usize) -> u128 {
                match self {
                    $(Self::$variant(c) => <$model as TaggerModel>::activation_elements(
                        c, jets, n_max + <$model as TaggerModel>::BEAMS.len())),+
                }
            }
        }

        impl Serialize for ModelConfig {
            /// The model's own section (without the kind, which is `model = "..."`).
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                match self { $(Self::$variant(c) => c.serialize(s)),+ }
            }
        }

        /// The network of a [`Tagger`]: one variant per registered model.
        #[derive(Debug, Clone)]
        pub enum Network {
            $( $(#[doc = $doc])* $variant($model), )+
        }

        impl Network {
            /// Builds the model of `config` under `vb` (its checks first).
            ///
            /// # Errors
            /// [`ModelError::BadConfig`]; missing or mis-shaped tensors.
            pub fn new(config: &ModelConfig, vb: &VarBuilder) -> Result<Self> {
                config.check()?;
                Ok(match config {
                    $(ModelConfig::$variant(c) => Self::$variant(<$model as TaggerModel>::new(c, vb)?)),+
                })
            }

            /// Its kind.
            pub fn kind(&self) -> ModelKind {
                match self { $(Self::$variant(_) => ModelKind::$variant),+ }
            }

            /// Its configuration.
            pub fn config(&self) -> ModelConfig {
                match self { $(Self::$variant(m) => ModelConfig::$variant(m.config().clone())),+ }
            }

            /// The input of `jets` (padded with the model's beams) on `place`.
            ///
            /// # Errors
            /// Bad lengths or non-finite momenta.
            pub fn input(&self, jets: &PaddedJets, place: &Placement) -> Result<TaggerInput> {
                jets.check()?;
                Ok(match self {
                    $(Self::$variant(m) => TaggerInput::$variant(m.input(jets, place)?)),+
                })
            }

            /// Logits `[batch, n_class]`.
            ///
            /// # Errors
            /// [`ModelError::WrongInput`] for another model's input; shape errors.
            pub fn forward_t(&self, input: &TaggerInput, mode: &mut Mode) -> Result<Tensor> {
                match (self, input) {
                    $((Self::$variant(m), TaggerInput::$variant(x)) => m.forward_t(x, mode),)+
                    (_, other) => Err(ModelError::WrongInput {
                        expected: self.kind().name(),
                        found: other.kind().name(),
                    }),
                }
            }
        }

        impl Network {
            /// [`TaggerModel::quantize`], with `None` for a model without a fixed-point
            /// form.
            fn quantize(&mut self, quant: &QuantConfig) -> Option<Result<()>> {
                match self { $(Self::$variant(m) => m.quantize(quant)),+ }
            }

            /// [`TaggerModel::quant_graph`].
            fn quant_graph(&self) -> Option<Result<QuantGraph>> {
                match self { $(Self::$variant(m) => m.quant_graph()),+ }
            }
        }

        impl LinearLayers for Network {
            fn linear_layers_mut(&mut self) -> Vec<(String, &mut Linear)> {
                match self { $(Self::$variant(m) => m.linear_layers_mut()),+ }
            }
        }

        /// The input of some registered model for a set of jets.
        #[derive(Debug, Clone)]
        pub enum TaggerInput {
            $( $(#[doc = $doc])* $variant(<$model as TaggerModel>::Input), )+
        }

        impl TaggerInput {
            /// The model it was computed for.
            pub fn kind(&self) -> ModelKind {
                match self { $(Self::$variant(_) => ModelKind::$variant),+ }
            }

            /// Jets held.
            pub fn len(&self) -> usize {
                match self { $(Self::$variant(x) => x.len()),+ }
            }

            /// Whether no jet is held.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// The jets at `rows` (`u32` indices).
            ///
            /// # Errors
            /// Rows out of range.
            pub fn select(&self, rows: &Tensor) -> Result<Self> {
                Ok(match self { $(Self::$variant(x) => Self::$variant(x.select(rows)?)),+ })
            }

            /// The concatenation of inputs of one model computed in chunks.
            ///
            /// # Errors
            /// [`ModelError::WrongInput`] when the parts belong to different models.
            pub fn cat(parts: &[Self]) -> Result<Self> {
                let Some(first) = parts.first() else {
                    return Err(ModelError::BadInput {
                        input: "parts",
                        expected: "at least one input".into(),
                        found: vec![0],
                    });
                };
                match first {
                    $(Self::$variant(_) => {
                        let typed = parts
                            .iter()
                            .map(|p| match p {
                                Self::$variant(x) => Ok(x.clone()),
                                other => Err(ModelError::WrongInput {
                                    expected: $name,
                                    found: other.kind().name(),
                                }),
                            })
                            .collect::<Result<Vec<_>>>()?;
                        Ok(Self::$variant(ModelInput::cat(&typed)?))
                    })+
                }
            }
        }
    };
}

registry! {
    /// LorentzNet (Gong et al., arXiv:2201.08187).
    LorentzNet("lorentznet"): LorentzNet = Option::unwrap_or_default;
    /// PELICAN (Bogatskiy et al., arXiv:2307.16506).
    Pelican("pelican"): Pelican = Option::unwrap_or_default;
    /// Particle Flow Network (Komiske et al., arXiv:1810.05165).
    Pfn("pfn"): FlowNetwork = as_pfn;
    /// Energy Flow Network (infrared and collinear safe).
    Efn("efn"): FlowNetwork = as_efn;
    /// MLP on jet-level features.
    Mlp("mlp"): Mlp = Option::unwrap_or_default;
    /// ParticleNet (Qu and Gouskos, arXiv:1902.08570), as weaver-core defines it.
    ParticleNet("particlenet"): ParticleNet = Option::unwrap_or_default;
    /// L-GATr-slim (arXiv:2512.17011), as the `lgatr` 2.0 package defines it.
    LGatrSlim("lgatr_slim"): LGatrSlim = Option::unwrap_or_default;
    /// A plain Transformer on the same tokens (the tagging-guide's "tr" baseline).
    Transformer("transformer"): Transformer = Option::unwrap_or_default;
}

/// A tagger of any registered architecture, with the device and dtype it was built on:
/// what the trainer, fine-tuning, the diagnostics and the command line hold.
#[derive(Debug, Clone)]
pub struct Tagger {
    network: Network,
    placement: Placement,
}

impl Tagger {
    /// Builds the model of `config` under `vb`, on the builder's device and dtype.
    ///
    /// # Errors
    /// [`ModelError::BadConfig`]; missing or mis-shaped tensors.
    pub fn new(config: &ModelConfig, vb: &VarBuilder) -> Result<Self> {
        Ok(Self {
            network: Network::new(config, vb)?,
            placement: Placement {
                device: vb.device().clone(),
                dtype: vb.dtype(),
            },
        })
    }

    /// The network (to reach a model's own methods).
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Device and dtype of its weights, and of the inputs it computes.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Its kind.
    pub fn kind(&self) -> ModelKind {
        self.network.kind()
    }

    /// Its configuration.
    pub fn config(&self) -> ModelConfig {
        self.network.config()
    }

    /// The beams this model expects before every jet's constituents.
    pub fn beams(&self) -> &'static [[f32; 4]] {
        self.kind().beams()
    }

    /// [`TaggerModel::head`] of this model.
    pub fn head(&self) -> &'static str {
        self.config().head()
    }

    /// [`TaggerModel::depth`] of this model.
    pub fn depth(&self, name: &str) -> Option<(usize, usize)> {
        self.config().depth(name)
    }

    /// The input of `jets` (padded with [`Tagger::beams`]) on this model's device and
    /// dtype: compute it once per data set and cut batches with [`TaggerInput::select`].
    ///
    /// # Errors
    /// Bad lengths or non-finite momenta.
    pub fn input(&self, jets: &PaddedJets) -> Result<TaggerInput> {
        self.network.input(jets, &self.placement)
    }

    /// Logits `[batch, n_class]` in training or evaluation mode.
    ///
    /// # Errors
    /// [`ModelError::WrongInput`] for another model's input; shape errors.
    pub fn forward_t(&self, input: &TaggerInput, mode: &mut Mode) -> Result<Tensor> {
        self.network.forward_t(input, mode)
    }

    /// Folds every LoRA adapter into its layer's weight (faster inference; the output is
    /// unchanged up to rounding). [`Tagger::unmerge_adapters`] undoes it.
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn merge_adapters(&mut self) -> Result<()> {
        self.each_layer("merging", Linear::merge)
    }

    /// Makes the model compute in the fixed-point arithmetic of `quant`
    /// (quantisation-aware training; [`TaggerModel::quantize`]).
    ///
    /// # Errors
    /// [`ModelError::Quant`]: a model without a fixed-point form (naming the ones with
    /// one), an override for a layer it does not have, sums too wide to be exact.
    pub fn quantize(&mut self, quant: &QuantConfig) -> Result<()> {
        let kind = self.kind();
        self.network.quantize(quant).unwrap_or_else(|| {
            Err(QuantError::BadSetting {
                setting: "model".into(),
                detail: format!(
                    "model \"{kind}\" has no fixed-point form (quantisation-aware training \
                     supports {})",
                    quantizable().join(", ")
                ),
            }
            .into())
        })?;
        // Every model's graph gets the same checks: exact sums, representable weights.
        Ok(self.quant_graph()?.validate()?)
    }

    /// The quantised model in hardware terms, for the integer engine and QONNX export.
    ///
    /// # Errors
    /// [`ModelError::Quant`] when the model was not quantised; tensor errors.
    pub fn quant_graph(&self) -> Result<QuantGraph> {
        self.network.quant_graph().unwrap_or_else(|| {
            Err(QuantError::Export(format!(
                "model \"{}\" was not trained with quantisation (no [quant] section)",
                self.kind()
            ))
            .into())
        })
    }

    /// Restores the unmerged layers.
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn unmerge_adapters(&mut self) -> Result<()> {
        self.each_layer("unmerging", Linear::unmerge)
    }

    /// Applies `f` to every linear layer, naming the layer (and `doing`) in errors.
    fn each_layer(
        &mut self,
        doing: &str,
        f: impl Fn(&mut Linear) -> candle_core::Result<()>,
    ) -> Result<()> {
        for (path, layer) in self.linear_layers_mut() {
            f(layer).map_err(|source| ModelError::Candle {
                context: format!("{doing} {path}"),
                source,
            })?;
        }
        Ok(())
    }
}

impl LinearLayers for Tagger {
    fn linear_layers_mut(&mut self) -> Vec<(String, &mut Linear)> {
        self.network.linear_layers_mut()
    }
}

/// The models with a fixed-point form, by name: those whose default configuration
/// accepts the default `[quant]` section.
pub fn quantizable() -> Vec<&'static str> {
    let place = Placement::cpu();
    ModelKind::ALL
        .iter()
        .filter(|kind| {
            let varmap = candle_nn::VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, place.dtype, &place.device);
            Network::new(&ModelConfig::default_for(**kind), &vb)
                .is_ok_and(|mut n| n.quantize(&QuantConfig::default()).is_some())
        })
        .map(|kind| kind.name())
        .collect()
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ModelKind {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        Self::from_name(s).ok_or_else(|| ModelError::BadConfig {
            key: "model".into(),
            value: format!("\"{s}\""),
            reason: format!(
                "unknown model; registered: {}",
                Self::ALL
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }
}

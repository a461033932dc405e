//! A quantised model as the hardware sees it: fixed-point dense layers, an optional
//! per-particle stage pooled by a sum (Deep Sets: PFN, EFN), and a per-jet stage (the
//! MLP on jet features is a graph without particles). The integer [`crate::Engine`]
//! runs it and [`crate::export_qonnx`] writes it; models build it from their weights
//! (`Tagger::quant_graph` in noether-equivariant).

use serde::{Deserialize, Serialize};

use crate::dense::{check_dense, layer_error, sum_bits, Dense, EXACT_BITS};
use crate::error::Result;
use crate::fixed::FixedType;
use crate::pairs::PairStage;
use crate::slim::SlimStage;

/// The most particles a jet may hold: the bound under which the pooled sums are checked
/// to stay exact.
pub const MAX_PARTICLES: usize = 1024;

/// How particles are summed into the jet latent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pooling {
    /// The sum over real particles (PFN).
    Sum,
    /// The sum weighted by input feature `k`, which the per-particle layers do not see
    /// (EFN: the momentum fraction z).
    Weighted(usize),
}

/// The per-particle stage of a Deep Sets model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticleStage {
    /// Features per particle (before removing a weighting feature).
    pub features: usize,
    /// The layers applied to every particle.
    pub layers: Vec<Dense>,
    /// The pooling.
    pub pooling: Pooling,
    /// The type of the pooled sum.
    pub pool: FixedType,
}

/// A quantised model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantGraph {
    /// The model's registry name (`pfn`).
    pub model: String,
    /// The type of the input features.
    pub input: FixedType,
    /// Per-particle layers and pooling; `None` for models of jet-level features.
    pub particles: Option<ParticleStage>,
    /// PELICAN's equivariant layers on particle pairs, read out into jet features;
    /// `None` for other models. A graph has at most one of `particles` and `pairs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairs: Option<PairStage>,
    /// L-GATr-slim's token stage, read out at the class token; `None` for other models.
    /// A graph has at most one of `particles`, `pairs` and `slim`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slim: Option<SlimStage>,
    /// Features per jet when there is neither a particle nor a pair stage.
    pub jet_features: usize,
    /// The layers applied once per jet, the last giving the logits.
    pub jet: Vec<Dense>,
}

impl QuantGraph {
    /// Every dense layer of the particle and jet stages (not those of a pair stage),
    /// particle stage first, each with the type of its input.
    pub fn layers(&self) -> Vec<(&Dense, FixedType)> {
        let mut out = Vec::new();
        let mut ty = self.input;
        if let Some(p) = &self.particles {
            for layer in &p.layers {
                out.push((layer, ty));
                ty = layer.precision.result;
            }
            ty = p.pool;
        }
        if let Some(p) = &self.pairs {
            ty = p.readout.precision.result;
        }
        if let Some(p) = &self.slim {
            ty = p.output(self.input);
        }
        for layer in &self.jet {
            out.push((layer, ty));
            ty = layer.precision.result;
        }
        out
    }

    /// The parameters the fixed-point model holds: weights and biases of every layer,
    /// and a pair stage's embedding exponents (what a firmware stores; a float
    /// checkpoint may hold more, such as PELICAN's BatchNorm, unused in fixed point).
    pub fn parameters(&self) -> usize {
        let dense = |d: &Dense| d.weight.len() + d.bias.len();
        let particles: usize = self
            .particles
            .iter()
            .flat_map(|p| &p.layers)
            .map(dense)
            .sum();
        let pairs = self.pairs.as_ref().map_or(0, |p| {
            let pair =
                |l: &crate::pairs::PairLayer| l.weight.len() + l.bias.len() + l.diag_bias.len();
            p.alphas.len()
                + pair(&p.labels)
                + p.blocks
                    .iter()
                    .map(|(m, e)| dense(m) + pair(e))
                    .sum::<usize>()
                + dense(&p.readout_message)
                + pair(&p.readout)
        });
        let slim = self.slim.as_ref().map_or(0, SlimStage::parameters);
        particles + pairs + slim + self.jet.iter().map(dense).sum::<usize>()
    }

    /// Logits per jet.
    pub fn classes(&self) -> usize {
        self.jet.last().map_or(0, |l| l.outputs)
    }

    /// Checks shapes, that every weight and bias is a value of its type, and that every
    /// sum is exact in [`EXACT_BITS`].
    ///
    /// # Errors
    /// [`crate::QuantError::Layer`] naming the layer and what does not fit.
    pub fn validate(&self) -> Result<()> {
        let mut width = self.jet_features;
        let stages = [
            self.particles.is_some(),
            self.pairs.is_some(),
            self.slim.is_some(),
        ];
        if stages.iter().filter(|s| **s).count() > 1 {
            return Err(layer_error(
                "pairs",
                "a graph has at most one of a particle, a pair and a token stage".into(),
            ));
        }
        if let Some(p) = &self.slim {
            p.validate(self.input)?;
            width = p.channels().1;
        }
        if let Some(p) = &self.pairs {
            p.validate(self.input)?;
            width = p.outputs();
        }
        if let Some(p) = &self.particles {
            self.check_pool(p)?;
            width = p.features - usize::from(matches!(p.pooling, Pooling::Weighted(_)));
            for layer in &p.layers {
                width = check_dense(layer, width)?;
            }
        }
        for layer in &self.jet {
            width = check_dense(layer, width)?;
        }
        if self.jet.is_empty() {
            return Err(layer_error(
                "head",
                "the graph has no per-jet layers".into(),
            ));
        }
        for (layer, input) in self.layers() {
            let bits = sum_bits(layer, input);
            if bits > EXACT_BITS {
                return Err(layer_error(
                    &layer.name,
                    format!(
                        "its sums need {bits} bits ({} weights x {} inputs over {} terms), \
                         more than the {EXACT_BITS} the quantised forward holds exactly: \
                         narrow the weight or input types",
                        layer.precision.weight, input, layer.inputs
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl QuantGraph {
    /// Checks the weighting feature and that the pooled sums of up to [`MAX_PARTICLES`]
    /// particles are exact.
    fn check_pool(&self, p: &ParticleStage) -> Result<()> {
        let last = p.layers.last().map_or(self.input, |l| l.precision.result);
        let (weight_bits, what) = match p.pooling {
            Pooling::Sum => (0, String::new()),
            Pooling::Weighted(k) if k < p.features => (
                self.input.width(),
                format!(" weighted by {} values", self.input),
            ),
            Pooling::Weighted(k) => {
                return Err(layer_error(
                    "pool",
                    format!("weighting feature {k} of {}", p.features),
                ))
            }
        };
        let bits = last.width() + weight_bits + MAX_PARTICLES.trailing_zeros();
        if bits > EXACT_BITS {
            return Err(layer_error(
                "pool",
                format!(
                    "its sums of up to {MAX_PARTICLES} {last} values{what} need {bits} bits, \
                     more than the {EXACT_BITS} the quantised forward holds exactly"
                ),
            ));
        }
        Ok(())
    }
}

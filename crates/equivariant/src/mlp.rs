//! A plain MLP on jet-level (high-level) features: the simplest tagging baseline. The same
//! network on raw momenta ([`raw_momenta`]) is the deliberately non-invariant model that
//! the symmetry tests must catch.

use candle_core::{Device, Tensor};
use candle_nn::{Module, VarBuilder};

use crate::linear::{Linear, LinearLayers};
use noether_kinematics::FourMomentum;
use serde::{Deserialize, Serialize};

use crate::error::{Context, ModelError, Result};
use crate::mode::{dropout, Mode};
use crate::model::{
    block_index, check_dropout, check_layers, check_width, elements, stack_macs, ModelInput,
    PaddedJets, TaggerModel,
};
use crate::placement::Placement;
use crate::quantized::{dense, quantized_input, set_precisions};
use noether_quant::{FixedType, QuantConfig, QuantGraph};

/// Number of features from [`jet_features`].
pub const JET_FEATURES: usize = 7;

/// MLP hyper-parameters. Shapes: input `[B, n_input]`, output logits `[B, n_class]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlpConfig {
    /// Input features (7 for [`jet_features`]).
    pub n_input: usize,
    /// Hidden widths.
    pub sizes: Vec<usize>,
    /// Output classes.
    pub n_class: usize,
    /// Dropout after every hidden layer (training only).
    pub dropout: f64,
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            n_input: JET_FEATURES,
            sizes: vec![64, 64],
            n_class: 2,
            dropout: 0.0,
        }
    }
}

/// The MLP classifier (`hidden.{k}`, `head`).
#[derive(Debug, Clone)]
pub struct Mlp {
    hidden: Vec<Linear>,
    head: Linear,
    config: MlpConfig,
    /// The input type when quantised.
    quant: Option<FixedType>,
}

impl Mlp {
    /// Builds the network under `vb`.
    ///
    /// # Errors
    /// [`ModelError::Candle`] naming a missing or mis-shaped tensor.
    pub fn new(config: &MlpConfig, vb: &VarBuilder) -> Result<Self> {
        let mut width = config.n_input;
        let mut hidden = Vec::with_capacity(config.sizes.len());
        for (k, &size) in config.sizes.iter().enumerate() {
            hidden.push(
                Linear::new(width, size, vb.pp(format!("hidden.{k}")))
                    .context(&format!("building hidden.{k}"))?,
            );
            width = size;
        }
        Ok(Self {
            hidden,
            head: Linear::new(width, config.n_class, vb.pp("head")).context("building head")?,
            config: config.clone(),
            quant: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MlpConfig {
        &self.config
    }

    /// Logits `[B, n_class]` for features `[B, n_input]`.
    ///
    /// # Errors
    /// [`ModelError::BadInput`] for a wrong feature count.
    pub fn forward(&self, features: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        let dims = features.dims();
        if dims.len() != 2 || dims[1] != self.config.n_input {
            return Err(ModelError::BadInput {
                input: "features",
                expected: format!("[batch, {}]", self.config.n_input),
                found: dims.to_vec(),
            });
        }
        // In fixed point: inputs rounded to their type, f64 throughout, logits cast back.
        let run = |mode: &mut Mode| -> candle_core::Result<Tensor> {
            let mut x = match self.quant {
                Some(ty) => quantized_input(features, ty)?,
                None => features.clone(),
            };
            for layer in &self.hidden {
                x = dropout(&layer.forward(&x)?.relu()?, self.config.dropout, mode)?;
            }
            self.head.forward(&x)?.to_dtype(features.dtype())
        };
        run(mode).context("MLP forward")
    }
}

/// Jet-level features `[batch, 7]` from flat padded constituents (no beams), in f64:
/// ln(pT_J / GeV), m_J / pT_J, multiplicity / 100, girth sum_i z_i dR_i, p_TD =
/// sqrt(sum z_i^2), and the two leading momentum fractions.
///
/// # Errors
/// [`ModelError::BadInput`] for wrong lengths, [`ModelError::NonFinite`] for NaN.
pub fn jet_features(momenta: &[f32], mask: &[f32], batch: usize, nodes: usize) -> Result<Tensor> {
    Ok(crate::model::cpu_input::<JetFeatures>(momenta, mask, batch, nodes, 0)?.features)
}

/// The MLP's input: [`JET_FEATURES`] jet-level features per jet (see [`jet_features`]).
#[derive(Debug, Clone)]
pub struct JetFeatures {
    /// `[batch, JET_FEATURES]`.
    pub features: Tensor,
}

/// The [`JET_FEATURES`] features of jet `b`, in f64.
fn features_of(jets: &PaddedJets, b: usize) -> [f64; JET_FEATURES] {
    let particles: Vec<FourMomentum> = crate::jet_particles(jets, b)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let jet: FourMomentum = particles.iter().sum();
    let pt_jet = jet.pt().max(1e-9);
    let pt_sum: f64 = particles
        .iter()
        .map(FourMomentum::pt)
        .sum::<f64>()
        .max(1e-9);
    let mut z: Vec<f64> = particles.iter().map(|p| p.pt() / pt_sum).collect();
    let girth: f64 = particles
        .iter()
        .zip(&z)
        .filter(|(p, _)| p.pt() > 0.0)
        .map(|(p, zi)| zi * p.delta_r(&jet))
        .sum();
    let ptd = z.iter().map(|zi| zi * zi).sum::<f64>().sqrt();
    z.sort_by(|a, b| b.total_cmp(a));
    [
        pt_jet.ln(),
        jet.mass() / pt_jet,
        particles.len() as f64 / 100.0,
        girth,
        ptd,
        z.first().copied().unwrap_or(0.0),
        z.get(1).copied().unwrap_or(0.0),
    ]
}

impl ModelInput for JetFeatures {
    fn compute(jets: &PaddedJets, place: &Placement) -> Result<Self> {
        let values: Vec<f64> = (0..jets.jets).flat_map(|b| features_of(jets, b)).collect();
        let features = Tensor::from_vec(values, (jets.jets, JET_FEATURES), &place.device)
            .and_then(|t| t.to_dtype(place.dtype))
            .context("jet features")?;
        Ok(Self { features })
    }

    fn select(&self, rows: &Tensor) -> Result<Self> {
        Ok(Self {
            features: self
                .features
                .index_select(rows, 0)
                .context("feature rows")?,
        })
    }

    fn cat(parts: &[Self]) -> Result<Self> {
        let all: Vec<Tensor> = parts.iter().map(|p| p.features.clone()).collect();
        Ok(Self {
            features: Tensor::cat(&all, 0).context("jet features")?,
        })
    }

    fn len(&self) -> usize {
        self.features.dims().first().copied().unwrap_or(0)
    }
}

impl TaggerModel for Mlp {
    type Config = MlpConfig;
    type Input = JetFeatures;
    const BEAMS: &'static [[f32; 4]] = &[];

    fn check_config(c: &MlpConfig) -> Result<()> {
        check_width("n_input", c.n_input)?;
        check_layers("sizes (layers)", c.sizes.len())?;
        for (k, &width) in c.sizes.iter().enumerate() {
            check_width(&format!("sizes[{k}]"), width)?;
        }
        check_width("n_class", c.n_class)?;
        check_dropout("dropout", c.dropout)
    }

    fn new(config: &MlpConfig, vb: &VarBuilder) -> Result<Self> {
        Self::new(config, vb)
    }

    fn config(&self) -> &MlpConfig {
        &self.config
    }

    fn forward_t(&self, input: &JetFeatures, mode: &mut Mode) -> Result<Tensor> {
        self.forward(&input.features, mode)
    }

    fn head(_: &MlpConfig) -> &'static str {
        r"^head\."
    }

    fn depth(c: &MlpConfig, name: &str) -> Option<(usize, usize)> {
        let top = c.sizes.len();
        if let Some(k) = block_index(name, "hidden.") {
            (k < top).then_some((k, top))
        } else {
            name.starts_with("head.").then_some((top, top))
        }
    }

    fn classes(c: &MlpConfig) -> usize {
        c.n_class
    }

    /// The widest layer, per jet.
    fn activation_elements(c: &MlpConfig, jets: usize, _: usize) -> u128 {
        let width = c.sizes.iter().copied().fold(c.n_input, usize::max);
        elements(jets, 1, 0, width)
    }

    fn forward_flops(c: &MlpConfig, _: usize) -> u128 {
        let last = c.sizes.last().copied().unwrap_or(c.n_input);
        2 * (stack_macs(c.n_input, &c.sizes) + stack_macs(last, &[c.n_class]))
    }

    fn quantize(&mut self, quant: &QuantConfig) -> Option<Result<()>> {
        let set = set_precisions(self, quant, &[]);
        if set.is_ok() {
            self.quant = Some(quant.input);
        }
        Some(set)
    }

    fn quant_graph(&self) -> Option<Result<QuantGraph>> {
        let input = self.quant?;
        Some((|| {
            let mut jet = self
                .hidden
                .iter()
                .enumerate()
                .map(|(k, l)| dense(&format!("hidden.{k}"), l, true))
                .collect::<Result<Vec<_>>>()?;
            jet.push(dense("head", &self.head, false)?);
            Ok(QuantGraph {
                model: "mlp".into(),
                input,
                particles: None,
                pairs: None,
                slim: None,
                jet_features: self.config.n_input,
                jet,
            })
        })())
    }
}

/// Raw momenta of the first `n` constituents, flattened to `[batch, 4 n]` and divided by
/// `scale` GeV: the input of a deliberately non-invariant baseline.
///
/// # Errors
/// [`ModelError::BadInput`] for wrong lengths.
pub fn raw_momenta(
    momenta: &[f32],
    batch: usize,
    nodes: usize,
    n: usize,
    scale: f32,
) -> Result<Tensor> {
    if momenta.len() != batch * nodes * 4 || n > nodes {
        return Err(ModelError::BadInput {
            input: "momenta",
            expected: format!("[{batch}, {nodes} >= {n}, 4]"),
            found: vec![momenta.len()],
        });
    }
    let out: Vec<f32> = (0..batch)
        .flat_map(|b| {
            momenta[b * nodes * 4..(b * nodes + n) * 4]
                .iter()
                .map(|x| x / scale)
        })
        .collect();
    Tensor::from_vec(out, (batch, 4 * n), &Device::Cpu).context("raw momenta")
}

impl LinearLayers for Mlp {
    fn linear_layers_mut(&mut self) -> Vec<(String, &mut Linear)> {
        self.hidden
            .iter_mut()
            .enumerate()
            .map(|(k, l)| (format!("hidden.{k}"), l))
            .chain(std::iter::once(("head".to_owned(), &mut self.head)))
            .collect()
    }
}

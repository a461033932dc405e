//! Particle Flow and Energy Flow Networks (Komiske, Metodiev, Thaler, arXiv:1810.05165):
//! permutation-invariant Deep Sets on constituents, the standard non-Lorentz baselines.
//!
//! PFN: F(sum_i Phi(z_i, y_i, phi_i)); EFN (infrared and collinear safe):
//! F(sum_i z_i Phi(y_i, phi_i)), with z the momentum fraction and (y, phi) relative to
//! the jet axis, as EnergyFlow preprocesses them.

use candle_core::{Tensor, D};
use candle_nn::{Module, VarBuilder};

use crate::linear::{Linear, LinearLayers};
use noether_kinematics::FourMomentum;
use serde::{Deserialize, Serialize};

use crate::error::{Context, ModelError, Result};
use crate::mode::{dropout, Mode};
use crate::model::{
    block_index, check_dropout, check_width, check_widths, elements, stack_macs, ModelInput,
    PaddedJets, TaggerModel,
};
use crate::placement::Placement;
use crate::quantized::{dense, quantized_input, set_precisions};
use noether_quant::{FixedType, ParticleStage, Pooling, QuantConfig, QuantGraph};

/// Which flow network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowKind {
    /// Particle Flow Network: Phi sees (z, y, phi).
    Pfn,
    /// Energy Flow Network: Phi sees (y, phi), weighted by z.
    Efn,
}

/// PFN/EFN hyper-parameters (defaults: the paper's Phi = (100, 100, 128),
/// F = (100, 100, 100)). Shapes: input features `[B, N, 3]` (z, y, phi), mask `[B, N]`;
/// latent `[B, phi_sizes.last()]`; output logits `[B, n_class]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowConfig {
    /// PFN or EFN.
    pub kind: FlowKind,
    /// Widths of the per-particle network Phi.
    pub phi_sizes: Vec<usize>,
    /// Widths of the jet network F.
    pub f_sizes: Vec<usize>,
    /// Output classes.
    pub n_class: usize,
    /// Dropout between the layers of F (training only).
    pub dropout: f64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            kind: FlowKind::Pfn,
            phi_sizes: vec![100, 100, 128],
            f_sizes: vec![100, 100, 100],
            n_class: 2,
            dropout: 0.0,
        }
    }
}

/// Per-particle inputs of the flow networks.
#[derive(Debug, Clone)]
pub struct FlowInput {
    /// (z, y - y_jet, phi - phi_jet) per constituent, `[B, N, 3]`, zero for padding.
    pub features: Tensor,
    /// Constituent mask `[B, N]`.
    pub mask: Tensor,
}

impl FlowInput {
    /// Computes the features (in f64) from flat padded momenta `[batch, nodes, 4]`
    /// (constituents only, no beams) and the mask `[batch, nodes]`.
    ///
    /// # Errors
    /// [`ModelError::BadInput`] for wrong lengths, [`ModelError::NonFinite`] for NaN.
    pub fn from_flat(momenta: &[f32], mask: &[f32], batch: usize, nodes: usize) -> Result<Self> {
        crate::model::cpu_input(momenta, mask, batch, nodes, 0)
    }
}

impl ModelInput for FlowInput {
    /// (z, y - y_jet, phi - phi_jet) of every constituent, in f64 from the f64 momenta,
    /// cast to the model's dtype once.
    fn compute(jets: &PaddedJets, place: &Placement) -> Result<Self> {
        let (batch, nodes) = (jets.jets, jets.nodes);
        let mut features = vec![0f64; batch * nodes * 3];
        for b in 0..batch {
            let particles = crate::jet_particles(jets, b);
            let jet = particles.iter().fold(
                FourMomentum::new_unchecked(0.0, 0.0, 0.0, 0.0),
                |s, (_, p)| s + *p,
            );
            let pt_sum: f64 = particles.iter().map(|(_, p)| p.pt()).sum();
            for (i, p) in &particles {
                let k = (b * nodes + i) * 3;
                features[k] = p.pt() / pt_sum.max(f64::MIN_POSITIVE);
                if p.pt() > 0.0 {
                    features[k + 1] = p.rapidity() - jet.rapidity();
                    features[k + 2] = noether_kinematics::delta_phi(p.phi(), jet.phi());
                }
            }
        }
        let on = |t: candle_core::Result<Tensor>| t.and_then(|t| t.to_dtype(place.dtype));
        Ok(Self {
            features: on(Tensor::from_vec(features, (batch, nodes, 3), &place.device))
                .context("features")?,
            mask: on(Tensor::from_slice(jets.mask, (batch, nodes), &place.device))
                .context("mask")?,
        })
    }

    fn select(&self, rows: &Tensor) -> Result<Self> {
        Ok(Self {
            features: self
                .features
                .index_select(rows, 0)
                .context("features rows")?,
            mask: self.mask.index_select(rows, 0).context("mask rows")?,
        })
    }

    fn cat(parts: &[Self]) -> Result<Self> {
        let field = |f: fn(&Self) -> &Tensor| parts.iter().map(f).cloned().collect::<Vec<_>>();
        Ok(Self {
            features: Tensor::cat(&field(|p| &p.features), 0).context("features")?,
            mask: Tensor::cat(&field(|p| &p.mask), 0).context("mask")?,
        })
    }

    fn len(&self) -> usize {
        self.mask.dims().first().copied().unwrap_or(0)
    }
}

/// Builds a stack of linear layers `vb.pp("{name}.{k}")`.
fn stack(input: usize, sizes: &[usize], name: &str, vb: &VarBuilder) -> Result<Vec<Linear>> {
    let mut width = input;
    sizes
        .iter()
        .enumerate()
        .map(|(k, &size)| {
            let layer = Linear::new(width, size, vb.pp(format!("{name}.{k}")))
                .context(&format!("building {name}.{k}"));
            width = size;
            layer
        })
        .collect()
}

/// A Particle Flow or Energy Flow Network.
#[derive(Debug, Clone)]
pub struct FlowNetwork {
    phi: Vec<Linear>,
    f: Vec<Linear>,
    head: Linear,
    config: FlowConfig,
    /// Input and pooled-sum types when quantised.
    quant: Option<(FixedType, FixedType)>,
}

impl FlowNetwork {
    /// Builds the network under `vb` (`phi.{k}`, `f.{k}`, `head`).
    ///
    /// # Errors
    /// [`ModelError::Candle`] naming a missing or mis-shaped tensor;
    /// [`ModelError::BadInput`] for empty layer lists.
    pub fn new(config: &FlowConfig, vb: &VarBuilder) -> Result<Self> {
        let (Some(&latent), Some(&last)) = (config.phi_sizes.last(), config.f_sizes.last()) else {
            return Err(ModelError::BadInput {
                input: "phi_sizes/f_sizes",
                expected: "at least one layer each".into(),
                found: vec![config.phi_sizes.len(), config.f_sizes.len()],
            });
        };
        let phi_in = match config.kind {
            FlowKind::Pfn => 3,
            FlowKind::Efn => 2,
        };
        Ok(Self {
            phi: stack(phi_in, &config.phi_sizes, "phi", vb)?,
            f: stack(latent, &config.f_sizes, "f", vb)?,
            head: Linear::new(last, config.n_class, vb.pp("head")).context("building head")?,
            config: config.clone(),
            quant: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FlowConfig {
        &self.config
    }

    /// Logits `[B, n_class]`.
    ///
    /// # Errors
    /// [`ModelError::BadInput`] when features and mask disagree.
    pub fn forward(&self, input: &FlowInput, mode: &mut Mode) -> Result<Tensor> {
        let (b, n) = input.mask.dims2().context("mask")?;
        if input.features.dims() != [b, n, 3] {
            return Err(ModelError::BadInput {
                input: "features",
                expected: format!("[{b}, {n}, 3]"),
                found: input.features.dims().to_vec(),
            });
        }
        self.run(input, mode).context("flow network forward")
    }

    /// In fixed point the features are rounded to the input type and everything runs
    /// in f64 (exact sums), the pooled sum rounded to its type, the logits cast back.
    fn run(&self, input: &FlowInput, mode: &mut Mode) -> candle_core::Result<Tensor> {
        let (features, mask) = match self.quant {
            Some((ty, _)) => (
                quantized_input(&input.features, ty)?,
                input.mask.to_dtype(candle_core::DType::F64)?,
            ),
            None => (input.features.clone(), input.mask.clone()),
        };
        let mask = mask.unsqueeze(D::Minus1)?;
        let (mut x, weight) = match self.config.kind {
            FlowKind::Pfn => (features, mask),
            FlowKind::Efn => (
                features.narrow(D::Minus1, 1, 2)?,
                features.narrow(D::Minus1, 0, 1)?.broadcast_mul(&mask)?,
            ),
        };
        for layer in &self.phi {
            x = layer.forward(&x)?.relu()?;
        }
        let mut latent = x.broadcast_mul(&weight)?.sum(1)?;
        if let Some((_, pool)) = self.quant {
            latent = noether_quant::fake_quantize(&latent, pool)?;
        }
        for layer in &self.f {
            latent = dropout(&layer.forward(&latent)?.relu()?, self.config.dropout, mode)?;
        }
        self.head.forward(&latent)?.to_dtype(input.features.dtype())
    }
}

impl LinearLayers for FlowNetwork {
    fn linear_layers_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let phi = self.phi.iter_mut().enumerate();
        let f = self.f.iter_mut().enumerate();
        phi.map(|(k, l)| (format!("phi.{k}"), l))
            .chain(f.map(|(k, l)| (format!("f.{k}"), l)))
            .chain(std::iter::once(("head".to_owned(), &mut self.head)))
            .collect()
    }
}

impl TaggerModel for FlowNetwork {
    type Config = FlowConfig;
    type Input = FlowInput;
    const BEAMS: &'static [[f32; 4]] = &[];

    fn check_config(c: &FlowConfig) -> Result<()> {
        check_widths("phi_sizes", &c.phi_sizes)?;
        check_widths("f_sizes", &c.f_sizes)?;
        check_width("n_class", c.n_class)?;
        check_dropout("dropout", c.dropout)
    }

    fn new(config: &FlowConfig, vb: &VarBuilder) -> Result<Self> {
        Self::new(config, vb)
    }

    fn config(&self) -> &FlowConfig {
        &self.config
    }

    fn forward_t(&self, input: &FlowInput, mode: &mut Mode) -> Result<Tensor> {
        self.forward(input, mode)
    }

    fn head(_: &FlowConfig) -> &'static str {
        r"^head\."
    }

    fn depth(c: &FlowConfig, name: &str) -> Option<(usize, usize)> {
        let (phi, f) = (c.phi_sizes.len(), c.f_sizes.len());
        let top = phi + f;
        if let Some(k) = block_index(name, "phi.") {
            (k < phi).then_some((k, top))
        } else if let Some(k) = block_index(name, "f.") {
            (k < f).then_some((phi + k, top))
        } else {
            name.starts_with("head.").then_some((top, top))
        }
    }

    fn classes(c: &FlowConfig) -> usize {
        c.n_class
    }

    /// The per-particle map's widest layer.
    fn activation_elements(c: &FlowConfig, jets: usize, nodes: usize) -> u128 {
        let width = c
            .phi_sizes
            .iter()
            .chain(&c.f_sizes)
            .max()
            .copied()
            .unwrap_or(1);
        elements(jets, nodes, 1, width)
    }

    /// Phi on every padded particle, F and the head once per jet.
    fn forward_flops(c: &FlowConfig, nodes: usize) -> u128 {
        let phi_in = match c.kind {
            FlowKind::Pfn => 3,
            FlowKind::Efn => 2,
        };
        let latent = c.phi_sizes.last().copied().unwrap_or(1);
        let last = c.f_sizes.last().copied().unwrap_or(latent);
        let per_jet = stack_macs(latent, &c.f_sizes) + stack_macs(last, &[c.n_class]);
        2 * (nodes as u128 * stack_macs(phi_in, &c.phi_sizes) + per_jet)
    }

    fn quantize(&mut self, quant: &QuantConfig) -> Option<Result<()>> {
        let set = set_precisions(self, quant, &[]);
        if set.is_ok() {
            self.quant = Some((quant.input, quant.pool()));
        }
        Some(set)
    }

    /// Phi on every real particle, the (z-weighted) sum, F and the head.
    fn quant_graph(&self) -> Option<Result<QuantGraph>> {
        let (input, pool) = self.quant?;
        let stack = |name: &str, layers: &[Linear]| -> Result<Vec<noether_quant::Dense>> {
            let path = |k| format!("{name}.{k}");
            layers
                .iter()
                .enumerate()
                .map(|(k, l)| dense(&path(k), l, true))
                .collect()
        };
        Some((|| {
            let mut jet = stack("f", &self.f)?;
            jet.push(dense("head", &self.head, false)?);
            Ok(QuantGraph {
                model: match self.config.kind {
                    FlowKind::Pfn => "pfn",
                    FlowKind::Efn => "efn",
                }
                .into(),
                input,
                particles: Some(ParticleStage {
                    features: 3,
                    layers: stack("phi", &self.phi)?,
                    pooling: match self.config.kind {
                        FlowKind::Pfn => Pooling::Sum,
                        FlowKind::Efn => Pooling::Weighted(0),
                    },
                    pool,
                }),
                pairs: None,
                slim: None,
                jet_features: 0,
                jet,
            })
        })())
    }
}

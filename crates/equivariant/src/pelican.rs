//! PELICAN (Bogatskiy et al., arXiv:2307.16506): a permutation-equivariant network on the
//! pairwise Minkowski products d_ij = p_i . p_j, hence Lorentz invariant by construction.
//!
//! Data flow (`B` jets, `N` nodes = beams + padded constituents):
//! 1. embedding: `[B, N, N]` dots -> `[B, N, N, n_embed]` via
//!    f_alpha(x) = sgn(x) ((1 + |x|)^(alpha^2) - 1) / alpha^2 with one learnable alpha per
//!    channel, then masked BatchNorm;
//! 2. spurion labels (beam / particle one-hot, `[B, N, 2]`) lifted by [`Eq1to2`] to
//!    `n_label` channels and concatenated;
//! 3. `n_layers` blocks: per-pair message MLP (Linear, LeakyReLU, masked BatchNorm) to
//!    `n_msg` channels, then [`Eq2to2`] to `n_hidden` channels, dropout;
//! 4. readout: message MLP, [`Eq2to0`] to `n_readout`, LeakyReLU, Linear to `n_class`.

use candle_core::{DType, Shape, Tensor, D};
use candle_nn::{Init, Module, VarBuilder};
use noether_quant::{
    embed_dot, FixedType, PairLayer, PairOps, PairStage, QuantConfig, QuantError, QuantGraph,
};

use crate::linear::{Linear, LinearLayers};
use serde::{Deserialize, Serialize};

use crate::aggregate::{Eq1to2, Eq2to0, Eq2to2, PairMask, PairQuant, QuantizedParameters};
use crate::batch_norm::MaskedBatchNorm;
use crate::dense::mul_rows;
use crate::error::{Context, ModelError, Result};
use crate::fused::PairMessage;
use crate::mode::{dropout_mask, Mode};
use crate::model::{
    bad, block_index, check_dropout, check_layers, check_positive, check_width, elements,
    stack_macs, ModelInput, PaddedJets, TaggerModel,
};
use crate::placement::Placement;
use crate::quantized::{dense, set_precisions};

/// PELICAN hyper-parameters. Shapes: input dots `[B, N, N]`, mask `[B, N]`, labels
/// `[B, N, 2]`; output logits `[B, n_class]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PelicanConfig {
    /// Embedding channels (one learnable f_alpha each).
    pub n_embed: usize,
    /// Channels carrying the beam/particle labels.
    pub n_label: usize,
    /// Width of the per-pair message MLPs.
    pub n_msg: usize,
    /// Channels out of every [`Eq2to2`] layer.
    pub n_hidden: usize,
    /// Number of equivariant blocks.
    pub n_layers: usize,
    /// Width of the invariant readout.
    pub n_readout: usize,
    /// Output classes.
    pub n_class: usize,
    /// Dropout after every block (training only).
    pub dropout: f64,
    /// Typical number of nodes, the scale of the `(n / n_avg)^alpha` aggregation factors.
    pub n_avg: f64,
}

impl Default for PelicanConfig {
    /// About 190k parameters, the size of the paper's top-tagging model (208k).
    fn default() -> Self {
        Self {
            n_embed: 10,
            n_label: 2,
            n_msg: 48,
            n_hidden: 60,
            n_layers: 4,
            n_readout: 32,
            n_class: 2,
            dropout: 0.1,
            n_avg: 50.0,
        }
    }
}

impl PelicanConfig {
    /// About 1.3k parameters: the smallest configuration of the paper's data-limited study.
    pub fn tiny() -> Self {
        Self {
            n_embed: 4,
            n_label: 2,
            n_msg: 6,
            n_hidden: 6,
            n_layers: 2,
            n_readout: 6,
            dropout: 0.0,
            ..Self::default()
        }
    }

    /// About 12k parameters: a CPU-sized model.
    pub fn small() -> Self {
        Self {
            n_embed: 8,
            n_label: 2,
            n_msg: 16,
            n_hidden: 16,
            n_layers: 3,
            n_readout: 16,
            dropout: 0.0,
            ..Self::default()
        }
    }
}

/// PELICAN's beams: (1, 0, 0, +-1) GeV.
pub const PELICAN_BEAMS: &[[f32; 4]] = &[[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, -1.0]];

/// A batch of jets as PELICAN sees it.
#[derive(Debug, Clone)]
pub struct PelicanInput {
    /// Pairwise Minkowski products `[B, N, N]` (zero outside the mask).
    pub dots: Tensor,
    /// Node mask `[B, N]`.
    pub mask: Tensor,
    /// Spurion labels `[B, N, 2]`: (particle, beam) one-hot, zero for padding.
    pub labels: Tensor,
}

impl PelicanInput {
    /// From flat padded f32 momenta `[batch, nodes, 4]` with `beams` leading beam nodes
    /// (as `noether_data::Batch` holds them), widened to f64 before the products.
    ///
    /// # Errors
    /// [`ModelError::BadInput`] for wrong lengths, [`ModelError::NonFinite`] for NaN.
    pub fn from_flat(
        momenta: &[f32],
        mask: &[f32],
        batch: usize,
        nodes: usize,
        beams: usize,
    ) -> Result<Self> {
        crate::model::cpu_input(momenta, mask, batch, nodes, beams)
    }

    /// From flat padded f64 momenta: the Lorentz-invariant path, since the products are
    /// formed before any rounding to f32 (see [`ModelInput::compute`]).
    ///
    /// # Errors
    /// [`ModelError::BadInput`] for wrong lengths, [`ModelError::NonFinite`] for NaN.
    pub fn from_flat_f64(
        momenta: &[f64],
        mask: &[f32],
        batch: usize,
        nodes: usize,
        beams: usize,
    ) -> Result<Self> {
        crate::model::cpu_input_f64(momenta, mask, batch, nodes, beams)
    }

    /// One jet alone with PELICAN's beams prepended.
    ///
    /// # Errors
    /// [`ModelError::NonFinite`] for NaN or infinite momenta.
    pub fn single_jet(constituents: &[[f32; 4]]) -> Result<Self> {
        let (momenta, mask, nodes) = crate::single_jet_flat(PELICAN_BEAMS, constituents);
        Self::from_flat(&momenta, &mask, 1, nodes, PELICAN_BEAMS.len())
    }
}

/// A per-pair MLP layer: Linear, LeakyReLU, masked BatchNorm.
#[derive(Debug, Clone)]
struct Message {
    linear: Linear,
    norm: MaskedBatchNorm,
}

impl Message {
    fn new(c_in: usize, c_out: usize, vb: &VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            linear: Linear::new(c_in, c_out, vb.pp("linear"))?,
            norm: MaskedBatchNorm::new(c_out, &vb.pp("norm"))?,
        })
    }

    /// The fixed-point message: the quantised linear layer, ReLU, masked (no BatchNorm).
    fn forward_quantized(&self, t: &Tensor, mask: &PairMask) -> candle_core::Result<Tensor> {
        let (b, n, _, c) = t.dims4()?;
        self.linear
            .forward_rows(&t.reshape((b * n * n, c))?)?
            .relu()?
            .reshape((b, n, n, ()))?
            .broadcast_mul(&mask.pair)
    }

    fn forward(&self, t: &Tensor, mask: &PairMask, train: bool) -> candle_core::Result<Tensor> {
        let fused = t.device().is_cpu()
            && matches!(t.dtype(), DType::F32 | DType::F64)
            && mask.pair.dtype() == t.dtype()
            && self.linear.precision().is_none();
        if fused {
            self.forward_fused(t, mask, train)
        } else {
            self.forward_composed(t, mask, train)
        }
    }

    /// The layer as one fused CPU kernel ([`PairMessage`]).
    fn forward_fused(
        &self,
        t: &Tensor,
        mask: &PairMask,
        train: bool,
    ) -> candle_core::Result<Tensor> {
        let (b, n, _, c) = t.dims4()?;
        let weight = self.linear.effective_weight()?;
        let c_out = weight.dim(0)?;
        let bias = match self.linear.bias() {
            Some(bias) => bias.clone(),
            None => Tensor::zeros(c_out, t.dtype(), t.device())?,
        };
        let (gamma, beta, eps) = self.norm.affine();
        let (running_mean, running_var) = self.norm.running();
        let op = PairMessage {
            c_in: c,
            c_out,
            slope: 0.01,
            eps,
            train,
        };
        let params =
            PairMessage::pack(&[&weight, &bias, gamma, beta, &running_mean, &running_var])?;
        let rows = mask.pair.reshape(b * n * n)?;
        // `t` as it is, `[B, N, N, C]`: no reshape nodes in candle's graph (each would cost
        // a zero-filled buffer and a sum of the whole gradient in the backward).
        let out = op
            .apply(t, &rows, &params)
            .map_err(candle_core::Error::wrap)?;
        if let Some((mean, var, count)) = &out.batch_stats {
            self.norm.update_running(mean, var, count.max(1.0))?;
        }
        Ok(out.output)
    }

    /// The layer composed from candle operations (any device and dtype).
    fn forward_composed(
        &self,
        t: &Tensor,
        mask: &PairMask,
        train: bool,
    ) -> candle_core::Result<Tensor> {
        let (b, n, _, c) = t.dims4()?;
        let rows = self.linear.forward_rows(&t.reshape((b * n * n, c))?)?;
        let x = candle_nn::ops::leaky_relu(&rows, 0.01)?.reshape((b, n, n, ()))?;
        let pair = mask.pair.squeeze(D::Minus1)?;
        self.norm
            .forward(&x, &pair, train)?
            .broadcast_mul(&mask.pair)
    }
}

/// The PELICAN classifier.
#[derive(Debug, Clone)]
pub struct Pelican {
    alphas: Tensor,
    embed_norm: MaskedBatchNorm,
    labels: Eq1to2,
    blocks: Vec<(Message, Eq2to2)>,
    readout_msg: Message,
    readout: Eq2to0,
    head: Linear,
    config: PelicanConfig,
    /// The fixed-point form, when quantised.
    quant: Option<PelicanQuant>,
}

/// PELICAN's fixed-point settings (the semantics are `noether_quant::PairStage`'s).
#[derive(Debug, Clone)]
struct PelicanQuant {
    /// The type of the embedded products (and of the labels layer's result).
    input: FixedType,
    labels: PairQuant,
    blocks: Vec<PairQuant>,
    readout: PairQuant,
}

impl Pelican {
    /// Builds the model under `vb`.
    ///
    /// # Errors
    /// [`ModelError::Candle`] naming a missing or mis-shaped tensor.
    pub fn new(config: &PelicanConfig, vb: &VarBuilder) -> Result<Self> {
        let c = config;
        // Exponents drawn from [0.05, 0.5], the range of PELICAN's initial linspace.
        let alphas = vb
            .get_with_hints(
                c.n_embed,
                "embed.alphas",
                Init::Uniform { lo: 0.05, up: 0.5 },
            )
            .context("building embed.alphas")?;
        let c_in = c.n_embed + c.n_label;
        let blocks = (0..c.n_layers)
            .map(|i| {
                let vb = vb.pp(format!("blocks.{i}"));
                let width = if i == 0 { c_in } else { c.n_hidden };
                Ok((
                    Message::new(width, c.n_msg, &vb.pp("message"))?,
                    Eq2to2::new(c.n_msg, c.n_hidden, &vb.pp("eq2to2"))?,
                ))
            })
            .collect::<candle_core::Result<Vec<_>>>()
            .context("building blocks")?;
        let last = if c.n_layers == 0 { c_in } else { c.n_hidden };
        Ok(Self {
            alphas,
            embed_norm: MaskedBatchNorm::new(c.n_embed, &vb.pp("embed.norm"))
                .context("building embed.norm")?,
            labels: Eq1to2::new(2, c.n_label, &vb.pp("labels")).context("building labels")?,
            blocks,
            readout_msg: Message::new(last, c.n_msg, &vb.pp("readout.message"))
                .context("building readout.message")?,
            readout: Eq2to0::new(c.n_msg, c.n_readout, &vb.pp("readout.eq2to0"))
                .context("building readout.eq2to0")?,
            head: Linear::new(c.n_readout, c.n_class, vb.pp("head")).context("building head")?,
            config: config.clone(),
            quant: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PelicanConfig {
        &self.config
    }

    /// Logits `[B, n_class]`.
    ///
    /// # Errors
    /// [`ModelError::BadInput`] for inconsistent shapes.
    pub fn forward(&self, input: &PelicanInput, mode: &mut Mode) -> Result<Tensor> {
        let (b, n) = input.mask.dims2().context("mask")?;
        if input.dots.dims() != [b, n, n] {
            return Err(ModelError::BadInput {
                input: "dots",
                expected: format!("[{b}, {n}, {n}] (from the mask)"),
                found: input.dots.dims().to_vec(),
            });
        }
        if input.labels.dims() != [b, n, 2] {
            return Err(ModelError::BadInput {
                input: "labels",
                expected: format!("[{b}, {n}, 2]"),
                found: input.labels.dims().to_vec(),
            });
        }
        crate::fused::model_pass(input.dots.device(), || self.run(input, mode))
            .context("PELICAN forward")
    }

    /// f_alpha embedding of the dots: `[B, N, N, n_embed]`.
    fn embed(&self, dots: &Tensor) -> candle_core::Result<Tensor> {
        let (b, n, _) = dots.dims3()?;
        let x = dots.reshape((b * n * n, 1))?;
        let log1p = (x.abs()? + 1.0)?.log()?;
        let a2 = (self.alphas.sqr()? + 1e-6)?.unsqueeze(0)?;
        // Rows times exponents as a matrix product: its backward needs no reduction.
        let powered = mul_rows(&(log1p.matmul(&a2)?.exp()? - 1.0)?, &a2.recip()?)?;
        x.sign()?.broadcast_mul(&powered)?.reshape((b, n, n, ()))
    }

    fn run(&self, input: &PelicanInput, mode: &mut Mode) -> candle_core::Result<Tensor> {
        if let Some(q) = &self.quant {
            return self.run_quantized(input, q);
        }
        let train = mode.is_train();
        let mask = PairMask::new(&input.mask, self.config.n_avg)?;
        let pair = mask.pair.squeeze(D::Minus1)?;
        let embedded = self
            .embed_norm
            .forward(&self.embed(&input.dots)?, &pair, train)?
            .broadcast_mul(&mask.pair)?;
        let labels = self.labels.forward(&input.labels, &mask)?;
        let mut t = Tensor::cat(&[embedded, labels], D::Minus1)?;
        let (b, n) = mask.node.dims2()?;
        for (message, eq) in &self.blocks {
            let m = message.forward(&t, &mask, train)?;
            let shape = Shape::from((b, n, n, eq.c_out()));
            let dropped = dropout_mask(&shape, m.dtype(), m.device(), self.config.dropout, mode)?;
            // Masked already (LeakyReLU and dropout keep zeros zero); the dropout applied
            // in the layer's kernel.
            t = eq.forward_dropped(&m, &mask, Some(0.01), dropped.as_ref())?;
        }
        let m = self.readout_msg.forward(&t, &mask, train)?;
        let features = candle_nn::ops::leaky_relu(&self.readout.forward(&m, &mask)?, 0.01)?;
        self.head.forward(&features)
    }
}

/// The fixed-point form: hardware arithmetic in place of what the float model learns or
/// divides (see `noether_quant::PairStage`): frozen embedding exponents, aggregates as
/// sums times `2^-shift` with `n_avg = 2^shift`, ReLU for LeakyReLU, no BatchNorm, no
/// dropout. Everything runs in f64, where the sums are exact.
impl Pelican {
    /// The equivariant layers' paths, for `[quant.layers]`.
    fn pair_layer_paths(&self) -> Vec<String> {
        let blocks = (0..self.blocks.len()).map(|i| format!("blocks.{i}.eq2to2"));
        ["labels".to_owned()]
            .into_iter()
            .chain(blocks)
            .chain(["readout.eq2to0".to_owned()])
            .collect()
    }

    /// Sets the fixed-point form from the `[quant]` section.
    fn set_quant(&mut self, quant: &QuantConfig) -> Result<()> {
        let c = &self.config;
        let shift = c.n_avg.log2();
        if !(shift >= 0.0 && shift.fract() == 0.0 && shift <= 16.0) {
            return Err(bad(
                "n_avg",
                &c.n_avg,
                "under quantisation the aggregates are sums divided by n_avg, a shift: it \
                 must be a power of two (1 to 65536)"
                    .into(),
            ));
        }
        if c.dropout > 0.0 {
            return Err(bad(
                "dropout",
                &c.dropout,
                "a quantised model has no dropout (it would leave the fixed-point grid)".into(),
            ));
        }
        if let Some(result) = quant.layers.get("labels").and_then(|o| o.result) {
            return Err(QuantError::BadSetting {
                setting: "layers.\"labels\".result".into(),
                detail: format!(
                    "{result}: the labels' channels join the embedded products, so their \
                     result type is the input type {}",
                    quant.input
                ),
            }
            .into());
        }
        set_precisions(self, quant, &self.pair_layer_paths())?;
        let shift = shift as u32;
        let pair = |path: &str, relu: bool| PairQuant {
            precision: quant.layer(path),
            pool: quant.pool(),
            shift,
            relu,
        };
        let mut labels = pair("labels", false);
        labels.precision.result = quant.input;
        self.quant = Some(PelicanQuant {
            input: quant.input,
            labels,
            blocks: (0..self.blocks.len())
                .map(|i| pair(&format!("blocks.{i}.eq2to2"), true))
                .collect(),
            readout: pair("readout.eq2to0", true),
        });
        Ok(())
    }

    /// The embedding exponents as the engine reads them.
    fn frozen_alphas(&self) -> candle_core::Result<Vec<f32>> {
        self.alphas.to_dtype(DType::F32)?.to_vec1::<f32>()
    }

    /// The embedded products rounded to the input type, `[B, N, N, n_embed]` in f64,
    /// masked: [`noether_quant::embed_dot`] per product and channel, as the engine does.
    fn embed_quantized(
        &self,
        dots: &Tensor,
        ty: FixedType,
        mask: &PairMask,
    ) -> candle_core::Result<Tensor> {
        let (b, n, _) = dots.dims3()?;
        let alphas = self.frozen_alphas()?;
        let values: Vec<f64> = dots
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .flat_map(|d| alphas.iter().map(move |&a| ty.quantize(embed_dot(d, a))))
            .collect();
        Tensor::from_vec(values, (b, n, n, alphas.len()), dots.device())?.broadcast_mul(&mask.pair)
    }

    /// The fixed-point forward: f64 throughout, the logits (values of the head's result
    /// type) cast back to the model's dtype.
    fn run_quantized(&self, input: &PelicanInput, q: &PelicanQuant) -> candle_core::Result<Tensor> {
        let mask = PairMask::new(&input.mask.to_dtype(DType::F64)?, self.config.n_avg)?;
        let embedded = self.embed_quantized(&input.dots, q.input, &mask)?;
        let labels =
            self.labels
                .forward_quantized(&input.labels.to_dtype(DType::F64)?, &mask, &q.labels)?;
        let mut t = Tensor::cat(&[embedded, labels], D::Minus1)?;
        for ((message, eq), pq) in self.blocks.iter().zip(&q.blocks) {
            let m = message.forward_quantized(&t, &mask)?;
            t = eq.forward_quantized(&m, &mask, pq)?;
        }
        let m = self.readout_msg.forward_quantized(&t, &mask)?;
        let features = self.readout.forward_quantized(&m, &mask, &q.readout)?;
        self.head.forward(&features)?.to_dtype(input.dots.dtype())
    }

    /// The quantised model in hardware terms.
    fn graph(&self, q: &PelicanQuant) -> Result<QuantGraph> {
        let values = |t: &Tensor, what: &str| -> Result<Vec<f64>> {
            t.flatten_all()
                .and_then(|t| t.to_vec1::<f64>())
                .context(what)
        };
        let pair = |name: &str,
                    ops: PairOps,
                    layer: QuantizedParameters,
                    pq: &PairQuant|
         -> Result<PairLayer> {
            let dims = layer.weight.dims().to_vec();
            Ok(PairLayer {
                name: name.to_owned(),
                ops,
                inputs: dims[1],
                outputs: dims[2],
                weight: values(&layer.weight, name)?,
                bias: values(&layer.bias, name)?,
                diag_bias: match &layer.diag_bias {
                    Some(d) => values(d, name)?,
                    None => Vec::new(),
                },
                precision: pq.precision,
                relu: pq.relu,
            })
        };
        let blocks = self
            .blocks
            .iter()
            .zip(&q.blocks)
            .enumerate()
            .map(|(i, ((message, eq), pq))| {
                let path = format!("blocks.{i}.eq2to2");
                Ok((
                    dense(&format!("blocks.{i}.message.linear"), &message.linear, true)?,
                    pair(
                        &path,
                        PairOps::PairToPair,
                        eq.quantized_parameters(pq.precision).context(&path)?,
                        pq,
                    )?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let readout = self
            .readout
            .quantized_parameters(q.readout.precision)
            .context("readout.eq2to0")?;
        let labels = self
            .labels
            .quantized_parameters(q.labels.precision)
            .context("labels")?;
        Ok(QuantGraph {
            model: "pelican".into(),
            input: q.input,
            particles: None,
            slim: None,
            pairs: Some(PairStage {
                alphas: self.frozen_alphas().context("embed.alphas")?,
                labels: pair("labels", PairOps::NodeToPair, labels, &q.labels)?,
                blocks,
                readout_message: dense("readout.message.linear", &self.readout_msg.linear, true)?,
                readout: pair("readout.eq2to0", PairOps::PairToJet, readout, &q.readout)?,
                pool: q.readout.pool,
                shift: q.readout.shift,
            }),
            jet_features: 0,
            jet: vec![dense("head", &self.head, false)?],
        })
    }
}

impl LinearLayers for Pelican {
    /// The message layers (`blocks.{i}.message.linear`, `readout.message.linear`) and
    /// `head`; the equivariant basis maps are not plain linear layers.
    fn linear_layers_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut layers: Vec<(String, &mut Linear)> = self
            .blocks
            .iter_mut()
            .enumerate()
            .map(|(i, (message, _))| (format!("blocks.{i}.message.linear"), &mut message.linear))
            .collect();
        layers.push((
            "readout.message.linear".to_owned(),
            &mut self.readout_msg.linear,
        ));
        layers.push(("head".to_owned(), &mut self.head));
        layers
    }
}

/// The pairwise Minkowski products of one jet's nodes, `[nodes, nodes]` row-major, zero
/// where either node is padding. Constituent pairs use the cancellation-free form of
/// [`noether_kinematics::invariants::pairwise_stable_dots`] (relative error ~1e-12 even
/// for collinear pairs, where E_i E_j - p_i . p_j loses every digit in f32 and half of
/// them in f64); pairs with a beam or a particle without finite rapidity (pT = m = 0)
/// use the direct f64 product, which is exact for the beams' (1, 0, 0, +-1).
fn jet_dots(jets: &PaddedJets, b: usize) -> Vec<f64> {
    use noether_kinematics::invariants::{pairwise_stable_dots, PtYPhiM};
    let n = jets.nodes;
    let mut dots = vec![0.0; n * n];
    let four = |i: usize| {
        let [e, px, py, pz] = jets.node(b, i);
        noether_kinematics::FourMomentum::new_unchecked(e, px, py, pz)
    };
    let stable: Vec<usize> = (jets.beams..n)
        .filter(|&i| jets.is_real(b, i))
        .filter(|&i| {
            let p = four(i);
            p.pt() > 0.0 || p.mass() > 0.0
        })
        .collect();
    let coordinates: Vec<PtYPhiM<f64>> = stable
        .iter()
        .map(|&i| PtYPhiM::from_four_momentum(&four(i)))
        .collect();
    let products = pairwise_stable_dots(&coordinates);
    let mut done = vec![false; n * n];
    for (a, &i) in stable.iter().enumerate() {
        for (c, &j) in stable.iter().enumerate() {
            dots[i * n + j] = products[a * stable.len() + c];
            done[i * n + j] = true;
        }
    }
    for i in (0..n).filter(|&i| jets.is_real(b, i)) {
        for j in (0..n).filter(|&j| jets.is_real(b, j) && !done[i * n + j]) {
            let (p, q) = (jets.node(b, i), jets.node(b, j));
            dots[i * n + j] = p[0] * q[0] - p[1] * q[1] - p[2] * q[2] - p[3] * q[3];
        }
    }
    dots
}

impl ModelInput for PelicanInput {
    /// The products (in f64, cancellation-free for constituent pairs) and labels, cast to
    /// the model's dtype once.
    fn compute(jets: &PaddedJets, place: &Placement) -> Result<Self> {
        let (batch, nodes) = (jets.jets, jets.nodes);
        let mut dots = Vec::with_capacity(batch * nodes * nodes);
        let mut labels = vec![0f32; batch * nodes * 2];
        for b in 0..batch {
            dots.extend(jet_dots(jets, b));
            for i in 0..nodes {
                let label = usize::from(i < jets.beams);
                labels[(b * nodes + i) * 2 + label] = jets.mask[b * nodes + i];
            }
        }
        let on = |t: candle_core::Result<Tensor>| t.and_then(|t| t.to_dtype(place.dtype));
        Ok(Self {
            dots: on(Tensor::from_vec(dots, (batch, nodes, nodes), &place.device))
                .context("dots")?,
            mask: on(Tensor::from_slice(jets.mask, (batch, nodes), &place.device))
                .context("mask")?,
            labels: on(Tensor::from_vec(labels, (batch, nodes, 2), &place.device))
                .context("labels")?,
        })
    }

    fn select(&self, rows: &Tensor) -> Result<Self> {
        Ok(Self {
            dots: self.dots.index_select(rows, 0).context("dots rows")?,
            mask: self.mask.index_select(rows, 0).context("mask rows")?,
            labels: self.labels.index_select(rows, 0).context("labels rows")?,
        })
    }

    fn cat(parts: &[Self]) -> Result<Self> {
        let field = |f: fn(&Self) -> &Tensor| parts.iter().map(f).cloned().collect::<Vec<_>>();
        Ok(Self {
            dots: Tensor::cat(&field(|p| &p.dots), 0).context("dots")?,
            mask: Tensor::cat(&field(|p| &p.mask), 0).context("mask")?,
            labels: Tensor::cat(&field(|p| &p.labels), 0).context("labels")?,
        })
    }

    fn len(&self) -> usize {
        self.mask.dims().first().copied().unwrap_or(0)
    }
}

impl TaggerModel for Pelican {
    type Config = PelicanConfig;
    type Input = PelicanInput;
    const BEAMS: &'static [[f32; 4]] = PELICAN_BEAMS;

    fn check_config(c: &PelicanConfig) -> Result<()> {
        for (key, value) in [
            ("n_embed", c.n_embed),
            ("n_label", c.n_label),
            ("n_msg", c.n_msg),
            ("n_hidden", c.n_hidden),
            ("n_readout", c.n_readout),
            ("n_class", c.n_class),
        ] {
            check_width(key, value)?;
        }
        check_layers("n_layers", c.n_layers)?;
        check_positive("n_avg", c.n_avg)?;
        check_dropout("dropout", c.dropout)
    }

    fn new(config: &PelicanConfig, vb: &VarBuilder) -> Result<Self> {
        Self::new(config, vb)
    }

    fn config(&self) -> &PelicanConfig {
        &self.config
    }

    fn forward_t(&self, input: &PelicanInput, mode: &mut Mode) -> Result<Tensor> {
        self.forward(input, mode)
    }

    fn head(_: &PelicanConfig) -> &'static str {
        r"^head\."
    }

    fn depth(c: &PelicanConfig, name: &str) -> Option<(usize, usize)> {
        let top = c.n_layers + 1;
        if name.starts_with("embed.") || name.starts_with("labels.") {
            Some((0, top))
        } else if let Some(i) = block_index(name, "blocks.") {
            (i < c.n_layers).then_some((i + 1, top))
        } else {
            (name.starts_with("readout.") || name.starts_with("head.")).then_some((top, top))
        }
    }

    fn classes(c: &PelicanConfig) -> usize {
        c.n_class
    }

    fn quantize(&mut self, quant: &QuantConfig) -> Option<Result<()>> {
        Some(self.set_quant(quant))
    }

    /// Embedding, labels, blocks and readout as a pair stage, then the head.
    fn quant_graph(&self) -> Option<Result<QuantGraph>> {
        self.quant.as_ref().map(|q| self.graph(q))
    }

    /// The 15 permutation-equivariant aggregations of a 2 -> 2 layer, concatenated per
    /// pair at the widest channel count.
    fn activation_elements(c: &PelicanConfig, jets: usize, nodes: usize) -> u128 {
        let width = c.n_embed.max(c.n_hidden).max(c.n_msg);
        elements(jets, nodes, 2, 15 * width)
    }

    /// As the PELICAN authors' code computes it: every message layer on all n^2 pairs,
    /// each equivariant layer as one product of its basis (15 pair maps for 2->2, 5 for
    /// the labels' 1->2, 2 for the 2->0 readout) with its coefficients.
    fn forward_flops(c: &PelicanConfig, nodes: usize) -> u128 {
        let pairs = (nodes as u128).pow(2);
        let c_in = c.n_embed + c.n_label;
        let blocks: u128 = (0..c.n_layers)
            .map(|i| {
                let width = if i == 0 { c_in } else { c.n_hidden };
                pairs * (stack_macs(width, &[c.n_msg]) + 15 * stack_macs(c.n_msg, &[c.n_hidden]))
            })
            .sum();
        let last = if c.n_layers == 0 { c_in } else { c.n_hidden };
        let labels = pairs * 5 * stack_macs(2, &[c.n_label]);
        let readout =
            pairs * stack_macs(last, &[c.n_msg]) + 2 * stack_macs(c.n_msg, &[c.n_readout]);
        2 * (labels + blocks + readout + stack_macs(c.n_readout, &[c.n_class]))
    }
}

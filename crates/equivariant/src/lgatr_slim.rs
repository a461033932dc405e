//! L-GATr-slim (arXiv:2512.17011), the Lorentz-equivariant transformer on vectors and
//! scalars, exactly as `lgatr.nets.LGATrSlim` of the `lgatr` 2.0 package builds it
//! (`linear_in`, `blocks.{i}` of [`SlimBlock`], `linear_out`, with the package's
//! state-dict keys), and the top tagger around it as the tagging-guide's
//! `LGATrSlimWrapper` builds one: four-momenta as one vector channel, the beam and time
//! spurions `(1, 0, 0, +-1)`, `(1, 0, 0, 0)` as extra tokens, the seven tagging features as
//! scalars, a global class token (or a masked mean) read out as the logits
//! ([`crate::tokens`]).
//!
//! The 2.0 release is the definition: the package's repository has moved on since (its
//! `SlimRMSNorm` gained a `split_norm` option, separate factors for vectors and scalars,
//! and a `slim_pseudo_layers.py` module appeared); neither is in 2.0 and
//! neither is offered here. Facts of 2.0 that are easy to get wrong and are followed:
//! GELU in its tanh approximation, sigmoid vector gates with the factor 1/2,
//! `max(v / heads, 1)` vector and `max(s / heads, 4)` scalar channels per head, q, k *and*
//! v normalised before attention, heads interleaved fastest in the projection's output
//! channels but merged head-major, and the RMS norm's epsilon 0.01 added to the mean.

use candle_core::{DType, Tensor, D};
use candle_nn::VarBuilder;
use noether_quant::{FixedType, QuantConfig, QuantGraph};
use serde::{Deserialize, Serialize};

use crate::attention::key_bias;
use crate::error::{Context, ModelError, Result};
use crate::linear::{Linear, LinearLayers};
use crate::mode::Mode;
use crate::model::{
    bad, check_dropout, check_layers, check_positive, check_width, elements, stack_depth,
    PaddedJets, TaggerModel,
};
use crate::placement::Placement;
use crate::quantized::{dense, quantized_input};
use crate::slim_kernel::{self, SlimLayers};
use crate::slim_layers::{Nonlinearity, SlimBlock, SlimBlockShape, SlimLinear, SlimSelfAttention};
use crate::tokens::{Canonicalize, TaggingFeatures, TokenInput, TokenRecipe};

/// The beam spurions `(1, 0, 0, +-1)` and the time reference `(1, 0, 0, 0)` (the
/// tagging-guide's `beam_reference: lightlike`, `two_beams`, `add_time_reference`).
pub const LGATR_SPURIONS: [[f32; 4]; 3] = [
    [1.0, 0.0, 0.0, 1.0],
    [1.0, 0.0, 0.0, -1.0],
    [1.0, 0.0, 0.0, 0.0],
];

/// The shape of an `LGATrSlim` network: its constructor's arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LGatrSlimConfig {
    /// Hidden vector channels.
    pub hidden_v_channels: usize,
    /// Hidden scalar channels.
    pub hidden_s_channels: usize,
    /// Transformer blocks.
    pub num_blocks: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Scalar-gate nonlinearity.
    pub nonlinearity: Nonlinearity,
    /// Vector-gate nonlinearity.
    pub nonlinearity_v: Nonlinearity,
    /// MLP widening.
    pub mlp_ratio: usize,
    /// Attention widening.
    pub attn_ratio: usize,
    /// Layers per MLP (>= 2).
    pub num_layers_mlp: usize,
    /// Dropout probability; absent: no dropout layers (the package's `None`).
    pub dropout_prob: Option<f64>,
    /// Whether the block norms learn gains.
    pub norm_elementwise_affine: bool,
    /// Output classes (the scalar outputs of the class token).
    pub n_class: usize,
    /// GeV per unit of the constituents' four-momenta.
    pub units: f64,
    /// Read out a masked mean over tokens instead of a global class token.
    pub mean_aggregation: bool,
    /// Canonicalisation of the jets (see [`crate::tokens`]).
    pub canonicalize: Canonicalize,
    /// The tagging features among the scalar inputs (the tagging-guide's
    /// `data.tagging_features`; default all seven).
    pub tagging_features: TaggingFeatures,
}

impl Default for LGatrSlimConfig {
    /// The paper's size 0 (tagging-guide `slim.yaml` at `size: 0`).
    fn default() -> Self {
        Self {
            hidden_v_channels: 32,
            hidden_s_channels: 128,
            num_blocks: 8,
            num_heads: 8,
            nonlinearity: Nonlinearity::Gelu,
            nonlinearity_v: Nonlinearity::Sigmoid,
            mlp_ratio: 2,
            attn_ratio: 1,
            num_layers_mlp: 2,
            dropout_prob: None,
            norm_elementwise_affine: true,
            n_class: 2,
            units: 20.0,
            mean_aggregation: false,
            canonicalize: Canonicalize::BeamY,
            tagging_features: TaggingFeatures::All,
        }
    }
}

impl LGatrSlimConfig {
    /// The token recipe of the tagger.
    pub fn recipe(&self) -> TokenRecipe {
        TokenRecipe {
            units: self.units,
            global_token: !self.mean_aggregation,
            canonicalize: self.canonicalize,
            features: self.tagging_features,
        }
    }

    fn block_shape(&self) -> SlimBlockShape {
        SlimBlockShape {
            channels: (self.hidden_v_channels, self.hidden_s_channels),
            heads: self.num_heads,
            acts: (self.nonlinearity, self.nonlinearity_v),
            mlp_ratio: self.mlp_ratio,
            attn_ratio: self.attn_ratio,
            num_layers_mlp: self.num_layers_mlp,
            dropout: self.dropout_prob,
            affine: self.norm_elementwise_affine,
        }
    }
}

/// `LGATrSlim`: input [`SlimLinear`], [`SlimBlock`]s, output [`SlimLinear`].
#[derive(Debug, Clone)]
pub struct LGatrSlimNet {
    linear_in: SlimLinear,
    blocks: Vec<SlimBlock>,
    linear_out: SlimLinear,
}

impl LGatrSlimNet {
    /// The network for `in_v`, `in_s` input and `out_v`, `out_s` output channels, under
    /// `vb` with the package's names.
    ///
    /// # Errors
    /// Missing or mis-shaped tensors.
    pub fn new(
        config: &LGatrSlimConfig,
        (in_v, in_s): (usize, usize),
        (out_v, out_s): (usize, usize),
        vb: &VarBuilder,
    ) -> Result<Self> {
        let (v, s) = (config.hidden_v_channels, config.hidden_s_channels);
        let shape = config.block_shape();
        let blocks = (0..config.num_blocks)
            .map(|i| SlimBlock::new(&shape, &vb.pp(format!("blocks.{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()
            .context("building blocks")?;
        Ok(Self {
            linear_in: SlimLinear::new((in_v, v), (in_s, s), true, false, &vb.pp("linear_in"))
                .context("building linear_in")?,
            blocks,
            linear_out: SlimLinear::new((v, out_v), (s, out_s), true, false, &vb.pp("linear_out"))
                .context("building linear_out")?,
        })
    }

    /// Outputs `([B, N, 4, out_v], [B, N, out_s])` of vectors `[B, N, 4, in_v]`
    /// (channel-last; the package's public `forward` takes `[..., in_v, 4]` and transposes)
    /// and scalars `[B, N, in_s]`, attending only to items whose `mask` `[B, N]` is 1.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward(
        &self,
        vectors: &Tensor,
        scalars: &Tensor,
        mask: &Tensor,
        mode: &mut Mode,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let bias = key_bias(mask)?;
        let (mut v, mut s) = self.linear_in.forward(vectors, scalars)?;
        for block in &self.blocks {
            (v, s) = block.forward(&v, &s, &bias, mode)?;
        }
        self.linear_out.forward(&v, &s)
    }

    /// The layers, for the evaluation kernel.
    pub(crate) fn layers(&self) -> SlimLayers<'_> {
        SlimLayers {
            linear_in: &self.linear_in,
            blocks: &self.blocks,
            linear_out: &self.linear_out,
        }
    }

    /// Every quantisable stage by path (`linear_in`, `blocks.0`, ...).
    fn stages_mut(&mut self) -> crate::slim_quantized::Stages<'_> {
        crate::slim_quantized::Stages {
            linears: vec![
                ("linear_in".into(), &mut self.linear_in),
                ("linear_out".into(), &mut self.linear_out),
            ],
            blocks: self
                .blocks
                .iter_mut()
                .enumerate()
                .map(|(i, b)| (format!("blocks.{i}"), b))
                .collect(),
        }
    }

    /// Every scalar linear layer (the ones PEFT can adapt) with its state-dict path.
    pub fn scalar_linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut all: Vec<(String, &mut SlimLinear)> =
            vec![("linear_in".into(), &mut self.linear_in)];
        for (i, block) in self.blocks.iter_mut().enumerate() {
            all.extend(
                block
                    .linears_mut()
                    .into_iter()
                    .map(|(name, l)| (format!("blocks.{i}.{name}"), l)),
            );
        }
        all.push(("linear_out".into(), &mut self.linear_out));
        all.into_iter()
            .filter_map(|(name, l)| l.linear_s_mut().map(|s| (format!("{name}.linear_s"), s)))
            .collect()
    }
}

/// The L-GATr-slim top tagger: the network at the state dict's root (a checkpoint of
/// `LGATrSlim` loads without remaps), one vector input channel, the tagging features (and
/// the class-token flag) as scalar inputs, no vector outputs and `n_class` scalar outputs.
#[derive(Debug, Clone)]
pub struct LGatrSlim {
    net: LGatrSlimNet,
    config: LGatrSlimConfig,
    /// The input type when quantised (quantisation-aware training).
    quant_input: Option<FixedType>,
}

impl LGatrSlim {
    /// The network.
    pub fn net(&self) -> &LGatrSlimNet {
        &self.net
    }

    fn logits(&self, input: &TokenInput, mode: &mut Mode) -> candle_core::Result<Tensor> {
        if let Some(ty) = self.quant_input {
            // Fixed point: f64 values of the types throughout, the class token's logits
            // cast back to the model's dtype.
            let vectors = quantized_input(&input.vectors, ty)?.unsqueeze(D::Minus1)?;
            let scalars = quantized_input(&input.scalars, ty)?;
            let mask = input.mask.to_dtype(DType::F64)?;
            let (_, out) = self.net.forward(&vectors, &scalars, &mask, mode)?;
            return out
                .narrow(1, 0, 1)?
                .squeeze(1)?
                .to_dtype(input.scalars.dtype());
        }
        let (layers, mean) = (self.net.layers(), self.config.mean_aggregation);
        let fused = if !mode.is_train() {
            slim_kernel::eval_logits(layers, input, mean)?
        } else if self.config.dropout_prob.is_none() {
            slim_kernel::train_logits(layers, input, mean)?
        } else {
            None
        };
        match fused {
            Some(logits) => Ok(logits),
            None => self.composed_logits(input, mode),
        }
    }

    /// The logits through the composed network (candle's operations, layer by layer).
    fn composed_logits(&self, input: &TokenInput, mode: &mut Mode) -> candle_core::Result<Tensor> {
        let vectors = input.vectors.unsqueeze(D::Minus1)?;
        let (_, out) = self
            .net
            .forward(&vectors, &input.scalars, &input.mask, mode)?;
        if self.config.mean_aggregation {
            let mask = input.mask.unsqueeze(D::Minus1)?;
            out.broadcast_mul(&mask)?
                .sum(1)?
                .broadcast_div(&mask.sum(1)?)
        } else {
            out.narrow(1, 0, 1)?.squeeze(1)
        }
    }
}

impl LGatrSlim {
    /// Sets the fixed-point form: refused with dropout (it would leave the fixed-point
    /// grid) and with a mean readout (a division by the token count).
    fn set_quant(&mut self, quant: &QuantConfig) -> Result<()> {
        let refuse = |detail: &str| -> Result<()> {
            Err(noether_quant::QuantError::BadSetting {
                setting: "model".into(),
                detail: detail.into(),
            }
            .into())
        };
        if self.config.dropout_prob.is_some() {
            return refuse("a quantised L-GATr-slim has no dropout (set no dropout_prob)");
        }
        if self.config.mean_aggregation {
            return refuse(
                "a quantised L-GATr-slim reads its logits from the class token \
                 (mean_aggregation = false)",
            );
        }
        crate::slim_quantized::set_quant(self.net.stages_mut(), quant)?;
        self.quant_input = Some(quant.input);
        Ok(())
    }
}

impl LinearLayers for LGatrSlim {
    fn linear_layers_mut(&mut self) -> Vec<(String, &mut Linear)> {
        self.net.scalar_linears_mut()
    }
}

impl TaggerModel for LGatrSlim {
    type Config = LGatrSlimConfig;
    type Input = TokenInput;
    const BEAMS: &'static [[f32; 4]] = &LGATR_SPURIONS;

    /// Any head count works (the package gives each head `max(v / heads, 1)` vector and
    /// `max(s / heads, 4)` scalar channels), so heads need not divide the channels.
    fn check_config(c: &LGatrSlimConfig) -> Result<()> {
        check_width("hidden_v_channels", c.hidden_v_channels)?;
        check_width("hidden_s_channels", c.hidden_s_channels)?;
        check_width("num_heads", c.num_heads)?;
        check_width("mlp_ratio", c.mlp_ratio)?;
        check_width("attn_ratio", c.attn_ratio)?;
        check_width("n_class", c.n_class)?;
        check_layers("num_blocks", c.num_blocks)?;
        check_layers("num_layers_mlp", c.num_layers_mlp)?;
        if c.num_layers_mlp < 2 {
            return Err(bad(
                "num_layers_mlp",
                &c.num_layers_mlp,
                "must be at least 2 (SlimMLP: GLUs then a linear layer)".into(),
            ));
        }
        if let Some(p) = c.dropout_prob {
            check_dropout("dropout_prob", p)?;
        }
        check_positive("units", c.units)
    }

    fn new(config: &LGatrSlimConfig, vb: &VarBuilder) -> Result<Self> {
        let in_s = config.recipe().scalar_channels();
        let net = LGatrSlimNet::new(config, (1, in_s), (0, config.n_class), vb)?;
        Ok(Self {
            net,
            config: config.clone(),
            quant_input: None,
        })
    }

    fn config(&self) -> &LGatrSlimConfig {
        &self.config
    }

    fn input(&self, jets: &PaddedJets, place: &Placement) -> Result<TokenInput> {
        if jets.beams != Self::BEAMS.len() {
            return Err(ModelError::BadInput {
                input: "beams",
                expected: format!("the {} L-GATr spurions", Self::BEAMS.len()),
                found: vec![jets.beams],
            });
        }
        self.config.recipe().compute(jets, place)
    }

    fn forward_t(&self, input: &TokenInput, mode: &mut Mode) -> Result<Tensor> {
        let (b, t) = input.mask.dims2().context("token mask")?;
        let s = self.config.recipe().scalar_channels();
        if input.vectors.dims() != [b, t, 4] || input.scalars.dims() != [b, t, s] {
            return Err(ModelError::BadInput {
                input: "tokens",
                expected: format!("vectors [{b}, {t}, 4] and scalars [{b}, {t}, {s}]"),
                found: input.scalars.dims().to_vec(),
            });
        }
        crate::fused::model_pass(input.scalars.device(), || self.logits(input, mode))
            .context("L-GATr-slim forward")
    }

    fn quantize(&mut self, quant: &QuantConfig) -> Option<Result<()>> {
        Some(self.set_quant(quant))
    }

    /// The token stage, then `linear_out`'s scalar map on the class token.
    fn quant_graph(&self) -> Option<Result<QuantGraph>> {
        self.quant_input.map(|input| {
            let net = &self.net;
            let head = net.linear_out.linear_s.as_ref().ok_or_else(|| {
                ModelError::from(noether_quant::QuantError::Layer {
                    layer: "linear_out".into(),
                    detail: "has no scalar outputs".into(),
                })
            })?;
            Ok(QuantGraph {
                model: "lgatr_slim".into(),
                input,
                particles: None,
                pairs: None,
                slim: Some(crate::slim_quantized::slim_stage(
                    self.config.recipe().scalar_channels(),
                    &net.linear_in,
                    &net.blocks,
                )?),
                jet_features: 0,
                jet: vec![dense("linear_out.linear_s", head, false)?],
            })
        })
    }

    fn head(_: &LGatrSlimConfig) -> &'static str {
        r"^linear_out\."
    }

    fn depth(c: &LGatrSlimConfig, name: &str) -> Option<(usize, usize)> {
        stack_depth(name, c.num_blocks)
    }

    fn classes(c: &LGatrSlimConfig) -> usize {
        c.n_class
    }

    /// The larger of the attention logits `[B, H, T, T]` and the MLP's widest vector
    /// tensor `[B, T, 4, 3 ratio v]`.
    fn activation_elements(c: &LGatrSlimConfig, jets: usize, nodes: usize) -> u128 {
        let tokens = c.recipe().tokens(nodes);
        let logits = elements(jets, tokens, 2, c.num_heads);
        let mlp = elements(jets, tokens, 1, 12 * c.mlp_ratio * c.hidden_v_channels);
        logits.max(mlp)
    }

    /// As FlopCounterMode counts the package's forward: every matrix product of the
    /// linear layers on every token, and the two attention products per head.
    fn forward_flops(c: &LGatrSlimConfig, nodes: usize) -> u128 {
        let tokens = c.recipe().tokens(nodes);
        2 * slim_macs(c, c.recipe().scalar_channels(), tokens)
    }
}

/// Multiply-adds of the tagger's network on one jet of `n` tokens.
fn slim_macs(c: &LGatrSlimConfig, in_s: usize, n: usize) -> u128 {
    let m = |a: usize, b: usize| (a * b) as u128;
    let (v, s, r, heads) = (
        c.hidden_v_channels,
        c.hidden_s_channels,
        c.mlp_ratio,
        c.num_heads,
    );
    let (hv, hs) = SlimSelfAttention::head_channels(v, s, heads, c.attn_ratio);
    let linear = |(iv, ov): (usize, usize), (is, os): (usize, usize)| 4 * m(iv, ov) + m(is, os);
    let attention =
        linear((v, 3 * hv * heads), (s, 3 * hs * heads)) + linear((hv * heads, v), (hs * heads, s));
    let glus: u128 = (0..c.num_layers_mlp - 1)
        .map(|k| {
            let (iv, is) = if k == 0 { (v, s) } else { (r * v, r * s) };
            linear((iv, 3 * r * v), (is, 2 * r * s))
        })
        .sum();
    let mlp = glus + linear((r * v, v), (r * s, s));
    let per_token = linear((1, v), (in_s, s))
        + c.num_blocks as u128 * (attention + mlp)
        + linear((v, 0), (s, c.n_class));
    let logits = 2 * c.num_blocks as u128 * m(heads, n * n) * (4 * hv + hs) as u128;
    n as u128 * per_token + logits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::{inference_varbuilder, seeded_varbuilder};
    use crate::linear::LowRank;
    use candle_core::Device;
    use candle_nn::VarMap;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Random tokens of `jets` jets of `tokens` tokens each, jet j with its last
    /// `2 j` tokens padded (the class token and spurions always real).
    fn tokens(config: &LGatrSlimConfig, jets: usize, tokens: usize, dtype: DType) -> TokenInput {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let s = config.recipe().scalar_channels();
        let mut draw =
            |n: usize| -> Vec<f64> { (0..n).map(|_| rng.random_range(-1.5..1.5)).collect() };
        let vectors = draw(jets * tokens * 4);
        let scalars = draw(jets * tokens * s);
        let mask: Vec<f64> = (0..jets * tokens)
            .map(|k| f64::from(u8::from(k % tokens < tokens - 2 * (k / tokens))))
            .collect();
        let dev = Device::Cpu;
        let t = |x: Vec<f64>, shape: &[usize]| {
            Tensor::from_vec(x, shape, &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
        };
        TokenInput {
            vectors: t(vectors, &[jets, tokens, 4]),
            scalars: t(scalars, &[jets, tokens, s]),
            mask: t(mask, &[jets, tokens]),
        }
    }

    fn host(t: &Tensor) -> Vec<f64> {
        t.to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// The evaluation kernel's logits (asserting that it ran) and the composed forward's,
    /// and the largest logit.
    fn both(config: &LGatrSlimConfig, dtype: DType) -> (Vec<f64>, Vec<f64>, f64) {
        let varmap = VarMap::new();
        let dev = Device::Cpu;
        let tracked = LGatrSlim::new(config, &seeded_varbuilder(&varmap, 4, dtype, &dev)).unwrap();
        let plain = LGatrSlim::new(config, &inference_varbuilder(&varmap, dtype, &dev)).unwrap();
        let input = tokens(config, 3, 9, dtype);
        let mean = config.mean_aggregation;
        let fused = slim_kernel::eval_logits(plain.net.layers(), &input, mean).unwrap();
        let fused = host(&fused.expect("the evaluation kernel applies"));
        assert!(
            slim_kernel::eval_logits(tracked.net.layers(), &input, mean)
                .unwrap()
                .is_none(),
            "tracked weights take the composed forward"
        );
        assert_eq!(
            fused,
            host(&plain.forward_t(&input, &mut Mode::Eval).unwrap())
        );
        let composed = host(&plain.composed_logits(&input, &mut Mode::Eval).unwrap());
        let scale = composed.iter().fold(0f64, |m, x| m.max(x.abs()));
        (fused, composed, scale)
    }

    /// Logits and every variable's gradient of `sum(logits * R)` for a fixed `R`, through
    /// the training kernel (asserting that it ran) or the composed network.
    fn gradients(config: &LGatrSlimConfig, kernel: bool) -> (Vec<f64>, Vec<(String, Vec<f64>)>) {
        let varmap = VarMap::new();
        let dev = Device::Cpu;
        let model =
            LGatrSlim::new(config, &seeded_varbuilder(&varmap, 4, DType::F64, &dev)).unwrap();
        let input = tokens(config, 3, 9, DType::F64);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut mode = Mode::Train(&mut rng);
        let logits = if kernel {
            slim_kernel::train_logits(model.net.layers(), &input, config.mean_aggregation)
                .unwrap()
                .expect("the training kernel applies")
        } else {
            model.composed_logits(&input, &mut mode).unwrap()
        };
        let weights: Vec<f64> = (0..logits.elem_count())
            .map(|i| ((i as f64) * 0.77).sin())
            .collect();
        let weights = Tensor::from_vec(weights, logits.shape(), &dev).unwrap();
        let grads = (&logits * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let data = varmap.data().lock().unwrap();
        let mut named: Vec<(String, Vec<f64>)> = data
            .iter()
            .map(|(name, var)| {
                let grad = grads.get(var.as_tensor()).map_or_else(
                    // Only the empty `linear_out.weight_v` goes without a gradient.
                    || vec![0.0; var.elem_count()],
                    host,
                );
                (name.clone(), grad)
            })
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        (host(&logits), named)
    }

    fn assert_same_gradients(config: &LGatrSlimConfig) {
        let (logits, grads) = gradients(config, true);
        let (want_logits, want) = gradients(config, false);
        let scale = want_logits.iter().fold(0f64, |m, x| m.max(x.abs()));
        let err = worst(&logits, &want_logits, scale);
        assert!(err < 1e-12, "training logits: {err:.1e}");
        assert_eq!(grads.len(), want.len());
        for ((name, g), (_, w)) in grads.iter().zip(&want) {
            let scale = w.iter().fold(1e-12f64, |m, x| m.max(x.abs()));
            let err = worst(g, w, scale);
            assert!(
                err < 1e-10,
                "{name}: gradient off by {err:.1e} of {scale:.1e}"
            );
        }
    }

    #[test]
    fn the_training_kernel_gives_the_composed_gradients_in_f64() {
        assert_same_gradients(&small());
        assert_same_gradients(&every_option());
        assert_same_gradients(&LGatrSlimConfig {
            num_blocks: 1,
            ..relu_gates()
        });
    }

    #[test]
    fn the_training_kernel_gives_the_same_bits_on_one_and_two_threads() {
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| gradients(&small(), true))
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(one.0, two.0);
        for ((name, a), (_, b)) in one.1.iter().zip(&two.1) {
            assert_eq!(a, b, "{name}");
        }
    }

    fn worst(a: &[f64], b: &[f64], scale: f64) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / scale)
            .fold(0.0, f64::max)
    }

    fn small() -> LGatrSlimConfig {
        LGatrSlimConfig {
            hidden_v_channels: 4,
            hidden_s_channels: 12,
            num_blocks: 2,
            num_heads: 2,
            ..LGatrSlimConfig::default()
        }
    }

    /// Every option the defaults leave off: mean readout, tanh / silu gates, three MLP
    /// layers, wider attention, no gains, a head count that divides no channel count.
    fn every_option() -> LGatrSlimConfig {
        LGatrSlimConfig {
            num_heads: 3,
            nonlinearity: Nonlinearity::Silu,
            nonlinearity_v: Nonlinearity::Tanh,
            num_layers_mlp: 3,
            attn_ratio: 2,
            norm_elementwise_affine: false,
            mean_aggregation: true,
            ..small()
        }
    }

    /// ReLU scalar gates and GELU vector gates.
    fn relu_gates() -> LGatrSlimConfig {
        LGatrSlimConfig {
            nonlinearity: Nonlinearity::Relu,
            nonlinearity_v: Nonlinearity::Gelu,
            ..small()
        }
    }

    #[test]
    fn the_evaluation_kernel_equals_the_composed_forward_in_f64() {
        let (fused, composed, scale) = both(&small(), DType::F64);
        let err = worst(&fused, &composed, scale);
        assert!(err < 1e-12, "class token: {err:.1e} of {scale:.3}");
        // Evaluation ignores dropout, so the kernel takes it too.
        let config = LGatrSlimConfig {
            dropout_prob: Some(0.1),
            ..every_option()
        };
        let (fused, composed, scale) = both(&config, DType::F64);
        let err = worst(&fused, &composed, scale);
        assert!(err < 1e-12, "mean readout: {err:.1e} of {scale:.3}");
        let (fused, composed, scale) = both(&relu_gates(), DType::F64);
        assert!(worst(&fused, &composed, scale) < 1e-12);
    }

    #[test]
    fn the_evaluation_kernel_equals_the_composed_forward_in_f32() {
        let (fused, composed, scale) = both(&small(), DType::F32);
        let err = worst(&fused, &composed, scale);
        assert!(err < 1e-5, "{err:.1e} of {scale:.3}");
    }

    #[test]
    fn fixed_point_adapters_and_a_masked_class_token_take_the_composed_forward() {
        let config = small();
        let varmap = VarMap::new();
        let dev = Device::Cpu;
        let vb = inference_varbuilder(&varmap, DType::F64, &dev);
        let mut model = LGatrSlim::new(&config, &vb).unwrap();
        let input = tokens(&config, 2, 6, DType::F64);
        let kernel = |m: &LGatrSlim, input: &TokenInput| {
            slim_kernel::eval_logits(m.net.layers(), input, false)
                .unwrap()
                .is_some()
        };
        assert!(kernel(&model, &input));
        let mut masked = input.clone();
        masked.mask = masked
            .mask
            .slice_assign(
                &[0..1, 0..1],
                &Tensor::zeros((1, 1), DType::F64, &dev).unwrap(),
            )
            .unwrap();
        assert!(!kernel(&model, &masked), "a masked class token");
        let (_, layer) = &mut model.net.scalar_linears_mut()[1];
        let (input_dim, out) = layer.dims();
        let adapter = LowRank {
            a: Tensor::ones((1, input_dim), DType::F64, &dev).unwrap(),
            b: Tensor::ones((out, 1), DType::F64, &dev).unwrap(),
            scaling: 1.0,
        };
        layer.attach(adapter).unwrap();
        assert!(!kernel(&model, &input), "an unmerged adapter");
        model.net.scalar_linears_mut()[1].1.merge().unwrap();
        assert!(kernel(&model, &input), "a merged adapter");
        let mut quantised = LGatrSlim::new(&config, &vb).unwrap();
        quantised.set_quant(&QuantConfig::default()).unwrap();
        let input = tokens(&config, 2, 6, DType::F64);
        assert!(!kernel(&quantised, &input), "fixed point");
    }
}

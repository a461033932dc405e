//! The plain Transformer baseline: the tagging-guide's "tr" model
//! (`lloca.backbone.transformer.Transformer` of the `lloca` 2.0 package with identity
//! frames, `tag_transformer.yaml`), on the same tokens as L-GATr-slim without the symmetry:
//! each constituent's seven tagging features ([`crate::tokens`]), no four-vectors, no
//! spurions, logits as the mean over the constituents' outputs. Parameter names follow
//! the package's state dict (`linear_in`, `blocks.{i}.attention.qkv_linear.linear`,
//! `blocks.{i}.attention.out_linear`, `blocks.{i}.mlp.0`, `blocks.{i}.mlp.3`,
//! `linear_out`), so that what the symmetry buys is measured at equal architecture.
//!
//! A block: pre-norm (layer norm without gains) multi-head self-attention with a residual,
//! then pre-norm `Linear -> GELU -> Linear` with a residual. Heads split the channels with
//! the head index fastest, as the package's `MultiHeadQKVLinear` does.

use candle_core::{Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::attention::{key_bias, masked_attention};
use crate::error::{Context, ModelError, Result};
use crate::linear::{Linear, LinearLayers};
use crate::mode::{dropout, Mode};
use crate::model::{
    bad, check_dropout, check_layers, check_width, elements, stack_depth, stack_macs, PaddedJets,
    TaggerModel,
};
use crate::placement::Placement;
use crate::tokens::{Canonicalize, TaggingFeatures, TokenInput, TokenRecipe};

type CResult<T> = candle_core::Result<T>;

/// The Transformer's hyper-parameters (defaults: the tagging-guide's `tag_transformer`,
/// `attn_reps = "8x0n+2x1n"`: 16 channels per head x 8 heads = 128).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransformerConfig {
    /// Channels of the residual stream.
    pub hidden_channels: usize,
    /// Attention heads (must divide `hidden_channels * attention_factor`).
    pub num_heads: usize,
    /// Transformer blocks.
    pub num_blocks: usize,
    /// MLP widening.
    pub mlp_factor: usize,
    /// Attention widening.
    pub attention_factor: usize,
    /// Dropout probability; absent: none.
    pub dropout_prob: Option<f64>,
    /// Output classes.
    pub n_class: usize,
    /// Canonicalisation of the jets before the features are computed.
    pub canonicalize: Canonicalize,
    /// The tagging features it reads (default all seven; `none` leaves it no input).
    pub tagging_features: TaggingFeatures,
}

impl Default for TransformerConfig {
    fn default() -> Self {
        Self {
            hidden_channels: 128,
            num_heads: 8,
            num_blocks: 10,
            mlp_factor: 4,
            attention_factor: 1,
            dropout_prob: None,
            n_class: 2,
            canonicalize: Canonicalize::BeamY,
            tagging_features: TaggingFeatures::All,
        }
    }
}

impl TransformerConfig {
    /// Its token recipe: constituents only, no class token (vectors are not read).
    pub fn recipe(&self) -> TokenRecipe {
        TokenRecipe {
            units: 1.0,
            global_token: false,
            canonicalize: self.canonicalize,
            features: self.tagging_features,
        }
    }
}

/// Layer norm over the last dimension without gains (the package's `BaselineLayerNorm`,
/// `F.layer_norm` with eps 1e-5), differentiable (candle's fused op records no gradient).
fn layer_norm(x: &Tensor) -> CResult<Tensor> {
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred.broadcast_mul(&(var + 1e-5)?.sqrt()?.recip()?)
}

/// `x [B, N, in] -> [B, N, out]` through a 2-d product.
fn rows(layer: &Linear, x: &Tensor) -> CResult<Tensor> {
    let (b, n, c) = x.dims3()?;
    let y = layer.forward_rows(&x.reshape((b * n, c))?)?;
    let out = y.dim(1)?;
    y.reshape((b, n, out))
}

/// One block of the baseline.
#[derive(Debug, Clone)]
struct Block {
    qkv: Linear,
    out: Linear,
    mlp_in: Linear,
    mlp_out: Linear,
    heads: usize,
    dropout: f64,
}

impl Block {
    fn new(c: &TransformerConfig, vb: &VarBuilder) -> CResult<Self> {
        let (h, attn) = (c.hidden_channels, c.hidden_channels * c.attention_factor);
        Ok(Self {
            qkv: Linear::new(h, 3 * attn, vb.pp("attention.qkv_linear.linear"))?,
            out: Linear::new(attn, h, vb.pp("attention.out_linear"))?,
            mlp_in: Linear::new(h, c.mlp_factor * h, vb.pp("mlp.0"))?,
            mlp_out: Linear::new(c.mlp_factor * h, h, vb.pp("mlp.3"))?,
            heads: c.num_heads,
            dropout: c.dropout_prob.unwrap_or(0.0),
        })
    }

    fn attention(&self, x: &Tensor, bias: &Tensor, mode: &mut Mode) -> CResult<Tensor> {
        let (b, n, _) = x.dims3()?;
        let qkv = rows(&self.qkv, x)?;
        let per_head = qkv.dim(2)? / (3 * self.heads);
        let qkv = qkv
            .reshape((b, n, 3, per_head, self.heads))?
            .permute(vec![2, 0, 4, 1, 3])?
            .contiguous()?; // [3, B, H, N, c]
        let h = masked_attention(&qkv.get(0)?, &qkv.get(1)?, &qkv.get(2)?, bias)?;
        let h = h
            .permute(vec![0, 2, 1, 3])?
            .reshape((b, n, self.heads * per_head))?;
        dropout(&rows(&self.out, &h)?, self.dropout, mode)
    }

    fn forward(&self, x: &Tensor, bias: &Tensor, mode: &mut Mode) -> CResult<Tensor> {
        let x = (x + self.attention(&layer_norm(x)?, bias, mode)?)?;
        let h = dropout(&rows(&self.mlp_in, &layer_norm(&x)?)?, self.dropout, mode)?;
        let h = dropout(&rows(&self.mlp_out, &h.gelu_erf()?)?, self.dropout, mode)?;
        x + h
    }
}

/// The plain Transformer tagger.
#[derive(Debug, Clone)]
pub struct Transformer {
    linear_in: Linear,
    blocks: Vec<Block>,
    linear_out: Linear,
    config: TransformerConfig,
}

impl Transformer {
    fn logits(&self, input: &TokenInput, mode: &mut Mode) -> CResult<Tensor> {
        let bias = key_bias(&input.mask)?;
        let mut x = rows(&self.linear_in, &input.scalars)?;
        for block in &self.blocks {
            x = block.forward(&x, &bias, mode)?;
        }
        let out = rows(&self.linear_out, &x)?;
        let mask = input.mask.unsqueeze(D::Minus1)?;
        out.broadcast_mul(&mask)?
            .sum(1)?
            .broadcast_div(&mask.sum(1)?)
    }
}

impl LinearLayers for Transformer {
    fn linear_layers_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut all = vec![("linear_in".to_owned(), &mut self.linear_in)];
        for (i, b) in self.blocks.iter_mut().enumerate() {
            all.push((
                format!("blocks.{i}.attention.qkv_linear.linear"),
                &mut b.qkv,
            ));
            all.push((format!("blocks.{i}.attention.out_linear"), &mut b.out));
            all.push((format!("blocks.{i}.mlp.0"), &mut b.mlp_in));
            all.push((format!("blocks.{i}.mlp.3"), &mut b.mlp_out));
        }
        all.push(("linear_out".to_owned(), &mut self.linear_out));
        all
    }
}

impl TaggerModel for Transformer {
    type Config = TransformerConfig;
    type Input = TokenInput;
    const BEAMS: &'static [[f32; 4]] = &[];

    fn check_config(c: &TransformerConfig) -> Result<()> {
        check_width("hidden_channels", c.hidden_channels)?;
        check_width("num_heads", c.num_heads)?;
        check_width("mlp_factor", c.mlp_factor)?;
        check_width("attention_factor", c.attention_factor)?;
        check_width("n_class", c.n_class)?;
        check_layers("num_blocks", c.num_blocks)?;
        if c.tagging_features == TaggingFeatures::None {
            return Err(bad(
                "tagging_features",
                &"\"none\"",
                "the Transformer reads only the tagging features: all, zinvariant or \
                 so3invariant"
                    .into(),
            ));
        }
        if !(c.hidden_channels * c.attention_factor).is_multiple_of(c.num_heads) {
            return Err(bad(
                "num_heads",
                &c.num_heads,
                format!(
                    "must divide hidden_channels x attention_factor = {}",
                    c.hidden_channels * c.attention_factor
                ),
            ));
        }
        match c.dropout_prob {
            Some(p) => check_dropout("dropout_prob", p),
            None => Ok(()),
        }
    }

    fn new(c: &TransformerConfig, vb: &VarBuilder) -> Result<Self> {
        let blocks = (0..c.num_blocks)
            .map(|i| Block::new(c, &vb.pp(format!("blocks.{i}"))))
            .collect::<CResult<Vec<_>>>()
            .context("building blocks")?;
        Ok(Self {
            linear_in: Linear::new(
                c.recipe().scalar_channels(),
                c.hidden_channels,
                vb.pp("linear_in"),
            )
            .context("building linear_in")?,
            blocks,
            linear_out: Linear::new(c.hidden_channels, c.n_class, vb.pp("linear_out"))
                .context("building linear_out")?,
            config: c.clone(),
        })
    }

    fn config(&self) -> &TransformerConfig {
        &self.config
    }

    fn input(&self, jets: &PaddedJets, place: &Placement) -> Result<TokenInput> {
        self.config.recipe().compute(jets, place)
    }

    fn forward_t(&self, input: &TokenInput, mode: &mut Mode) -> Result<Tensor> {
        let (b, t) = input.mask.dims2().context("token mask")?;
        let features = self.config.recipe().scalar_channels();
        if input.scalars.dims() != [b, t, features] {
            return Err(ModelError::BadInput {
                input: "token scalars",
                expected: format!("[{b}, {t}, {features}]"),
                found: input.scalars.dims().to_vec(),
            });
        }
        crate::fused::model_pass(input.scalars.device(), || self.logits(input, mode))
            .context("Transformer forward")
    }

    fn head(_: &TransformerConfig) -> &'static str {
        r"^linear_out\."
    }

    fn depth(c: &TransformerConfig, name: &str) -> Option<(usize, usize)> {
        stack_depth(name, c.num_blocks)
    }

    fn classes(c: &TransformerConfig) -> usize {
        c.n_class
    }

    /// The larger of the attention logits `[B, H, N, N]` and the MLP's hidden layer.
    fn activation_elements(c: &TransformerConfig, jets: usize, nodes: usize) -> u128 {
        elements(jets, nodes, 2, c.num_heads).max(elements(
            jets,
            nodes,
            1,
            c.mlp_factor * c.hidden_channels,
        ))
    }

    /// Every linear layer on every token and the two attention products per block.
    fn forward_flops(c: &TransformerConfig, nodes: usize) -> u128 {
        let (h, attn) = (c.hidden_channels, c.hidden_channels * c.attention_factor);
        let block = stack_macs(h, &[3 * attn])
            + stack_macs(attn, &[h])
            + stack_macs(h, &[c.mlp_factor * h, h]);
        let per_token = stack_macs(c.recipe().scalar_channels(), &[h])
            + c.num_blocks as u128 * block
            + stack_macs(h, &[c.n_class]);
        let attention = c.num_blocks as u128 * 2 * (nodes as u128).pow(2) * attn as u128;
        2 * (nodes as u128 * per_token + attention)
    }
}

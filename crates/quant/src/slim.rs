//! L-GATr-slim in fixed point: a token stage of Lorentz-equivariant transformer blocks on
//! vectors and scalars, read out at the class token into jet features that the per-jet
//! [`Dense`] layers of a [`crate::QuantGraph`] finish (the network's `linear_out`).
//!
//! Every tensor is a value of a fixed-point type and every sum is exact (checked: at most
//! [`EXACT_BITS`] bits) before a cast; what the float network computes with square roots,
//! exponentials and divisions becomes lookup tables ([`Table`]) read at a cast of the
//! exact sum before them, as hls4ml builds its normalisation, activation and softmax
//! layers:
//! - linear maps ([`SlimLinearLayer`]): vectors mixed by one weight matrix shared by the
//!   four components (no bias), scalars by a dense layer; each a [`Dense`];
//! - RMS norms ([`SlimNormLayer`]): the exact sum of `|v^2|` and `s^2` over the token's
//!   channels, cast to the table's input, gives the factor `1 / sqrt(mean + eps)` from
//!   the table; vectors and scalars times the factor times their gain, cast to `result`;
//! - gates ([`SlimGluLayer`]): the Minkowski product of two vector blocks (exact) and a
//!   scalar block, each through its table (`act_v(x / 2)`, `act_s(x)`), times the first
//!   block, cast to `result`;
//! - attention ([`SlimAttentionLayer`]): per head, q, k, v normalised (a non-affine norm),
//!   logits `<q_v, k_v> + q_s . k_s` exact, minus their maximum over real keys, through
//!   the exponential table (the `1 / sqrt(4 hv + hs)` scale folded in), summed over real
//!   keys, cast to the sum type, through the reciprocal table; probabilities (numerator
//!   times reciprocal) cast to their type; the weighted values summed exactly and cast to
//!   the heads' type;
//! - residuals: the sum of the stream and the sub-layer's output, cast to the block's
//!   residual type.

use serde::{Deserialize, Serialize};

use crate::dense::{
    check_dense, check_values, layer_error, product_bits, sum_bits, Dense, EXACT_BITS,
};
use crate::error::Result;
use crate::fixed::FixedType;
use crate::table::Table;

/// The most tokens (class token and spurions included) a jet may hold in a token graph.
pub const MAX_TOKENS: usize = 256;

/// The widths of a stage's exact sums as its checks walk it, for jets of `tokens` tokens:
/// each is checked against [`EXACT_BITS`] and listed with its stage (QONNX export names
/// those wider than float32 holds).
pub(crate) struct Widths {
    tokens: usize,
    /// `(stage, bits)` in walking order.
    pub(crate) listed: Vec<(String, u32)>,
}

impl Widths {
    fn new(tokens: usize) -> Self {
        Self {
            tokens,
            listed: Vec::new(),
        }
    }

    /// The growth in bits of a sum over up to `tokens` terms.
    fn token_growth(&self) -> u32 {
        self.tokens.next_power_of_two().trailing_zeros()
    }

    fn add(&mut self, stage: &str, what: &str, bits: u32) -> Result<()> {
        if bits > EXACT_BITS {
            return Err(layer_error(
                stage,
                format!(
                    "{what} spans {bits} bits, more than the {EXACT_BITS} an exact sum may take"
                ),
            ));
        }
        self.listed.push((stage.to_owned(), bits));
        Ok(())
    }
}

/// A `SlimLinear`: vectors `[4, in_v] -> [4, out_v]` through `vectors` (bias-free, the
/// same for the four components) and scalars through `scalars`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlimLinearLayer {
    /// Its checkpoint path (`blocks.0.attention.linear_in`).
    pub name: String,
    /// `weight_v` as a dense layer with zero bias; `None` without vector channels.
    pub vectors: Option<Dense>,
    /// `linear_s`; `None` without scalar channels.
    pub scalars: Option<Dense>,
    /// Whether `linear_s` has a bias (without one its [`Dense`] holds zeros, which are
    /// not parameters).
    pub bias: bool,
}

impl SlimLinearLayer {
    /// Output vector and scalar channels.
    pub fn outputs(&self) -> (usize, usize) {
        (
            self.vectors.as_ref().map_or(0, |d| d.outputs),
            self.scalars.as_ref().map_or(0, |d| d.outputs),
        )
    }

    /// The type of its outputs.
    pub fn result(&self) -> Option<FixedType> {
        self.vectors
            .as_ref()
            .or(self.scalars.as_ref())
            .map(|d| d.precision.result)
    }

    fn parameters(&self) -> usize {
        self.vectors.iter().map(|d| d.weight.len()).sum::<usize>()
            + self
                .scalars
                .iter()
                .map(|d| d.weight.len() + if self.bias { d.bias.len() } else { 0 })
                .sum::<usize>()
    }

    /// Checks both maps against channels `(v, s)` of type `input`; returns the outputs.
    fn check(
        &self,
        (v, s): (usize, usize),
        input: FixedType,
        widths: &mut Widths,
    ) -> Result<(usize, usize)> {
        for (dense, width) in [(&self.vectors, v), (&self.scalars, s)] {
            if let Some(d) = dense {
                check_dense(d, width)?;
                widths.add(&d.name, "a sum", sum_bits(d, input))?;
            }
        }
        if let (Some(a), Some(b)) = (&self.vectors, &self.scalars) {
            if a.precision.result != b.precision.result {
                return Err(layer_error(
                    &self.name,
                    "vector and scalar outputs must share one result type".into(),
                ));
            }
        }
        Ok(self.outputs())
    }
}

/// A `SlimRMSNorm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlimNormLayer {
    /// Its path (`blocks.0.norm1`; `blocks.0.attention.norm` for the q, k, v norm).
    pub name: String,
    /// Vector and scalar channels it normalises together.
    pub channels: (usize, usize),
    /// Gains `weight_v`, `weight_s` (values of `gain`); `None` for a non-affine norm.
    pub gains: Option<(Vec<f64>, Vec<f64>)>,
    /// The gains' type.
    pub gain: FixedType,
    /// The factor's table ([`crate::TableFn::InvRms`]).
    pub table: Table,
    /// The output type.
    pub result: FixedType,
}

impl SlimNormLayer {
    fn check(&self, input: FixedType, widths: &mut Widths) -> Result<()> {
        self.table.check(&self.name, "table_input")?;
        let (v, s) = self.channels;
        if let Some((gv, gs)) = &self.gains {
            if gv.len() != v || gs.len() != s {
                return Err(layer_error(
                    &self.name,
                    format!("{} + {} gains for {v} + {s} channels", gv.len(), gs.len()),
                ));
            }
            check_values(
                &self.name,
                &[("weight_v", gv, self.gain), ("weight_s", gs, self.gain)],
            )?;
        }
        widths.add(
            &self.name,
            "the sum of squares",
            product_bits(4 * v + s, input, input),
        )?;
        let gain = if self.gains.is_some() {
            self.gain.width()
        } else {
            0
        };
        widths.add(
            &self.name,
            "a normalised value",
            input.width() + self.table.output.width() + gain,
        )
    }
}

/// A `SlimGLU`: its linear map to three vector and two scalar blocks, and its gates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlimGluLayer {
    /// Its path (`blocks.0.mlp.layers.0`).
    pub name: String,
    /// The linear map (`.linear`).
    pub linear: SlimLinearLayer,
    /// The vector gates' table (of the Minkowski product of the second and third blocks).
    pub gate_v: Table,
    /// The scalar gates' table (of the second scalar block).
    pub gate_s: Table,
    /// The gated outputs' type.
    pub result: FixedType,
}

impl SlimGluLayer {
    fn check(
        &self,
        channels: (usize, usize),
        input: FixedType,
        widths: &mut Widths,
    ) -> Result<(usize, usize)> {
        let (v3, s2) = self.linear.check(channels, input, widths)?;
        if v3 % 3 != 0 || s2 % 2 != 0 {
            return Err(layer_error(
                &self.name,
                format!("{v3} vector and {s2} scalar outputs are not 3 and 2 blocks"),
            ));
        }
        self.gate_v.check(&self.name, "table_input")?;
        self.gate_s.check(&self.name, "table_input")?;
        let pre = self.linear.result().unwrap_or(input);
        widths.add(&self.name, "a vector gate", product_bits(4, pre, pre))?;
        for table in [self.gate_v, self.gate_s] {
            widths.add(
                &self.name,
                "a gated value",
                pre.width() + table.output.width(),
            )?;
        }
        Ok((v3 / 3, s2 / 2))
    }
}

/// A `SlimSelfAttention` in fixed point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlimAttentionLayer {
    /// Its path (`blocks.0.attention`).
    pub name: String,
    /// Heads.
    pub heads: usize,
    /// Vector and scalar channels per head.
    pub head_channels: (usize, usize),
    /// Queries, keys and values, heads fastest in the output channels (no bias).
    pub linear_in: SlimLinearLayer,
    /// The non-affine norm of each head's q, k and v.
    pub norm: SlimNormLayer,
    /// The numerators' table ([`crate::TableFn::Exp`]).
    pub exp: Table,
    /// The reciprocal denominator's table ([`crate::TableFn::Recip`]); its input type is
    /// the type of the sum of numerators.
    pub recip: Table,
    /// The probabilities' type.
    pub probabilities: FixedType,
    /// The type of the attention-weighted values.
    pub heads_result: FixedType,
    /// Heads merged (head-major) back to the stream's channels.
    pub linear_out: SlimLinearLayer,
}

impl SlimAttentionLayer {
    fn check(&self, channels: (usize, usize), input: FixedType, widths: &mut Widths) -> Result<()> {
        let (h, (hv, hs)) = (self.heads, self.head_channels);
        let qkv = self.linear_in.check(channels, input, widths)?;
        if qkv != (3 * hv * h, 3 * hs * h) || self.norm.channels != (hv, hs) {
            return Err(layer_error(
                &self.name,
                format!(
                    "{qkv:?} query/key/value channels and a norm over {:?} for {h} heads of \
                     {hv} vectors and {hs} scalars",
                    self.norm.channels
                ),
            ));
        }
        let x = self.linear_in.result().unwrap_or(input);
        self.norm.check(x, widths)?;
        let n = self.norm.result;
        let softmax = format!("{}.softmax", self.name);
        self.exp.check(&softmax, "table_input")?;
        self.recip.check(
            &softmax,
            "accum (the sum of numerators, the reciprocal table's input)",
        )?;
        // A logit minus the maximum takes one bit more than the logit.
        widths.add(&self.name, "a logit", product_bits(4 * hv + hs, n, n) + 1)?;
        let growth = widths.token_growth();
        widths.add(
            &self.name,
            "the sum of numerators",
            self.exp.output.width() + growth,
        )?;
        widths.add(
            &self.name,
            "a probability",
            self.exp.output.width() + self.recip.output.width(),
        )?;
        let tokens = widths.tokens;
        widths.add(
            &self.name,
            "a weighted value",
            product_bits(tokens, self.probabilities, n),
        )?;
        let out = self
            .linear_out
            .check((hv * h, hs * h), self.heads_result, widths)?;
        if out != channels {
            return Err(layer_error(
                &self.name,
                format!("linear_out gives {out:?} channels, the stream has {channels:?}"),
            ));
        }
        Ok(())
    }
}

/// A `SlimBlock`: pre-norm attention and pre-norm MLP, each with a residual.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlimBlockLayer {
    /// Its path (`blocks.0`).
    pub name: String,
    /// Before the attention.
    pub norm1: SlimNormLayer,
    /// The attention.
    pub attention: SlimAttentionLayer,
    /// Before the MLP.
    pub norm2: SlimNormLayer,
    /// The MLP's gated units.
    pub glus: Vec<SlimGluLayer>,
    /// The MLP's last linear map.
    pub last: SlimLinearLayer,
    /// The type of the residual stream after each sub-layer.
    pub residual: FixedType,
}

impl SlimBlockLayer {
    fn check(&self, channels: (usize, usize), input: FixedType, widths: &mut Widths) -> Result<()> {
        if self.norm1.channels != channels || self.norm2.channels != channels {
            return Err(layer_error(
                &self.name,
                format!("norms over {channels:?} channels expected"),
            ));
        }
        self.norm1.check(input, widths)?;
        self.attention.check(channels, self.norm1.result, widths)?;
        widths.add(
            &self.name,
            "a residual sum",
            residual_bits(input, self.attention.linear_out.result().unwrap_or(input)),
        )?;
        self.norm2.check(self.residual, widths)?;
        let mut width = channels;
        let mut ty = self.norm2.result;
        for glu in &self.glus {
            width = glu.check(width, ty, widths)?;
            ty = glu.result;
        }
        let out = self.last.check(width, ty, widths)?;
        if out != channels {
            return Err(layer_error(
                &self.last.name,
                format!("gives {out:?} channels, the stream has {channels:?}"),
            ));
        }
        widths.add(
            &self.name,
            "a residual sum",
            residual_bits(self.residual, self.last.result().unwrap_or(ty)),
        )
    }

    fn parameters(&self) -> usize {
        let norm = |n: &SlimNormLayer| n.gains.as_ref().map_or(0, |(v, s)| v.len() + s.len());
        norm(&self.norm1)
            + norm(&self.norm2)
            + self.attention.linear_in.parameters()
            + self.attention.linear_out.parameters()
            + self
                .glus
                .iter()
                .map(|g| g.linear.parameters())
                .sum::<usize>()
            + self.last.parameters()
    }
}

/// The bits of the exact sum of a value of `a` and one of `b`.
fn residual_bits(a: FixedType, b: FixedType) -> u32 {
    let fraction = a.fraction().max(b.fraction());
    let integer = a.integer().max(b.integer()) + 2;
    (integer + fraction).max(1) as u32
}

/// L-GATr-slim's token stage: `linear_in` and the blocks; its output is the class
/// token's scalar channels (type: the last residual type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlimStage {
    /// Scalar features per token (after the token's four vector components).
    pub scalars: usize,
    /// The input map (one vector channel, `scalars` scalars).
    pub linear_in: SlimLinearLayer,
    /// The blocks.
    pub blocks: Vec<SlimBlockLayer>,
}

impl SlimStage {
    /// Features per token: four vector components, then the scalars.
    pub fn features(&self) -> usize {
        4 + self.scalars
    }

    /// The stream's vector and scalar channels.
    pub fn channels(&self) -> (usize, usize) {
        self.linear_in.outputs()
    }

    /// The type of the stage's output.
    pub fn output(&self, input: FixedType) -> FixedType {
        self.blocks
            .last()
            .map_or_else(|| self.linear_in.result().unwrap_or(input), |b| b.residual)
    }

    /// Parameters: every weight, bias and gain.
    pub fn parameters(&self) -> usize {
        self.linear_in.parameters()
            + self
                .blocks
                .iter()
                .map(SlimBlockLayer::parameters)
                .sum::<usize>()
    }

    /// Checks shapes, values, table sizes and that every sum is exact.
    ///
    /// # Errors
    /// [`crate::QuantError::Layer`] naming the layer and what does not fit.
    pub fn validate(&self, input: FixedType) -> Result<()> {
        self.check(input, &mut Widths::new(MAX_TOKENS))
    }

    /// Every exact sum's stage and width for jets of `tokens` tokens (the stage
    /// validated on the way).
    ///
    /// # Errors
    /// As [`SlimStage::validate`].
    pub(crate) fn sum_widths(&self, input: FixedType, tokens: usize) -> Result<Vec<(String, u32)>> {
        let mut widths = Widths::new(tokens);
        self.check(input, &mut widths)?;
        Ok(widths.listed)
    }

    fn check(&self, input: FixedType, widths: &mut Widths) -> Result<()> {
        let channels = self.linear_in.check((1, self.scalars), input, widths)?;
        let mut ty = self.linear_in.result().unwrap_or(input);
        for block in &self.blocks {
            block.check(channels, ty, widths)?;
            ty = block.residual;
        }
        Ok(())
    }
}

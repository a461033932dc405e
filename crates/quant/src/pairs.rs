//! PELICAN in fixed point: a pair stage of permutation-equivariant layers on the
//! Minkowski products `d_ij` of a jet's nodes (beams and constituents), read out into jet
//! features that the per-jet [`Dense`] layers of a [`crate::QuantGraph`] finish.
//!
//! What the float model computes with learnable or data-dependent scales becomes
//! hardware arithmetic:
//! - the embedding `f_alpha(d)` is a fixed function of the (f32) products, evaluated by
//!   [`embed_dot`] (in firmware: a lookup table) and rounded to the graph's input type;
//!   its exponents are frozen under quantisation (they get no gradient);
//! - the aggregations (row, column, trace and total sums over real nodes) are sums scaled
//!   by `2^-shift` (`2^-2 shift` for the total), that is PELICAN's `(n / n_avg)^alpha`
//!   normalisation at alpha = 1 with `n_avg = 2^shift`: a shift instead of a division.
//!   Each aggregate is cast to the `pool` type, as the sum over particles of a Deep Sets
//!   model is;
//! - the activations are ReLUs (fused into the result casts) and there is no BatchNorm.
//!
//! Layer sums are exact (checked: at most [`crate::EXACT_BITS`] bits), then cast to the
//! accumulator (if any) and result types, as for [`Dense`].

use serde::{Deserialize, Serialize};

use crate::config::LayerPrecision;
use crate::dense::{check_values, layer_error, Dense, EXACT_BITS};
use crate::error::Result;
use crate::fixed::{FixedType, Overflow, Rounding};

/// The most nodes (beams included) a jet may hold in a pair graph: the bound under which
/// the total sums over `nodes^2` pairs are checked to stay exact.
pub const MAX_NODES: usize = 256;

/// PELICAN's embedding of one product: `sgn(d) ((1 + |d|)^(a^2) - 1) / a^2` with
/// `a^2 = alpha^2 + 1e-6`, evaluated in f64 from the f32 product the float model sees.
/// The quantised forward and the engine both compute it through [`embed_log`] and
/// [`embed_with_log`] (the engine shares the logarithm between channels), so they round
/// the same number to the input type.
pub fn embed_dot(dot: f32, alpha: f32) -> f64 {
    embed_with_log(embed_log(dot), dot < 0.0, alpha)
}

/// The channel-independent part of [`embed_dot`]: `ln(1 + |d|)`.
pub fn embed_log(dot: f32) -> f64 {
    f64::from(dot).abs().ln_1p()
}

/// The rest of [`embed_dot`] for one channel, from `log = embed_log(d)` and the sign.
pub fn embed_with_log(log: f64, negative: bool, alpha: f32) -> f64 {
    let a = f64::from(alpha);
    let a2 = a * a + 1e-6;
    let magnitude = (log * a2).exp_m1() / a2;
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

/// What a pair layer maps: its basis operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PairOps {
    /// Node labels to pairs (`Eq1to2`): `δ_ij l_i, l_i, l_j, S, δ_ij S` with `S` the
    /// scaled sum of the labels over nodes.
    NodeToPair,
    /// Pairs to pairs (`Eq2to2`), the 15 operations `t_ij, t_ji, δ_ij d_i, d_i, d_j, r_i,
    /// c_i, r_j, c_j, δ_ij r_i, δ_ij c_i, tr, δ_ij tr, s, δ_ij s` (diagonal `d`, scaled
    /// row sums `r`, column sums `c`, trace `tr` and total `s`), plus a diagonal bias.
    PairToPair,
    /// Pairs to jet features (`Eq2to0`): `tr, s`.
    PairToJet,
}

impl PairOps {
    /// Basis operations.
    pub fn count(self) -> usize {
        match self {
            Self::NodeToPair => 5,
            Self::PairToPair => 15,
            Self::PairToJet => 2,
        }
    }

    /// Whether operation `k` reads an aggregate (a `pool`-typed value) rather than a
    /// value of the layer's input type.
    pub fn reads_aggregate(self, k: usize) -> bool {
        match self {
            Self::NodeToPair => k >= 3,
            Self::PairToPair => k >= 5,
            Self::PairToJet => true,
        }
    }
}

/// Where the terms of a 2 -> 2 layer ([`PairOps::PairToPair`]) sit in its basis: per
/// node, the operations on its diagonal entry, scaled row sum and scaled column sum that
/// are broadcast along rows (`i`), along columns (`j`) and onto the diagonal; per jet,
/// those on the trace and the total, for every pair and onto the diagonal.
pub(crate) mod pair_to_pair_ops {
    /// Node terms broadcast along rows: `d_i, r_i, c_i`.
    pub(crate) const ROWS: [usize; 3] = [3, 5, 6];
    /// Node terms broadcast along columns: `d_j, r_j, c_j`.
    pub(crate) const COLUMNS: [usize; 3] = [4, 7, 8];
    /// Node terms on the diagonal: `δ_ij d_i, δ_ij r_i, δ_ij c_i`.
    pub(crate) const DIAGONAL: [usize; 3] = [2, 9, 10];
    /// Jet terms for every pair: `tr, s`.
    pub(crate) const JET: [usize; 2] = [11, 13];
    /// Jet terms on the diagonal: `δ_ij tr, δ_ij s`.
    pub(crate) const JET_DIAGONAL: [usize; 2] = [12, 14];
}

/// One permutation-equivariant layer in fixed point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairLayer {
    /// Its checkpoint path (`blocks.0.eq2to2`).
    pub name: String,
    /// Its basis.
    pub ops: PairOps,
    /// Input channels.
    pub inputs: usize,
    /// Output channels.
    pub outputs: usize,
    /// Quantised weights `[ops][inputs][outputs]` (the checkpoint's layout).
    pub weight: Vec<f64>,
    /// Quantised bias `[outputs]`.
    pub bias: Vec<f64>,
    /// Quantised diagonal bias `[outputs]` ([`PairOps::PairToPair`] only; else empty).
    pub diag_bias: Vec<f64>,
    /// Its precisions.
    pub precision: LayerPrecision,
    /// Whether a ReLU follows.
    pub relu: bool,
}

/// PELICAN's equivariant part: embedding, labels, blocks and readout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairStage {
    /// The embedding exponents, one per embedded channel (the f32 checkpoint values).
    pub alphas: Vec<f32>,
    /// The labels layer ([`PairOps::NodeToPair`] on the 2 beam/particle labels); its
    /// result type is the graph's input type, so that its channels join the embedded
    /// products as one tensor.
    pub labels: PairLayer,
    /// Per block: the message layer on every pair, then the 2 -> 2 layer.
    pub blocks: Vec<(Dense, PairLayer)>,
    /// The readout's message layer.
    pub readout_message: Dense,
    /// The readout ([`PairOps::PairToJet`]).
    pub readout: PairLayer,
    /// The type every aggregate is cast to.
    pub pool: FixedType,
    /// Aggregates are sums times `2^-shift` (the total `2^-2 shift`).
    pub shift: u32,
}

/// The type of the 0/1 labels.
pub(crate) fn label_type() -> FixedType {
    FixedType::new(1, 1, false, Rounding::Trn, Overflow::Sat).expect("ap_ufixed<1,1>")
}

impl PairStage {
    /// Jet features out of the stage.
    pub fn outputs(&self) -> usize {
        self.readout.outputs
    }

    /// Checks shapes, the labels' result type, representable parameters, exact sums.
    pub(crate) fn validate(&self, input: FixedType) -> Result<()> {
        if self.alphas.is_empty() || self.alphas.iter().any(|a| !a.is_finite()) {
            return Err(layer_error(
                "embed",
                "the exponents must be finite and not empty".into(),
            ));
        }
        if self.labels.precision.result != input {
            return Err(layer_error(
                &self.labels.name,
                format!(
                    "its result type {} must be the input type {input}",
                    self.labels.precision.result
                ),
            ));
        }
        self.check_pair(&self.labels, PairOps::NodeToPair, 2, label_type())?;
        let (mut width, mut ty) = (self.alphas.len() + self.labels.outputs, input);
        for (message, eq) in &self.blocks {
            width = check_dense(message, width, ty)?;
            width = self.check_pair(eq, PairOps::PairToPair, width, message.precision.result)?;
            ty = eq.precision.result;
        }
        let m = &self.readout_message;
        width = check_dense(m, width, ty)?;
        self.check_pair(&self.readout, PairOps::PairToJet, width, m.precision.result)?;
        Ok(())
    }

    /// Checks a pair layer fed `width` channels of type `ty`; returns its output width.
    fn check_pair(
        &self,
        p: &PairLayer,
        ops: PairOps,
        width: usize,
        ty: FixedType,
    ) -> Result<usize> {
        let out = check_pair(p, ops, width)?;
        check_bits(&p.name, pair_sum_bits(p, ty, self.pool))?;
        // The raw sum of up to MAX_NODES^2 values (its scaling is a shift).
        let aggregate = ty.width() + 2 * MAX_NODES.trailing_zeros();
        if aggregate > EXACT_BITS {
            return Err(layer_error(
                &p.name,
                format!(
                    "its total sums of up to {MAX_NODES}^2 {ty} values need {aggregate} \
                     bits, more than {EXACT_BITS}"
                ),
            ));
        }
        Ok(out)
    }
}

/// Checks a per-pair dense layer and that its sums are exact; returns its output width.
fn check_dense(layer: &Dense, width: usize, input: FixedType) -> Result<usize> {
    let out = crate::dense::check_dense(layer, width)?;
    check_bits(&layer.name, crate::dense::sum_bits(layer, input))?;
    Ok(out)
}

fn check_bits(layer: &str, bits: u32) -> Result<()> {
    if bits > EXACT_BITS {
        return Err(layer_error(
            layer,
            format!(
                "its sums need {bits} bits, more than the {EXACT_BITS} the quantised \
                 forward holds exactly: narrow the weight, result or pool types"
            ),
        ));
    }
    Ok(())
}

/// Checks a pair layer's role, shapes and parameters; returns its output width.
fn check_pair(p: &PairLayer, expected: PairOps, width: usize) -> Result<usize> {
    let diag = if p.ops == PairOps::PairToPair {
        p.outputs
    } else {
        0
    };
    if p.ops != expected
        || p.inputs != width
        || p.weight.len() != p.ops.count() * p.inputs * p.outputs
        || p.bias.len() != p.outputs
        || p.diag_bias.len() != diag
    {
        return Err(layer_error(
            &p.name,
            format!(
                "{:?} with {} inputs (fed {width}), {} weights, {} biases and {} diagonal \
                 biases for {} outputs",
                p.ops,
                p.inputs,
                p.weight.len(),
                p.bias.len(),
                p.diag_bias.len(),
                p.outputs
            ),
        ));
    }
    let pr = &p.precision;
    check_values(
        &p.name,
        &[
            ("weight", &p.weight, pr.weight),
            ("bias", &p.bias, pr.bias),
            ("diag_bias", &p.diag_bias, pr.bias),
        ],
    )?;
    Ok(p.outputs)
}

/// The fraction bits of a pair layer's sums: those of its finest product or bias.
pub(crate) fn pair_sum_fraction(p: &PairLayer, input: FixedType, pool: FixedType) -> i32 {
    let w = p.precision.weight.fraction();
    (w + input.fraction())
        .max(w + pool.fraction())
        .max(p.precision.bias.fraction())
}

/// The bits a pair layer's sums span: every product of every operation and both biases,
/// from the finest fraction bit to the highest integer bit.
pub fn pair_sum_bits(p: &PairLayer, input: FixedType, pool: FixedType) -> u32 {
    let w = p.precision.weight;
    let terms = (p.ops.count() * p.inputs + 2) as u64;
    let growth = terms.next_power_of_two().trailing_zeros() as i32;
    let integer = (w.integer() + input.integer().max(pool.integer()) + growth)
        .max(p.precision.bias.integer() + 2)
        + 1;
    (integer + pair_sum_fraction(p, input, pool)).max(1) as u32
}

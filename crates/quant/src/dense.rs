//! One fixed-point dense layer and the bit arithmetic of its sums, shared by every
//! stage of a [`crate::QuantGraph`].

use serde::{Deserialize, Serialize};

use crate::config::LayerPrecision;
use crate::error::{QuantError, Result};
use crate::fixed::FixedType;

/// The most bits any sum may need: the quantised float forward runs in f64 and is exact
/// only within its 53-bit mantissa (the engine's 64-bit registers would allow more).
pub const EXACT_BITS: u32 = 53;

/// One fixed-point dense layer, `y = relu?(result(accum(W x + b)))`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    /// Its checkpoint path (`phi.0`).
    pub name: String,
    /// Input features.
    pub inputs: usize,
    /// Output features.
    pub outputs: usize,
    /// Quantised weights `[outputs][inputs]`, row-major (values of `precision.weight`).
    pub weight: Vec<f64>,
    /// Quantised biases `[outputs]` (values of `precision.bias`).
    pub bias: Vec<f64>,
    /// Its precisions.
    pub precision: LayerPrecision,
    /// Whether a ReLU follows.
    pub relu: bool,
}

pub(crate) fn layer_error(layer: &str, detail: String) -> QuantError {
    QuantError::Layer {
        layer: layer.to_owned(),
        detail,
    }
}

/// Checks one layer against the width feeding it; returns its output width.
pub(crate) fn check_dense(layer: &Dense, width: usize) -> Result<usize> {
    if layer.inputs != width
        || layer.weight.len() != layer.inputs * layer.outputs
        || layer.bias.len() != layer.outputs
    {
        return Err(layer_error(
            &layer.name,
            format!(
                "{} inputs (fed {width}), {} weights, {} biases for {} outputs",
                layer.inputs,
                layer.weight.len(),
                layer.bias.len(),
                layer.outputs
            ),
        ));
    }
    let p = &layer.precision;
    check_values(
        &layer.name,
        &[
            ("weight", &layer.weight, p.weight),
            ("bias", &layer.bias, p.bias),
        ],
    )?;
    Ok(layer.outputs)
}

/// Checks that every parameter of a layer is a value of its type: `(what, values, type)`
/// per tensor; the error names the layer, the tensor and the first offending entry.
pub(crate) fn check_values(layer: &str, tensors: &[(&str, &[f64], FixedType)]) -> Result<()> {
    for &(what, values, ty) in tensors {
        if let Some((k, v)) = values
            .iter()
            .enumerate()
            .find(|(_, v)| ty.quantize(**v) != **v)
        {
            return Err(layer_error(
                layer,
                format!("{what}[{k}] = {v} is not a value of {ty}"),
            ));
        }
    }
    Ok(())
}

/// The bits a layer's sums span: from the lowest fraction bit of a product or the bias
/// to the highest integer bit of `inputs` products plus the bias.
pub fn sum_bits(layer: &Dense, input: FixedType) -> u32 {
    let (w, b) = (layer.precision.weight, layer.precision.bias);
    let fraction = (w.fraction() + input.fraction()).max(b.fraction());
    let integer = (product_integer_bits(layer.inputs + 1, w, input)).max(b.integer() + 1) + 1;
    (integer + fraction).max(1) as u32
}

/// The bits a sum of `terms` products of `weight` and `input` values spans, bias aside.
pub fn product_bits(terms: usize, weight: FixedType, input: FixedType) -> u32 {
    let fraction = weight.fraction() + input.fraction();
    (product_integer_bits(terms, weight, input) + 1 + fraction).max(1) as u32
}

/// The integer bits of a sum of `terms` products, sign excluded.
fn product_integer_bits(terms: usize, weight: FixedType, input: FixedType) -> i32 {
    let growth = (terms as u64).next_power_of_two().trailing_zeros() as i32;
    weight.integer() + input.integer() + growth
}

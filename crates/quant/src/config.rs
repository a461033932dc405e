//! The `[quant]` section of a run config: the precision of every tensor a quantised
//! model computes, with per-layer overrides, in hls4ml's vocabulary (`weight`, `bias`,
//! `result`, `accum`).
//!
//! ```toml
//! [quant]
//! input = "ap_fixed<10,4,AP_RND_CONV,AP_SAT>"   # features entering the network
//! weight = "ap_fixed<8,2,AP_RND_CONV,AP_SAT>"
//! bias = "ap_fixed<8,2,AP_RND_CONV,AP_SAT>"
//! result = "ap_ufixed<8,4,AP_RND_CONV,AP_SAT>"  # every layer's output
//! pool = "ap_fixed<12,7,AP_RND_CONV,AP_SAT>"    # the sum over particles
//! [quant.layers."head"]
//! result = "ap_fixed<12,5,AP_RND_CONV,AP_SAT>"
//! ```
//!
//! Models with nonlinear stages computed by lookup tables (L-GATr-slim's norms, gates and
//! softmax) also read `table_input` (the type a table reads: its raw values index the
//! entries) and `table` (the type it returns), globally or per stage.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{QuantError, Result};
use crate::fixed::{FixedType, Overflow, Rounding};

/// hls4ml's default precision, `ap_fixed<16,6>`, with the modes QONNX can express
/// (round half to even, saturate).
fn default_type() -> FixedType {
    FixedType::new(16, 6, true, Rounding::RndConv, Overflow::Sat).expect("a valid type")
}

/// The type a lookup table reads unless set: `ap_fixed<10,5>` (1,024 entries over
/// [-16, 16) in steps of 1/32), rounding half to even and saturating.
pub fn default_table_input() -> FixedType {
    FixedType::new(10, 5, true, Rounding::RndConv, Overflow::Sat).expect("a valid type")
}

/// The type a lookup table returns unless set: `ap_fixed<12,4>` ([-8, 8) in steps of
/// 1/256), rounding half to even and saturating.
pub fn default_table() -> FixedType {
    FixedType::new(12, 4, true, Rounding::RndConv, Overflow::Sat).expect("a valid type")
}

/// The `[quant]` section. Read through a raw form of strings, so that a type that cannot be
/// represented is refused naming its setting (`layers."phi.0".weight`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawQuant")]
pub struct QuantConfig {
    /// The features entering the network.
    pub input: FixedType,
    /// Every layer's weights.
    pub weight: FixedType,
    /// Every layer's biases.
    pub bias: FixedType,
    /// Every layer's output (before its ReLU, which keeps the type).
    pub result: FixedType,
    /// Every layer's accumulator: the sum of products plus bias is cast to it before the
    /// result type. Absent: the exact sum (what hls4ml's `auto` accumulator computes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accum: Option<FixedType>,
    /// The sum over particles of Deep Sets models. Absent: `result`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<FixedType>,
    /// The type every lookup table reads. Absent: [`default_table_input`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_input: Option<FixedType>,
    /// The type every lookup table returns. Absent: [`default_table`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<FixedType>,
    /// Overrides by layer path (`phi.0`, `head`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub layers: BTreeMap<String, LayerOverride>,
}

impl Default for QuantConfig {
    fn default() -> Self {
        Self {
            input: default_type(),
            weight: default_type(),
            bias: default_type(),
            result: default_type(),
            accum: None,
            pool: None,
            table_input: None,
            table: None,
            layers: BTreeMap::new(),
        }
    }
}

/// The section as written: every type a string, parsed with its setting's name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuant {
    input: Option<String>,
    weight: Option<String>,
    bias: Option<String>,
    result: Option<String>,
    accum: Option<String>,
    pool: Option<String>,
    table_input: Option<String>,
    table: Option<String>,
    #[serde(default)]
    layers: BTreeMap<String, RawLayer>,
}

/// A layer's overrides as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayer {
    weight: Option<String>,
    bias: Option<String>,
    result: Option<String>,
    accum: Option<String>,
    table_input: Option<String>,
    table: Option<String>,
}

/// The type `spec` of `setting`, if given.
fn parse(setting: &str, spec: Option<&String>) -> Result<Option<FixedType>> {
    spec.map(|s| {
        s.parse().map_err(|e: QuantError| QuantError::BadSetting {
            setting: setting.to_owned(),
            detail: e.to_string(),
        })
    })
    .transpose()
}

impl TryFrom<RawQuant> for QuantConfig {
    type Error = QuantError;

    fn try_from(raw: RawQuant) -> Result<Self> {
        let defaults = Self::default();
        let or = |setting: &str, spec: Option<&String>, default: FixedType| {
            parse(setting, spec).map(|t| t.unwrap_or(default))
        };
        let layers = raw
            .layers
            .iter()
            .map(|(path, l)| {
                let setting = |key: &str| format!("layers.\"{path}\".{key}");
                Ok((
                    path.clone(),
                    LayerOverride {
                        weight: parse(&setting("weight"), l.weight.as_ref())?,
                        bias: parse(&setting("bias"), l.bias.as_ref())?,
                        result: parse(&setting("result"), l.result.as_ref())?,
                        accum: parse(&setting("accum"), l.accum.as_ref())?,
                        table_input: parse(&setting("table_input"), l.table_input.as_ref())?,
                        table: parse(&setting("table"), l.table.as_ref())?,
                    },
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            input: or("input", raw.input.as_ref(), defaults.input)?,
            weight: or("weight", raw.weight.as_ref(), defaults.weight)?,
            bias: or("bias", raw.bias.as_ref(), defaults.bias)?,
            result: or("result", raw.result.as_ref(), defaults.result)?,
            accum: parse("accum", raw.accum.as_ref())?,
            pool: parse("pool", raw.pool.as_ref())?,
            table_input: parse("table_input", raw.table_input.as_ref())?,
            table: parse("table", raw.table.as_ref())?,
            layers,
        })
    }
}

/// Per-layer overrides of the section's precisions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LayerOverride {
    /// The layer's weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<FixedType>,
    /// The layer's bias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<FixedType>,
    /// The layer's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<FixedType>,
    /// The layer's accumulator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accum: Option<FixedType>,
    /// The type a table stage reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_input: Option<FixedType>,
    /// The type a table stage returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<FixedType>,
}

/// The precisions of one dense layer, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LayerPrecision {
    /// Weights.
    pub weight: FixedType,
    /// Bias.
    pub bias: FixedType,
    /// Accumulator (`None`: exact).
    pub accum: Option<FixedType>,
    /// Output.
    pub result: FixedType,
}

impl QuantConfig {
    /// The precisions of the layer at `path`.
    pub fn layer(&self, path: &str) -> LayerPrecision {
        let o = self.layers.get(path).cloned().unwrap_or_default();
        LayerPrecision {
            weight: o.weight.unwrap_or(self.weight),
            bias: o.bias.unwrap_or(self.bias),
            accum: o.accum.or(self.accum),
            result: o.result.unwrap_or(self.result),
        }
    }

    /// The types a table stage at `path` reads and returns.
    pub fn table_types(&self, path: &str) -> (FixedType, FixedType) {
        let o = self.layers.get(path).cloned().unwrap_or_default();
        (
            o.table_input
                .or(self.table_input)
                .unwrap_or_else(default_table_input),
            o.table.or(self.table).unwrap_or_else(default_table),
        )
    }

    /// The type of the sum over particles.
    pub fn pool(&self) -> FixedType {
        self.pool.unwrap_or(self.result)
    }

    /// Rejects overrides for layers the model does not have.
    ///
    /// # Errors
    /// [`QuantError::BadSetting`] naming the layer and listing those that exist.
    pub fn check_layers(&self, paths: &[String]) -> Result<()> {
        match self.layers.keys().find(|k| !paths.contains(k)) {
            Some(unknown) => Err(QuantError::BadSetting {
                setting: format!("layers.\"{unknown}\""),
                detail: format!(
                    "the model has no layer {unknown} (its layers: {})",
                    paths.join(", ")
                ),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_name() {
        let q: QuantConfig = toml::from_str(
            r#"
            weight = "ap_fixed<6,1>"
            [layers."head"]
            result = "ap_fixed<12,5>"
            "#,
        )
        .unwrap();
        let head = q.layer("head");
        assert_eq!(head.weight.to_string(), "ap_fixed<6,1,AP_TRN,AP_WRAP>");
        assert_eq!(head.result.to_string(), "ap_fixed<12,5,AP_TRN,AP_WRAP>");
        assert_eq!(q.layer("phi.0").result, default_type());
        assert_eq!(q.pool(), default_type());
        let back: QuantConfig = toml::from_str(&toml::to_string(&q).unwrap()).unwrap();
        assert_eq!(back, q);
    }

    #[test]
    fn bad_types_unknown_keys_and_layers_are_named() {
        let err = toml::from_str::<QuantConfig>(r#"weight = "ap_fixed<8,9>""#).unwrap_err();
        assert!(
            err.message()
                .starts_with("[quant] weight: fixed-point type ap_fixed<8,9>: I = 9 > W = 8"),
            "{err}"
        );
        let err = toml::from_str::<QuantConfig>(
            r#"[layers."phi.0"]
            accum = "ap_fixed<40,9>""#,
        )
        .unwrap_err();
        assert!(
            err.message()
                .starts_with("[quant] layers.\"phi.0\".accum: fixed-point type ap_fixed<40,9>"),
            "{err}"
        );
        let err = toml::from_str::<QuantConfig>(
            r#"[layers."phi.0"]
            wieght = "ap_fixed<8,3>""#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("wieght"), "{err}");
        let q: QuantConfig = toml::from_str(
            r#"[layers."phi.7"]
            weight = "ap_fixed<8,3>""#,
        )
        .unwrap();
        let err = q
            .check_layers(&["phi.0".into(), "head".into()])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "[quant] layers.\"phi.7\": the model has no layer phi.7 (its layers: phi.0, head)"
        );
    }
}

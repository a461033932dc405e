//! L-GATr-slim in fixed point (the semantics are `noether_quant::SlimStage`'s; the
//! quantised forwards are in `slim_ops`): the `[quant]` settings of every stage, and the
//! model read back as the hardware description.
//!
//! Paths in `[quant.layers]`:
//! - every `SlimLinear` (`linear_in`, `blocks.0.attention.linear_in`,
//!   `blocks.0.mlp.layers.0.linear`, `linear_out`, ...): `weight`, `bias`, `accum`,
//!   `result`, for its vector and scalar maps alike;
//! - every norm (`blocks.0.norm1`, `blocks.0.norm2`, and `blocks.0.attention.norm` for the
//!   queries, keys and values): `weight` (the gains), `table_input` (the sum of squares),
//!   `table` (the factor), `result`;
//! - every gated unit (`blocks.0.mlp.layers.0`): `table_input` (the gates' inputs),
//!   `table` (the gates), `result`;
//! - every softmax (`blocks.0.attention.softmax`): `table_input` (the logits minus their
//!   maximum), `accum` (the sum of numerators, the reciprocal table's input; absent: the
//!   `table_input` type), `table` (numerators and reciprocal), `result` (probabilities);
//! - `blocks.0.attention.heads`: `result` (the attention-weighted values);
//! - `blocks.0`: `result` (the residual stream).

use candle_core::{DType, Tensor};
use noether_quant::{
    fake_quantize, Activation, QuantConfig, QuantError, SlimAttentionLayer, SlimBlockLayer,
    SlimGluLayer, SlimLinearLayer, SlimNormLayer, SlimStage, Table, TableFn,
};

use crate::error::Result;
use crate::quantized::dense;
use crate::slim_layers::{
    Nonlinearity, SlimBlock, SlimGlu, SlimLinear, SlimRmsNorm, SlimSelfAttention, NORM_EPSILON,
};
use crate::slim_ops::{AttentionQuant, GateQuant, NormQuant};

fn activation(n: Nonlinearity) -> Activation {
    match n {
        Nonlinearity::Relu => Activation::Relu,
        Nonlinearity::Sigmoid => Activation::Sigmoid,
        Nonlinearity::Tanh => Activation::Tanh,
        Nonlinearity::Gelu => Activation::Gelu,
        Nonlinearity::Silu => Activation::Silu,
    }
}

/// Every quantised stage of a network, by path, for `[quant.layers]`: the network's own
/// linear maps and its blocks (whose linear maps are found below them).
pub(crate) struct Stages<'a> {
    pub(crate) linears: Vec<(String, &'a mut SlimLinear)>,
    pub(crate) blocks: Vec<(String, &'a mut SlimBlock)>,
}

/// The paths a `[quant.layers]` override may name.
fn stage_paths(stages: &mut Stages) -> Vec<String> {
    let mut paths: Vec<String> = stages.linears.iter().map(|(p, _)| p.clone()).collect();
    for (p, block) in &mut stages.blocks {
        paths.extend(
            block
                .linears_mut()
                .into_iter()
                .map(|(n, _)| format!("{p}.{n}")),
        );
        paths.push(p.clone());
        for name in [
            "norm1",
            "norm2",
            "attention.norm",
            "attention.softmax",
            "attention.heads",
        ] {
            paths.push(format!("{p}.{name}"));
        }
        for k in 0..block.mlp.glus.len() {
            paths.push(format!("{p}.mlp.{}", glu_name(block, k)));
        }
    }
    paths
}

/// The state-dict name of a block's `k`-th gated unit below its MLP (`layers.0`).
fn glu_name(block: &SlimBlock, k: usize) -> String {
    format!("layers.{}", k * block.mlp.stride())
}

fn norm_quant(quant: &QuantConfig, path: &str, channels: usize) -> NormQuant {
    let (input, output) = quant.table_types(path);
    let p = quant.layer(path);
    NormQuant {
        gain: p.weight,
        table: Table {
            function: TableFn::InvRms {
                channels,
                epsilon: NORM_EPSILON,
            },
            input,
            output,
        },
        result: p.result,
    }
}

/// Sets every stage's fixed-point form from `quant`.
///
/// # Errors
/// An override naming a stage the network does not have.
pub(crate) fn set_quant(mut stages: Stages, quant: &QuantConfig) -> Result<()> {
    quant.check_layers(&stage_paths(&mut stages))?;
    let set_linear = |path: &str, linear: &mut SlimLinear| {
        let p = quant.layer(path);
        linear.linear_v.set_precision(Some(p));
        if let Some(s) = linear.linear_s.as_mut() {
            s.set_precision(Some(p));
        }
    };
    for (path, linear) in stages.linears {
        set_linear(&path, linear);
    }
    for (path, block) in stages.blocks {
        for (name, linear) in block.linears_mut() {
            set_linear(&format!("{path}.{name}"), linear);
        }
        let (v, s) = block.norm1.channels();
        block.norm1.quant = Some(norm_quant(quant, &format!("{path}.norm1"), v + s));
        block.norm2.quant = Some(norm_quant(quant, &format!("{path}.norm2"), v + s));
        let a = &mut block.attention;
        let softmax = format!("{path}.attention.softmax");
        let (input, output) = quant.table_types(&softmax);
        let sp = quant.layer(&softmax);
        a.quant = Some(AttentionQuant {
            norm: norm_quant(quant, &format!("{path}.attention.norm"), a.hv + a.hs),
            exp: Table {
                function: TableFn::Exp {
                    scale: 1.0 / ((4 * a.hv + a.hs) as f64).sqrt(),
                },
                input,
                output,
            },
            recip: Table {
                function: TableFn::Recip,
                input: sp.accum.unwrap_or(input),
                output,
            },
            probabilities: sp.result,
            heads: quant.layer(&format!("{path}.attention.heads")).result,
        });
        let stride = block.mlp.stride();
        for (k, glu) in block.mlp.glus.iter_mut().enumerate() {
            let glu_path = format!("{path}.mlp.layers.{}", k * stride);
            glu.quant = Some(gate_quant(glu, quant, &glu_path));
        }
        block.residual = Some(quant.layer(&path).result);
    }
    Ok(())
}

fn gate_quant(glu: &SlimGlu, quant: &QuantConfig, path: &str) -> GateQuant {
    let (input, output) = quant.table_types(path);
    let table = |act: Nonlinearity, scale: f64| Table {
        function: TableFn::Activation {
            act: activation(act),
            scale,
        },
        input,
        output,
    };
    GateQuant {
        // The package gates vectors by act_v(<a, b> / 2).
        gate_v: table(glu.act_v, 0.5),
        gate_s: table(glu.act_s, 1.0),
        result: quant.layer(path).result,
    }
}

/// The quantised `SlimLinear` at `path` in hardware terms.
pub(crate) fn linear_layer(path: &str, layer: &SlimLinear) -> Result<SlimLinearLayer> {
    let (in_v, out_v) = layer.linear_v.dims();
    let vectors = (in_v > 0 && out_v > 0)
        .then(|| dense(&format!("{path}.weight_v"), &layer.linear_v, false))
        .transpose()?;
    let scalars = layer
        .linear_s
        .as_ref()
        .map(|s| dense(&format!("{path}.linear_s"), s, false))
        .transpose()?;
    Ok(SlimLinearLayer {
        name: path.to_owned(),
        vectors,
        scalars,
        bias: layer.linear_s.as_ref().is_some_and(|s| s.bias().is_some()),
    })
}

fn not_quantised(path: &str) -> crate::ModelError {
    QuantError::Layer {
        layer: path.to_owned(),
        detail: "not quantised".into(),
    }
    .into()
}

fn norm_layer(path: &str, norm: &SlimRmsNorm, channels: (usize, usize)) -> Result<SlimNormLayer> {
    let q = norm.quant.ok_or_else(|| not_quantised(path))?;
    let gains = norm
        .weights
        .as_ref()
        .map(|(v, s)| -> Result<(Vec<f64>, Vec<f64>)> {
            let values = |t: &Tensor| -> Result<Vec<f64>> {
                use crate::error::Context;
                fake_quantize(&t.to_dtype(DType::F64).context(path)?, q.gain)
                    .and_then(|t| t.to_vec1::<f64>())
                    .context(path)
            };
            Ok((values(v)?, values(s)?))
        })
        .transpose()?;
    Ok(SlimNormLayer {
        name: path.to_owned(),
        channels,
        gains,
        gain: q.gain,
        table: q.table,
        result: q.result,
    })
}

fn attention_layer(path: &str, a: &SlimSelfAttention) -> Result<SlimAttentionLayer> {
    let q = a.quant.ok_or_else(|| not_quantised(path))?;
    let norm = SlimRmsNorm {
        channels: (a.hv, a.hs),
        weights: None,
        quant: Some(q.norm),
    };
    Ok(SlimAttentionLayer {
        name: path.to_owned(),
        heads: a.heads,
        head_channels: (a.hv, a.hs),
        linear_in: linear_layer(&format!("{path}.linear_in"), &a.linear_in)?,
        norm: norm_layer(&format!("{path}.norm"), &norm, (a.hv, a.hs))?,
        exp: q.exp,
        recip: q.recip,
        probabilities: q.probabilities,
        heads_result: q.heads,
        linear_out: linear_layer(&format!("{path}.linear_out"), &a.linear_out)?,
    })
}

/// The block at `path` in hardware terms.
pub(crate) fn block_layer(path: &str, block: &SlimBlock) -> Result<SlimBlockLayer> {
    let channels = block.norm1.channels();
    let glus = block
        .mlp
        .glus
        .iter()
        .enumerate()
        .map(|(k, g)| {
            let name = format!("{path}.mlp.{}", glu_name(block, k));
            let q = g.quant.ok_or_else(|| not_quantised(&name))?;
            Ok(SlimGluLayer {
                linear: linear_layer(&format!("{name}.linear"), &g.linear)?,
                name,
                gate_v: q.gate_v,
                gate_s: q.gate_s,
                result: q.result,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let last = format!(
        "{path}.mlp.layers.{}",
        block.mlp.glus.len() * block.mlp.stride()
    );
    Ok(SlimBlockLayer {
        name: path.to_owned(),
        norm1: norm_layer(&format!("{path}.norm1"), &block.norm1, channels)?,
        attention: attention_layer(&format!("{path}.attention"), &block.attention)?,
        norm2: norm_layer(&format!("{path}.norm2"), &block.norm2, channels)?,
        glus,
        last: linear_layer(&last, &block.mlp.last)?,
        residual: block.residual.ok_or_else(|| not_quantised(path))?,
    })
}

/// A quantised network's token stage.
pub(crate) fn slim_stage(
    scalars: usize,
    linear_in: &SlimLinear,
    blocks: &[SlimBlock],
) -> Result<SlimStage> {
    Ok(SlimStage {
        scalars,
        linear_in: linear_layer("linear_in", linear_in)?,
        blocks: blocks
            .iter()
            .enumerate()
            .map(|(i, b)| block_layer(&format!("blocks.{i}"), b))
            .collect::<Result<Vec<_>>>()?,
    })
}

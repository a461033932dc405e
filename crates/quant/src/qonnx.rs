//! Export of a [`QuantGraph`] to QONNX: ONNX with `Quant` nodes (domain
//! `qonnx.custom_op.general`), the format hls4ml (`convert_from_onnx_model`) and FINN
//! read. Every tensor the engine rounds gets a `Quant` node with its type's scale
//! `2^-F`, zero point 0, bit width `W`, signedness and rounding (`AP_RND_CONV` is
//! QONNX's `ROUND`, `AP_TRN` its `FLOOR`, which is also how hls4ml maps them back);
//! weights and biases are stored already quantised, each followed by its `Quant`.
//!
//! QONNX's `Quant` clamps, so only saturating types export; `AP_RND` (halves up) has no
//! QONNX rounding mode. Both are refused naming the tensor. QONNX executors compute in
//! float32: the export is exact where every sum fits float32's 24-bit mantissa, and
//! [`QonnxReport::inexact`] names the layers where it may not.

use std::path::Path;

use prost::Message;

use crate::dense::sum_bits;
use crate::error::{QuantError, Result};
use crate::graph::{ParticleStage, Pooling, QuantGraph};
use crate::onnx::{GraphProto, ModelProto, OperatorSetIdProto, ValueInfoProto};
use crate::pairs::MAX_NODES;
use crate::qonnx_builder::{int_attr, value_info, Builder, FLOAT32_BITS, QONNX_DOMAIN};
use crate::slim::MAX_TOKENS;

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct QonnxReport {
    /// Graph nodes.
    pub nodes: usize,
    /// `Quant` nodes among them.
    pub quant_nodes: usize,
    /// Layers whose sums may need more than float32's 24 bits, with the bits: a float32
    /// executor may round them where the engine does not.
    pub inexact: Vec<(String, u32)>,
}

/// How a Deep Sets export takes its particles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParticleLayout {
    /// Inputs `features` `[batch, nodes, features]` and `mask` `[batch, nodes, 1]`; the
    /// per-particle layers act on the stacked particles and `ReduceSum` pools them.
    #[default]
    Stacked,
    /// One input per particle, `features_{k}` `[batch, features]` and `mask_{k}`
    /// `[batch, 1]` (for the EFN also `weight_{k}` `[batch, 1]`, the pooling weight z,
    /// and `features_{k}` without it), the per-particle layers repeated for every
    /// particle (their weights stored once) and the pooled sum a chain of `Add`s: only
    /// two-dimensional tensors and operations that hls4ml 1.3's ONNX frontend converts
    /// (it reads no `ReduceSum` or `Gather`, and mis-shapes dense layers on stacked
    /// particles), which is how an FPGA evaluates the particles anyway, in parallel.
    /// For PELICAN: one input per pair of nodes, `embedded_{i}_{j}` `[batch, E]`, and
    /// per node `labels_{i}` `[batch, 2]` and `mask_{i}` `[batch, 1]`, every pair's
    /// layers repeated (see `qonnx_pairs_per_particle.rs`).
    PerParticle,
}

/// The QONNX model of `graph` for jets of `nodes` particles (for PELICAN: nodes, beams
/// included; for L-GATr-slim: tokens, class token and spurions included): for Deep Sets
/// and PELICAN graphs the inputs of `layout` (PELICAN's stacked ones are `embedded`,
/// `labels` and `mask`; see [`crate::PairStage`]), for L-GATr-slim `tokens` and `mask`
/// (stacked only; see [`crate::SlimStage`]), otherwise `features` `[batch, features]`;
/// output `logits`.
///
/// # Errors
/// [`QuantError::Export`] naming a tensor whose type QONNX cannot express, or a pair
/// model asked for more than [`MAX_NODES`] nodes; graph checks.
pub fn qonnx_model(
    graph: &QuantGraph,
    nodes: usize,
    layout: ParticleLayout,
) -> Result<(ModelProto, QonnxReport)> {
    graph.validate()?;
    if graph.pairs.is_some() && nodes > MAX_NODES {
        return Err(QuantError::Export(format!(
            "{}: {nodes} nodes (beams included), more than the {MAX_NODES} whose sums a pair \
             model is checked to keep exact",
            graph.model
        )));
    }
    let mut b = Builder::default();
    let mut inputs = vec![];
    let mut inexact = Vec::new();
    let mut y = if let Some(stage) = &graph.slim {
        if layout == ParticleLayout::PerParticle {
            return Err(QuantError::Export(format!(
                "{}: a token model exports only the stacked layout (its attention mixes all \
                 tokens)",
                graph.model
            )));
        }
        if nodes > MAX_TOKENS {
            return Err(QuantError::Export(format!(
                "{}: {nodes} tokens, more than the {MAX_TOKENS} whose sums a token model is \
                 checked to keep exact",
                graph.model
            )));
        }
        inexact = crate::qonnx_slim::inexact(stage, graph.input, nodes)?;
        inputs.extend(crate::qonnx_slim::inputs(stage, nodes));
        crate::qonnx_slim::slim_stage(&mut b, stage, graph.input, nodes)?
    } else if let Some(stage) = &graph.pairs {
        inexact = crate::qonnx_pairs::inexact(stage, graph.input, nodes);
        match layout {
            ParticleLayout::Stacked => {
                inputs.extend(crate::qonnx_pairs::inputs(stage, nodes));
                crate::qonnx_pairs::pair_stage(&mut b, stage, graph.input, nodes)?
            }
            ParticleLayout::PerParticle => {
                use crate::qonnx_pairs_per_particle as per_pair;
                inputs.extend(per_pair::inputs(stage, nodes));
                per_pair::pair_stage(&mut b, stage, graph.input, nodes)?
            }
        }
    } else if let Some(stage) = &graph.particles {
        match layout {
            ParticleLayout::Stacked => stacked_particles(&mut b, &mut inputs, graph, stage, nodes)?,
            ParticleLayout::PerParticle => per_particle(&mut b, &mut inputs, graph, stage, nodes)?,
        }
    } else {
        inputs.push(value_info("features", &[None, Some(graph.jet_features)]));
        b.quant("features", graph.input, "input")?
    };
    for layer in &graph.jet {
        y = b.dense(&y, layer)?;
    }
    // The last node writes the graph output itself: hls4ml drops an Identity and with it
    // the output.
    let last = b.nodes.last_mut().expect("a graph has nodes");
    debug_assert_eq!(last.output, [y]);
    last.output = vec!["logits".into()];
    inexact.extend(
        graph
            .layers()
            .into_iter()
            .map(|(layer, input)| (layer.name.clone(), sum_bits(layer, input)))
            .filter(|(_, bits)| *bits > FLOAT32_BITS),
    );
    let report = QonnxReport {
        nodes: b.nodes.len(),
        quant_nodes: b.quant_nodes,
        inexact,
    };
    let model = ModelProto {
        ir_version: 8,
        producer_name: "noether".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!("{} exported by noether-quant", graph.model),
        graph: Some(GraphProto {
            node: b.nodes,
            name: graph.model.clone(),
            initializer: b.initializers,
            input: inputs,
            output: vec![value_info("logits", &[None, Some(graph.classes())])],
        }),
        opset_import: vec![
            OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            },
            OperatorSetIdProto {
                domain: QONNX_DOMAIN.into(),
                version: 1,
            },
        ],
    };
    Ok((model, report))
}

/// Writes [`qonnx_model`] to `path` (atomically: a temporary file renamed into place).
///
/// # Errors
/// As [`qonnx_model`]; [`QuantError::Io`] naming the file.
pub fn export_qonnx(
    graph: &QuantGraph,
    nodes: usize,
    layout: ParticleLayout,
    path: &Path,
) -> Result<QonnxReport> {
    let (model, report) = qonnx_model(graph, nodes, layout)?;
    let io = |source| QuantError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("onnx.partial");
    std::fs::write(&tmp, model.encode_to_vec()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(report)
}

/// The per-particle layers on stacked particles, pooled by `ReduceSum`.
fn stacked_particles(
    b: &mut Builder,
    inputs: &mut Vec<ValueInfoProto>,
    graph: &QuantGraph,
    stage: &ParticleStage,
    nodes: usize,
) -> Result<String> {
    let x = b.quant("features", graph.input, "input")?;
    inputs.push(value_info(
        "features",
        &[None, Some(nodes), Some(stage.features)],
    ));
    inputs.push(value_info("mask", &[None, Some(nodes), Some(1)]));
    let (mut h, weight) = match stage.pooling {
        Pooling::Sum => (x, "mask".to_owned()),
        Pooling::Weighted(k) => {
            let keep: Vec<i64> = (0..stage.features as i64)
                .filter(|&f| f != k as i64)
                .collect();
            let keep = b.indices("phi_features", keep);
            let z = b.indices("weight_feature", vec![k as i64]);
            let axis = || vec![int_attr("axis", 2)];
            let h = b.node("Gather", "phi_inputs", &[&x, &keep], axis());
            let z = b.node("Gather", "weights", &[&x, &z], axis());
            (h, b.node("Mul", "masked_weights", &[&z, "mask"], vec![]))
        }
    };
    for layer in &stage.layers {
        h = b.dense(&h, layer)?;
    }
    let weighted = b.node("Mul", "pool_weighted", &[&h, &weight], vec![]);
    let axes = b.indices("pool_axes", vec![1]);
    let sum = b.node(
        "ReduceSum",
        "pool_sum",
        &[&weighted, &axes],
        vec![int_attr("keepdims", 0)],
    );
    b.quant(&sum, stage.pool, "pool")
}

/// The per-particle layers repeated for each particle's own inputs, pooled by a chain of
/// `Add`s (see [`ParticleLayout::PerParticle`]).
fn per_particle(
    b: &mut Builder,
    inputs: &mut Vec<ValueInfoProto>,
    graph: &QuantGraph,
    stage: &ParticleStage,
    nodes: usize,
) -> Result<String> {
    let weighted = matches!(stage.pooling, Pooling::Weighted(_));
    let phi_features = stage.features - usize::from(weighted);
    let mut sum: Option<String> = None;
    for k in 0..nodes {
        let (features, mask) = (format!("features_{k}"), format!("mask_{k}"));
        inputs.push(value_info(&features, &[None, Some(phi_features)]));
        b.scope = format!("_p{k}");
        let mut h = b.quant(&features, graph.input, "input")?;
        let weight = if weighted {
            let z = format!("weight_{k}");
            inputs.push(value_info(&z, &[None, Some(1)]));
            let z = b.quant(&z, graph.input, "weight_input")?;
            b.node("Mul", "masked_weights", &[&z, &mask], vec![])
        } else {
            mask.clone()
        };
        for layer in &stage.layers {
            h = b.dense(&h, layer)?;
        }
        let term = b.node("Mul", "pool_weighted", &[&h, &weight], vec![]);
        b.scope.clear();
        sum = Some(match sum {
            None => term,
            Some(partial) => b.node("Add", &format!("pool_add_{k}"), &[&partial, &term], vec![]),
        });
    }
    inputs.extend((0..nodes).map(|k| value_info(&format!("mask_{k}"), &[None, Some(1)])));
    let sum = sum.ok_or_else(|| QuantError::Export("a jet of no particles".into()))?;
    b.quant(&sum, stage.pool, "pool")
}

//! PELICAN's pair stage in QONNX. Inputs: `embedded` `[batch, nodes, nodes, E]`, the
//! embedded products already rounded to the input type (what a firmware's lookup table
//! of f_alpha gives; see [`crate::embed_dot`]), `labels` `[batch, nodes, 2]` (particle,
//! beam; zero for padding) and `mask` `[batch, nodes, 1]`. Pair tensors are
//! `[batch, nodes, nodes, C]`: aggregates are `ReduceSum`s (the diagonal through a
//! product with the identity), broadcasts are `Unsqueeze`s, `t_ji` is a `Transpose`, and
//! every basis operation is a `MatMul` with its own quantised weight.

use crate::dense::sum_bits;
use crate::error::Result;
use crate::fixed::FixedType;
use crate::onnx::ValueInfoProto;
use crate::pairs::{label_type, pair_sum_bits, pair_to_pair_ops as ops, PairLayer, PairStage};
use crate::qonnx_builder::{int_attr, value_info, Builder, FLOAT32_BITS};

/// The graph inputs of a pair stage for jets of `nodes` nodes.
pub(crate) fn inputs(stage: &PairStage, nodes: usize) -> Vec<ValueInfoProto> {
    vec![
        value_info(
            "embedded",
            &[None, Some(nodes), Some(nodes), Some(stage.alphas.len())],
        ),
        value_info("labels", &[None, Some(nodes), Some(2)]),
        value_info("mask", &[None, Some(nodes), Some(1)]),
    ]
}

/// Layers of the stage whose sums may need more than float32's 24 bits.
pub(crate) fn inexact(stage: &PairStage, input: FixedType, nodes: usize) -> Vec<(String, u32)> {
    // A total over nodes^2 pairs; its scaling by 2^-2 shift is exact in float32.
    let growth = 2 * (nodes as u64).next_power_of_two().trailing_zeros();
    let pair = |p: &PairLayer, ty: FixedType| {
        let total = ty.width() + growth;
        (p.name.clone(), pair_sum_bits(p, ty, stage.pool).max(total))
    };
    let mut out = vec![pair(&stage.labels, label_type())];
    let mut ty = input;
    for (message, eq) in &stage.blocks {
        out.push((message.name.clone(), sum_bits(message, ty)));
        out.push(pair(eq, message.precision.result));
        ty = eq.precision.result;
    }
    let m = &stage.readout_message;
    out.push((m.name.clone(), sum_bits(m, ty)));
    out.push(pair(&stage.readout, m.precision.result));
    out.retain(|(_, bits)| *bits > FLOAT32_BITS);
    out
}

/// Shared constants of one export.
struct Context<'a> {
    stage: &'a PairStage,
    /// `[nodes, nodes, 1]`, one on the diagonal.
    eye: String,
    /// The pair mask `[batch, nodes, nodes, 1]`.
    pair: String,
}

/// The pair stage: returns the name of the jet features `[batch, outputs]`.
pub(crate) fn pair_stage(
    b: &mut Builder,
    stage: &PairStage,
    input: FixedType,
    nodes: usize,
) -> Result<String> {
    let eye = b.constant(
        "eye",
        &[nodes, nodes, 1],
        (0..nodes * nodes)
            .map(|k| if k / nodes == k % nodes { 1.0 } else { 0.0 })
            .collect(),
    );
    let rows = unsqueeze(b, "mask", &[2], "mask_rows");
    let cols = unsqueeze(b, "mask", &[1], "mask_cols");
    let pair = b.node("Mul", "pair_mask", &[&rows, &cols], vec![]);
    let cx = Context { stage, eye, pair };
    let embedded = b.quant("embedded", input, "input")?;
    let labels = node_to_pair(b, &cx, "labels")?;
    let concat = vec![int_attr("axis", 3)];
    let mut t = b.node("Concat", "pairs_in", &[&embedded, &labels], concat);
    for (message, eq) in &stage.blocks {
        let m = b.dense(&t, message)?;
        let m = b.node(
            "Mul",
            &format!("{}_masked", message.name.replace('.', "_")),
            &[&m, &cx.pair],
            vec![],
        );
        t = pair_to_pair(b, &cx, &m, eq)?;
    }
    let m = b.dense(&t, &stage.readout_message)?;
    let m = b.node("Mul", "readout_message_masked", &[&m, &cx.pair], vec![]);
    pair_to_jet(b, &cx, &m, &stage.readout)
}

fn unsqueeze(b: &mut Builder, x: &str, axes: &[i64], name: &str) -> String {
    let axes = b.indices(&format!("{name}_axes"), axes.to_vec());
    b.node("Unsqueeze", name, &[x, &axes], vec![])
}

fn reduce_sum(b: &mut Builder, x: &str, axes: &[i64], name: &str) -> String {
    let axes = b.indices(&format!("{name}_axes"), axes.to_vec());
    b.node(
        "ReduceSum",
        name,
        &[x, &axes],
        vec![int_attr("keepdims", 0)],
    )
}

/// Adds every term, left to right.
pub(crate) fn add_all(b: &mut Builder, terms: &[String], name: &str) -> String {
    let mut sum = terms[0].clone();
    for (k, term) in terms.iter().enumerate().skip(1) {
        sum = b.node("Add", &format!("{name}_{k}"), &[&sum, term], vec![]);
    }
    sum
}

/// `x W_k`: basis operation `k` of `layer` (its weight block `[inputs, outputs]`).
pub(crate) fn mix(b: &mut Builder, x: &str, layer: &PairLayer, k: usize) -> Result<String> {
    let name = format!("{}_op{k}", layer.name.replace('.', "_"));
    let block = layer.inputs * layer.outputs;
    let w = b.constant(
        &format!("{name}_weight"),
        &[layer.inputs, layer.outputs],
        layer.weight[k * block..(k + 1) * block]
            .iter()
            .map(|&v| v as f32)
            .collect(),
    );
    let w = b.quant(&w, layer.precision.weight, &format!("{name}_weight"))?;
    Ok(b.node("MatMul", &format!("{name}_matmul"), &[x, &w], vec![]))
}

/// A bias vector of `layer`, quantised.
pub(crate) fn bias(
    b: &mut Builder,
    layer: &PairLayer,
    values: &[f64],
    what: &str,
) -> Result<String> {
    let name = format!("{}_{what}", layer.name.replace('.', "_"));
    let c = b.constant(
        &name,
        &[values.len()],
        values.iter().map(|&v| v as f32).collect(),
    );
    b.quant(&c, layer.precision.bias, &name)
}

/// A sum times `2^-scale`, cast to the `pool` type.
pub(crate) fn aggregate(
    b: &mut Builder,
    pool: FixedType,
    sum: &str,
    scale: u32,
    name: &str,
) -> Result<String> {
    let factor = b.constant(
        &format!("{name}_scale"),
        &[],
        vec![(-f64::from(scale)).exp2() as f32],
    );
    let scaled = b.node("Mul", &format!("{name}_scaled"), &[sum, &factor], vec![]);
    b.quant(&scaled, pool, name)
}

/// The accumulator and result casts, the ReLU and (for pair outputs) the pair mask.
pub(crate) fn finish(
    b: &mut Builder,
    y: &str,
    layer: &PairLayer,
    mask: Option<&str>,
) -> Result<String> {
    let name = layer.name.replace('.', "_");
    let mut y = y.to_owned();
    if let Some(accum) = layer.precision.accum {
        y = b.quant(&y, accum, &format!("{name}_accum"))?;
    }
    y = b.quant(&y, layer.precision.result, &format!("{name}_result"))?;
    if layer.relu {
        y = b.node("Relu", &format!("{name}_relu"), &[&y], vec![]);
    }
    if let Some(mask) = mask {
        y = b.node("Mul", &format!("{name}_masked"), &[&y, mask], vec![]);
    }
    Ok(y)
}

/// The labels layer (1 -> 2) on the `labels` input.
fn node_to_pair(b: &mut Builder, cx: &Context, l: &str) -> Result<String> {
    let layer = &cx.stage.labels;
    let shift = cx.stage.shift;
    let sum = reduce_sum(b, l, &[1], "labels_sum");
    let s = aggregate(b, cx.stage.pool, &sum, shift, "labels_aggregate")?;
    let first = mix(b, l, layer, 1)?;
    let first = unsqueeze(b, &first, &[2], "labels_first");
    let second = mix(b, l, layer, 2)?;
    let second = unsqueeze(b, &second, &[1], "labels_second");
    let jet = mix(b, &s, layer, 3)?;
    let bias = bias(b, layer, &layer.bias, "bias")?;
    let jet = b.node("Add", "labels_jet_bias", &[&jet, &bias], vec![]);
    let jet = unsqueeze(b, &jet, &[1, 2], "labels_jet");
    let on_diag = mix(b, l, layer, 0)?;
    let jet_diag = mix(b, &s, layer, 4)?;
    let jet_diag = unsqueeze(b, &jet_diag, &[1], "labels_jet_diag");
    let diag = b.node("Add", "labels_diag_sum", &[&on_diag, &jet_diag], vec![]);
    let diag = unsqueeze(b, &diag, &[2], "labels_diag_rows");
    let diag = b.node("Mul", "labels_diag", &[&diag, &cx.eye], vec![]);
    let y = add_all(b, &[first, second, jet, diag], "labels_sum_terms");
    finish(b, &y, layer, Some(&cx.pair))
}

/// The scaled row, column, trace and total sums of `t` and its diagonal.
struct Aggregates {
    diag: String,
    row: String,
    col: String,
    trace: String,
    total: String,
}

fn aggregates(b: &mut Builder, cx: &Context, t: &str, name: &str) -> Result<Aggregates> {
    let shift = cx.stage.shift;
    let on_diag = b.node("Mul", &format!("{name}_on_diag"), &[t, &cx.eye], vec![]);
    let diag = reduce_sum(b, &on_diag, &[2], &format!("{name}_diagonal"));
    let row = reduce_sum(b, t, &[2], &format!("{name}_row_sum"));
    let col = reduce_sum(b, t, &[1], &format!("{name}_col_sum"));
    let trace = reduce_sum(b, &diag, &[1], &format!("{name}_trace_sum"));
    let total = reduce_sum(b, t, &[1, 2], &format!("{name}_total_sum"));
    Ok(Aggregates {
        row: aggregate(b, cx.stage.pool, &row, shift, &format!("{name}_row"))?,
        col: aggregate(b, cx.stage.pool, &col, shift, &format!("{name}_col"))?,
        trace: aggregate(b, cx.stage.pool, &trace, shift, &format!("{name}_trace"))?,
        total: aggregate(
            b,
            cx.stage.pool,
            &total,
            2 * shift,
            &format!("{name}_total"),
        )?,
        diag,
    })
}

/// A 2 -> 2 layer (the 15 operations in `PairOps::PairToPair`'s order).
fn pair_to_pair(b: &mut Builder, cx: &Context, t: &str, layer: &PairLayer) -> Result<String> {
    let name = layer.name.replace('.', "_");
    let a = aggregates(b, cx, t, &name)?;
    let full = mix(b, t, layer, 0)?;
    let swapped = mix(b, t, layer, 1)?;
    let transposed = b.node(
        "Transpose",
        &format!("{name}_transposed"),
        &[&swapped],
        vec![crate::onnx::AttributeProto {
            name: "perm".into(),
            ints: vec![0, 2, 1, 3],
            r#type: crate::onnx::attribute_type::INTS,
            ..crate::onnx::AttributeProto::default()
        }],
    );
    let node_sum = |b: &mut Builder, ops: [usize; 3], what: &str| -> Result<String> {
        let terms = [
            mix(b, &a.diag, layer, ops[0])?,
            mix(b, &a.row, layer, ops[1])?,
            mix(b, &a.col, layer, ops[2])?,
        ];
        Ok(add_all(b, &terms, &format!("{name}_{what}")))
    };
    let first = node_sum(b, ops::ROWS, "first")?;
    let second = node_sum(b, ops::COLUMNS, "second")?;
    let on_diag = node_sum(b, ops::DIAGONAL, "on_diag")?;
    let jet_terms = [
        mix(b, &a.trace, layer, ops::JET[0])?,
        mix(b, &a.total, layer, ops::JET[1])?,
    ];
    let jet = add_all(b, &jet_terms, &format!("{name}_jet"));
    let bias_name = bias(b, layer, &layer.bias, "bias")?;
    let jet = b.node(
        "Add",
        &format!("{name}_jet_bias"),
        &[&jet, &bias_name],
        vec![],
    );
    let jet_diag_terms = [
        mix(b, &a.trace, layer, ops::JET_DIAGONAL[0])?,
        mix(b, &a.total, layer, ops::JET_DIAGONAL[1])?,
    ];
    let jet_diag = add_all(b, &jet_diag_terms, &format!("{name}_jet_diag"));
    let diag_bias = bias(b, layer, &layer.diag_bias, "diag_bias")?;
    let jet_diag = b.node(
        "Add",
        &format!("{name}_jet_diag_bias"),
        &[&jet_diag, &diag_bias],
        vec![],
    );
    let jet_diag = unsqueeze(b, &jet_diag, &[1], &format!("{name}_jet_diag_nodes"));
    let diag = b.node(
        "Add",
        &format!("{name}_diag_sum"),
        &[&on_diag, &jet_diag],
        vec![],
    );
    let diag = unsqueeze(b, &diag, &[2], &format!("{name}_diag_rows"));
    let diag = b.node(
        "Mul",
        &format!("{name}_diag_terms"),
        &[&diag, &cx.eye],
        vec![],
    );
    let first = unsqueeze(b, &first, &[2], &format!("{name}_first_rows"));
    let second = unsqueeze(b, &second, &[1], &format!("{name}_second_cols"));
    let jet = unsqueeze(b, &jet, &[1, 2], &format!("{name}_jet_pairs"));
    let y = add_all(
        b,
        &[full, transposed, first, second, jet, diag],
        &format!("{name}_terms"),
    );
    finish(b, &y, layer, Some(&cx.pair))
}

/// The 2 -> 0 readout: trace and total.
fn pair_to_jet(b: &mut Builder, cx: &Context, t: &str, layer: &PairLayer) -> Result<String> {
    let name = layer.name.replace('.', "_");
    let on_diag = b.node("Mul", &format!("{name}_on_diag"), &[t, &cx.eye], vec![]);
    let trace = reduce_sum(b, &on_diag, &[1, 2], &format!("{name}_trace_sum"));
    let trace = aggregate(
        b,
        cx.stage.pool,
        &trace,
        cx.stage.shift,
        &format!("{name}_trace"),
    )?;
    let total = reduce_sum(b, t, &[1, 2], &format!("{name}_total_sum"));
    let total = aggregate(
        b,
        cx.stage.pool,
        &total,
        2 * cx.stage.shift,
        &format!("{name}_total"),
    )?;
    let terms = [
        mix(b, &trace, layer, 0)?,
        mix(b, &total, layer, 1)?,
        bias(b, layer, &layer.bias, "bias")?,
    ];
    let y = add_all(b, &terms, &format!("{name}_terms"));
    finish(b, &y, layer, None)
}

//! PELICAN's pair stage in QONNX with one input per pair and per node
//! ([`crate::ParticleLayout::PerParticle`]): `embedded_{i}_{j}` `[batch, E]` (the
//! embedded products of nodes i and j, already in the input type), `labels_{i}`
//! `[batch, 2]` and `mask_{i}` `[batch, 1]`, nodes numbered from the beams. Every pair
//! and node is a tensor of its own, so the graph holds only two-dimensional tensors and
//! the operations hls4ml 1.3's ONNX frontend converts (it reads no `Unsqueeze`,
//! `ReduceSum` or `Transpose`): dense layers and their weights repeated per pair, `t_ji`
//! the other pair's tensor, broadcasts by reuse, aggregates as trees of `Add`s, and the
//! pair mask `mask_i * mask_j`.
//!
//! The arithmetic is the stacked export's ([`crate::qonnx_pairs`]) term for term: the
//! sums are exact, so only their grouping differs. Sums are balanced trees (a chain of
//! n additions would give hls4ml's inferred types n extra integer bits, a tree
//! `ceil(log2 n)`), a bias is added right after a product, the pattern hls4ml fuses
//! into a dense layer, and every constant has one reader (weights are stored per pair:
//! hls4ml folds a constant into its first reader and loses it for the others).

use crate::dense::Dense;
use crate::error::{QuantError, Result};
use crate::fixed::FixedType;
use crate::onnx::ValueInfoProto;
use crate::pairs::{pair_to_pair_ops as ops, PairLayer, PairStage};
use crate::qonnx_builder::{int_attr, value_info, Builder};
use crate::qonnx_pairs::{aggregate, bias, finish, mix};

/// The graph inputs for jets of `nodes` nodes: every pair's embedded products (row by
/// row), then every node's labels, then every node's mask.
pub(crate) fn inputs(stage: &PairStage, nodes: usize) -> Vec<ValueInfoProto> {
    let embedded = stage.alphas.len();
    let mut out = Vec::with_capacity(nodes * nodes + 2 * nodes);
    for i in 0..nodes {
        for j in 0..nodes {
            out.push(value_info(
                &format!("embedded_{i}_{j}"),
                &[None, Some(embedded)],
            ));
        }
    }
    out.extend((0..nodes).map(|i| value_info(&format!("labels_{i}"), &[None, Some(2)])));
    out.extend((0..nodes).map(|i| value_info(&format!("mask_{i}"), &[None, Some(1)])));
    out
}

/// One tensor per pair, row by row: `pairs[i * nodes + j]` is pair (i, j).
struct Pairs {
    nodes: usize,
    names: Vec<String>,
}

impl Pairs {
    fn at(&self, i: usize, j: usize) -> &str {
        &self.names[i * self.nodes + j]
    }

    /// `f(i, j)` for every pair, its nodes named with the pair's scope `_i_j`.
    fn build(
        b: &mut Builder,
        nodes: usize,
        mut f: impl FnMut(&mut Builder, usize, usize) -> Result<String>,
    ) -> Result<Self> {
        let mut names = Vec::with_capacity(nodes * nodes);
        for i in 0..nodes {
            for j in 0..nodes {
                b.scope = format!("_{i}_{j}");
                let name = f(b, i, j);
                b.scope.clear();
                names.push(name?);
            }
        }
        Ok(Self { nodes, names })
    }
}

/// `f(i)` for every node, its nodes named with the node's scope `_i`.
fn per_node(
    b: &mut Builder,
    nodes: usize,
    mut f: impl FnMut(&mut Builder, usize) -> Result<String>,
) -> Result<Vec<String>> {
    (0..nodes)
        .map(|i| {
            b.scope = format!("_{i}");
            let name = f(b, i);
            b.scope.clear();
            name
        })
        .collect()
}

/// The sum of `terms` as a balanced tree of `Add`s.
fn add_tree(b: &mut Builder, terms: &[String], name: &str) -> String {
    let mut level = terms.to_vec();
    let mut depth = 0;
    while level.len() > 1 {
        level = level
            .chunks(2)
            .enumerate()
            .map(|(k, pair)| match pair {
                [a, c] => b.node("Add", &format!("{name}_{depth}_{k}"), &[a, c], vec![]),
                [a] => a.clone(),
                _ => unreachable!("chunks of two"),
            })
            .collect();
        depth += 1;
    }
    level.swap_remove(0)
}

/// `x W_k + bias`: a product with the layer's bias added, which hls4ml fuses into one
/// dense layer.
fn mix_with_bias(
    b: &mut Builder,
    x: &str,
    layer: &PairLayer,
    k: usize,
    values: &[f64],
    what: &str,
) -> Result<String> {
    let product = mix(b, x, layer, k)?;
    let bias = bias(b, layer, values, what)?;
    let name = format!("{}_{what}_add", layer.name.replace('.', "_"));
    Ok(b.node("Add", &name, &[&product, &bias], vec![]))
}

/// The pair stage: returns the name of the jet features `[batch, outputs]`.
pub(crate) fn pair_stage(
    b: &mut Builder,
    stage: &PairStage,
    input: FixedType,
    nodes: usize,
) -> Result<String> {
    if nodes == 0 {
        return Err(QuantError::Export("a jet of no nodes".into()));
    }
    b.unique_constants = true;
    let mask = Pairs::build(b, nodes, |b, i, j| {
        let (mi, mj) = (format!("mask_{i}"), format!("mask_{j}"));
        Ok(b.node("Mul", "pair_mask", &[&mi, &mj], vec![]))
    })?;
    let labels = node_to_pair(b, stage, &mask)?;
    let mut t = Pairs::build(b, nodes, |b, i, j| {
        let embedded = b.quant(&format!("embedded_{i}_{j}"), input, "input")?;
        let concat = vec![int_attr("axis", 1)];
        Ok(b.node("Concat", "pairs_in", &[&embedded, labels.at(i, j)], concat))
    })?;
    for (message, eq) in &stage.blocks {
        let m = message_layer(b, &t, message, &mask)?;
        t = pair_to_pair(b, stage, &m, eq, &mask)?;
    }
    let m = message_layer(b, &t, &stage.readout_message, &mask)?;
    pair_to_jet(b, stage, &m, &stage.readout)
}

/// A dense layer on every pair, masked.
fn message_layer(b: &mut Builder, t: &Pairs, layer: &Dense, mask: &Pairs) -> Result<Pairs> {
    let name = format!("{}_masked", layer.name.replace('.', "_"));
    Pairs::build(b, t.nodes, |b, i, j| {
        let m = b.dense(t.at(i, j), layer)?;
        Ok(b.node("Mul", &name, &[&m, mask.at(i, j)], vec![]))
    })
}

/// The labels layer (1 -> 2): `δ_ij l_i W0 + l_i W1 + l_j W2 + S W3 + b + δ_ij S W4`.
fn node_to_pair(b: &mut Builder, stage: &PairStage, mask: &Pairs) -> Result<Pairs> {
    let layer = &stage.labels;
    let nodes = mask.nodes;
    let labels: Vec<String> = (0..nodes).map(|i| format!("labels_{i}")).collect();
    let sum = add_tree(b, &labels, "labels_sum");
    let s = aggregate(b, stage.pool, &sum, stage.shift, "labels_aggregate")?;
    let jet = mix_with_bias(b, &s, layer, 3, &layer.bias, "bias")?;
    let jet_diag = mix(b, &s, layer, 4)?;
    let first = per_node(b, nodes, |b, i| mix(b, &labels[i], layer, 1))?;
    let second = per_node(b, nodes, |b, i| mix(b, &labels[i], layer, 2))?;
    let diag = per_node(b, nodes, |b, i| {
        let own = mix(b, &labels[i], layer, 0)?;
        Ok(b.node("Add", "labels_diag", &[&own, &jet_diag], vec![]))
    })?;
    Pairs::build(b, nodes, |b, i, j| {
        let mut terms = vec![first[i].clone(), second[j].clone(), jet.clone()];
        if i == j {
            terms.push(diag[i].clone());
        }
        let y = add_tree(b, &terms, "labels_terms");
        finish(b, &y, layer, Some(mask.at(i, j)))
    })
}

/// A 2 -> 2 layer (the 15 operations in `PairOps::PairToPair`'s order).
fn pair_to_pair(
    b: &mut Builder,
    stage: &PairStage,
    t: &Pairs,
    layer: &PairLayer,
    mask: &Pairs,
) -> Result<Pairs> {
    let (nodes, shift) = (t.nodes, stage.shift);
    let name = layer.name.replace('.', "_");
    let diag: Vec<String> = (0..nodes).map(|i| t.at(i, i).to_owned()).collect();
    let row_sums = per_node(b, nodes, |b, i| {
        let row: Vec<String> = (0..nodes).map(|j| t.at(i, j).to_owned()).collect();
        Ok(add_tree(b, &row, &format!("{name}_row_sum")))
    })?;
    let col_sums = per_node(b, nodes, |b, i| {
        let col: Vec<String> = (0..nodes).map(|j| t.at(j, i).to_owned()).collect();
        Ok(add_tree(b, &col, &format!("{name}_col_sum")))
    })?;
    let trace = add_tree(b, &diag, &format!("{name}_trace_sum"));
    let total = add_tree(b, &row_sums, &format!("{name}_total_sum"));
    let pool = stage.pool;
    let row = per_node(b, nodes, |b, i| {
        aggregate(b, pool, &row_sums[i], shift, &format!("{name}_row"))
    })?;
    let col = per_node(b, nodes, |b, i| {
        aggregate(b, pool, &col_sums[i], shift, &format!("{name}_col"))
    })?;
    let trace = aggregate(b, pool, &trace, shift, &format!("{name}_trace"))?;
    let total = aggregate(b, pool, &total, 2 * shift, &format!("{name}_total"))?;

    let jet = [
        mix_with_bias(b, &trace, layer, ops::JET[0], &layer.bias, "bias")?,
        mix(b, &total, layer, ops::JET[1])?,
    ];
    let jet = add_tree(b, &jet, &format!("{name}_jet"));
    let jet_diag = [
        mix_with_bias(
            b,
            &trace,
            layer,
            ops::JET_DIAGONAL[0],
            &layer.diag_bias,
            "diag_bias",
        )?,
        mix(b, &total, layer, ops::JET_DIAGONAL[1])?,
    ];
    let jet_diag = add_tree(b, &jet_diag, &format!("{name}_jet_diag"));
    // Per node: the terms broadcast along rows (first), along columns (second) and onto
    // the diagonal.
    let node_sum = |b: &mut Builder, ops: [usize; 3], what: &str| {
        per_node(b, nodes, |b, i| {
            let terms = [
                mix(b, &diag[i], layer, ops[0])?,
                mix(b, &row[i], layer, ops[1])?,
                mix(b, &col[i], layer, ops[2])?,
            ];
            Ok(add_tree(b, &terms, &format!("{name}_{what}")))
        })
    };
    let first = node_sum(b, ops::ROWS, "first")?;
    let second = node_sum(b, ops::COLUMNS, "second")?;
    let on_diag = node_sum(b, ops::DIAGONAL, "on_diag")?;
    let on_diag = per_node(b, nodes, |b, i| {
        let inputs = [on_diag[i].as_str(), jet_diag.as_str()];
        Ok(b.node("Add", &format!("{name}_diag"), &inputs, vec![]))
    })?;
    let full = Pairs::build(b, nodes, |b, i, j| mix(b, t.at(i, j), layer, 0))?;
    let swapped = Pairs::build(b, nodes, |b, i, j| mix(b, t.at(i, j), layer, 1))?;
    Pairs::build(b, nodes, |b, i, j| {
        let mut terms = vec![
            full.at(i, j).to_owned(),
            swapped.at(j, i).to_owned(),
            first[i].clone(),
            second[j].clone(),
            jet.clone(),
        ];
        if i == j {
            terms.push(on_diag[i].clone());
        }
        let y = add_tree(b, &terms, &format!("{name}_terms"));
        finish(b, &y, layer, Some(mask.at(i, j)))
    })
}

/// The 2 -> 0 readout: `tr W0 + b + s W1`.
fn pair_to_jet(b: &mut Builder, stage: &PairStage, t: &Pairs, layer: &PairLayer) -> Result<String> {
    let name = layer.name.replace('.', "_");
    let diag: Vec<String> = (0..t.nodes).map(|i| t.at(i, i).to_owned()).collect();
    let trace = add_tree(b, &diag, &format!("{name}_trace_sum"));
    let trace = aggregate(b, stage.pool, &trace, stage.shift, &format!("{name}_trace"))?;
    let total = add_tree(b, &t.names, &format!("{name}_total_sum"));
    let total = aggregate(
        b,
        stage.pool,
        &total,
        2 * stage.shift,
        &format!("{name}_total"),
    )?;
    let terms = [
        mix_with_bias(b, &trace, layer, 0, &layer.bias, "bias")?,
        mix(b, &total, layer, 1)?,
    ];
    let y = add_tree(b, &terms, &format!("{name}_terms"));
    finish(b, &y, layer, None)
}

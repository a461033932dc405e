//! The integer engine's pair stage (PELICAN in fixed point) against hand arithmetic,
//! against the symmetries that exact integer sums must keep bit for bit (permuting the
//! nodes, adding padded ones), and its typed errors.

use noether_quant::{
    embed_dot, export_qonnx, Dense, Engine, FixedType, LayerPrecision, PairLayer, PairOps,
    PairStage, ParticleLayout, QuantError, QuantGraph,
};
use proptest::prelude::*;

fn t(s: &str) -> FixedType {
    s.parse().unwrap()
}

fn precision(weight: &str, result: &str) -> LayerPrecision {
    LayerPrecision {
        weight: t(weight),
        bias: t(weight),
        accum: None,
        result: t(result),
    }
}

const INPUT: &str = "ap_fixed<16,8,AP_RND_CONV,AP_SAT>";

fn dense(name: &str, inputs: usize, outputs: usize, weight: Vec<f64>, relu: bool) -> Dense {
    Dense {
        name: name.into(),
        inputs,
        outputs,
        weight,
        bias: vec![0.0; outputs],
        precision: precision("ap_fixed<8,3,AP_RND_CONV,AP_SAT>", INPUT),
        relu,
    }
}

fn pair(name: &str, ops: PairOps, inputs: usize, outputs: usize, weight: Vec<f64>) -> PairLayer {
    PairLayer {
        name: name.into(),
        ops,
        inputs,
        outputs,
        weight,
        bias: vec![0.0; outputs],
        diag_bias: if ops == PairOps::PairToPair {
            vec![0.0; outputs]
        } else {
            Vec::new()
        },
        precision: precision("ap_fixed<8,3,AP_RND_CONV,AP_SAT>", INPUT),
        relu: ops != PairOps::NodeToPair,
    }
}

/// One embedded channel with alpha = 1 (f(d) = d to within 3e-6), labels that add
/// nothing, no block, a readout message passing the embedded channel and a readout
/// mixing trace and total with `readout` = [w_trace, w_total]; the head copies it.
fn graph(readout: [f64; 2], shift: u32) -> QuantGraph {
    QuantGraph {
        model: "pelican".into(),
        input: t(INPUT),
        particles: None,
        slim: None,
        pairs: Some(PairStage {
            alphas: vec![1.0],
            labels: pair("labels", PairOps::NodeToPair, 2, 2, vec![0.0; 20]),
            blocks: Vec::new(),
            readout_message: dense("readout.message.linear", 3, 1, vec![1.0, 0.0, 0.0], true),
            readout: pair("readout.eq2to0", PairOps::PairToJet, 1, 1, readout.to_vec()),
            pool: t("ap_fixed<16,10,AP_RND_CONV,AP_SAT>"),
            shift,
        }),
        jet_features: 0,
        jet: vec![dense("head", 1, 1, vec![1.0], false)],
    }
}

/// Rows of `[dots | labels]` for a symmetric matrix of products; node 0 is a beam.
fn rows(dots: &[&[f32]]) -> Vec<f32> {
    dots.iter()
        .enumerate()
        .flat_map(|(i, row)| {
            let labels = if i == 0 { [0.0, 1.0] } else { [1.0, 0.0] };
            row.iter().copied().chain(labels).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_readout_of_trace_and_total_sums_gives_the_hand_computed_logits() {
    assert_eq!(t(INPUT).quantize(embed_dot(6.0, 1.0)), 6.0);
    // 1 exponent, labels 20 + 2, readout message 3 + 1, readout 2 + 1, head 1 + 1.
    assert_eq!(graph([0.0, 1.0], 1).parameters(), 32);
    let dots: &[&[f32]] = &[&[0.0, 2.0, 4.0], &[2.0, 1.0, 6.0], &[4.0, 6.0, 0.0]];
    // Total: (2 + 4 + 2 + 1 + 6 + 4 + 6) / 2^(2 shift) = 25 / 4 = 6.25 with shift 1.
    let mut total = Engine::new(&graph([0.0, 1.0], 1)).unwrap();
    assert_eq!(total.run(&rows(dots), &[1.0; 3]).unwrap(), &[6.25]);
    // Trace: d_11 = 1 over 2^shift = 0.5.
    let mut trace = Engine::new(&graph([1.0, 0.0], 1)).unwrap();
    assert_eq!(trace.run(&rows(dots), &[1.0; 3]).unwrap(), &[0.5]);
    // Node 2 masked: total (2 + 2 + 1) / 4 = 1.25; with shift 3 the total 5 / 64 rounds
    // to the pool's lsb 1/64 exactly, and 25 / 64 too.
    assert_eq!(total.run(&rows(dots), &[1.0, 1.0, 0.0]).unwrap(), &[1.25]);
    let mut fine = Engine::new(&graph([0.0, 1.0], 3)).unwrap();
    assert_eq!(fine.run(&rows(dots), &[1.0; 3]).unwrap(), &[25.0 / 64.0]);
    // Shift 4: 25 / 256 = 6.25 / 64 rounds to the nearest 1/64: 6 / 64.
    let mut coarse = Engine::new(&graph([0.0, 1.0], 4)).unwrap();
    assert_eq!(coarse.run(&rows(dots), &[1.0; 3]).unwrap(), &[6.0 / 64.0]);
}

#[test]
fn labels_enter_through_their_node_and_jet_terms() {
    // Labels layer with one output: w(l_i, particle) = 1 (op 1), w(S, beam) = 1 (op 3):
    // every pair (i, j) gets [i is a particle] + n_beams / 2^shift. The readout message
    // passes that channel only; the readout takes the total.
    let mut g = graph([0.0, 1.0], 1);
    let stage = g.pairs.as_mut().unwrap();
    let mut w = vec![0.0; 5 * 2 * 2];
    w[2 * 2] = 1.0; // (op 1 x 2 inputs + input 0 (particle)) x 2 outputs + output 0
    w[(3 * 2 + 1) * 2] = 1.0; // op 3, input 1 (beam), output 0
    stage.labels.weight = w;
    stage.readout_message.weight = vec![0.0, 1.0, 0.0];
    let mut engine = Engine::new(&g).unwrap();
    // 3 nodes, one beam: pairs (i, j) with i a particle: 6 of 9, each 1 + 1/2; the
    // 3 beam rows 1/2: total 6 * 1.5 + 3 * 0.5 = 10.5, over 4 = 2.625.
    let dots: &[&[f32]] = &[&[0.0; 3], &[0.0; 3], &[0.0; 3]];
    assert_eq!(engine.run(&rows(dots), &[1.0; 3]).unwrap(), &[2.625]);
}

/// A random grid value of `ap_fixed<8,3>` in [-0.5, 0.5].
fn grid(seed: &[f64], k: usize) -> f64 {
    let x = seed[k % seed.len()] * (1.0 + k as f64 * 0.37);
    (x.sin() * 16.0).round() / 32.0
}

/// A PELICAN graph with every basis operation weighted: 2 embedded channels, 2 label
/// channels, one 2 -> 2 block of 3 channels.
fn random_graph(seed: &[f64]) -> QuantGraph {
    let w = |n: usize, offset: usize| (0..n).map(|k| grid(seed, k + offset)).collect();
    let mut labels = pair("labels", PairOps::NodeToPair, 2, 2, w(20, 0));
    labels.bias = w(2, 20);
    let mut eq = pair("blocks.0.eq2to2", PairOps::PairToPair, 3, 3, w(135, 30));
    eq.bias = w(3, 170);
    eq.diag_bias = w(3, 180);
    eq.precision.result = t("ap_ufixed<10,4,AP_RND_CONV,AP_SAT>");
    let mut message = dense("blocks.0.message.linear", 4, 3, w(12, 200), true);
    message.bias = w(3, 220);
    message.precision.result = t("ap_ufixed<10,4,AP_RND_CONV,AP_SAT>");
    let readout_message = dense("readout.message.linear", 3, 2, w(6, 240), true);
    let readout = pair("readout.eq2to0", PairOps::PairToJet, 2, 2, w(8, 260));
    QuantGraph {
        model: "pelican".into(),
        input: t("ap_fixed<12,6,AP_RND_CONV,AP_SAT>"),
        particles: None,
        slim: None,
        pairs: Some(PairStage {
            alphas: vec![0.3, 0.1],
            labels: PairLayer {
                precision: LayerPrecision {
                    result: t("ap_fixed<12,6,AP_RND_CONV,AP_SAT>"),
                    ..labels.precision
                },
                ..labels
            },
            blocks: vec![(message, eq)],
            readout_message,
            readout,
            pool: t("ap_fixed<14,8,AP_RND_CONV,AP_SAT>"),
            shift: 2,
        }),
        jet_features: 0,
        jet: vec![dense("head", 2, 2, w(4, 280), false)],
    }
}

/// Rows `[dots | labels]` of `nodes` nodes (the first `beams` labelled beams) from a
/// symmetric matrix given as its upper triangle.
fn jet_rows(upper: &[f32], nodes: usize, beams: usize, order: &[usize]) -> Vec<f32> {
    let dot = |i: usize, j: usize| {
        let (a, b) = (i.min(j), i.max(j));
        upper[a * nodes + b]
    };
    order
        .iter()
        .flat_map(|&i| {
            let label = if i < beams { [0.0, 1.0] } else { [1.0, 0.0] };
            order.iter().map(move |&j| dot(i, j)).chain(label)
        })
        .collect()
}

#[test]
fn the_random_graph_sees_products_and_labels() {
    // So that the invariance below is not that of a constant: other products, or a beam
    // relabelled as a particle, change the logits.
    let seed = [0.7, -1.3, 2.1, 0.4];
    let mut engine = Engine::new(&random_graph(&seed)).unwrap();
    let upper: Vec<f32> = (0..64).map(|k| (k * 37 % 101) as f32 * 0.2).collect();
    let order: Vec<usize> = (0..8).collect();
    let reference = engine
        .run(&jet_rows(&upper, 8, 2, &order), &[1.0; 8])
        .unwrap()
        .to_vec();
    let doubled: Vec<f32> = upper.iter().map(|d| d * 2.0).collect();
    let other = engine
        .run(&jet_rows(&doubled, 8, 2, &order), &[1.0; 8])
        .unwrap()
        .to_vec();
    assert_ne!(other, reference, "{reference:?}");
    let one_beam = engine
        .run(&jet_rows(&upper, 8, 1, &order), &[1.0; 8])
        .unwrap()
        .to_vec();
    assert_ne!(one_beam, reference);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]

    /// Sums of integers do not depend on their order: any permutation of the nodes,
    /// and padded nodes anywhere, leave every bit of the logits unchanged.
    #[test]
    fn logits_are_exactly_permutation_invariant_and_ignore_padding(
        seed in proptest::collection::vec(-3.0f64..3.0, 4),
        upper in proptest::collection::vec(0.0f32..50.0, 64),
        shuffle in proptest::collection::vec(0usize..1000, 8),
        padding in 0usize..3,
    ) {
        let nodes = 8;
        let mut engine = Engine::new(&random_graph(&seed)).unwrap();
        let identity: Vec<usize> = (0..nodes).collect();
        let reference = engine
            .run(&jet_rows(&upper, nodes, 2, &identity), &[1.0; 8])
            .unwrap()
            .to_vec();
        let mut order = identity.clone();
        for (k, s) in shuffle.iter().enumerate() {
            order.swap(k, s % nodes);
        }
        let permuted = engine
            .run(&jet_rows(&upper, nodes, 2, &order), &[1.0; 8])
            .unwrap()
            .to_vec();
        prop_assert_eq!(&permuted, &reference);
        // Padded nodes (mask 0, arbitrary products) appended.
        let total = nodes + padding;
        let mut padded = vec![0f32; total * (total + 2)];
        let plain = jet_rows(&upper, nodes, 2, &identity);
        for i in 0..total {
            for j in 0..total + 2 {
                padded[i * (total + 2) + j] = if i < nodes && j < nodes {
                    plain[i * (nodes + 2) + j]
                } else if i < nodes && j >= total {
                    plain[i * (nodes + 2) + nodes + (j - total)]
                } else {
                    123.0
                };
            }
        }
        let mask: Vec<f32> = (0..total).map(|i| f32::from(u8::from(i < nodes))).collect();
        let with_padding = engine.run(&padded, &mask).unwrap().to_vec();
        prop_assert_eq!(&with_padding, &reference);
    }
}

#[test]
fn misbuilt_pair_graphs_and_inputs_are_refused_by_name() {
    // The labels must produce the input type.
    let mut g = graph([0.0, 1.0], 1);
    g.pairs.as_mut().unwrap().labels.precision.result = t("ap_fixed<8,4>");
    let err = Engine::new(&g).unwrap_err().to_string();
    assert!(
        err.starts_with("layer labels: its result type ap_fixed<8,4,AP_TRN,AP_WRAP> must be"),
        "{err}"
    );
    // A readout declared as a 2 -> 2 layer.
    let mut g = graph([0.0, 1.0], 1);
    g.pairs.as_mut().unwrap().readout.ops = PairOps::PairToPair;
    let err = Engine::new(&g).unwrap_err().to_string();
    assert!(err.starts_with("layer readout.eq2to0: PairToPair"), "{err}");
    // A weight off its grid.
    let mut g = graph([0.0, 1.0], 1);
    g.pairs.as_mut().unwrap().readout.weight[1] = 0.01;
    let err = Engine::new(&g).unwrap_err().to_string();
    assert!(
        err.starts_with("layer readout.eq2to0: weight[1] = 0.01 is not a value"),
        "{err}"
    );
    // Sums that would not be exact in f64.
    let mut g = graph([0.0, 1.0], 1);
    let wide = t("ap_fixed<32,16>");
    let stage = g.pairs.as_mut().unwrap();
    stage.pool = wide;
    stage.readout.precision.weight = wide;
    let err = Engine::new(&g).unwrap_err().to_string();
    assert!(
        err.starts_with("layer readout.eq2to0: its sums need"),
        "{err}"
    );
    // Inputs: a wrong row length, too many nodes, a NaN product.
    let mut engine = Engine::new(&graph([0.0, 1.0], 1)).unwrap();
    let err = engine.run(&[0.0; 7], &[1.0; 2]).unwrap_err();
    assert!(matches!(err, QuantError::BadInput { .. }), "{err}");
    let n = noether_quant::MAX_NODES + 1;
    let err = engine
        .run(&vec![0.0; n * (n + 2)], &vec![1.0; n])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("input mask: 257 nodes"), "{err}");
    let err = engine
        .run(&[0.0, f32::NAN, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0], &[1.0; 2])
        .unwrap_err()
        .to_string();
    assert!(err.contains("is NaN"), "{err}");
}

#[test]
fn a_pair_graph_exports_with_its_three_inputs() {
    let dir = std::env::temp_dir().join(format!("noether-pairs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("p.onnx");
    let report = export_qonnx(
        &random_graph(&[0.7, -1.3, 2.1, 0.4]),
        8,
        ParticleLayout::Stacked,
        &path,
    )
    .unwrap();
    let model = <noether_quant::onnx::ModelProto as prost::Message>::decode(
        std::fs::read(&path).unwrap().as_slice(),
    )
    .unwrap();
    let graph = model.graph.unwrap();
    let inputs: Vec<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(inputs, ["embedded", "labels", "mask"]);
    let ops = |op: &str| graph.node.iter().filter(|n| n.op_type == op).count();
    // Per 2 -> 2 layer: diagonal, row, column, trace and total; the labels' sum; the
    // readout's trace and total.
    assert_eq!(ops("ReduceSum"), 5 + 1 + 2);
    assert_eq!(ops("Transpose"), 1);
    assert_eq!(ops("Quant"), report.quant_nodes);
    let mut outputs: Vec<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str))
        .collect();
    let all = outputs.len();
    outputs.sort_unstable();
    outputs.dedup();
    assert_eq!(outputs.len(), all, "node outputs must be unique");
    std::fs::remove_dir_all(&dir).unwrap();
}

//! The integer engine allocates nothing per jet: a counting allocator sees no allocation
//! while Deep Sets, PELICAN and L-GATr-slim graphs run on jets of every size up to the
//! largest seen.

use noether_quant::{
    Activation, Dense, Engine, FixedType, LayerPrecision, PairLayer, PairOps, PairStage,
    ParticleStage, Pooling, QuantGraph, SlimAttentionLayer, SlimBlockLayer, SlimGluLayer,
    SlimLinearLayer, SlimNormLayer, SlimStage, Table, TableFn,
};

fn t(s: &str) -> FixedType {
    s.parse().unwrap()
}

fn precision() -> LayerPrecision {
    LayerPrecision {
        weight: t("ap_fixed<8,3,AP_RND_CONV,AP_SAT>"),
        bias: t("ap_fixed<8,3,AP_RND_CONV,AP_SAT>"),
        accum: Some(t("ap_fixed<24,12,AP_RND_CONV,AP_SAT>")),
        result: t("ap_fixed<12,6,AP_RND_CONV,AP_SAT>"),
    }
}

/// A grid value of `ap_fixed<8,3>` in [-0.5, 0.5].
fn w(k: usize) -> f64 {
    ((k as f64 * 0.77).sin() * 16.0).round() / 32.0
}

fn dense(name: &str, inputs: usize, outputs: usize, relu: bool) -> Dense {
    Dense {
        name: name.into(),
        inputs,
        outputs,
        weight: (0..inputs * outputs).map(w).collect(),
        bias: (0..outputs).map(|k| w(k + 100)).collect(),
        precision: precision(),
        relu,
    }
}

fn pair(name: &str, ops: PairOps, inputs: usize, outputs: usize) -> PairLayer {
    PairLayer {
        name: name.into(),
        ops,
        inputs,
        outputs,
        weight: (0..ops.count() * inputs * outputs).map(w).collect(),
        bias: (0..outputs).map(|k| w(k + 50)).collect(),
        diag_bias: if ops == PairOps::PairToPair {
            (0..outputs).map(|k| w(k + 70)).collect()
        } else {
            Vec::new()
        },
        precision: precision(),
        relu: ops != PairOps::NodeToPair,
    }
}

fn pfn() -> QuantGraph {
    QuantGraph {
        model: "pfn".into(),
        input: t("ap_fixed<12,1,AP_RND_CONV,AP_SAT>"),
        particles: Some(ParticleStage {
            features: 3,
            layers: vec![dense("phi.0", 3, 8, true), dense("phi.1", 8, 8, true)],
            pooling: Pooling::Sum,
            pool: t("ap_fixed<16,9,AP_RND_CONV,AP_SAT>"),
        }),
        pairs: None,
        slim: None,
        jet_features: 0,
        jet: vec![dense("f.0", 8, 8, true), dense("head", 8, 2, false)],
    }
}

fn pelican() -> QuantGraph {
    let mut labels = pair("labels", PairOps::NodeToPair, 2, 2);
    labels.precision.result = t("ap_fixed<12,6,AP_RND_CONV,AP_SAT>");
    QuantGraph {
        model: "pelican".into(),
        input: t("ap_fixed<12,6,AP_RND_CONV,AP_SAT>"),
        particles: None,
        slim: None,
        pairs: Some(PairStage {
            alphas: vec![0.2, 0.4],
            labels,
            blocks: vec![
                (
                    dense("blocks.0.message.linear", 4, 3, true),
                    pair("blocks.0.eq2to2", PairOps::PairToPair, 3, 3),
                ),
                (
                    dense("blocks.1.message.linear", 3, 3, true),
                    pair("blocks.1.eq2to2", PairOps::PairToPair, 3, 3),
                ),
            ],
            readout_message: dense("readout.message.linear", 3, 3, true),
            readout: pair("readout.eq2to0", PairOps::PairToJet, 3, 3),
            pool: t("ap_fixed<14,8,AP_RND_CONV,AP_SAT>"),
            shift: 5,
        }),
        jet_features: 0,
        jet: vec![dense("head", 3, 2, false)],
    }
}

fn slim_linear(name: &str, (iv, ov): (usize, usize), (is, os): (usize, usize)) -> SlimLinearLayer {
    let mut vectors = dense(&format!("{name}.weight_v"), iv, ov, false);
    vectors.bias = vec![0.0; ov];
    SlimLinearLayer {
        name: name.into(),
        vectors: Some(vectors),
        scalars: Some(dense(&format!("{name}.linear_s"), is, os, false)),
        bias: true,
    }
}

fn table(function: TableFn) -> Table {
    Table {
        function,
        input: t("ap_fixed<10,5,AP_RND_CONV,AP_SAT>"),
        output: t("ap_fixed<8,3,AP_RND_CONV,AP_SAT>"),
    }
}

fn norm(name: &str, (v, s): (usize, usize), affine: bool) -> SlimNormLayer {
    SlimNormLayer {
        name: name.into(),
        channels: (v, s),
        gains: affine.then(|| ((0..v).map(w).collect(), (0..s).map(|k| w(k + 9)).collect())),
        gain: t("ap_fixed<8,3,AP_RND_CONV,AP_SAT>"),
        table: table(TableFn::InvRms {
            channels: v + s,
            epsilon: 0.01,
        }),
        result: t("ap_fixed<12,6,AP_RND_CONV,AP_SAT>"),
    }
}

/// One L-GATr-slim block on 2 vector and 8 scalar channels, two heads.
fn slim() -> QuantGraph {
    let result = t("ap_fixed<12,6,AP_RND_CONV,AP_SAT>");
    let gate = |act| table(TableFn::Activation { act, scale: 1.0 });
    QuantGraph {
        model: "lgatr_slim".into(),
        input: t("ap_fixed<10,5,AP_RND_CONV,AP_SAT>"),
        particles: None,
        pairs: None,
        slim: Some(SlimStage {
            scalars: 8,
            linear_in: slim_linear("linear_in", (1, 2), (8, 8)),
            blocks: vec![SlimBlockLayer {
                name: "blocks.0".into(),
                norm1: norm("blocks.0.norm1", (2, 8), true),
                attention: SlimAttentionLayer {
                    name: "blocks.0.attention".into(),
                    heads: 2,
                    head_channels: (1, 4),
                    linear_in: slim_linear("blocks.0.attention.linear_in", (2, 6), (8, 24)),
                    norm: norm("blocks.0.attention.norm", (1, 4), false),
                    exp: table(TableFn::Exp { scale: 0.35 }),
                    recip: table(TableFn::Recip),
                    probabilities: t("ap_ufixed<8,1,AP_RND_CONV,AP_SAT>"),
                    heads_result: result,
                    linear_out: slim_linear("blocks.0.attention.linear_out", (2, 2), (8, 8)),
                },
                norm2: norm("blocks.0.norm2", (2, 8), true),
                glus: vec![SlimGluLayer {
                    name: "blocks.0.mlp.layers.0".into(),
                    linear: slim_linear("blocks.0.mlp.layers.0.linear", (2, 12), (8, 32)),
                    gate_v: gate(Activation::Sigmoid),
                    gate_s: gate(Activation::Gelu),
                    result,
                }],
                last: slim_linear("blocks.0.mlp.layers.1", (4, 2), (16, 8)),
                residual: result,
            }],
        }),
        jet_features: 0,
        jet: vec![dense("linear_out.linear_s", 8, 2, false)],
    }
}

/// Rows of `tokens` tokens for a slim graph: a four-vector and 8 scalars each.
fn tokens(n: usize) -> (Vec<f32>, Vec<f32>) {
    let value = |k: usize| ((k as f32) * 0.37).sin();
    ((0..n * 12).map(value).collect(), vec![1.0; n])
}

/// Rows of `nodes` particles for `graph`'s engine: Deep Sets features, or PELICAN's
/// products and labels (two beams first).
fn jet(pairs: bool, nodes: usize) -> (Vec<f32>, Vec<f32>) {
    let value = |k: usize| ((k as f32) * 0.37).sin().abs();
    let features = if pairs {
        (0..nodes)
            .flat_map(|i| {
                let labels = if i < 2 { [0.0, 1.0] } else { [1.0, 0.0] };
                (0..nodes)
                    .map(move |j| value(i.min(j) * 97 + i.max(j)) * 50.0)
                    .chain(labels)
            })
            .collect()
    } else {
        (0..nodes * 3).map(value).collect()
    };
    (features, vec![1.0; nodes])
}

#[test]
fn running_jets_allocates_nothing_once_the_largest_jet_was_seen() {
    for (graph, kind) in [(pfn(), 0), (pelican(), 1), (slim(), 2)] {
        let mut engine = Engine::new(&graph).unwrap();
        let jets: Vec<(Vec<f32>, Vec<f32>)> = [34, 5, 18, 34, 2, 27]
            .into_iter()
            .map(|n| {
                if kind == 2 {
                    tokens(n)
                } else {
                    jet(kind == 1, n)
                }
            })
            .collect();
        engine.run(&jets[0].0, &jets[0].1).unwrap();
        let mut checksum = 0.0;
        let counted = allocation_counter::measure(|| {
            for _ in 0..20 {
                for (features, mask) in &jets {
                    checksum += engine.run(features, mask).unwrap().iter().sum::<f64>();
                }
            }
        });
        assert_eq!(
            counted.count_total, 0,
            "{}: {} allocations in 120 jets",
            graph.model, counted.count_total
        );
        assert!(checksum.is_finite() && checksum != 0.0, "{}", graph.model);
    }
}

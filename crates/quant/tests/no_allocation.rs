//! The integer engine allocates nothing per jet: a counting allocator sees no allocation
//! while Deep Sets, PELICAN and L-GATr-slim graphs run on jets of every size up to the
//! largest seen.

mod common;

use common::{dense, precision, slim, t, tokens, w};
use noether_quant::{Engine, PairLayer, PairOps, PairStage, ParticleStage, Pooling, QuantGraph};

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

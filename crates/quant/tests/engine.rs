//! The integer engine against hand arithmetic and against the definition computed in
//! floating point (every sum exact in f64, cast with `FixedType::quantize`), on random
//! graphs, types and inputs; and its typed errors.

use noether_quant::{
    Dense, Engine, FixedType, LayerPrecision, ParticleStage, Pooling, QuantError, QuantGraph,
};
use proptest::prelude::*;

fn t(s: &str) -> FixedType {
    s.parse().unwrap()
}

fn precision(weight: &str, result: &str, accum: Option<&str>) -> LayerPrecision {
    LayerPrecision {
        weight: t(weight),
        bias: t(weight),
        accum: accum.map(t),
        result: t(result),
    }
}

fn mlp(hidden: Dense, head: Dense) -> QuantGraph {
    QuantGraph {
        model: "mlp".into(),
        input: t("ap_fixed<8,4,AP_RND_CONV,AP_SAT>"),
        particles: None,
        pairs: None,
        slim: None,
        jet_features: 2,
        jet: vec![hidden, head],
    }
}

#[test]
fn a_two_layer_mlp_gives_the_hand_computed_logit() {
    // Inputs 0.3 -> 0.3125 and -1.04 -> -1.0 (lsb 1/16, ties to even).
    // Hidden: [0.5 x0 + 0.25 x1 + 0.125, -x0 + 0.75 x1] = [0.03125, -1.0625]; result
    // ap_fixed<6,3,AP_TRN> (lsb 1/8): [0.0, -1.125]; ReLU: [0, 0].
    // Head: 2 h0 - h1 + 0.375 = 0.375.
    let hidden = Dense {
        name: "hidden.0".into(),
        inputs: 2,
        outputs: 2,
        weight: vec![0.5, 0.25, -1.0, 0.75],
        bias: vec![0.125, 0.0],
        precision: precision("ap_fixed<8,3>", "ap_fixed<6,3,AP_TRN,AP_SAT>", None),
        relu: true,
    };
    let head = Dense {
        name: "head".into(),
        inputs: 2,
        outputs: 1,
        weight: vec![2.0, -1.0],
        bias: vec![0.375],
        precision: precision("ap_fixed<8,3>", "ap_fixed<8,4,AP_TRN,AP_SAT>", None),
        relu: false,
    };
    let mut engine = Engine::new(&mlp(hidden.clone(), head.clone())).unwrap();
    assert_eq!(engine.run(&[0.3, -1.04], &[]).unwrap(), &[0.375]);
    // Inputs (2, 1): hidden [1.375, -1.25] -> [1.375, 0]; head 2.75 + 0.375 = 3.125.
    assert_eq!(engine.run(&[2.0, 1.0], &[]).unwrap(), &[3.125]);
    // A 4-bit accumulator with 1 fraction bit truncates the hidden sum 1.375 to 1.0.
    let narrow = Dense {
        precision: precision(
            "ap_fixed<8,3>",
            "ap_fixed<6,3,AP_TRN,AP_SAT>",
            Some("ap_fixed<4,3,AP_TRN,AP_SAT>"),
        ),
        ..hidden
    };
    let mut engine = Engine::new(&mlp(narrow, head)).unwrap();
    assert_eq!(engine.run(&[2.0, 1.0], &[]).unwrap(), &[2.375]);
}

#[test]
fn bad_inputs_and_graphs_are_refused_by_name() {
    let head = Dense {
        name: "head".into(),
        inputs: 2,
        outputs: 1,
        weight: vec![0.1, 0.25],
        bias: vec![0.0],
        precision: precision("ap_fixed<8,3>", "ap_fixed<8,4>", None),
        relu: false,
    };
    let graph = QuantGraph {
        model: "mlp".into(),
        input: t("ap_fixed<8,4>"),
        particles: None,
        pairs: None,
        slim: None,
        jet_features: 2,
        jet: vec![head.clone()],
    };
    let err = Engine::new(&graph).unwrap_err().to_string();
    assert!(
        err.contains("layer head") && err.contains("weight[0] = 0.1"),
        "{err}"
    );
    let exact = Dense {
        weight: vec![0.125, 0.25],
        ..head.clone()
    };
    let mut engine = Engine::new(&QuantGraph {
        jet: vec![exact.clone()],
        ..graph.clone()
    })
    .unwrap();
    let err = engine.run(&[1.0], &[]).unwrap_err();
    assert!(matches!(err, QuantError::BadInput { .. }), "{err}");
    assert!(
        err.to_string().contains("1 values for 1 rows of 2"),
        "{err}"
    );
    let err = engine.run(&[1.0, f32::NAN], &[]).unwrap_err().to_string();
    assert!(err.contains("value 1 is NaN"), "{err}");
    let wide = Dense {
        precision: precision("ap_fixed<30,8>", "ap_fixed<8,4>", None),
        ..exact
    };
    let err = Engine::new(&QuantGraph {
        input: t("ap_fixed<30,8>"),
        jet: vec![wide],
        ..graph
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("layer head") && err.contains("bits"), "{err}");
}

/// A random type of 2-12 bits.
fn any_type() -> impl Strategy<Value = FixedType> {
    (
        2u32..=12,
        -2i32..=6,
        any::<bool>(),
        0usize..3,
        any::<bool>(),
    )
        .prop_map(|(w, i, signed, q, sat)| {
            let rounding = [
                noether_quant::Rounding::Trn,
                noether_quant::Rounding::Rnd,
                noether_quant::Rounding::RndConv,
            ][q];
            let overflow = if sat {
                noether_quant::Overflow::Sat
            } else {
                noether_quant::Overflow::Wrap
            };
            FixedType::new(w, i.min(w as i32), signed, rounding, overflow).unwrap()
        })
}

/// The definition in floating point: exact f64 sums cast with `quantize`.
fn reference(graph: &QuantGraph, features: &[f32], mask: &[f32]) -> Vec<f64> {
    let dense = |layer: &Dense, x: &[f64]| -> Vec<f64> {
        (0..layer.outputs)
            .map(|o| {
                let row = &layer.weight[o * layer.inputs..(o + 1) * layer.inputs];
                let mut sum = layer.bias[o];
                for (w, v) in row.iter().zip(x) {
                    sum += w * v;
                }
                if let Some(a) = layer.precision.accum {
                    sum = a.quantize(sum);
                }
                let y = layer.precision.result.quantize(sum);
                if layer.relu {
                    y.max(0.0)
                } else {
                    y
                }
            })
            .collect()
    };
    let q: Vec<f64> = features
        .iter()
        .map(|&v| graph.input.quantize(f64::from(v)))
        .collect();
    let mut x = match &graph.particles {
        Some(stage) => {
            let width = stage.layers.last().unwrap().outputs;
            let mut pooled = vec![0.0; width];
            for (row, m) in q.chunks(stage.features).zip(mask) {
                if *m > 0.0 {
                    let mut h = row.to_vec();
                    for layer in &stage.layers {
                        h = dense(layer, &h);
                    }
                    for (p, v) in pooled.iter_mut().zip(h) {
                        *p += v;
                    }
                }
            }
            pooled.iter().map(|&p| stage.pool.quantize(p)).collect()
        }
        None => q,
    };
    for layer in &graph.jet {
        x = dense(layer, &x);
    }
    x
}

/// A layer of random quantised weights.
fn layer(
    name: &str,
    inputs: usize,
    outputs: usize,
    p: LayerPrecision,
    relu: bool,
    seed: &[f64],
) -> Dense {
    let value =
        |k: usize, ty: FixedType| ty.quantize(seed[k % seed.len()] * (1.0 + k as f64 * 0.37).sin());
    Dense {
        name: name.into(),
        inputs,
        outputs,
        weight: (0..inputs * outputs).map(|k| value(k, p.weight)).collect(),
        bias: (0..outputs).map(|k| value(k + 7, p.bias)).collect(),
        precision: p,
        relu,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn the_engine_equals_the_definition_on_random_deep_sets(
        types in proptest::collection::vec(any_type(), 9),
        accum in any::<bool>(),
        seed in proptest::collection::vec(-3.0f64..3.0, 5),
        features in proptest::collection::vec(-6.0f32..6.0, 8 * 3),
        mask in proptest::collection::vec(0u8..2, 8),
    ) {
        let p = |k: usize| LayerPrecision {
            weight: types[k],
            bias: types[k + 1],
            accum: accum.then_some(types[k + 2]),
            result: types[k + 3],
        };
        let graph = QuantGraph {
            model: "pfn".into(),
            input: types[8],
            particles: Some(ParticleStage {
                features: 3,
                layers: vec![layer("phi.0", 3, 4, p(0), true, &seed)],
                pooling: Pooling::Sum,
                pool: types[7],
            }),
            pairs: None,
            slim: None,
            jet_features: 0,
            jet: vec![layer("head", 4, 2, p(4), false, &seed)],
        };
        let mask: Vec<f32> = mask.iter().map(|&m| f32::from(m)).collect();
        let mut engine = Engine::new(&graph).unwrap();
        let got = engine.run(&features, &mask).unwrap().to_vec();
        prop_assert_eq!(got, reference(&graph, &features, &mask));
    }
}

#[test]
fn pooled_sums_that_could_lose_bits_and_oversized_jets_are_refused() {
    let phi = |result: &str| Dense {
        name: "phi.0".into(),
        inputs: 2,
        outputs: 1,
        weight: vec![0.5, 0.25],
        bias: vec![0.0],
        precision: precision("ap_fixed<8,3>", result, None),
        relu: true,
    };
    let head = Dense {
        name: "head".into(),
        inputs: 1,
        outputs: 1,
        weight: vec![1.0],
        bias: vec![0.0],
        precision: precision("ap_fixed<8,3>", "ap_fixed<8,4>", None),
        relu: false,
    };
    let graph = |input: &str, result: &str| QuantGraph {
        model: "efn".into(),
        input: t(input),
        particles: Some(ParticleStage {
            features: 3,
            layers: vec![phi(result)],
            pooling: Pooling::Weighted(0),
            pool: t("ap_fixed<16,8>"),
        }),
        pairs: None,
        slim: None,
        jet_features: 0,
        jet: vec![head.clone()],
    };
    // z (24 bits) times outputs (24 bits) summed over 1,024 particles: 58 bits.
    let err = Engine::new(&graph("ap_fixed<24,2>", "ap_fixed<24,8>"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("layer pool: ") && err.contains("58 bits"),
        "{err}"
    );
    let mut engine = Engine::new(&graph("ap_fixed<10,2>", "ap_fixed<8,4>")).unwrap();
    let n = noether_quant::MAX_PARTICLES + 1;
    let err = engine
        .run(&vec![0.5; 3 * n], &vec![1.0; n])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("input mask: 1025 particles"), "{err}");
    assert!(engine.run(&[0.5; 6], &[1.0, 0.0]).is_ok());
}

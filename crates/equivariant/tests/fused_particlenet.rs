//! ParticleNet's fused EdgeConv stage (`fused::EdgeConvStage`, what `ParticleNet::forward`
//! runs on the CPU) against the same network composed from candle operations
//! (`ParticleNet::forward_composed`; candle's autograd as the independent ground truth for
//! the gradients), in f64 on padded jets (one with fewer particles than k, so that padded
//! neighbours are gathered), in training (batch statistics, running statistics updated)
//! and evaluation; results bit-identical with 1 and 2 threads; typed errors for inputs
//! the kernel does not support. Finite differences of the fused path are in
//! `aggregations.rs` (`particlenet_has_correct_gradients`).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use noether_equivariant::fused::EdgeConvStage;
use noether_equivariant::{
    inference_varbuilder, seeded_varbuilder, Mode, ModelError, PaddedJets, ParticleNet,
    ParticleNetConfig, ParticleNetInput, Placement,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Jets padded to `nodes`, with the given numbers of real particles.
fn jets(counts: &[usize], nodes: usize, seed: u64) -> (Vec<f64>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut momenta = vec![0.0; counts.len() * nodes * 4];
    let mut mask = vec![0.0; counts.len() * nodes];
    for (b, &count) in counts.iter().enumerate() {
        for i in 0..count {
            let px: f64 = 50.0 + rng.random_range(-20.0..20.0);
            let py: f64 = rng.random_range(-20.0..20.0);
            let pz: f64 = rng.random_range(-30.0..30.0);
            let e = (px * px + py * py + pz * pz + 0.01).sqrt();
            let at = (b * nodes + i) * 4;
            momenta[at..at + 4].copy_from_slice(&[e, px, py, pz]);
            mask[b * nodes + i] = 1.0;
        }
    }
    (momenta, mask)
}

fn config(k: usize, width: usize) -> ParticleNetConfig {
    ParticleNetConfig {
        n_class: 3,
        // A block whose widths change (the shortcut convolution) and one that keeps its
        // input width; three layers in the first so that every kernel path runs.
        conv_params: vec![
            (k, vec![width, width + 1, width - 1]),
            (k + 1, vec![width - 1]),
        ],
        fc_params: vec![(6, 0.0)],
        use_fusion: true,
        ..ParticleNetConfig::default()
    }
}

struct Case {
    config: ParticleNetConfig,
    input: ParticleNetInput,
}

fn case(counts: &[usize], nodes: usize, k: usize, width: usize, dtype: DType) -> Case {
    let (momenta, mask) = jets(counts, nodes, 7);
    let config = config(k, width);
    let padded = PaddedJets {
        momenta: &momenta,
        mask: &mask,
        jets: counts.len(),
        nodes,
        beams: 0,
    };
    let place = Placement {
        device: Device::Cpu,
        dtype,
    };
    let input = ParticleNetInput::build(&config.inputs, &padded, &place).unwrap();
    Case { config, input }
}

/// Logits, every variable's value after the pass (running statistics included) and
/// every trainable variable's gradient of a weighted sum of the logits, by name.
#[derive(Debug, PartialEq)]
struct Outcome {
    logits: Vec<f64>,
    values: Vec<(String, Vec<f64>)>,
    grads: Vec<(String, Vec<f64>)>,
}

fn host(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn run(c: &Case, train: bool, fused: bool) -> Outcome {
    let varmap = VarMap::new();
    let dtype = c.input.features.dtype();
    let model = ParticleNet::new(
        &c.config,
        &seeded_varbuilder(&varmap, 3, dtype, &Device::Cpu),
    )
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut mode = if train {
        Mode::Train(&mut rng)
    } else {
        Mode::Eval
    };
    let logits = if fused {
        model.forward(&c.input, &mut mode).unwrap()
    } else {
        model.forward_composed(&c.input, &mut mode).unwrap()
    };
    let n = logits.elem_count();
    let weights: Vec<f64> = (0..n).map(|i| ((i * 7 % 11) as f64 - 5.0) / 3.0).collect();
    let weights = Tensor::from_vec(weights, logits.shape(), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    let grads = (&logits * &weights)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let data = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let values = names
        .iter()
        .map(|&name| (name.clone(), host(data[name].as_tensor())))
        .collect();
    let grads = names
        .iter()
        .filter_map(|&name| {
            grads
                .get(data[name].as_tensor())
                .map(|g| (name.clone(), host(g)))
        })
        .collect();
    Outcome {
        logits: host(&logits),
        values,
        grads,
    }
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let scale = a.abs().max(b.abs()).max(1.0);
        assert!(
            (a - b).abs() <= tol * scale,
            "{what}[{i}]: fused {a} against composed {b}"
        );
    }
}

fn assert_same(fused: &Outcome, composed: &Outcome, tol: f64) {
    assert_close("logits", &fused.logits, &composed.logits, tol);
    assert_eq!(fused.values.len(), composed.values.len());
    for ((name, a), (_, b)) in fused.values.iter().zip(&composed.values) {
        assert_close(name, a, b, tol);
    }
    assert_eq!(
        fused.grads.iter().map(|g| &g.0).collect::<Vec<_>>(),
        composed.grads.iter().map(|g| &g.0).collect::<Vec<_>>(),
        "the same variables get gradients"
    );
    for ((name, a), (_, b)) in fused.grads.iter().zip(&composed.grads) {
        assert_close(&format!("d {name}"), a, b, tol);
    }
}

#[test]
fn frozen_batchnorm_trains_on_the_running_statistics_and_keeps_them() {
    let mut c = case(&[11, 8, 5, 2], 11, 3, 5, DType::F64);
    // Batch statistics make a training pass differ from evaluation (no dropout here).
    assert_ne!(run(&c, true, true).logits, run(&c, false, true).logits);
    c.config.frozen_batchnorm = true;
    for fused in [true, false] {
        let (train, eval) = (run(&c, true, fused), run(&c, false, fused));
        assert!(train.grads.len() > 10, "gradients reach every layer");
        // Same logits, gradients and variables: the running statistics are unchanged.
        assert_eq!(train, eval, "fused: {fused}");
    }
}

#[test]
fn fused_training_pass_equals_the_composed_graph_with_gradients() {
    // 11 positions; jets of 11, 8, 5 and 2 particles (2 < k = 3: padded neighbours).
    let c = case(&[11, 8, 5, 2], 11, 3, 5, DType::F64);
    let fused = run(&c, true, true);
    let composed = run(&c, true, false);
    assert!(fused.grads.len() > 10, "gradients reach the edge stage");
    assert_same(&fused, &composed, 1e-12);
}

#[test]
fn fused_evaluation_pass_equals_the_composed_graph_with_gradients() {
    let c = case(&[9, 4, 7], 10, 3, 4, DType::F64);
    assert_same(&run(&c, false, true), &run(&c, false, false), 1e-12);
}

#[test]
fn fused_stage_in_f32_stays_within_rounding_of_the_composed_one() {
    let c = case(&[20, 13, 6], 21, 5, 8, DType::F32);
    let (fused, composed) = (run(&c, true, true), run(&c, true, false));
    assert_close("logits", &fused.logits, &composed.logits, 1e-4);
}

#[test]
fn fused_stage_is_bit_identical_with_one_and_two_threads() {
    // More than one chunk of 64 points, so that partial sums merge.
    let counts: Vec<usize> = (0..12).map(|b| 30 - 2 * b).collect();
    let c = case(&counts, 31, 6, 12, DType::F32);
    let in_pool = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| run(&c, true, true))
    };
    assert_eq!(in_pool(1), in_pool(2));
}

fn bad_input(op: &EdgeConvStage, parts: &Tensor, index: &Tensor, params: &Tensor) -> String {
    match op.apply(parts, index, params) {
        Err(ModelError::BadInput { input, .. }) => input.to_owned(),
        other => panic!("expected BadInput, got {other:?}"),
    }
}

#[test]
fn unsupported_inputs_are_refused_naming_the_tensor() {
    let dev = Device::Cpu;
    let op = EdgeConvStage::new(2, vec![3, 2], 1e-5, true);
    let parts = Tensor::zeros((4, 6), DType::F32, &dev).unwrap();
    let pad = EdgeConvStage::PADDED;
    let index = Tensor::new(&[[1u32, 2], [0, 2], [pad, pad], [0, 1]], &dev).unwrap();
    let params = Tensor::zeros(op.parameter_len(), DType::F32, &dev).unwrap();
    let out = op.apply(&parts, &index, &params).unwrap();
    assert_eq!(out.pooled.dims(), [4, 2]);
    assert_eq!(out.edges, 6);
    assert_eq!(
        bad_input(&op, &parts.narrow(1, 0, 5).unwrap(), &index, &params),
        "parts"
    );
    let far = Tensor::new(&[[1u32, 4], [0, 2], [pad, pad], [0, 1]], &dev).unwrap();
    assert_eq!(bad_input(&op, &parts, &far, &params), "neighbours");
    let mixed = Tensor::new(&[[1u32, pad], [0, 2], [pad, pad], [0, 1]], &dev).unwrap();
    assert_eq!(bad_input(&op, &parts, &mixed, &params), "neighbours");
    let signed = index.to_dtype(DType::I64).unwrap();
    assert_eq!(bad_input(&op, &parts, &signed, &params), "neighbours");
    let short = params.narrow(0, 1, op.parameter_len() - 1).unwrap();
    assert_eq!(bad_input(&op, &parts, &index, &short), "params");
    let wide = params.to_dtype(DType::F64).unwrap();
    assert_eq!(bad_input(&op, &parts, &index, &wide), "params");
    let empty = EdgeConvStage::new(2, vec![], 1e-5, true);
    assert_eq!(
        bad_input(&empty, &parts, &index, &params),
        "fused EdgeConv stage"
    );
}

/// Logits of an evaluation pass of the network on `c`'s inputs with `varmap`'s weights,
/// with gradients tracked (`tracked`: the fused stage keeps its activations) or through
/// the inference builder (detached weights: the stage streams chunk by chunk).
fn eval_logits(c: &Case, varmap: &VarMap, tracked: bool) -> Vec<f64> {
    let dtype = c.input.features.dtype();
    let vb = if tracked {
        seeded_varbuilder(varmap, 3, dtype, &Device::Cpu)
    } else {
        inference_varbuilder(varmap, dtype, &Device::Cpu)
    };
    let model = ParticleNet::new(&c.config, &vb).unwrap();
    host(&model.forward(&c.input, &mut Mode::Eval).unwrap())
}

#[test]
fn evaluation_without_gradients_gives_the_bits_of_the_tracked_pass() {
    // Jets of more than one chunk of 16 points, one with fewer particles than k.
    let counts = [40, 17, 16, 3, 1];
    for dtype in [DType::F32, DType::F64] {
        let c = case(&counts, 41, 4, 6, dtype);
        let varmap = VarMap::new();
        let tracked = eval_logits(&c, &varmap, true);
        let streamed = eval_logits(&c, &varmap, false);
        assert_eq!(streamed, tracked, "{dtype:?}");
        let on_one_thread = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| eval_logits(&c, &varmap, false));
        assert_eq!(on_one_thread, streamed, "{dtype:?}: 1 thread");
    }
}

//! PELICAN's fused 2 -> 2 layer (`fused::PairEquivariant`, what `Eq2to2::forward` runs on
//! the CPU) against the same layer composed from candle operations
//! (`Eq2to2::forward_composed`; candle's autograd as the independent ground truth for the
//! gradients), in f64 on padded jets with non-zero biases and scaling exponents; results
//! bit-identical with 1 and 2 threads; typed errors for inputs it does not support.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use noether_equivariant::fused::PairEquivariant;
use noether_equivariant::{Eq2to2, ModelError, PairMask};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N_AVG: f64 = 5.0;

struct Case {
    layer: Eq2to2,
    varmap: VarMap,
    t: Var,
    mask: PairMask,
    weights: Tensor,
}

fn random(rng: &mut ChaCha8Rng, len: usize, scale: f64) -> Vec<f64> {
    (0..len)
        .map(|_| rng.random_range(-1.0..1.0) * scale)
        .collect()
}

/// `batch` jets padded to `nodes`; jet b has `nodes - 2 b` real nodes (at least 1).
fn case(batch: usize, nodes: usize, c_in: usize, c_out: usize, dtype: DType) -> Case {
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64((batch * 100 + nodes * 10 + c_in) as u64);
    let varmap = VarMap::new();
    let layer = Eq2to2::new(c_in, c_out, &VarBuilder::from_varmap(&varmap, dtype, &dev)).unwrap();
    // Non-zero biases and exponents (both start at zero), so every term is exercised.
    for (name, var) in varmap.data().lock().unwrap().iter() {
        if name != "weight" {
            let values = random(&mut rng, var.elem_count(), 0.5);
            let t = Tensor::from_vec(values, var.shape(), &dev).unwrap();
            var.set(&t.to_dtype(dtype).unwrap()).unwrap();
        }
    }
    let node: Vec<f64> = (0..batch)
        .flat_map(|b| {
            let real = nodes.saturating_sub(2 * b).max(1);
            (0..nodes).map(move |i| if i < real { 1.0 } else { 0.0 })
        })
        .collect();
    let node = Tensor::from_vec(node, (batch, nodes), &dev)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    let mask = PairMask::new(&node, N_AVG).unwrap();
    let shape = (batch, nodes, nodes, c_in);
    let t = Tensor::from_vec(
        random(&mut rng, batch * nodes * nodes * c_in, 1.0),
        shape,
        &dev,
    )
    .unwrap()
    .to_dtype(dtype)
    .unwrap()
    .broadcast_mul(&mask.pair)
    .unwrap();
    let weights = Tensor::from_vec(
        random(&mut rng, batch * nodes * nodes * c_out, 1.0),
        (batch, nodes, nodes, c_out),
        &dev,
    )
    .unwrap()
    .to_dtype(dtype)
    .unwrap();
    Case {
        layer,
        varmap,
        t: Var::from_tensor(&t).unwrap(),
        mask,
        weights,
    }
}

fn host(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// The output (through a LeakyReLU of `slope` when given) and the gradients of a fixed
/// weighted sum of it for `t` and every parameter (in the varmap's name order).
fn run(c: &Case, fused: bool, slope: Option<f64>) -> Vec<Vec<f64>> {
    run_dropped(c, fused, slope, None)
}

/// [`run`] with the output multiplied by a dropout mask when given (in the kernel when
/// `fused`; a candle product after the composed layer otherwise).
fn run_dropped(
    c: &Case,
    fused: bool,
    slope: Option<f64>,
    dropout: Option<&Tensor>,
) -> Vec<Vec<f64>> {
    let t = c.t.as_tensor();
    let out = if fused {
        c.layer.forward_dropped(t, &c.mask, slope, dropout).unwrap()
    } else {
        let linear = c.layer.forward_composed(t, &c.mask).unwrap();
        let activated = match slope {
            Some(s) => candle_nn::ops::leaky_relu(&linear, s).unwrap(),
            None => linear,
        };
        match dropout {
            Some(d) => (activated * d).unwrap(),
            None => activated,
        }
    };
    let loss = (&out * &c.weights).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let data = c.varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut all = vec![host(&out), host(grads.get(t).unwrap())];
    for name in names {
        all.push(host(grads.get(data[name].as_tensor()).unwrap()));
    }
    all
}

fn worst(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-300_f64, |m, x| m.max(x.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / scale)
        .fold(0.0, f64::max)
}

#[test]
fn fused_layer_equals_the_composed_one_with_its_gradients() {
    // Padded jets of 9, 7, 5 and 3 real nodes of 9; and one single-node jet alone.
    for (batch, nodes, slope) in [(4, 9, None), (4, 9, Some(0.01)), (1, 1, Some(0.01))] {
        let c = case(batch, nodes, 5, 4, DType::F64);
        let (fused, composed) = (run(&c, true, slope), run(&c, false, slope));
        let what = [
            "output",
            "d t",
            "d alphas",
            "d bias",
            "d diag_bias",
            "d weight",
        ];
        for ((f, r), name) in fused.iter().zip(&composed).zip(what) {
            let err = worst(f, r);
            assert!(
                err < 1e-12,
                "{name}: relative difference {err:e} ({batch} x {nodes})"
            );
        }
        // The output is zero outside the pair mask.
        let out = c.layer.forward(c.t.as_tensor(), &c.mask).unwrap();
        let outside = ((1.0 - &c.mask.pair).unwrap().broadcast_mul(&out))
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert_eq!(outside, 0.0);
    }
}

#[test]
fn dropout_in_the_fused_layer_equals_a_product_after_the_composed_one() {
    let (batch, nodes, c_out) = (4, 9, 4);
    let c = case(batch, nodes, 5, c_out, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let keep: Vec<f64> = (0..batch * nodes * nodes * c_out)
        .map(|_| {
            if rng.random_range(0.0..1.0) < 0.7 {
                1.0 / 0.7
            } else {
                0.0
            }
        })
        .collect();
    let keep = Tensor::from_vec(keep, (batch, nodes, nodes, c_out), &Device::Cpu).unwrap();
    for slope in [None, Some(0.01)] {
        let fused = run_dropped(&c, true, slope, Some(&keep));
        let composed = run_dropped(&c, false, slope, Some(&keep));
        for (k, (f, r)) in fused.iter().zip(&composed).enumerate() {
            let err = worst(f, r);
            assert!(err < 1e-12, "tensor {k}: relative difference {err:e}");
        }
        // Without the mask the output differs: the mask is applied.
        assert!(worst(&run(&c, true, slope)[0], &fused[0]) > 0.1);
    }
    // A mask of another shape is refused, naming it.
    let op = PairEquivariant {
        batch,
        nodes,
        c_in: 5,
        c_out,
        n_avg: N_AVG,
        leaky_slope: None,
    };
    let t = c.t.as_tensor().reshape((batch * nodes * nodes, 5)).unwrap();
    let params = Tensor::zeros(op.parameter_len(), DType::F64, &Device::Cpu).unwrap();
    let short = keep.flatten_all().unwrap().narrow(0, 0, 10).unwrap();
    let result = op.apply_dropped(&t, &c.mask.node, &params, Some(&short));
    assert_eq!(bad_input(result), "dropout");
}

#[test]
fn pair_shaped_input_gives_a_pair_shaped_output_with_the_same_values() {
    // What `Eq2to2` hands the kernel (`[B, N, N, C]`, no reshape nodes in the graph)
    // against pair rows `[B N N, C]`.
    let (batch, nodes, c_in, c_out) = (4, 9, 5, 4);
    let c = case(batch, nodes, c_in, c_out, DType::F64);
    let op = PairEquivariant {
        batch,
        nodes,
        c_in,
        c_out,
        n_avg: N_AVG,
        leaky_slope: Some(0.01),
    };
    let data = c.varmap.data().lock().unwrap();
    let params = PairEquivariant::pack(
        data["weight"].as_tensor(),
        data["bias"].as_tensor(),
        data["diag_bias"].as_tensor(),
        data["alphas"].as_tensor(),
    )
    .unwrap();
    let t = c.t.as_tensor();
    let pairs = op.apply(t, &c.mask.node, &params).unwrap();
    assert_eq!(pairs.dims(), [batch, nodes, nodes, c_out]);
    let rows = t.reshape((batch * nodes * nodes, c_in)).unwrap();
    let by_rows = op.apply(&rows, &c.mask.node, &params).unwrap();
    assert_eq!(by_rows.dims(), [batch * nodes * nodes, c_out]);
    assert_eq!(host(&pairs), host(&by_rows));
}

#[test]
fn fused_layer_is_bit_identical_with_one_and_two_threads() {
    let c = case(6, 11, 6, 7, DType::F32);
    let in_pool = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| run(&c, true, Some(0.01)))
    };
    assert_eq!(in_pool(1), in_pool(2));
}

fn bad_input(result: noether_equivariant::Result<Tensor>) -> String {
    match result {
        Err(ModelError::BadInput { input, .. }) => input.to_owned(),
        other => panic!("expected BadInput, got {other:?}"),
    }
}

#[test]
fn unsupported_inputs_are_refused_naming_the_tensor() {
    let op = PairEquivariant {
        batch: 2,
        nodes: 3,
        c_in: 2,
        c_out: 2,
        n_avg: N_AVG,
        leaky_slope: None,
    };
    let dev = Device::Cpu;
    let t = Tensor::zeros((18, 2), DType::F32, &dev).unwrap();
    let mask = Tensor::ones((2, 3), DType::F32, &dev).unwrap();
    let params = Tensor::zeros(op.parameter_len(), DType::F32, &dev).unwrap();
    assert!(op.apply(&t, &mask, &params).is_ok());
    let short = t.narrow(0, 0, 9).unwrap();
    assert_eq!(bad_input(op.apply(&short, &mask, &params)), "t");
    // Pair-shaped, but not [B, N, N, C_in] for this layer.
    let lopsided = t.reshape((2, 3, 3, 2)).unwrap().narrow(2, 0, 2).unwrap();
    assert_eq!(bad_input(op.apply(&lopsided, &mask, &params)), "t");
    assert!(op
        .apply(&t.reshape((2, 3, 3, 2)).unwrap(), &mask, &params)
        .is_ok());
    let wide = Tensor::ones((2, 4), DType::F32, &dev).unwrap();
    assert_eq!(bad_input(op.apply(&t, &wide, &params)), "node_mask");
    let packed = params.narrow(0, 1, op.parameter_len() - 1).unwrap();
    assert_eq!(bad_input(op.apply(&t, &mask, &packed)), "params");
    let f64_mask = mask.to_dtype(DType::F64).unwrap();
    assert_eq!(bad_input(op.apply(&t, &f64_mask, &params)), "node_mask");
    let half = t.to_dtype(DType::BF16).unwrap();
    assert_eq!(bad_input(op.apply(&half, &mask, &params)), "t");
}

mod message {
    //! The fused message layer (`fused::PairMessage`) against Linear, LeakyReLU, masked
    //! BatchNorm and the mask composed from the crate's public candle layers.

    use super::{host, random, worst};
    use candle_core::{DType, Device, Tensor, Var};
    use candle_nn::{VarBuilder, VarMap};
    use noether_equivariant::fused::PairMessage;
    use noether_equivariant::{Linear, MaskedBatchNorm, ModelError};
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    struct Layer {
        linear: Linear,
        norm: MaskedBatchNorm,
        x: Var,
        mask: Tensor,
        weights: Tensor,
    }

    /// `rows` rows (three kernel chunks and a partial one for 2,500), about a third
    /// of them padding.
    fn layer(rows: usize, c_in: usize, c_out: usize, dtype: DType) -> Layer {
        let dev = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(rows as u64);
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, dtype, &dev);
        let linear = Linear::new(c_in, c_out, vb.pp("linear")).unwrap();
        let norm = MaskedBatchNorm::new(c_out, &vb.pp("norm")).unwrap();
        for (name, var) in varmap.data().lock().unwrap().iter() {
            let mut values = random(&mut rng, var.elem_count(), 0.5);
            if name.ends_with("running_var") || name.ends_with("norm.weight") {
                for v in &mut values {
                    *v += 1.0;
                }
            }
            let t = Tensor::from_vec(values, var.shape(), &dev).unwrap();
            var.set(&t.to_dtype(dtype).unwrap()).unwrap();
        }
        let mask: Vec<f64> = (0..rows)
            .map(|_| {
                if rng.random_range(0.0..1.0) < 0.67 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let tensor = |v: Vec<f64>, shape: (usize, usize)| {
            Tensor::from_vec(v, shape, &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
        };
        Layer {
            x: Var::from_tensor(&tensor(random(&mut rng, rows * c_in, 2.0), (rows, c_in))).unwrap(),
            weights: tensor(random(&mut rng, rows * c_out, 1.0), (rows, c_out)),
            mask: tensor(mask, (rows, 1)).flatten_all().unwrap(),
            linear,
            norm,
        }
    }

    fn op(l: &Layer, train: bool) -> PairMessage {
        PairMessage {
            c_in: l.x.dim(1).unwrap(),
            c_out: l.weights.dim(1).unwrap(),
            slope: 0.01,
            eps: 1e-5,
            train,
        }
    }

    /// The layer's parameters packed for the kernel.
    fn params(l: &Layer) -> Tensor {
        let (gamma, beta, _) = l.norm.affine();
        let (mean, var) = l.norm.running();
        PairMessage::pack(&[
            l.linear.weight(),
            l.linear.bias().unwrap(),
            gamma,
            beta,
            &mean,
            &var,
        ])
        .unwrap()
    }

    fn fused(l: &Layer, train: bool) -> (Tensor, Option<(Tensor, Tensor, f64)>) {
        let out = op(l, train)
            .apply(l.x.as_tensor(), &l.mask, &params(l))
            .unwrap();
        (out.output, out.batch_stats)
    }

    fn composed(l: &Layer, train: bool) -> Tensor {
        let a = candle_nn::ops::leaky_relu(&l.linear.forward_rows(l.x.as_tensor()).unwrap(), 0.01)
            .unwrap();
        l.norm
            .forward(&a, &l.mask, train)
            .unwrap()
            .broadcast_mul(&l.mask.unsqueeze(1).unwrap())
            .unwrap()
    }

    /// The output and the gradients of a fixed weighted sum of it for x and the
    /// trainable parameters (linear weight and bias, BatchNorm weight and bias).
    fn run(l: &Layer, out: &Tensor) -> Vec<Vec<f64>> {
        let loss = (out * &l.weights).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let (gamma, beta, _) = l.norm.affine();
        let mut all = vec![host(out), host(grads.get(l.x.as_tensor()).unwrap())];
        for t in [l.linear.weight(), l.linear.bias().unwrap(), gamma, beta] {
            all.push(host(grads.get(t).unwrap()));
        }
        all
    }

    #[test]
    fn fused_message_equals_the_composed_one_with_its_gradients() {
        for train in [true, false] {
            let l = layer(2500, 7, 5, DType::F64);
            let (out, stats) = fused(&l, train);
            let fused = run(&l, &out);
            let reference = run(&l, &composed(&l, train));
            let what = ["output", "d x", "d W", "d b", "d gamma", "d beta"];
            for ((f, r), name) in fused.iter().zip(&reference).zip(what) {
                let err = worst(f, r);
                assert!(
                    err < 1e-12,
                    "{name} (train {train}): relative difference {err:e}"
                );
            }
            assert_eq!(stats.is_some(), train);
            if let Some((mean, var, count)) = stats {
                // The batch statistics of the real rows, computed here in plain f64.
                let z = candle_nn::ops::leaky_relu(
                    &l.linear.forward_rows(l.x.as_tensor()).unwrap(),
                    0.01,
                )
                .unwrap();
                let (z, m) = (host(&z), host(&l.mask));
                let real: Vec<usize> = (0..m.len()).filter(|&r| m[r] == 1.0).collect();
                assert_eq!(count, real.len() as f64);
                let (mean, var) = (host(&mean), host(&var));
                for c in 0..5 {
                    let mu = real.iter().map(|&r| z[r * 5 + c]).sum::<f64>() / count;
                    let v = real
                        .iter()
                        .map(|&r| (z[r * 5 + c] - mu).powi(2))
                        .sum::<f64>()
                        / count;
                    assert!((mean[c] - mu).abs() < 1e-12 && (var[c] - v).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn pair_shaped_input_gives_a_pair_shaped_output_with_the_same_values() {
        // 2,500 rows as 4 jets of 25 x 25 pairs: `[4, 25, 25, C]` in and out (no reshape
        // nodes between the kernels), the same values, gradients and batch statistics.
        let l = layer(2500, 7, 5, DType::F64);
        let (rows, stats) = fused(&l, true);
        let by_rows = run(&l, &rows);
        let pairs = l.x.as_tensor().reshape((4, 25, 25, 7)).unwrap();
        let out = op(&l, true).apply(&pairs, &l.mask, &params(&l)).unwrap();
        assert_eq!(out.output.dims(), [4, 25, 25, 5]);
        let by_pairs = run(&l, &out.output.reshape((2500, 5)).unwrap());
        assert_eq!(by_rows, by_pairs);
        let (a, b) = (stats.unwrap(), out.batch_stats.unwrap());
        assert_eq!((host(&a.0), host(&a.1), a.2), (host(&b.0), host(&b.1), b.2));
    }

    #[test]
    fn fused_message_is_bit_identical_with_one_and_two_threads() {
        let l = layer(3000, 6, 4, DType::F32);
        let in_pool = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| run(&l, &fused(&l, true).0))
        };
        assert_eq!(in_pool(1), in_pool(2));
    }

    #[test]
    fn unsupported_inputs_are_refused_naming_the_tensor() {
        let l = layer(10, 3, 2, DType::F32);
        let op = op(&l, true);
        let x = l.x.as_tensor();
        let params = Tensor::zeros(op.parameter_len(), DType::F32, &Device::Cpu).unwrap();
        let refused = |r: noether_equivariant::Result<_>| match r {
            Err(ModelError::BadInput { input, .. }) => input,
            other => panic!("expected BadInput, got {:?}", other.map(|_: _| ())),
        };
        assert!(op.apply(x, &l.mask, &params).is_ok());
        assert_eq!(
            refused(op.apply(&x.narrow(1, 0, 2).unwrap(), &l.mask, &params)),
            "x"
        );
        assert_eq!(
            refused(op.apply(x, &l.mask.narrow(0, 0, 9).unwrap(), &params)),
            "mask"
        );
        // One row without its leading dimension: no rows to speak of.
        assert_eq!(refused(op.apply(&x.get(0).unwrap(), &l.mask, &params)), "x");
        // Pair-shaped rows whose count disagrees with the mask.
        let pairs = x.narrow(0, 0, 8).unwrap().reshape((2, 2, 2, 3)).unwrap();
        assert_eq!(refused(op.apply(&pairs, &l.mask, &params)), "mask");
        assert_eq!(
            refused(op.apply(x, &(&l.mask * 0.5).unwrap(), &params)),
            "mask"
        );
        assert_eq!(
            refused(op.apply(x, &l.mask, &params.narrow(0, 0, 3).unwrap())),
            "params"
        );
        let f64_params = params.to_dtype(DType::F64).unwrap();
        assert_eq!(refused(op.apply(x, &l.mask, &f64_params)), "params");
    }
}

//! The equivariant linear layers against an independent loop implementation of their
//! basis operations, their permutation equivariance, and gradients of every aggregation
//! (and of every model) against central finite differences in f64.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use noether_equivariant::{
    seeded_varbuilder, Eq1to2, Eq2to0, Eq2to2, FlowConfig, FlowInput, FlowKind, FlowNetwork,
    LorentzNet, LorentzNetConfig, LorentzNetInput, MaskedBatchNorm, Mlp, MlpConfig, Mode,
    PaddedJets, PairMask, ParticleNet, ParticleNetConfig, ParticleNetInput, Pelican, PelicanConfig,
    PelicanInput, Placement,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const B: usize = 2;
const N: usize = 5;
const N_AVG: f64 = 3.0;

fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Jet 0 has all 5 nodes, jet 1 has 3 real nodes and 2 padded.
fn node_mask() -> Vec<f64> {
    vec![1., 1., 1., 1., 1., 1., 1., 1., 0., 0.]
}

fn var(varmap: &VarMap, name: &str) -> Var {
    varmap.data().lock().unwrap()[name].clone()
}

fn host(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// A masked random pair tensor `[B, N, N, c]`.
fn pair_tensor(rng: &mut ChaCha8Rng, c: usize) -> Vec<f64> {
    let m = node_mask();
    let mut t = random(rng, B * N * N * c);
    for b in 0..B {
        for i in 0..N {
            for j in 0..N {
                for k in 0..c {
                    t[((b * N + i) * N + j) * c + k] *= m[b * N + i] * m[b * N + j];
                }
            }
        }
    }
    t
}

/// The 15 basis operations written as loops over explicit indices.
#[allow(clippy::too_many_lines)]
fn eq2to2_by_loops(
    t: &[f64],
    c: usize,
    weight: &[f64],
    bias: &[f64],
    diag_bias: &[f64],
    alphas: &[f64],
    c_out: usize,
) -> Vec<f64> {
    let m = node_mask();
    let at = |b: usize, i: usize, j: usize, k: usize| t[((b * N + i) * N + j) * c + k];
    let mut out = vec![0.0; B * N * N * c_out];
    for b in 0..B {
        let n: f64 = (0..N).map(|i| m[b * N + i]).sum();
        let factor = |kind: usize, k: usize| (n / N_AVG).powf(alphas[kind * c + k]);
        for i in 0..N {
            for j in 0..N {
                if m[b * N + i] * m[b * N + j] == 0.0 {
                    continue;
                }
                let delta = if i == j { 1.0 } else { 0.0 };
                for o in 0..c_out {
                    let mut acc = bias[o] + delta * diag_bias[o];
                    for k in 0..c {
                        let row = |x: usize| (0..N).map(|l| at(b, x, l, k)).sum::<f64>() / n;
                        let col = |x: usize| (0..N).map(|l| at(b, l, x, k)).sum::<f64>() / n;
                        let (ri, ci, rj, cj) = (
                            row(i) * factor(0, k),
                            col(i) * factor(1, k),
                            row(j) * factor(0, k),
                            col(j) * factor(1, k),
                        );
                        let tr = (0..N).map(|l| at(b, l, l, k)).sum::<f64>() / n * factor(2, k);
                        let s = (0..N)
                            .flat_map(|l| (0..N).map(move |q| (l, q)))
                            .map(|(l, q)| at(b, l, q, k))
                            .sum::<f64>()
                            / (n * n)
                            * factor(3, k);
                        let ops = [
                            at(b, i, j, k),
                            at(b, j, i, k),
                            delta * at(b, i, i, k),
                            at(b, i, i, k),
                            at(b, j, j, k),
                            ri,
                            ci,
                            rj,
                            cj,
                            delta * ri,
                            delta * ci,
                            tr,
                            delta * tr,
                            s,
                            delta * s,
                        ];
                        for (op, value) in ops.iter().enumerate() {
                            acc += weight[(op * c + k) * c_out + o] * value;
                        }
                    }
                    out[((b * N + i) * N + j) * c_out + o] = acc;
                }
            }
        }
    }
    out
}

fn mask_tensor() -> PairMask {
    let node = Tensor::from_vec(node_mask(), (B, N), &Device::Cpu).unwrap();
    PairMask::new(&node, N_AVG).unwrap()
}

/// Gives every parameter in `varmap` a random value (biases and exponents included, so
/// that no basis operation hides behind a zero).
fn randomise(varmap: &VarMap, rng: &mut ChaCha8Rng) {
    let mut names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    names.sort();
    for name in names {
        let v = var(varmap, &name);
        if name.ends_with("running_var") {
            continue;
        }
        let values = random(rng, v.elem_count());
        let t = Tensor::from_vec(values, v.shape(), &Device::Cpu).unwrap();
        v.set(&(t * 0.5).unwrap()).unwrap();
    }
}

#[test]
fn eq2to2_matches_the_loop_implementation() {
    let (c, c_out) = (3, 2);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let varmap = VarMap::new();
    let layer = Eq2to2::new(
        c,
        c_out,
        &seeded_varbuilder(&varmap, 1, DType::F64, &Device::Cpu),
    )
    .unwrap();
    randomise(&varmap, &mut rng);
    let t = pair_tensor(&mut rng, c);
    let input = Tensor::from_vec(t.clone(), (B, N, N, c), &Device::Cpu).unwrap();
    let got = host(&layer.forward(&input, &mask_tensor()).unwrap());
    let expected = eq2to2_by_loops(
        &t,
        c,
        &host(var(&varmap, "weight").as_tensor()),
        &host(var(&varmap, "bias").as_tensor()),
        &host(var(&varmap, "diag_bias").as_tensor()),
        &host(var(&varmap, "alphas").as_tensor()),
        c_out,
    );
    for (g, e) in got.iter().zip(&expected) {
        assert!((g - e).abs() < 1e-12, "{g} vs {e}");
    }
}

#[test]
fn eq2to2_is_permutation_equivariant_and_keeps_padding_zero() {
    let (c, c_out) = (3, 4);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let varmap = VarMap::new();
    let vb = seeded_varbuilder(&varmap, 2, DType::F64, &Device::Cpu);
    let layer = Eq2to2::new(c, c_out, &vb).unwrap();
    randomise(&varmap, &mut rng);
    let t = Tensor::from_vec(pair_tensor(&mut rng, c), (B, N, N, c), &Device::Cpu).unwrap();
    let mask = mask_tensor();
    let out = layer.forward(&t, &mask).unwrap();
    // Jet 0 is fully real: permute its nodes with a fixed permutation.
    let perm = Tensor::new(&[3u32, 0, 4, 1, 2], &Device::Cpu).unwrap();
    let permute = |x: &Tensor| {
        x.index_select(&perm, 1)
            .unwrap()
            .index_select(&perm, 2)
            .unwrap()
    };
    let t0 = t.narrow(0, 0, 1).unwrap();
    let full = PairMask::new(
        &Tensor::ones((1, N), DType::F64, &Device::Cpu).unwrap(),
        N_AVG,
    )
    .unwrap();
    let lhs = host(&layer.forward(&permute(&t0), &full).unwrap());
    let rhs = host(&permute(&out.narrow(0, 0, 1).unwrap()));
    for (a, b) in lhs.iter().zip(&rhs) {
        assert!((a - b).abs() < 1e-12);
    }
    // Jet 1: padded rows and columns are exactly zero.
    let padded = host(&out.narrow(0, 1, 1).unwrap().narrow(1, 3, 2).unwrap());
    assert!(padded.iter().all(|&x| x == 0.0));
}

/// Compares the backward-pass gradient of `loss` with central finite differences for
/// up to `per_var` entries of every variable in `varmap` and of the `inputs`.
fn check_gradients(varmap: &VarMap, inputs: &[Var], per_var: usize, loss: &dyn Fn() -> Tensor) {
    let mut vars: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| !n.contains("running"))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.extend(
        inputs
            .iter()
            .enumerate()
            .map(|(k, v)| (format!("input {k}"), v.clone())),
    );
    let grads = loss().backward().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut checked = 0;
    for (name, v) in &vars {
        let grad = grads
            .get(v.as_tensor())
            .map_or_else(|| vec![0.0; v.elem_count()], host);
        let original = host(v.as_tensor());
        for _ in 0..per_var.min(original.len()) {
            let k = rng.random_range(0..original.len());
            let h = 1e-6 * original[k].abs().max(1.0);
            let shifted = |delta: f64| {
                let mut values = original.clone();
                values[k] += delta;
                v.set(&Tensor::from_vec(values, v.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss().to_scalar::<f64>().unwrap()
            };
            let fd = (shifted(h) - shifted(-h)) / (2.0 * h);
            v.set(&Tensor::from_vec(original.clone(), v.shape(), &Device::Cpu).unwrap())
                .unwrap();
            assert!(
                (fd - grad[k]).abs() <= 1e-6 + 1e-5 * fd.abs().max(grad[k].abs()),
                "{name}[{k}]: backward {} vs finite difference {fd}",
                grad[k]
            );
            checked += 1;
        }
    }
    assert!(checked > 0);
}

/// sum(out * r) for a fixed random r: every output entry gets its own weight.
fn weighted_sum(out: &Tensor, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let r = Tensor::from_vec(
        random(&mut rng, out.elem_count()),
        out.shape(),
        &Device::Cpu,
    )
    .unwrap();
    (out * r).unwrap().sum_all().unwrap()
}

#[test]
fn equivariant_layers_have_correct_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let varmap = VarMap::new();
    let vb = seeded_varbuilder(&varmap, 3, DType::F64, &Device::Cpu);
    let (c, c_out) = (3, 2);
    let eq22 = Eq2to2::new(c, c_out, &vb.pp("eq22")).unwrap();
    let eq12 = Eq1to2::new(2, c, &vb.pp("eq12")).unwrap();
    let eq20 = Eq2to0::new(c_out, 2, &vb.pp("eq20")).unwrap();
    let norm = MaskedBatchNorm::new(c, &vb.pp("norm")).unwrap();
    randomise(&varmap, &mut rng);
    let t = Var::from_vec(pair_tensor(&mut rng, c), (B, N, N, c), &Device::Cpu).unwrap();
    let labels = Var::from_vec(random(&mut rng, B * N * 2), (B, N, 2), &Device::Cpu).unwrap();
    let mask = mask_tensor();
    let pair = mask.pair.squeeze(3).unwrap();
    let loss = || {
        let lifted = eq12.forward(labels.as_tensor(), &mask).unwrap();
        let x = (t.as_tensor() + lifted).unwrap();
        let x = norm
            .forward(&x, &pair, true)
            .unwrap()
            .broadcast_mul(&mask.pair)
            .unwrap();
        let y = eq22.forward(&x, &mask).unwrap().tanh().unwrap();
        weighted_sum(&eq20.forward(&y, &mask).unwrap(), 7)
    };
    check_gradients(&varmap, &[t.clone(), labels.clone()], 12, &loss);
}

fn jet_batch(rng: &mut ChaCha8Rng, beams: usize) -> (Vec<f32>, Vec<f32>) {
    // Two jets of massive-ish constituents, the second padded by two nodes.
    let mut momenta = Vec::new();
    for _ in 0..B * N {
        let (px, py, pz): (f32, f32, f32) = (
            rng.random_range(-5.0..5.0),
            rng.random_range(-5.0..5.0),
            rng.random_range(-5.0..5.0),
        );
        let e = (px * px + py * py + pz * pz + 1.0).sqrt();
        momenta.extend([e, px, py, pz]);
    }
    let mask: Vec<f32> = node_mask().iter().map(|&m| m as f32).collect();
    for (k, m) in mask.iter().enumerate() {
        if *m == 0.0 {
            momenta[k * 4..k * 4 + 4].fill(0.0);
        }
    }
    let _ = beams;
    (momenta, mask)
}

fn to_f64(t: &Tensor) -> Tensor {
    t.to_dtype(DType::F64).unwrap()
}

#[test]
fn pelican_has_correct_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (momenta, mask) = jet_batch(&mut rng, 0);
    let input = PelicanInput::from_flat(&momenta, &mask, B, N, 1).unwrap();
    let input = PelicanInput {
        dots: to_f64(&input.dots),
        mask: to_f64(&input.mask),
        labels: to_f64(&input.labels),
    };
    let varmap = VarMap::new();
    let model = Pelican::new(
        &PelicanConfig::tiny(),
        &seeded_varbuilder(&varmap, 4, DType::F64, &Device::Cpu),
    )
    .unwrap();
    let loss = || {
        let mut r = ChaCha8Rng::seed_from_u64(0);
        weighted_sum(&model.forward(&input, &mut Mode::Train(&mut r)).unwrap(), 8)
    };
    check_gradients(&varmap, &[], 6, &loss);
}

#[test]
fn lorentznet_has_correct_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (momenta, mask) = jet_batch(&mut rng, 0);
    let input = LorentzNetInput::from_flat(&momenta, &mask, B, N, 1).unwrap();
    let input = LorentzNetInput {
        momenta: (to_f64(&input.momenta) * 0.1).unwrap(),
        mask: to_f64(&input.mask),
        ..input
    };
    let varmap = VarMap::new();
    let config = LorentzNetConfig {
        n_hidden: 4,
        n_layers: 2,
        dropout: 0.0,
        ..LorentzNetConfig::default()
    };
    let model = LorentzNet::new(
        &config,
        &seeded_varbuilder(&varmap, 5, DType::F64, &Device::Cpu),
    )
    .unwrap();
    let loss = || {
        let mut r = ChaCha8Rng::seed_from_u64(0);
        weighted_sum(
            &model.forward_t(&input, &mut Mode::Train(&mut r)).unwrap(),
            9,
        )
    };
    check_gradients(&varmap, &[], 4, &loss);
}

#[test]
fn flow_networks_and_mlp_have_correct_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let (momenta, mask) = jet_batch(&mut rng, 0);
    let input = FlowInput::from_flat(&momenta, &mask, B, N).unwrap();
    let input = FlowInput {
        features: to_f64(&input.features),
        mask: to_f64(&input.mask),
    };
    for kind in [FlowKind::Pfn, FlowKind::Efn] {
        let varmap = VarMap::new();
        let config = FlowConfig {
            kind,
            phi_sizes: vec![6, 5],
            f_sizes: vec![4],
            ..FlowConfig::default()
        };
        let vb = seeded_varbuilder(&varmap, 6, DType::F64, &Device::Cpu);
        let model = FlowNetwork::new(&config, &vb).unwrap();
        let loss = || weighted_sum(&model.forward(&input, &mut Mode::Eval).unwrap(), 10);
        check_gradients(&varmap, &[], 5, &loss);
    }
    let varmap = VarMap::new();
    let vb: VarBuilder = seeded_varbuilder(&varmap, 7, DType::F64, &Device::Cpu);
    let mlp = Mlp::new(&MlpConfig::default(), &vb).unwrap();
    let x = Tensor::from_vec(random(&mut rng, B * 7), (B, 7), &Device::Cpu).unwrap();
    let loss = || weighted_sum(&mlp.forward(&x, &mut Mode::Eval).unwrap(), 11);
    check_gradients(&varmap, &[], 5, &loss);
}

#[test]
fn particlenet_has_correct_gradients() {
    // Jet 1 has fewer particles than k + 1, so it takes a padded neighbour; training mode
    // (masked batch statistics) without dropout.
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let (momenta, mask) = jet_batch(&mut rng, 0);
    let config = ParticleNetConfig {
        n_class: 2,
        conv_params: vec![(3, vec![4, 4]), (3, vec![5])],
        fc_params: vec![(4, 0.0)],
        use_fusion: true,
        ..ParticleNetConfig::default()
    };
    let wide: Vec<f64> = momenta.iter().map(|&x| f64::from(x)).collect();
    let jets = PaddedJets {
        momenta: &wide,
        mask: &mask,
        jets: B,
        nodes: N,
        beams: 0,
    };
    let place = Placement {
        device: Device::Cpu,
        dtype: DType::F64,
    };
    let input = ParticleNetInput::build(&config.inputs, &jets, &place).unwrap();
    let varmap = VarMap::new();
    let model = ParticleNet::new(
        &config,
        &seeded_varbuilder(&varmap, 8, DType::F64, &Device::Cpu),
    )
    .unwrap();
    let loss = || {
        let mut r = ChaCha8Rng::seed_from_u64(0);
        weighted_sum(
            &model.forward(&input, &mut Mode::Train(&mut r)).unwrap(),
            12,
        )
    };
    check_gradients(&varmap, &[], 5, &loss);
}

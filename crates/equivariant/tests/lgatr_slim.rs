//! L-GATr-slim against the `lgatr` 2.0 package (fixtures by
//! `tests/fixtures/make_lgatr_slim_fixtures.py`: the package's own weights and outputs),
//! its symmetries in f64, and its gradients against finite differences.

#[path = "common/parity.rs"]
mod parity;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use noether_equivariant::slim_layers::Nonlinearity;
use noether_equivariant::{
    seeded_varbuilder, LGatrSlim, LGatrSlimConfig, LGatrSlimNet, Mode, ModelError, Placement,
    TaggerModel, LGATR_SPURIONS,
};
use parity::{as_padded, flat, json, padded_jets, weights, worst_relative};

fn tensor_to_vec(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn the_tagger_reproduces_the_package_logits_on_bundled_jets() {
    let fixture = json("lgatr_slim.json");
    let c = &fixture["config"];
    let config = LGatrSlimConfig {
        hidden_v_channels: 8,
        hidden_s_channels: 32,
        num_blocks: 2,
        num_heads: 4,
        units: c["units"].as_f64().unwrap(),
        ..LGatrSlimConfig::default()
    };
    let model = LGatrSlim::new(&config, &weights("lgatr_slim.safetensors", DType::F32)).unwrap();
    let (momenta, mask, nodes) = padded_jets(&fixture, &LGATR_SPURIONS);
    let jets = as_padded(&momenta, &mask, nodes, LGATR_SPURIONS.len());
    let input = model.input(&jets, &Placement::cpu()).unwrap();
    let logits = model.forward_t(&input, &mut Mode::Eval).unwrap();
    let want = flat(&fixture["logits"]);
    let scale = want.iter().map(|x| x.abs()).fold(0.0, f64::max);
    let err = worst_relative(&tensor_to_vec(&logits), &want, scale);
    println!("L-GATr-slim tagger: worst logit error {err:.2e} of the largest logit {scale:.3}");
    assert!(err < 1e-5, "logits differ from lgatr 2.0 by {err:.2e}");
}

fn network_config() -> LGatrSlimConfig {
    LGatrSlimConfig {
        hidden_v_channels: 6,
        hidden_s_channels: 12,
        num_blocks: 2,
        num_heads: 3,
        nonlinearity: Nonlinearity::Silu,
        nonlinearity_v: Nonlinearity::Tanh,
        mlp_ratio: 3,
        attn_ratio: 2,
        num_layers_mlp: 3,
        dropout_prob: Some(0.1),
        norm_elementwise_affine: false,
        ..LGatrSlimConfig::default()
    }
}

#[test]
fn the_network_reproduces_vector_and_scalar_outputs_with_every_option() {
    let fixture = json("lgatr_slim_net.json");
    let vb = weights("lgatr_slim_net.safetensors", DType::F32);
    let net = LGatrSlimNet::new(&network_config(), (2, 5), (3, 4), &vb).unwrap();
    let dev = Device::Cpu;
    // The package's public layout [B, N, C, 4]; the network's is [B, N, 4, C].
    let v: Vec<f32> = flat(&fixture["vectors"])
        .iter()
        .map(|&x| x as f32)
        .collect();
    let v = Tensor::from_vec(v, (3, 7, 2, 4), &dev)
        .unwrap()
        .transpose(2, 3)
        .unwrap();
    let s: Vec<f32> = flat(&fixture["scalars"])
        .iter()
        .map(|&x| x as f32)
        .collect();
    let s = Tensor::from_vec(s, (3, 7, 5), &dev).unwrap();
    let m: Vec<f32> = flat(&fixture["mask"]).iter().map(|&x| x as f32).collect();
    let mask = Tensor::from_vec(m, (3, 7), &dev).unwrap();
    let (out_v, out_s) = net.forward(&v, &s, &mask, &mut Mode::Eval).unwrap();
    let out_v = out_v.transpose(2, 3).unwrap().contiguous().unwrap();
    let (want_v, want_s) = (flat(&fixture["out_v"]), flat(&fixture["out_s"]));
    let scale = |w: &[f64]| w.iter().map(|x| x.abs()).fold(0.0, f64::max);
    let err_v = worst_relative(&tensor_to_vec(&out_v), &want_v, scale(&want_v));
    let err_s = worst_relative(&tensor_to_vec(&out_s), &want_s, scale(&want_s));
    println!("LGATrSlim network: vectors {err_v:.2e}, scalars {err_s:.2e}");
    assert!(
        err_v < 1e-5 && err_s < 1e-5,
        "vectors {err_v:.2e}, scalars {err_s:.2e}"
    );
}

#[test]
fn a_state_dict_of_another_configuration_is_refused_naming_the_tensor() {
    let config = LGatrSlimConfig {
        hidden_v_channels: 16,
        hidden_s_channels: 32,
        num_blocks: 2,
        num_heads: 4,
        ..LGatrSlimConfig::default()
    };
    let err = LGatrSlim::new(&config, &weights("lgatr_slim.safetensors", DType::F32)).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("blocks.0.norm1.weight_v") && text.contains("[16]") && text.contains("[8]"),
        "{text}"
    );
}

#[test]
fn configs_the_architecture_cannot_use_are_refused_by_key() {
    let cases = [
        (
            LGatrSlimConfig {
                hidden_v_channels: 0,
                ..LGatrSlimConfig::default()
            },
            "hidden_v_channels",
        ),
        (
            LGatrSlimConfig {
                num_heads: 0,
                ..LGatrSlimConfig::default()
            },
            "num_heads",
        ),
        (
            LGatrSlimConfig {
                num_layers_mlp: 1,
                ..LGatrSlimConfig::default()
            },
            "num_layers_mlp",
        ),
        (
            LGatrSlimConfig {
                dropout_prob: Some(1.0),
                ..LGatrSlimConfig::default()
            },
            "dropout_prob",
        ),
        (
            LGatrSlimConfig {
                units: 0.0,
                ..LGatrSlimConfig::default()
            },
            "units",
        ),
    ];
    for (config, key) in cases {
        match LGatrSlim::check_config(&config) {
            Err(ModelError::BadConfig { key: got, .. }) => assert_eq!(got, key),
            other => panic!("{key}: expected a config error, got {other:?}"),
        }
    }
}

/// A small network in f64 with random weights.
fn small_net(varmap: &VarMap, out_v: usize) -> LGatrSlimNet {
    let config = LGatrSlimConfig {
        hidden_v_channels: 4,
        hidden_s_channels: 8,
        num_blocks: 2,
        num_heads: 2,
        ..LGatrSlimConfig::default()
    };
    let vb = seeded_varbuilder(varmap, 5, DType::F64, &Device::Cpu);
    LGatrSlimNet::new(&config, (2, 3), (out_v, 2), &vb).unwrap()
}

/// A boost of rapidity `y` along `(nx, ny, nz)` composed with a rotation about z by
/// `angle`, as a 4x4 matrix.
fn lorentz(y: f64, n: [f64; 3], angle: f64) -> [[f64; 4]; 4] {
    let norm = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
    let n = n.map(|x| x / norm);
    let (ch, sh) = (y.cosh(), y.sinh());
    let mut boost = [[0.0; 4]; 4];
    boost[0][0] = ch;
    for i in 0..3 {
        boost[0][i + 1] = sh * n[i];
        boost[i + 1][0] = sh * n[i];
        for j in 0..3 {
            boost[i + 1][j + 1] = f64::from(u8::from(i == j)) + (ch - 1.0) * n[i] * n[j];
        }
    }
    let (s, c) = angle.sin_cos();
    let rot = [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, c, -s, 0.0],
        [0.0, s, c, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let mut out = [[0.0; 4]; 4];
    for i in 0..4 {
        for j in 0..4 {
            out[i][j] = (0..4).map(|k| boost[i][k] * rot[k][j]).sum();
        }
    }
    out
}

/// Applies `l` to the component axis of `[B, N, 4, C]` vectors.
fn transform(l: &[[f64; 4]; 4], v: &Tensor) -> Tensor {
    let flat: Vec<f64> = l.iter().flatten().copied().collect();
    let m = Tensor::from_vec(flat, (4, 4), v.device()).unwrap();
    let (b, n, _, c) = v.dims4().unwrap();
    let moved = v.transpose(2, 3).unwrap().reshape((b * n * c, 4)).unwrap();
    moved
        .matmul(&m.t().unwrap())
        .unwrap()
        .reshape((b, n, c, 4))
        .unwrap()
        .transpose(2, 3)
        .unwrap()
        .contiguous()
        .unwrap()
}

fn random_inputs(seed: u64) -> (Tensor, Tensor, Tensor) {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut draw = |n: usize| -> Vec<f64> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
    let dev = Device::Cpu;
    let v = Tensor::from_vec(draw(2 * 6 * 4 * 2), (2, 6, 4, 2), &dev).unwrap();
    let s = Tensor::from_vec(draw(2 * 6 * 3), (2, 6, 3), &dev).unwrap();
    let mask = Tensor::new(
        &[
            [1f64, 1.0, 1.0, 1.0, 1.0, 1.0],
            [1.0, 1.0, 1.0, 1.0, 0.0, 0.0],
        ],
        &dev,
    )
    .unwrap();
    (v, s, mask)
}

#[test]
fn scalar_outputs_are_lorentz_invariant_and_vector_outputs_equivariant_in_f64() {
    let varmap = VarMap::new();
    let net = small_net(&varmap, 2);
    let (v, s, mask) = random_inputs(11);
    let (out_v, out_s) = net.forward(&v, &s, &mask, &mut Mode::Eval).unwrap();
    let mut worst: f64 = 0.0;
    for (k, y) in [0.5, 2.0, 4.0].into_iter().enumerate() {
        let l = lorentz(y, [0.3, -0.5, 0.8 - k as f64 * 0.4], 0.7 * (k as f64 + 1.0));
        let (moved_v, moved_s) = net
            .forward(&transform(&l, &v), &s, &mask, &mut Mode::Eval)
            .unwrap();
        let want_v = tensor_to_vec(&transform(&l, &out_v));
        let scale_v = want_v.iter().map(|x| x.abs()).fold(0.0, f64::max);
        let err_v = worst_relative(&tensor_to_vec(&moved_v), &want_v, scale_v);
        let want_s = tensor_to_vec(&out_s);
        let scale_s = want_s.iter().map(|x| x.abs()).fold(0.0, f64::max);
        let err_s = worst_relative(&tensor_to_vec(&moved_s), &want_s, scale_s);
        assert!(
            err_v < 1e-9,
            "rapidity {y}: vectors not equivariant ({err_v:.1e})"
        );
        assert!(
            err_s < 1e-9,
            "rapidity {y}: scalars not invariant ({err_s:.1e})"
        );
        worst = worst.max(err_v).max(err_s);
    }
    println!("worst violation up to rapidity 4: {worst:.1e}");
}

#[test]
fn outputs_follow_permutations_and_ignore_padding() {
    let varmap = VarMap::new();
    let net = small_net(&varmap, 2);
    let (v, s, mask) = random_inputs(12);
    let (out_v, out_s) = net.forward(&v, &s, &mask, &mut Mode::Eval).unwrap();
    let order = Tensor::new(&[3u32, 0, 5, 1, 4, 2], &Device::Cpu).unwrap();
    let permuted = |t: &Tensor| t.index_select(&order, 1).unwrap();
    let (pv, ps) = net
        .forward(
            &permuted(&v),
            &permuted(&s),
            &permuted(&mask),
            &mut Mode::Eval,
        )
        .unwrap();
    let err = worst_relative(&tensor_to_vec(&pv), &tensor_to_vec(&permuted(&out_v)), 1.0).max(
        worst_relative(&tensor_to_vec(&ps), &tensor_to_vec(&permuted(&out_s)), 1.0),
    );
    assert!(err < 1e-12, "not permutation equivariant: {err:.1e}");
    // Jet 1's two padded items changed: its real items' outputs are unchanged.
    let noise = Tensor::new(&[[0f64; 6], [0.0, 0.0, 0.0, 0.0, 7.0, -3.0]], &Device::Cpu).unwrap();
    let v2 = v
        .broadcast_add(&noise.reshape((2, 6, 1, 1)).unwrap())
        .unwrap();
    let s2 = s
        .broadcast_add(&noise.unsqueeze(D::Minus1).unwrap())
        .unwrap();
    let (qv, qs) = net.forward(&v2, &s2, &mask, &mut Mode::Eval).unwrap();
    let real = |t: &Tensor| tensor_to_vec(&t.get(1).unwrap().narrow(0, 0, 4).unwrap());
    let err = worst_relative(&real(&qv), &real(&out_v), 1.0).max(worst_relative(
        &real(&qs),
        &real(&out_s),
        1.0,
    ));
    assert_eq!(err, 0.0, "padding changed real outputs by {err:.1e}");
}

#[test]
fn gradients_match_central_finite_differences_in_f64() {
    let varmap = VarMap::new();
    let net = small_net(&varmap, 1);
    let (v, s, mask) = random_inputs(13);
    let loss = |net: &LGatrSlimNet| -> Tensor {
        let (ov, os) = net.forward(&v, &s, &mask, &mut Mode::Eval).unwrap();
        let weights = Tensor::new(&[1.0f64, -0.5], &Device::Cpu).unwrap();
        (os.broadcast_mul(&weights).unwrap().sum_all().unwrap()
            + ov.sqr().unwrap().sum_all().unwrap() * 0.1)
            .unwrap()
    };
    let grads = loss(&net).backward().unwrap();
    let vars: Vec<(String, Var)> = {
        let data = varmap.data().lock().unwrap();
        let mut all: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    };
    let mut checked = 0;
    for (name, var) in &vars {
        if var.elem_count() == 0 {
            continue;
        }
        let zero = var.zeros_like().unwrap();
        let analytic = tensor_to_vec(grads.get(var).unwrap_or(&zero));
        let values = tensor_to_vec(var.as_tensor());
        for k in [0, values.len() / 2, values.len() - 1] {
            let h = 1e-6;
            let at = |x: f64| {
                let mut moved = values.clone();
                moved[k] = x;
                var.set(&Tensor::from_vec(moved, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss(&net).to_scalar::<f64>().unwrap()
            };
            let numeric = (at(values[k] + h) - at(values[k] - h)) / (2.0 * h);
            at(values[k]);
            let err = (numeric - analytic[k]).abs() / numeric.abs().max(1e-3);
            assert!(
                err < 1e-5,
                "{name}[{k}]: analytic {} vs numeric {numeric}",
                analytic[k]
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} entries checked");
}

#[test]
fn the_tagger_is_invariant_under_rotations_about_and_boosts_along_the_beam() {
    let fixture = json("lgatr_slim.json");
    let varmap = VarMap::new();
    let place = Placement {
        device: Device::Cpu,
        dtype: DType::F64,
    };
    let config = LGatrSlimConfig {
        hidden_v_channels: 4,
        hidden_s_channels: 16,
        num_blocks: 2,
        num_heads: 2,
        ..LGatrSlimConfig::default()
    };
    let vb: VarBuilder = seeded_varbuilder(&varmap, 3, DType::F64, &Device::Cpu);
    let model = LGatrSlim::new(&config, &vb).unwrap();
    let (momenta, mask, nodes) = padded_jets(&fixture, &LGATR_SPURIONS);
    let beams = LGATR_SPURIONS.len();
    let logits = |m: &[f64]| {
        let input = model
            .input(&as_padded(m, &mask, nodes, beams), &place)
            .unwrap();
        tensor_to_vec(&model.forward_t(&input, &mut Mode::Eval).unwrap())
    };
    let before = logits(&momenta);
    for (y, angle) in [(0.8, 1.1), (-1.7, -2.5), (3.0, 0.3)] {
        let l = lorentz(y, [0.0, 0.0, 1.0], angle);
        let mut moved = momenta.clone();
        for (k, p) in moved.chunks_exact_mut(4).enumerate() {
            if k % nodes >= beams {
                let q = *<&[f64; 4]>::try_from(&*p).unwrap();
                for (i, slot) in p.iter_mut().enumerate() {
                    *slot = (0..4).map(|j| l[i][j] * q[j]).sum();
                }
            }
        }
        let err = worst_relative(&logits(&moved), &before, 1.0);
        assert!(
            err < 1e-9,
            "boost {y}, rotation {angle}: logits moved by {err:.1e}"
        );
    }
    // A boost across the beam is not a symmetry of the detector: the tagger sees it.
    let l = lorentz(1.0, [1.0, 0.0, 0.0], 0.0);
    let mut moved = momenta.clone();
    for (k, p) in moved.chunks_exact_mut(4).enumerate() {
        if k % nodes >= beams {
            let q = *<&[f64; 4]>::try_from(&*p).unwrap();
            for (i, slot) in p.iter_mut().enumerate() {
                *slot = (0..4).map(|j| l[i][j] * q[j]).sum();
            }
        }
    }
    assert!(worst_relative(&logits(&moved), &before, 1.0) > 1e-6);
}

#[test]
fn forward_flops_equal_flop_counter_mode_on_the_package() {
    let fixture = json("lgatr_slim.json");
    let config = LGatrSlimConfig {
        hidden_v_channels: 8,
        hidden_s_channels: 32,
        num_blocks: 2,
        num_heads: 4,
        ..LGatrSlimConfig::default()
    };
    // The fixture's tokens: class token + 3 spurions + constituents; nodes exclude the
    // class token.
    let nodes = fixture["tokens"].as_u64().unwrap() as usize - 1;
    assert_eq!(
        LGatrSlim::forward_flops(&config, nodes),
        u128::from(fixture["flops_per_jet"].as_u64().unwrap())
    );
}

/// The network (1 vector and 1 scalar channel in and out, no spurions) on one jet in `dtype`,
/// momenta in units of 100 GeV: per-particle scalar outputs and output vectors.
fn per_particle(
    net: &LGatrSlimNet,
    dtype: DType,
    jet: &[noether_kinematics::FourMomentum],
) -> (Vec<f64>, Vec<noether_kinematics::FourMomentum>) {
    let dev = Device::Cpu;
    let n = jet.len();
    let flat: Vec<f64> = jet
        .iter()
        .flat_map(|p| p.to_array().map(|x| x / 100.0))
        .collect();
    let v = Tensor::from_vec(flat, (1, n, 4, 1), &dev)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    let s = Tensor::ones((1, n, 1), dtype, &dev).unwrap();
    let mask = Tensor::ones((1, n), dtype, &dev).unwrap();
    let (ov, os) = net.forward(&v, &s, &mask, &mut Mode::Eval).unwrap();
    let vectors = tensor_to_vec(&ov)
        .chunks_exact(4)
        .map(|c| noether_kinematics::FourMomentum::new_unchecked(c[0], c[1], c[2], c[3]))
        .collect();
    (tensor_to_vec(&os), vectors)
}

fn kit_net(dtype: DType) -> LGatrSlimNet {
    let varmap = VarMap::new();
    let config = LGatrSlimConfig {
        hidden_v_channels: 4,
        hidden_s_channels: 8,
        num_blocks: 2,
        num_heads: 2,
        ..LGatrSlimConfig::default()
    };
    let vb = seeded_varbuilder(&varmap, 9, dtype, &Device::Cpu);
    LGatrSlimNet::new(&config, (1, 1), (1, 1), &vb).unwrap()
}

/// In f32 the whole network stays within the `f32-network` tier (1e-3 relative) up to
/// rapidity 2: the tier that f32 runs are held to.
#[test]
fn in_f32_the_network_is_equivariant_to_the_network_tier_up_to_rapidity_2() {
    use noether_testkit::{SymmetryKit, Tolerance};
    let net = kit_net(DType::F32);
    let kit = SymmetryKit::new(18)
        .with_max_rapidity(2.0)
        .with_constituents(2..=20);
    kit.assert_lorentz_invariant(
        |jet| per_particle(&net, DType::F32, jet).0,
        Tolerance::F32_NETWORK,
    );
    kit.assert_lorentz_equivariant(
        |jet| per_particle(&net, DType::F32, jet).1,
        Tolerance::F32_NETWORK,
    );
}

#[test]
fn the_symmetry_kit_finds_the_network_lorentz_and_permutation_equivariant() {
    use noether_testkit::{SymmetryKit, Tolerance};
    let net = kit_net(DType::F64);
    let kit = SymmetryKit::new(17)
        .with_max_rapidity(4.0)
        .with_constituents(2..=20);
    kit.assert_lorentz_invariant(|jet| per_particle(&net, DType::F64, jet).0, Tolerance::F64);
    kit.assert_lorentz_equivariant(|jet| per_particle(&net, DType::F64, jet).1, Tolerance::F64);
    kit.assert_permutation_equivariant(
        |jet| per_particle(&net, DType::F64, jet).0,
        Tolerance::F64_STRICT,
    );
}

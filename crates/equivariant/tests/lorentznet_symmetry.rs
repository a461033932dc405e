//! LorentzNet's symmetries with the official weights (deterministic; skipped without the
//! shared folder): padded nodes change nothing and constituent order changes nothing.
//! (Lorentz invariance of the f32 path does not hold yet: the node masses and edge
//! invariants are computed in f32 from the momenta, see the crate docs.)

use std::path::PathBuf;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use noether_equivariant::{LorentzNet, LorentzNetConfig, LorentzNetInput};
use noether_kinematics::FourMomentum;
use noether_testkit::{SymmetryKit, Tolerance};

fn model() -> Option<LorentzNet> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/lorentznet/lorentznet_top_pretrained.safetensors");
    if !path.exists() {
        eprintln!("SKIPPED: {} is absent", path.display());
        return None;
    }
    let tensors = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    Some(LorentzNet::new(&LorentzNetConfig::default(), &vb.pp("module")).unwrap())
}

/// Logits for nodes given as four-momenta (the first two are the beams), with `pad`
/// zero nodes appended and masked out.
fn logits(model: &LorentzNet, nodes: &[FourMomentum], pad: usize) -> Vec<f64> {
    let mut flat: Vec<f32> = nodes
        .iter()
        .flat_map(|p| p.to_array().map(|x| x as f32))
        .collect();
    flat.extend(std::iter::repeat_n(0.0, 4 * pad));
    let mut mask = vec![1.0; nodes.len()];
    mask.extend(std::iter::repeat_n(0.0, pad));
    let input = LorentzNetInput::from_flat(&flat, &mask, 1, nodes.len() + pad, 2).unwrap();
    let out = model
        .forward(&input)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    out.into_iter().map(f64::from).collect()
}

fn with_beams(jet: &[FourMomentum]) -> Vec<FourMomentum> {
    let s2 = std::f64::consts::SQRT_2;
    let mut nodes = vec![
        FourMomentum::new_unchecked(s2, 0.0, 0.0, 1.0),
        FourMomentum::new_unchecked(s2, 0.0, 0.0, -1.0),
    ];
    nodes.extend(
        jet.iter()
            .map(|p| FourMomentum::new_unchecked(p.p(), p.px(), p.py(), p.pz())),
    );
    nodes
}

#[test]
fn padded_nodes_change_nothing() {
    let Some(model) = model() else { return };
    for jet in SymmetryKit::new(1)
        .with_jets(4)
        .with_constituents(10..=40)
        .jets()
    {
        let nodes = with_beams(&jet);
        let (a, b) = (logits(&model, &nodes, 0), logits(&model, &nodes, 17));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{a:?} vs {b:?}");
        }
    }
}

#[test]
fn logits_are_permutation_invariant() {
    let Some(model) = model() else { return };
    let kit = SymmetryKit::new(2)
        .with_jets(4)
        .with_transforms(4)
        .with_constituents(10..=30);
    // Constituent permutations (beams stay first): the kit permutes the jet.
    let perm = kit.permutation_invariance(
        |jet| logits(&model, &with_beams(jet), 0),
        Tolerance::F32_NETWORK,
    );
    assert!(perm.passed(), "{perm}");
}

/// The official weights in f64, inputs in f64, with the coordinate clamp disabled.
fn model_f64() -> Option<LorentzNet> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/lorentznet/lorentznet_top_pretrained.safetensors");
    if !path.exists() {
        return None;
    }
    let tensors: std::collections::HashMap<String, candle_core::Tensor> =
        candle_core::safetensors::load(path, &Device::Cpu)
            .unwrap()
            .into_iter()
            .map(|(k, t)| (k, t.to_dtype(DType::F64).unwrap()))
            .collect();
    let vb = VarBuilder::from_tensors(tensors, DType::F64, &Device::Cpu);
    let config = LorentzNetConfig {
        coord_clamp: f64::INFINITY,
        ..LorentzNetConfig::default()
    };
    Some(LorentzNet::new(&config, &vb.pp("module")).unwrap())
}

/// Logits in f64 with the exact node masses (1 for the beams, 0 for the massless
/// constituents) instead of sqrt|p^2| of the transformed momenta, whose square root
/// turns rounding noise into O(sqrt(eps) E) masses.
fn logits_f64(model: &LorentzNet, nodes: &[FourMomentum]) -> Vec<f64> {
    let flat: Vec<f64> = nodes.iter().flat_map(FourMomentum::to_array).collect();
    let n = nodes.len();
    let input = LorentzNetInput {
        momenta: candle_core::Tensor::from_vec(flat, (1, n, 4), &Device::Cpu).unwrap(),
        mask: candle_core::Tensor::ones((1, n), DType::F64, &Device::Cpu).unwrap(),
        beams: 2,
        masses: Some(
            candle_core::Tensor::from_vec(
                (0..n)
                    .map(|k| if k < 2 { 1.0 } else { 0.0 })
                    .collect::<Vec<f64>>(),
                (1, n),
                &Device::Cpu,
            )
            .unwrap(),
        ),
    };
    model
        .forward(&input)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// With exact masses and no coordinate clamp, the implementation is Lorentz invariant in
/// f64 (beams transformed with the jet); the reference clamp and sqrt|p^2| of rounded
/// momenta are what break invariance, not the blocks.
#[test]
fn lorentz_invariant_in_f64_without_the_clamp() {
    use noether_testkit::check_invariant;
    let Some(model) = model_f64() else { return };
    let inputs: Vec<Vec<FourMomentum>> = SymmetryKit::new(4)
        .with_jets(4)
        .with_constituents(10..=30)
        .jets()
        .iter()
        .map(|j| with_beams(j))
        .collect();
    for y_max in [0.5, 2.0, 4.0] {
        let ops = SymmetryKit::new(5)
            .with_transforms(4)
            .with_max_rapidity(y_max)
            .lorentz_ops();
        let r = check_invariant(
            |n| logits_f64(&model, n),
            &inputs,
            &ops,
            Tolerance::new("f64-network", 1e-6, 1e-6),
        );
        eprintln!("f64 y_max {y_max}: {r}");
        assert!(r.passed(), "{r}");
    }
}

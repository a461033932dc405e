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

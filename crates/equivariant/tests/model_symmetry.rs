//! Symmetry properties of PELICAN, the flow networks and the MLP baseline with seeded
//! random weights, checked with the testkit harness; and the LGEB coordinate update's
//! Lorentz equivariance.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use noether_equivariant::{
    raw_momenta, seeded_varbuilder, FlowConfig, FlowInput, FlowKind, FlowNetwork, Graph,
    LorentzBlock, LorentzNetConfig, Mlp, MlpConfig, Mode, Pelican, PelicanConfig, PelicanInput,
};
use noether_kinematics::FourMomentum;
use noether_testkit::{check_equivariant, check_invariant, SymmetryKit, Tolerance};

fn flat_f64(nodes: &[FourMomentum]) -> Vec<f64> {
    nodes.iter().flat_map(FourMomentum::to_array).collect()
}

fn flat_f32(nodes: &[FourMomentum]) -> Vec<f32> {
    nodes
        .iter()
        .flat_map(|p| p.to_array().map(|x| x as f32))
        .collect()
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// PELICAN's beams followed by the jet.
fn with_beams(jet: &[FourMomentum]) -> Vec<FourMomentum> {
    let mut nodes = vec![
        FourMomentum::new_unchecked(1.0, 0.0, 0.0, 1.0),
        FourMomentum::new_unchecked(1.0, 0.0, 0.0, -1.0),
    ];
    nodes.extend_from_slice(jet);
    nodes
}

fn pelican() -> Pelican {
    let varmap = VarMap::new();
    let vb = seeded_varbuilder(&varmap, 11, DType::F32, &Device::Cpu);
    Pelican::new(&PelicanConfig::small(), &vb).unwrap()
}

/// Logits for beams + constituents (`pad` masked zero nodes appended); `wide`: the
/// products are formed from the f64 momenta, else from f32-rounded momenta.
fn pelican_logits(model: &Pelican, nodes: &[FourMomentum], pad: usize, wide: bool) -> Vec<f64> {
    let n = nodes.len() + pad;
    let mut mask = vec![1.0; nodes.len()];
    mask.resize(n, 0.0);
    let input = if wide {
        let mut m = flat_f64(nodes);
        m.resize(4 * n, 0.0);
        PelicanInput::from_flat_f64(&m, &mask, 1, n, 2).unwrap()
    } else {
        let mut m = flat_f32(nodes);
        m.resize(4 * n, 0.0);
        PelicanInput::from_flat(&m, &mask, 1, n, 2).unwrap()
    };
    to_vec(&model.forward(&input, &mut Mode::Eval).unwrap())
}

#[test]
fn pelican_ignores_padding_and_order() {
    let model = pelican();
    let kit = SymmetryKit::new(21)
        .with_jets(4)
        .with_transforms(4)
        .with_constituents(5..=30);
    for jet in kit.jets() {
        let nodes = with_beams(&jet);
        let (a, b) = (
            pelican_logits(&model, &nodes, 0, true),
            pelican_logits(&model, &nodes, 13, true),
        );
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{a:?} vs {b:?}");
        }
    }
    kit.assert_permutation_invariant(
        |jet| pelican_logits(&model, &with_beams(jet), 0, true),
        Tolerance::F32_NETWORK,
    );
}

/// Lorentz invariance of the whole input (beams boosted with the jet). With the
/// products formed in f64 it holds to F32_NETWORK (1e-3 relative) up to rapidity 6;
/// from f32-rounded momenta only to rapidity 1 (see the `invariance_vs_rapidity`
/// example for the full curve).
#[test]
fn pelican_is_lorentz_invariant() {
    let model = pelican();
    let inputs: Vec<Vec<FourMomentum>> = SymmetryKit::new(22)
        .with_jets(4)
        .with_constituents(5..=30)
        .jets()
        .iter()
        .map(|j| with_beams(j))
        .collect();
    for (wide, y_max) in [(true, 6.0), (false, 1.0)] {
        let ops = SymmetryKit::new(23)
            .with_transforms(4)
            .with_max_rapidity(y_max)
            .lorentz_ops();
        let report = check_invariant(
            |n| pelican_logits(&model, n, 0, wide),
            &inputs,
            &ops,
            Tolerance::F32_NETWORK,
        );
        eprintln!("f64 products {wide}, y <= {y_max}: {report}");
        assert!(report.passed(), "{report}");
    }
}

fn flow_logits(model: &FlowNetwork, jet: &[FourMomentum]) -> Vec<f64> {
    let n = jet.len();
    let input = FlowInput::from_flat(&flat_f32(jet), &vec![1.0; n], 1, n).unwrap();
    to_vec(&model.forward(&input, &mut Mode::Eval).unwrap())
}

#[test]
fn flow_networks_are_permutation_invariant_and_efn_is_irc_safe() {
    for kind in [FlowKind::Pfn, FlowKind::Efn] {
        let varmap = VarMap::new();
        let config = FlowConfig {
            kind,
            ..FlowConfig::default()
        };
        let model = FlowNetwork::new(
            &config,
            &seeded_varbuilder(&varmap, 12, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let kit = SymmetryKit::new(24)
            .with_jets(4)
            .with_transforms(4)
            .with_constituents(5..=30);
        kit.assert_permutation_invariant(|jet| flow_logits(&model, jet), Tolerance::F32_NETWORK);
        if kind == FlowKind::Efn {
            // A collinear split (p -> p/2 + p/2) and a soft emission (1e-9 of the hardest
            // momentum) leave the EFN unchanged: IRC safety by construction.
            for jet in kit.jets() {
                let before = flow_logits(&model, &jet);
                let mut split = jet[1..].to_vec();
                split.extend([jet[0] * 0.5, jet[0] * 0.5, jet[0] * 1e-9]);
                let after = flow_logits(&model, &split);
                for (a, b) in before.iter().zip(&after) {
                    assert!(
                        (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                        "{before:?} {after:?}"
                    );
                }
            }
        }
    }
}

/// The harness reports an MLP on raw momenta as not Lorentz invariant (it must, or the
/// invariance tests above prove nothing).
#[test]
fn raw_momentum_mlp_is_caught_violating_invariance() {
    let varmap = VarMap::new();
    let config = MlpConfig {
        n_input: 20,
        ..MlpConfig::default()
    };
    let model = Mlp::new(
        &config,
        &seeded_varbuilder(&varmap, 13, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let logits = |jet: &[FourMomentum]| {
        let x = raw_momenta(&flat_f32(jet), 1, jet.len(), 5, 100.0).unwrap();
        to_vec(&model.forward(&x, &mut Mode::Eval).unwrap())
    };
    let kit = SymmetryKit::new(25)
        .with_jets(4)
        .with_transforms(4)
        .with_constituents(5..=30);
    let lorentz = kit.lorentz_invariance(logits, Tolerance::F32_NETWORK);
    assert!(
        !lorentz.passed(),
        "the harness missed a non-invariant model: {lorentz}"
    );
    assert!(lorentz.worst_ratio() > 100.0, "{lorentz}");
    let perm = kit.permutation_invariance(logits, Tolerance::F32_NETWORK);
    assert!(!perm.passed(), "{perm}");
}

/// The coordinate output of a Lorentz group equivariant block transforms as four-vectors
/// (f64, coordinate clamp disabled, random weights).
#[test]
fn lgeb_coordinates_are_lorentz_equivariant() {
    let config = LorentzNetConfig {
        n_hidden: 8,
        coord_clamp: f64::INFINITY,
        c_weight: 0.05,
        ..LorentzNetConfig::default()
    };
    let varmap = VarMap::new();
    let block = LorentzBlock::new(
        &config,
        false,
        &seeded_varbuilder(&varmap, 14, DType::F64, &Device::Cpu),
    )
    .unwrap();
    let coordinates = |nodes: &[FourMomentum]| -> Vec<FourMomentum> {
        let n = nodes.len();
        let x = Tensor::from_vec(flat_f64(nodes), (n, 4), &Device::Cpu).unwrap();
        // Invariant node features: a constant per node is the simplest invariant choice.
        let h = Tensor::ones((n, 8), DType::F64, &Device::Cpu).unwrap();
        let scalars = Tensor::zeros((n, 2), DType::F64, &Device::Cpu).unwrap();
        let mask = Tensor::ones((1, n), DType::F64, &Device::Cpu).unwrap();
        let graph = Graph::new(&mask).unwrap();
        let (_, x_new) = block.forward(&h, &x, &scalars, &graph, false).unwrap();
        to_vec(&x_new)
            .chunks(4)
            .map(|c| FourMomentum::new_unchecked(c[0], c[1], c[2], c[3]))
            .collect()
    };
    let kit = SymmetryKit::new(26)
        .with_jets(4)
        .with_transforms(4)
        .with_max_rapidity(3.0)
        .with_constituents(5..=20);
    let report = check_equivariant(coordinates, &kit.jets(), &kit.lorentz_ops(), Tolerance::F64);
    assert!(report.passed(), "{report}");
}

/// The configurations span the sizes the issue asks for (PELICAN ~1k to ~200k; the
/// paper-size LorentzNet has the published 224k parameters).
#[test]
fn parameter_counts_span_the_published_sizes() {
    use noether_equivariant::{parameter_count, LorentzNet};
    let count = |build: &dyn Fn(&candle_nn::VarBuilder)| {
        let varmap = VarMap::new();
        build(&seeded_varbuilder(&varmap, 0, DType::F32, &Device::Cpu));
        parameter_count(&varmap)
    };
    let pelican = |c: PelicanConfig| count(&|vb| drop(Pelican::new(&c, vb).unwrap()));
    let (tiny, small, full) = (
        pelican(PelicanConfig::tiny()),
        pelican(PelicanConfig::small()),
        pelican(PelicanConfig::default()),
    );
    eprintln!("PELICAN parameters: tiny {tiny}, small {small}, default {full}");
    assert!((800..2_000).contains(&tiny), "{tiny}");
    assert!((8_000..20_000).contains(&small), "{small}");
    assert!((150_000..250_000).contains(&full), "{full}");
    let lorentznet = count(&|vb| drop(LorentzNet::new(&LorentzNetConfig::default(), vb).unwrap()));
    // The official checkpoint holds 224,072 trainable values (counted with safetensors).
    assert_eq!(lorentznet, 224_072, "{lorentznet}");
}

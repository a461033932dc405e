//! The JetClass ParticleNet of weaver-core (`../shared/reference/particlenet/`): the
//! inputs noether builds from `JetClass_kin.yaml` equal weaver-core's `pf_points`,
//! `pf_features`, `pf_mask` to 1e-5, and the checkpoint (read here by candle's own
//! pickle reader, independent of noether's) reproduces weaver-core's logits to 1e-4
//! relative. Skipped with a message when the shared folder is absent.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use noether_data::{open_reader, JetFile, JetSet};
use noether_equivariant::weaver::DataConfig;
use noether_equivariant::{
    Mode, PaddedJets, ParticleNet, ParticleNetConfig, ParticleNetInput, Placement,
};

fn reference() -> Option<PathBuf> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/particlenet");
    if dir.join("parity_jets.h5").exists() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} is absent (shared reference fixtures)",
            dir.display()
        );
        None
    }
}

/// The jets padded to `nodes` in f64, with their mask.
fn padded(jets: &JetSet, nodes: usize) -> (Vec<f64>, Vec<f32>) {
    let mut momenta = vec![0.0; jets.len() * nodes * 4];
    let mut mask = vec![0.0; jets.len() * nodes];
    for b in 0..jets.len() {
        for (i, p) in jets.constituents(b).iter().take(nodes).enumerate() {
            for c in 0..4 {
                momenta[(b * nodes + i) * 4 + c] = f64::from(p[c]);
            }
            mask[b * nodes + i] = 1.0;
        }
    }
    (momenta, mask)
}

/// weaver's `[jets, channels, length]` array as noether's `[jets, length, channels]`.
fn channels_last(values: &[f32], jets: usize, channels: usize, length: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for b in 0..jets {
        for c in 0..channels {
            for j in 0..length {
                out[(b * length + j) * channels + c] = values[(b * channels + c) * length + j];
            }
        }
    }
    out
}

fn worst_difference(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
        .fold(0.0, f64::max)
}

fn inputs_and_config(dir: &std::path::Path) -> (ParticleNetInput, ParticleNetConfig, Vec<f32>) {
    let config = DataConfig::load(&dir.join("JetClass_kin.yaml")).unwrap();
    assert_eq!(config.labels.len(), 10);
    let path = dir.join("parity_jets.h5");
    let (jets, _) = JetFile::open(&path).unwrap().read_all().unwrap();
    let nodes = 128;
    let (momenta, mask) = padded(&jets, nodes);
    let padded = PaddedJets {
        momenta: &momenta,
        mask: &mask,
        jets: jets.len(),
        nodes,
        beams: 0,
    };
    let arrays = config.inputs.build(&padded).unwrap();
    let reader = open_reader(&path).unwrap();
    let n = jets.len();
    let rows = n as u64;
    let want_points = channels_last(
        &reader.read_f32_rows("pf_points", 0, rows).unwrap(),
        n,
        2,
        128,
    );
    let want_features = channels_last(
        &reader.read_f32_rows("pf_features", 0, rows).unwrap(),
        n,
        7,
        128,
    );
    let want_mask = reader.read_f32_rows("pf_mask", 0, rows).unwrap();
    assert!(worst_difference(&arrays.points, &want_points) < 1e-5);
    assert!(worst_difference(&arrays.features, &want_features) < 1e-5);
    assert_eq!(arrays.mask, want_mask);
    let model_config = ParticleNetConfig {
        inputs: config.inputs.clone(),
        ..ParticleNetConfig::default()
    };
    let input = ParticleNetInput::build(&config.inputs, &padded, &Placement::cpu()).unwrap();
    let logits = reader.read_f32_rows("logits", 0, rows).unwrap();
    (input, model_config, logits)
}

#[test]
fn inputs_built_from_the_yaml_match_weaver_core() {
    let Some(dir) = reference() else { return };
    inputs_and_config(&dir);
}

#[test]
fn the_jetclass_checkpoint_reproduces_weaver_core_logits() {
    let Some(dir) = reference() else { return };
    let (input, config, want) = inputs_and_config(&dir);
    let tensors = candle_core::pickle::read_all(dir.join("ParticleNet_kin.pt")).unwrap();
    let tensors: std::collections::HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("mod.").to_owned(), v))
        .collect();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let model = ParticleNet::new(&config, &vb).unwrap();
    let got: Vec<f32> = model
        .forward(&input, &mut Mode::Eval)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let mut worst = 0.0_f64;
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        let rel = (f64::from(*g) - f64::from(*w)).abs() / f64::from(w.abs()).max(1e-2);
        worst = worst.max(rel);
        if rel > 1e-5 {
            eprintln!(
                "jet {} logit {}: {g} vs {w} (rel {rel:.2e})",
                k / 10,
                k % 10
            );
        }
    }
    eprintln!("worst relative logit error {worst:.3e}");
    assert!(worst < 1e-4, "worst relative logit error {worst:.3e}");
}

//! The official LorentzNet top-tagging checkpoint reproduces the PyTorch model's logits
//! on 16 Pythia jets (`../shared/reference/lorentznet/`; skipped with a message when the
//! shared folder is absent).

use std::path::PathBuf;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use noether_data::{open_reader, JetFile};
use noether_equivariant::{LorentzNet, LorentzNetConfig, LorentzNetInput};

fn reference() -> Option<PathBuf> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/lorentznet");
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

#[test]
fn official_checkpoint_reproduces_pytorch_logits() {
    let Some(dir) = reference() else { return };
    let tensors = candle_core::safetensors::load(
        dir.join("lorentznet_top_pretrained.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let model = LorentzNet::new(&LorentzNetConfig::default(), &vb.pp("module")).unwrap();
    let path = dir.join("parity_jets.h5");
    let (jets, _) = JetFile::open(&path).unwrap().read_all().unwrap();
    let logits = open_reader(&path)
        .unwrap()
        .read_f32_rows("logits", 0, 16)
        .unwrap();
    let mut worst = 0.0_f64;
    for i in 0..jets.len() {
        let input = LorentzNetInput::single_jet(jets.constituents(i)).unwrap();
        let got = model
            .forward(&input)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for k in 0..2 {
            let want = f64::from(logits[2 * i + k]);
            let rel = (f64::from(got[k]) - want).abs() / want.abs().max(1e-3);
            worst = worst.max(rel);
            eprintln!("jet {i} logit {k}: {} vs {want} (rel {rel:.2e})", got[k]);
        }
    }
    assert!(worst < 1e-4, "worst relative logit error {worst:.3e}");
}

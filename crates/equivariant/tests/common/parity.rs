//! Helpers of the parity tests against fixtures written by
//! `tests/fixtures/make_lgatr_slim_fixtures.py`.

use std::path::PathBuf;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use noether_equivariant::PaddedJets;

/// The fixture `name` of `crates/equivariant/tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The JSON fixture `name`.
pub fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

/// A builder over the safetensors fixture `name` in `dtype`.
pub fn weights(name: &str, dtype: DType) -> VarBuilder<'static> {
    let tensors = candle_core::safetensors::load(fixture(name), &Device::Cpu).unwrap();
    VarBuilder::from_tensors(tensors, dtype, &Device::Cpu)
}

/// Flat numbers of a nested JSON array.
pub fn flat(value: &serde_json::Value) -> Vec<f64> {
    match value {
        serde_json::Value::Array(items) => items.iter().flat_map(flat).collect(),
        serde_json::Value::Bool(b) => vec![f64::from(u8::from(*b))],
        other => vec![other.as_f64().unwrap()],
    }
}

/// The fixture's jets (`momenta`: per jet a list of constituents) padded to the longest,
/// with `beams` prepended: `(momenta, mask, nodes)`.
pub fn padded_jets(fixture: &serde_json::Value, beams: &[[f32; 4]]) -> (Vec<f64>, Vec<f32>, usize) {
    let jets = fixture["momenta"].as_array().unwrap();
    let longest = jets
        .iter()
        .map(|j| j.as_array().unwrap().len())
        .max()
        .unwrap();
    let nodes = beams.len() + longest;
    let mut momenta = vec![0.0; jets.len() * nodes * 4];
    let mut mask = vec![0.0; jets.len() * nodes];
    for (b, jet) in jets.iter().enumerate() {
        for (i, beam) in beams.iter().enumerate() {
            for c in 0..4 {
                momenta[(b * nodes + i) * 4 + c] = f64::from(beam[c]);
            }
            mask[b * nodes + i] = 1.0;
        }
        for (i, p) in jet.as_array().unwrap().iter().enumerate() {
            let k = b * nodes + beams.len() + i;
            momenta[k * 4..k * 4 + 4].copy_from_slice(&flat(p));
            mask[k] = 1.0;
        }
    }
    (momenta, mask, nodes)
}

/// [`PaddedJets`] over the vectors of [`padded_jets`].
pub fn as_padded<'a>(
    momenta: &'a [f64],
    mask: &'a [f32],
    nodes: usize,
    beams: usize,
) -> PaddedJets<'a> {
    PaddedJets {
        momenta,
        mask,
        jets: mask.len() / nodes,
        nodes,
        beams,
    }
}

/// The worst relative difference `|a - b| / max(|b|, floor)`.
pub fn worst_relative(got: &[f64], want: &[f64], floor: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths");
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs() / b.abs().max(floor))
        .fold(0.0, f64::max)
}

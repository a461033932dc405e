//! safetensors checkpoints: the header, the metadata (noether's config and training
//! state), the tensors; loaded into the model the metadata describes and evaluated.

use std::path::Path;
use std::sync::OnceLock;

use noether_data::{JetFile, JetSet};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::config::mutate_toml;
use super::{input_file, outcome, seed_files};
use crate::mutate::{havoc, interesting_number_text, pick, INTERESTING_U64};
use crate::{Outcome, Target};

/// `noether eval --checkpoint`, `finetune --from`, `--resume` and `diagnose` read
/// checkpoints through these.
pub struct SafetensorsTarget;

impl Target for SafetensorsTarget {
    fn name(&self) -> &'static str {
        "safetensors"
    }

    fn seeds(&self) -> std::io::Result<Vec<Vec<u8>>> {
        seed_files("fuzz/corpus/safetensors", "safetensors")
    }

    fn mutate(&self, input: &[u8], corpus: &[Vec<u8>], rng: &mut ChaCha8Rng) -> Vec<u8> {
        match split(input) {
            Some((header, data)) if rng.random_range(0..10) < 7 => {
                let header = mutate_header(header, rng);
                join(&header, data, rng)
            }
            _ => havoc(input, corpus, rng),
        }
    }

    fn execute(&self, input: &[u8], scratch: &Path) -> Outcome {
        let path = input_file(scratch, "input.safetensors", input);
        outcome(load_and_evaluate(&path))
    }
}

/// Four jets of the bundled test file, read once.
fn jets() -> &'static JetSet {
    static JETS: OnceLock<JetSet> = OnceLock::new();
    JETS.get_or_init(|| {
        let file = JetFile::open(crate::repository_root().join("fuzz/corpus/hdf5/ragged.h5"))
            .expect("the ragged seed opens");
        file.read(0, 4).expect("the ragged seed reads").0
    })
}

/// The checkpoint read (`load_inference_model` parses header, metadata and tensors
/// through `checkpoint::load`), its model built and run on four jets.
fn load_and_evaluate(path: &Path) -> noether_train::Result<()> {
    let (model, _, config) = noether_train::load_inference_model(path)?;
    noether_train::predict(&model, jets(), config.data.n_max.min(64), 4)?;
    Ok(())
}

/// The header JSON and the data of a safetensors file.
fn split(input: &[u8]) -> Option<(serde_json::Map<String, serde_json::Value>, &[u8])> {
    let n = usize::try_from(u64::from_le_bytes(input.get(..8)?.try_into().ok()?)).ok()?;
    let header = input.get(8..8usize.checked_add(n)?)?;
    let serde_json::Value::Object(map) = serde_json::from_slice(header).ok()? else {
        return None;
    };
    Some((map, &input[8 + n..]))
}

fn join(
    header: &serde_json::Map<String, serde_json::Value>,
    data: &[u8],
    rng: &mut ChaCha8Rng,
) -> Vec<u8> {
    let text = serde_json::to_vec(header).expect("a JSON map serialises");
    let mut length = text.len() as u64;
    if rng.random_range(0..20) == 0 {
        length = INTERESTING_U64[rng.random_range(0..INTERESTING_U64.len())];
    }
    let mut out = length.to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(data);
    out
}

/// A format-aware change of the header: a tensor's dtype, shape or offsets, a removed
/// tensor, or the metadata (the config TOML, the training state's numbers).
fn mutate_header(
    mut header: serde_json::Map<String, serde_json::Value>,
    rng: &mut ChaCha8Rng,
) -> serde_json::Map<String, serde_json::Value> {
    let names: Vec<String> = header.keys().cloned().collect();
    let Some(name) = pick(&names, rng).cloned() else {
        return header;
    };
    if name == "__metadata__" {
        if let Some(serde_json::Value::Object(meta)) = header.get_mut(&name) {
            let keys: Vec<String> = meta.keys().cloned().collect();
            if let Some(key) = pick(&keys, rng).cloned() {
                let value = meta[&key].as_str().unwrap_or_default().to_owned();
                let new = if key == "config" {
                    mutate_toml(&value, rng)
                } else {
                    interesting_number_text(rng)
                };
                meta.insert(key, serde_json::Value::String(new));
            }
        }
        return header;
    }
    let Some(serde_json::Value::Object(tensor)) = header.get_mut(&name) else {
        return header;
    };
    let big = |rng: &mut ChaCha8Rng| {
        serde_json::Value::from(INTERESTING_U64[rng.random_range(0..INTERESTING_U64.len())])
    };
    match rng.random_range(0..5) {
        0 => {
            let dtypes = [
                "F16", "BF16", "F32", "F64", "I64", "I32", "I8", "U8", "BOOL", "F8_E4M3", "XX",
            ];
            tensor.insert(
                "dtype".into(),
                (*pick(&dtypes, rng).expect("not empty")).into(),
            );
        }
        1 => {
            if let Some(serde_json::Value::Array(shape)) = tensor.get_mut("shape") {
                match rng.random_range(0..3) {
                    0 => shape.push(big(rng)),
                    1 => {
                        shape.pop();
                    }
                    _ => {
                        if !shape.is_empty() {
                            let k = rng.random_range(0..shape.len());
                            shape[k] = big(rng);
                        }
                    }
                }
            }
        }
        2 => {
            if let Some(serde_json::Value::Array(offsets)) = tensor.get_mut("data_offsets") {
                if !offsets.is_empty() {
                    let k = rng.random_range(0..offsets.len());
                    offsets[k] = big(rng);
                }
            }
        }
        3 => {
            header.remove(&name);
        }
        _ => {
            let other = pick(&names, rng).cloned().unwrap_or_default();
            if let Some(value) = header.get(&other).cloned() {
                header.insert(name, value);
            }
        }
    }
    header
}

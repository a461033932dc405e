//! Helpers shared by the training tests: configs on the bundled jets, run options, bit
//! patterns of tensors.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use noether_data::{batches, Batch, BatchConfig};
use noether_train::{RunData, RunOptions, Tagger, TrainConfig};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Parses an inline config and points it at the bundled jets (validation jets as the
/// test set, to keep runs short).
pub fn bundled(text: &str) -> TrainConfig {
    let mut config = TrainConfig::from_toml(text, Path::new("inline")).unwrap();
    config.data.train = root().join("data/train.h5");
    config.data.val = root().join("data/val.h5");
    config.data.test = root().join("data/val.h5");
    config
}

/// Quiet run options writing to `out`.
pub fn options(out: &Path) -> RunOptions {
    RunOptions {
        out: out.to_owned(),
        ..RunOptions::default()
    }
}

/// The bit patterns of an f32 tensor (for bit-identity checks).
pub fn bits(t: &candle_core::Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

/// A tiny LorentzNet (hidden 8, 2 blocks, BatchNorm, no dropout) on 96 bundled jets, one
/// epoch; `extra` is appended to the TOML (a `[lora]` or `[prune]` table, ...).
pub fn tiny_lorentznet(extra: &str) -> TrainConfig {
    bundled(&format!(
        r#"
model = "lorentznet"
[lorentznet]
n_hidden = 8
n_layers = 2
dropout = 0.0
[data]
train_jets = 96
val_jets = 48
n_max = 10
batch_size = 16
[optim]
lr = 1e-2
[train]
epochs = 1
seed = 5
bootstrap = 0
{extra}
"#
    ))
}

/// The first 16 validation jets of `config`, padded for `model`, in order.
pub fn first_val_batch(model: &Tagger, config: &TrainConfig) -> Batch {
    let data = RunData::load(config).unwrap();
    let bc = BatchConfig {
        beams: noether_train::beams_of(model),
        shuffle: false,
        ..BatchConfig::new(16, config.data.n_max)
    };
    let all: Vec<usize> = (0..16).collect();
    let first = batches(&data.val, &all, &bc, 0).unwrap().next().unwrap();
    first
}

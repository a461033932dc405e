//! Helpers shared by the training tests: configs on the bundled jets, run options, bit
//! patterns of tensors.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use noether_train::{RunOptions, TrainConfig};

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

//! Inputs shared by the model benchmarks: 32 jets of the bundled test set (50 leading
//! constituents + beams) and one jet of exactly 50 constituents.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Tensor};

use noether::data::{batches, load, Batch, BatchConfig, Beams, JetSet};

/// Jets per batch.
pub const BATCH: usize = 32;
/// Constituents per jet.
pub const N_MAX: usize = 50;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The first 32 bundled test jets with `beams`, padded or truncated to `n_max`
/// constituents, and the test set they come from.
pub fn bundled_batch(beams: Beams, n_max: usize) -> (Batch, JetSet) {
    let jets = load(root().join("data/test.h5")).expect("bundled test set");
    let config = BatchConfig {
        beams,
        shuffle: false,
        ..BatchConfig::new(BATCH, n_max)
    };
    let indices: Vec<usize> = (0..BATCH).collect();
    let batch = batches(&jets, &indices, &config, 0)
        .expect("batch")
        .next()
        .expect("one batch");
    (batch, jets)
}

/// The first 32 bundled test jets with `beams`, and the first jet with at least 50
/// constituents, truncated to 50.
pub fn bundled_inputs(beams: Beams) -> (Batch, Vec<[f32; 4]>) {
    let (batch, jets) = bundled_batch(beams, N_MAX);
    let k = (0..jets.len())
        .find(|&i| jets.multiplicity(i) >= N_MAX)
        .expect("a 50-constituent jet");
    (batch, jets.constituents(k)[..N_MAX].to_vec())
}

/// Seconds per call of `f`, averaged over `reps` calls after one warm-up call.
pub fn per_rep(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    for _ in 0..reps {
        f();
    }
    start.elapsed().as_secs_f64() / reps as f64
}

/// The median seconds of `calls` single calls of `f` after `warmup` untimed ones: for
/// millisecond calls, where one stall of the VM would move a mean.
pub fn median_call(warmup: usize, calls: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut seconds: Vec<f64> = (0..calls)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

/// A tensor's values as flat f32 on the host.
pub fn host(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .expect("host")
}

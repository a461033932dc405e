//! HDF5 jet files of every layout: open (layout detection, dataset checks), inspect,
//! read every jet, read the labels.

use std::path::Path;

use noether_data::JetFile;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::{input_file, outcome, seed_files};
use crate::mutate::{havoc, pick, INTERESTING_U64};
use crate::{Outcome, Target};

/// The HDF5 readers (`noether inspect`, `convert`, `train` read through these).
pub struct Hdf5Target;

impl Target for Hdf5Target {
    fn name(&self) -> &'static str {
        "hdf5"
    }

    fn seeds(&self) -> std::io::Result<Vec<Vec<u8>>> {
        seed_files("fuzz/corpus/hdf5", "h5")
    }

    fn mutate(&self, input: &[u8], corpus: &[Vec<u8>], rng: &mut ChaCha8Rng) -> Vec<u8> {
        if rng.random_range(0..10) < 4 {
            dimension_field(input, rng)
        } else {
            havoc(input, corpus, rng)
        }
    }

    fn execute(&self, input: &[u8], scratch: &Path) -> Outcome {
        let path = input_file(scratch, "input.h5", input);
        outcome(read_everything(&path))
    }
}

fn read_everything(path: &Path) -> noether_data::Result<()> {
    noether_data::inspect(path)?;
    let file = JetFile::open(path)?;
    file.read_all()?;
    file.labels()?;
    Ok(())
}

/// Rewrites one 8-byte little-endian field holding a small count (as HDF5 dataspace
/// dimensions, chunk sizes and lengths are stored) with an interesting value: the
/// header lies about a size while the rest of the file stays consistent.
fn dimension_field(input: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut data = input.to_vec();
    let fields: Vec<usize> = (0..data.len().saturating_sub(8))
        .filter(|&at| {
            let v = u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
            (1..=100_000).contains(&v)
        })
        .collect();
    if let Some(&at) = pick(&fields, rng) {
        let value = INTERESTING_U64[rng.random_range(0..INTERESTING_U64.len())];
        data[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
    data
}

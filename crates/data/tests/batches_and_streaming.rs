//! Batches from the bundled data: in-memory and streamed batches hold the same jets,
//! streaming is deterministic for a seed and covers every jet exactly once.

use std::path::{Path, PathBuf};

use noether_data::{batches, BatchConfig, Beams, JetFile, StreamConfig, StreamingBatches};

fn bundled(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data")
        .join(name)
}

#[test]
fn bundled_data_is_present_and_balanced() {
    for (name, jets, signal) in [
        ("train.h5", 6000, 2988),
        ("val.h5", 2000, 999),
        ("test.h5", 5000, 2468),
    ] {
        let file = JetFile::open(bundled(name)).unwrap();
        let labels = file.labels().unwrap();
        assert_eq!(labels.len(), jets, "{name}");
        assert_eq!(labels.iter().filter(|&&l| l == 1).count(), signal, "{name}");
    }
}

/// Per-jet fingerprint: (label, multiplicity kept, sum of masked E) of each batch row.
fn fingerprints(batch: &noether_data::Batch) -> Vec<(u8, u32, i64)> {
    (0..batch.batch_size)
        .map(|j| {
            let p = batch.particles;
            let mask = &batch.mask[j * p..(j + 1) * p];
            let e: f64 = (0..p)
                .map(|k| f64::from(batch.momenta[(j * p + k) * 4]) * f64::from(mask[k]))
                .sum();
            (
                batch.labels[j],
                mask.iter().sum::<f32>() as u32,
                (e * 1e3).round() as i64,
            )
        })
        .collect()
}

#[test]
fn streamed_batches_cover_the_file_like_in_memory_batches() {
    let path = bundled("val.h5");
    let mut config = BatchConfig::new(256, 100);
    config.beams = Beams::LORENTZNET;
    config.seed = 11;
    let (jets, _) = JetFile::open(&path).unwrap().read_all().unwrap();
    let all: Vec<usize> = (0..jets.len()).collect();
    let mut in_memory: Vec<_> = batches(&jets, &all, &config, 0)
        .unwrap()
        .flat_map(|b| fingerprints(&b))
        .collect();

    let mut stream = StreamConfig::new(config.clone());
    stream.shuffle_buffer = 500;
    stream.window = 300;
    let run = || -> Vec<(u8, u32, i64)> {
        StreamingBatches::new(std::slice::from_ref(&path), stream.clone())
            .unwrap()
            .flat_map(|b| fingerprints(&b.unwrap()))
            .collect()
    };
    let (first, second) = (run(), run());
    assert_eq!(first, second, "same seed, same stream");
    assert_ne!(first, in_memory, "the shuffle buffer reorders jets");
    let mut streamed = first;
    streamed.sort_unstable();
    in_memory.sort_unstable();
    assert_eq!(streamed, in_memory, "every jet exactly once");
    assert!(streamed.iter().all(|f| f.1 <= 102));
}

#[test]
fn stream_over_several_files_and_bad_path_fails_early() {
    let files = [bundled("val.h5"), bundled("val.h5")];
    let mut config = BatchConfig::new(500, 30);
    config.shuffle = false;
    let batches: Vec<_> = StreamingBatches::new(&files, StreamConfig::new(config.clone()))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(batches.iter().map(|b| b.batch_size).sum::<usize>(), 4000);
    assert!(
        StreamingBatches::new(&[PathBuf::from("/no/such.h5")], StreamConfig::new(config)).is_err()
    );
}

/// `Batch::indices` points back at the jet each row came from, shuffled or streamed.
#[test]
fn batch_indices_point_back_at_their_jets() {
    let path = bundled("val.h5");
    let mut config = BatchConfig::new(64, 20);
    config.beams = Beams::LORENTZNET;
    config.seed = 3;
    let (jets, _) = JetFile::open(&path).unwrap().read_all().unwrap();
    let check = |b: &noether_data::Batch| {
        for (row, &i) in b.indices.iter().enumerate() {
            assert_eq!(b.labels[row], jets.label(i));
            // First constituent after the two beams.
            let offset = (row * b.particles + 2) * 4;
            assert_eq!(&b.momenta[offset..offset + 4], &jets.constituents(i)[0]);
        }
    };
    let subset: Vec<usize> = (0..jets.len()).step_by(3).collect();
    let mut seen = Vec::new();
    for b in batches(&jets, &subset, &config, 1).unwrap() {
        check(&b);
        seen.extend(b.indices);
    }
    assert_ne!(seen, subset, "shuffled");
    seen.sort_unstable();
    assert_eq!(seen, subset);
    let mut stream = StreamConfig::new(config);
    stream.shuffle_buffer = 200;
    stream.window = 150;
    let mut streamed = Vec::new();
    for b in StreamingBatches::new(std::slice::from_ref(&path), stream).unwrap() {
        let b = b.unwrap();
        check(&b);
        streamed.extend(b.indices);
    }
    streamed.sort_unstable();
    assert_eq!(streamed, (0..jets.len()).collect::<Vec<_>>());
}

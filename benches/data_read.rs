//! Data-reading benchmark: the LorentzNet-layout training file
//! (`../shared/data/toptag-pythia/train.h5`, 60k jets, gzip + shuffle) into padded
//! batches of 256 x 200 x 4, against h5py + numpy doing the same work
//! (`benches/compare/read_padded_h5py.py`) in the same invocation; then the same batches
//! from noether's ragged layout, with both file sizes.
//!
//! Run: `cargo bench --bench data_read [-- FILE]`. Prints jets/s and ratios. Skips with a
//! message when the shared data (or python3 with h5py) is absent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use noether::data::{load, write_ragged, BatchConfig, StreamConfig, StreamingBatches};

const REPEATS: usize = 3;

fn stream_rate(path: &Path, threads: usize) -> (f64, usize) {
    let mut config = BatchConfig::new(256, 200);
    config.shuffle = false;
    let mut stream = StreamConfig::new(config);
    stream.threads = threads;
    let mut best = f64::INFINITY;
    let mut jets = 0;
    for _ in 0..REPEATS {
        let start = Instant::now();
        jets = 0;
        let mut checksum = 0.0_f64;
        for batch in StreamingBatches::new(&[path.to_owned()], stream.clone()).expect("open") {
            let batch = batch.expect("read");
            checksum += f64::from(batch.momenta[0]) + f64::from(batch.mask.iter().sum::<f32>());
            jets += batch.batch_size;
        }
        std::hint::black_box(checksum);
        best = best.min(start.elapsed().as_secs_f64());
    }
    (jets as f64 / best, jets)
}

fn h5py_rate(path: &Path) -> Option<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/compare/read_padded_h5py.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(path)
        .arg(REPEATS.to_string())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        eprintln!(
            "h5py reference failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    print!("{text}");
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("jets_per_s="))
        .and_then(|v| v.parse().ok())
}

fn main() {
    let default =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/toptag-pythia/train.h5");
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map_or(default, PathBuf::from);
    if !path.exists() {
        println!(
            "SKIPPED: {} not found (the shared data folder is absent)",
            path.display()
        );
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!("file: {} ({} cores)", path.display(), cores);

    let (rate1, jets) = stream_rate(&path, 1);
    println!("noether (1 decode thread)  jets_per_s={rate1:.0} jets={jets}");
    let (rate, _) = stream_rate(&path, 0);
    println!("noether ({cores} decode threads) jets_per_s={rate:.0}");
    match h5py_rate(&path) {
        Some(h5py) => {
            println!(
                "ratio noether/h5py: {:.2}x (1 thread: {:.2}x)",
                rate / h5py,
                rate1 / h5py
            );
        }
        None => println!("h5py reference unavailable (python3 with h5py and numpy needed)"),
    }

    let jets_in_memory = load(&path).expect("load");
    let ragged =
        std::env::temp_dir().join(format!("noether-bench-ragged-{}.h5", std::process::id()));
    write_ragged(&ragged, &jets_in_memory, "benchmark").expect("write");
    let (ragged_rate, _) = stream_rate(&ragged, 0);
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len()) as f64 / 1e6;
    println!(
        "ragged layout: jets_per_s={ragged_rate:.0} ({:.2}x the padded file); size {:.1} MB vs padded {:.1} MB",
        ragged_rate / rate,
        size(&ragged),
        size(&path)
    );
    std::fs::remove_file(ragged).ok();
}

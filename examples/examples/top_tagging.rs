//! The main job: data-limited top tagging on the bundled jets. Trains a CPU-sized
//! Lorentz-equivariant tagger (`configs/lorentznet-cpu.toml`) and the Particle Flow
//! Network baseline (`configs/pfn-cpu.toml`) on the same 2,000 training jets, evaluates
//! both on the 5,000 bundled test jets, prints a table and writes run directories under
//! `runs/` (config, history, metrics.json, ROC and training plots, best checkpoint).
//!
//! Run from the repository root:
//! `cargo run --release -p noether-examples --example top_tagging`
//! (about 5 minutes on 2 cores; `-- --quick` trains one epoch each, for a smoke test).

use std::path::Path;

use noether_examples::workspace_root;
use noether_train::{default_run_dir, RunSummary, TrainConfig, TrainJob};

// candle allocates a buffer per operation; see `noether_equivariant::CachingAllocator`.
#[global_allocator]
static ALLOCATOR: noether_equivariant::CachingAllocator = noether_equivariant::CachingAllocator;

/// What `noether train --config configs/<config_file>` runs, from the repository root.
fn run(config_file: &str, quick: bool) -> Result<RunSummary, Box<dyn std::error::Error>> {
    let root = workspace_root();
    let path = root.join("configs").join(config_file);
    let mut config = TrainConfig::load(&path)?;
    config.relative_to(&root);
    if quick {
        config.train.epochs = 1;
    }
    let out = root.join(default_run_dir(Path::new(config_file), config.train.seed));
    eprintln!("training {config_file} -> {}", out.display());
    // Running the main job again replaces its own run directories.
    let job = TrainJob {
        force: true,
        ..TrainJob::new(config, out)
    };
    Ok(job.run()?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quick = std::env::args().any(|a| a == "--quick");
    let results = [
        ("LorentzNet (cpu)", run("lorentznet-cpu.toml", quick)?),
        ("PFN (cpu)", run("pfn-cpu.toml", quick)?),
    ];
    println!();
    println!(
        "top tagging, {} training jets, {} test jets (bundled Pythia 8 jets)",
        results[0].1.train_jets, results[0].1.test_jets
    );
    println!(
        "{:<18} {:>8} {:>8} {:>8} {:>16} {:>8}",
        "model", "params", "acc", "AUC", "1/eps_B(0.3)", "seconds"
    );
    for (name, s) in &results {
        let band = s
            .intervals
            .get("rejection_at_0.3")
            .map_or_else(String::new, |i| format!(" [{:.0}, {:.0}]", i.low, i.high));
        println!(
            "{name:<18} {:>8} {:>8.4} {:>8.4} {:>16} {:>8.0}",
            s.params,
            s.acc,
            s.auc,
            format!("{:.1}{band}", s.rejection_at_0_3),
            s.seconds
        );
    }
    println!("run directories: runs/lorentznet-cpu-seed0, runs/pfn-cpu-seed0");
    Ok(())
}

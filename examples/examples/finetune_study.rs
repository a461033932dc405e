//! The transfer-learning acceptance study: the official LorentzNet (trained on
//! detector-level Delphes jets) applied to particle-level Pythia jets — zero-shot, fully
//! fine-tuned, LP-FT and LoRA (r = 8) — against the same architecture trained from
//! scratch, at equal data and epochs, several seeds, on the test set. The main variant
//! feeds massless constituents (E = |p|, as the checkpoint expects); the `masses`
//! variant keeps the constituent masses, to measure what that domain shift costs.
//! One run directory per (variant, arm, size, seed) under `--out` (finished runs are
//! skipped: the study resumes). `results.csv` and `summary.md` cover every finished run
//! under `--out`, whichever invocation made it; `--report-only` rewrites them and trains
//! nothing.
//!
//! ```sh
//! cargo run --release -p noether-examples --example finetune_study -- \
//!     [--data-dir ../shared/data/toptag-pythia] [--checkpoint ../shared/reference/lorentznet/lorentznet_top_pretrained.safetensors] \
//!     [--sizes 500,2000] [--seeds 0,1,2] [--arms scratch,full,lpft,lora] [--variants massless,masses] \
//!     [--epochs 6] [--n-max 50] [--val-jets 1000] [--test-jets 0] [--out runs/finetune_study] \
//!     [--report-only]
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use noether_examples::{seed_cells, workspace_root};
use noether_train::{
    build_model, inference_model, predict, train, LoraSection, RunData, RunDir, RunOptions,
    RunSummary, Scored, TaggingMetrics, TrainConfig,
};
use noether_transfer::{load_checkpoint, LoadOptions};

// candle allocates a buffer per operation; see `noether_equivariant::CachingAllocator`.
#[global_allocator]
static ALLOCATOR: noether_equivariant::CachingAllocator = noether_equivariant::CachingAllocator;

/// The fine-tuning acceptance study (see the module documentation).
#[derive(Parser)]
struct Args {
    /// Directory holding train.h5, val.h5 and test.h5
    #[arg(long, default_value_os_t = workspace_root().join("../shared/data/toptag-pythia"))]
    data_dir: PathBuf,
    /// The pretrained checkpoint
    #[arg(long, default_value_os_t = workspace_root().join("../shared/reference/lorentznet/lorentznet_top_pretrained.safetensors"))]
    checkpoint: PathBuf,
    /// Training-set sizes (jets)
    #[arg(long, value_delimiter = ',', default_value = "500,2000")]
    sizes: Vec<usize>,
    /// Training seeds
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    seeds: Vec<u64>,
    /// Recipes to run
    #[arg(long, value_delimiter = ',', default_value = "scratch,full,lpft,lora")]
    arms: Vec<Arm>,
    /// Inputs: massless constituents (E = |p|) and/or the constituent masses kept
    #[arg(long, value_delimiter = ',', default_value = "massless,masses")]
    variants: Vec<Variant>,
    /// Epochs of every arm
    #[arg(long, default_value_t = 6)]
    epochs: usize,
    /// Constituents kept per jet (highest pT first)
    #[arg(long, default_value_t = 50)]
    n_max: usize,
    /// Validation jets (best-epoch selection)
    #[arg(long, default_value_t = 1000)]
    val_jets: usize,
    /// Test jets; 0 means the whole test set
    #[arg(long, default_value_t = 0)]
    test_jets: usize,
    /// Directory of the run directories, results.csv and summary.md
    #[arg(long, default_value_os_t = workspace_root().join("runs/finetune_study"))]
    out: PathBuf,
    /// Only rewrite results.csv and summary.md from the finished runs; train nothing
    #[arg(long)]
    report_only: bool,
}

/// How the model starts and what it trains.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Arm {
    /// Random initialisation, every weight trained.
    Scratch,
    /// Pretrained, every weight trained.
    Full,
    /// Pretrained, linear probing for a third of the epochs, then everything.
    Lpft,
    /// Pretrained and frozen, rank-8 LoRA adapters trained.
    Lora,
}

/// What the constituents' energies are.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Variant {
    /// E = |p|, as the detector-level checkpoint expects.
    Massless,
    /// The particle-level energies, masses kept.
    Masses,
}

/// The name clap parses for `value`, which is also its part of a run directory's name.
fn name(value: &impl ValueEnum) -> String {
    value
        .to_possible_value()
        .expect("no variant is skipped")
        .get_name()
        .to_owned()
}

/// The official architecture with the study's data, epochs and the arm's recipe
/// (`None`: the zero-shot evaluation, which trains nothing).
fn config(
    args: &Args,
    variant: Variant,
    arm: Option<Arm>,
    size: usize,
    seed: u64,
) -> Result<TrainConfig, noether_train::TrainError> {
    let mut c = TrainConfig::load(&workspace_root().join("configs/lorentznet.toml"))?;
    c.data.train = args.data_dir.join("train.h5");
    c.data.val = args.data_dir.join("val.h5");
    c.data.test = args.data_dir.join("test.h5");
    c.data.train_jets = size;
    c.data.val_jets = args.val_jets;
    c.data.n_max = args.n_max;
    c.data.massless = variant == Variant::Massless;
    c.train.epochs = args.epochs;
    c.train.seed = seed;
    c.schedule.kind = noether_train::ScheduleKind::WarmupCosine;
    c.schedule.warmup_epochs = 0.5;
    // From scratch at the published rate; pretrained weights move ten times slower;
    // LoRA adapters (B starts at zero) at the published rate.
    c.optim.lr = match arm {
        Some(Arm::Full | Arm::Lpft) => 1e-4,
        _ => 1e-3,
    };
    if arm == Some(Arm::Lpft) {
        c.optim.linear_probe_epochs = args.epochs.div_ceil(3);
    }
    if arm == Some(Arm::Lora) {
        c.lora = Some(LoraSection {
            r: 8,
            alpha: 16.0,
            targets: String::new(),
        });
    }
    Ok(c)
}

fn load_options() -> LoadOptions {
    LoadOptions::lenient().allow_new_adapters()
}

fn subset_test(data: &mut RunData, n: usize) {
    if n > 0 && n < data.test.len() {
        data.test = data.test.select(&(0..n).collect::<Vec<_>>());
    }
}

/// Evaluates the official weights without training (once: the result is kept).
fn zero_shot(args: &Args, variant: Variant) -> Result<(), Box<dyn std::error::Error>> {
    let dir = RunDir::new(args.out.join(format!("{}-zeroshot", name(&variant))));
    if !dir.is_finished() {
        let mut c = config(args, variant, None, 2, 0)?;
        c.data.train_jets = 2;
        c.data.val_jets = 2;
        let mut data = RunData::load(&c)?;
        subset_test(&mut data, args.test_jets);
        let (_, varmap) = build_model(&c, 0)?;
        let report = load_checkpoint(&args.checkpoint, &varmap, &load_options())?;
        eprint!("{report}");
        let model = inference_model(&c, &varmap)?;
        let (scores, labels, test_loss) = predict(&model, &data.test, c.data.n_max, 64)?;
        let m = TaggingMetrics::of(&Scored::new(&scores, &labels, None)?);
        let params = noether_equivariant::parameter_count(&varmap);
        let summary = RunSummary {
            model: c.section().to_owned(),
            acc: m.acc,
            auc: m.auc,
            rejection_at_0_3: m.rejection_at_0_3,
            rejection_at_0_5: m.rejection_at_0_5,
            test_loss,
            intervals: std::collections::HashMap::new(),
            train_jets: 0,
            test_jets: data.test.len(),
            extra_tests: std::collections::BTreeMap::new(),
            params,
            trainable_params: 0,
            nonzero_params: params,
            forward_flops_per_jet: 0.0,
            train_flops: 0.0,
            seconds: 0.0,
            epochs: 0,
            best_epoch: 0,
            start_val_auc: None,
            data: data.records.clone(),
        };
        dir.write_config(&c)?;
        dir.write_metrics(&summary)?;
    }
    Ok(())
}

/// Trains one arm of the study into its run directory unless it is already finished.
fn run_one(
    args: &Args,
    variant: Variant,
    arm: Arm,
    size: usize,
    seed: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let arm_name = name(&arm);
    let out = args
        .out
        .join(format!("{}-{arm_name}-n{size}-seed{seed}", name(&variant)));
    if !RunDir::new(&out).is_finished() {
        let c = config(args, variant, Some(arm), size, seed)?;
        let mut data = RunData::load(&c)?;
        subset_test(&mut data, args.test_jets);
        eprintln!(
            "{} {arm_name} n={size} seed={seed} -> {}",
            name(&variant),
            out.display()
        );
        let init: Option<noether_train::InitHook> = (arm != Arm::Scratch).then(|| {
            let from = args.checkpoint.clone();
            let hook: noether_train::InitHook = Arc::new(move |varmap: &candle_nn::VarMap| {
                load_checkpoint(&from, varmap, &load_options())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
            hook
        });
        let options = RunOptions {
            out: out.clone(),
            resume: false,
            progress: true,
            stop_after: None,
            init,
            // An unfinished arm starts again from scratch.
            force: true,
        };
        train(&c, &data, &options)?;
    }
    Ok(())
}

/// One finished run, identified by its directory name.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct RunKey {
    variant: String,
    arm: String,
    size: usize,
    seed: u64,
}

/// Parses `{variant}-zeroshot` and `{variant}-{arm}-n{size}-seed{seed}`.
fn run_key(dir: &str) -> Option<RunKey> {
    let parts: Vec<&str> = dir.split('-').collect();
    match parts.as_slice() {
        [variant, "zeroshot"] => Some(RunKey {
            variant: (*variant).to_owned(),
            arm: "zeroshot".to_owned(),
            size: 0,
            seed: 0,
        }),
        [variant, arm, size, seed] => Some(RunKey {
            variant: (*variant).to_owned(),
            arm: (*arm).to_owned(),
            size: size.strip_prefix('n')?.parse().ok()?,
            seed: seed.strip_prefix("seed")?.parse().ok()?,
        }),
        _ => None,
    }
}

/// (variant, arm, train jets): the runs that differ only by seed.
type GroupKey<'a> = (&'a str, &'a str, usize);

/// Writes `results.csv` (one line per finished run) and `summary.md` (mean +- std over
/// seeds) from every run directory under `out`; returns the summary.
fn report(out: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let mut runs = BTreeMap::new();
    for run in RunDir::list(out)? {
        let name = run.path().file_name().unwrap_or_default().to_string_lossy();
        if let (Some(key), true) = (run_key(&name), run.is_finished()) {
            let m = run.metrics()?;
            runs.insert(key, (m.auc, m.rejection_at_0_3));
        }
    }
    let mut csv = String::from("variant,arm,train_jets,seed,auc,rejection_at_0.3\n");
    let mut groups: BTreeMap<GroupKey, Vec<(f64, f64)>> = BTreeMap::new();
    for (k, &(auc, rej)) in &runs {
        let _ = writeln!(
            csv,
            "{},{},{},{},{auc},{rej}",
            k.variant, k.arm, k.size, k.seed
        );
        groups
            .entry((&k.variant, &k.arm, k.size))
            .or_default()
            .push((auc, rej));
    }
    let mut md = String::from(
        "| input | arm | train jets | seeds | AUC | 1/eps_B(0.3) |\n|---|---|---|---|---|---|\n",
    );
    for ((variant, arm, size), runs) in &groups {
        let _ = writeln!(md, "| {variant} | {arm} | {size} | {} |", seed_cells(runs));
    }
    std::fs::write(out.join("results.csv"), &csv)?;
    std::fs::write(out.join("summary.md"), &md)?;
    Ok(md)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let inputs_present = args.data_dir.join("train.h5").exists() && args.checkpoint.exists();
    if !args.report_only && !inputs_present {
        eprintln!(
            "SKIPPED: {} or {} is absent",
            args.data_dir.display(),
            args.checkpoint.display()
        );
        return Ok(());
    }
    noether_equivariant::set_threads(0);
    std::fs::create_dir_all(&args.out)?;
    if !args.report_only {
        for &variant in &args.variants {
            zero_shot(&args, variant)?;
            for &size in &args.sizes {
                // Kept masses: the domain shift is measured on full fine-tuning alone.
                let arms = args
                    .arms
                    .iter()
                    .filter(|&&a| variant == Variant::Massless || a == Arm::Full);
                for &arm in arms {
                    for &seed in &args.seeds {
                        run_one(&args, variant, arm, size, seed)?;
                        report(&args.out)?;
                    }
                }
            }
        }
    }
    println!("{}", report(&args.out)?);
    Ok(())
}

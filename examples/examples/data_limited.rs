//! The data-limited study: taggers trained on 1k, 3k, 10k and 30k jets of the shared
//! Pythia top-tagging set, several seeds each, evaluated on the full test set. Writes one
//! run directory per (model, size, seed) under `--out` (finished runs are skipped, so the
//! study can be resumed), `results.csv`, a markdown summary (mean +- standard deviation
//! over seeds) and `data_limited.svg`.
//!
//! ```sh
//! cargo run --release -p noether-examples --example data_limited -- \
//!     [--data-dir ../shared/data/toptag-pythia] [--sizes 1000,3000,10000,30000] \
//!     [--seeds 0,1,2] [--models lorentznet-cpu,pelican-cpu,pfn-cpu,efn-cpu] \
//!     [--epochs E] [--val-jets 2000] [--out runs/data_limited] [--report-only]
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Parser;
use noether_examples::{mean_std, seed_cells, workspace_root};
use noether_train::{RunDir, TrainConfig, TrainJob};
use plotters::prelude::*;

// candle allocates a buffer per operation; see `noether_equivariant::CachingAllocator`.
#[global_allocator]
static ALLOCATOR: noether_equivariant::CachingAllocator = noether_equivariant::CachingAllocator;

/// The data-limited study (see the module documentation).
#[derive(Parser)]
struct Args {
    /// Directory holding train.h5, val.h5 and test.h5
    #[arg(long, default_value_os_t = workspace_root().join("../shared/data/toptag-pythia"))]
    data_dir: PathBuf,
    /// Training-set sizes (jets)
    #[arg(long, value_delimiter = ',', default_value = "1000,3000,10000,30000")]
    sizes: Vec<usize>,
    /// Training seeds
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    seeds: Vec<u64>,
    /// Models: names of the files in configs/ (without .toml)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "lorentznet-cpu,pelican-cpu,pfn-cpu,efn-cpu"
    )]
    models: Vec<String>,
    /// Epochs of every run [default: each config's own]
    #[arg(long)]
    epochs: Option<usize>,
    /// Validation jets (best-epoch selection)
    #[arg(long, default_value_t = 2000)]
    val_jets: usize,
    /// Directory of the run directories and the summaries
    #[arg(long, default_value_os_t = workspace_root().join("runs/data_limited"))]
    out: PathBuf,
    /// Only summarise finished runs (train nothing)
    #[arg(long)]
    report_only: bool,
}

/// One finished run: (model, size) -> per-seed (AUC, 1/eps_B(0.3)).
type Results = BTreeMap<(String, usize), Vec<(f64, f64)>>;

fn run_one(
    args: &Args,
    model: &str,
    size: usize,
    seed: u64,
) -> Result<Option<(f64, f64)>, Box<dyn std::error::Error>> {
    let dir = RunDir::new(args.out.join(format!("{model}-n{size}-seed{seed}")));
    if !dir.is_finished() && args.report_only {
        return Ok(None);
    }
    if !dir.is_finished() {
        let mut config = TrainConfig::load(
            &workspace_root()
                .join("configs")
                .join(format!("{model}.toml")),
        )?;
        config.data.train = args.data_dir.join("train.h5");
        config.data.val = args.data_dir.join("val.h5");
        config.data.test = args.data_dir.join("test.h5");
        config.data.train_jets = size;
        config.data.val_jets = args.val_jets;
        config.train.seed = seed;
        if let Some(e) = args.epochs {
            config.train.epochs = e;
        }
        eprintln!("{model} n={size} seed={seed} -> {}", dir.path().display());
        // An unfinished trial starts again from scratch.
        let job = TrainJob {
            force: true,
            ..TrainJob::new(config, dir.path())
        };
        job.run()?;
    }
    let m = dir.metrics()?;
    Ok(Some((m.auc, m.rejection_at_0_3)))
}

fn summary(results: &Results) -> String {
    let mut md = String::from(
        "| model | train jets | seeds | AUC | 1/eps_B(0.3) |\n|---|---|---|---|---|\n",
    );
    for ((model, size), runs) in results {
        let _ = writeln!(md, "| {model} | {size} | {} |", seed_cells(runs));
    }
    md
}

fn plot(path: &Path, results: &Results) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(450);
    let sizes: Vec<f64> = results.keys().map(|(_, s)| *s as f64).collect();
    let (lo, hi) = sizes
        .iter()
        .fold((f64::MAX, 0.0_f64), |(l, h), s| (l.min(*s), h.max(*s)));
    let models: Vec<&String> = results
        .keys()
        .map(|(m, _)| m)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for (area, title, pick) in [
        (&left, "AUC", 0usize),
        (&right, "1/eps_B at eps_S = 0.3", 1usize),
    ] {
        let values: Vec<f64> = results
            .values()
            .flatten()
            .map(|r| if pick == 0 { r.0 } else { r.1 })
            .collect();
        let (vlo, vhi) = values
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(
                (lo / 1.3..hi * 1.3).log_scale(),
                (vlo * 0.95..vhi * 1.05).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("training jets")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        for (k, model) in models.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            let points: Vec<(f64, f64)> = results
                .iter()
                .filter(|((m, _), _)| m == *model)
                .map(|((_, s), runs)| {
                    let v: Vec<f64> = runs
                        .iter()
                        .map(|r| if pick == 0 { r.0 } else { r.1 })
                        .collect();
                    (*s as f64, mean_std(&v).0)
                })
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(model.as_str())
                .legend(move |(a, b)| PathElement::new(vec![(a, b), (a + 20, b)], color));
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if !args.data_dir.join("train.h5").exists() {
        eprintln!("SKIPPED: {} is absent", args.data_dir.display());
        return Ok(());
    }
    noether_equivariant::set_threads(0);
    let mut results = Results::new();
    let mut csv = String::from("model,train_jets,seed,auc,rejection_at_0.3\n");
    for &size in &args.sizes {
        for model in &args.models {
            for &seed in &args.seeds {
                let Some((auc, rej)) = run_one(&args, model, size, seed)? else {
                    continue;
                };
                let _ = writeln!(csv, "{model},{size},{seed},{auc},{rej}");
                results
                    .entry((model.clone(), size))
                    .or_default()
                    .push((auc, rej));
            }
        }
        // Rewrite the outputs after every size so that a long study reports as it goes.
        std::fs::write(args.out.join("results.csv"), &csv)?;
        std::fs::write(args.out.join("summary.md"), summary(&results))?;
        plot(&args.out.join("data_limited.svg"), &results)?;
    }
    println!("{}", summary(&results));
    println!("wrote {}", args.out.join("data_limited.svg").display());
    Ok(())
}

//! The data-scaling study's tables: reads the collected results of the sweep
//! `sweeps/data_scaling.toml` (`noether sweep collect DIR` writes `DIR/results.csv`),
//! writes one row per run in the study's columns (`docs/data_scaling.csv`) and the boost
//! generalisation table (`docs/data_scaling_boost.md`): per model and training size, the
//! AUC and 1/eps_B(0.3) on the 550-650 GeV test jets against the 1000-1200 GeV ones
//! (`data/boosted_test.h5`, scored by every run as `extra_tests.boosted`), mean +-
//! standard deviation over seeds; and the exchange table (`docs/data_scaling_exchange.md`):
//! for every model and size, the number of reference-model (`--reference`, PFN) training
//! jets at which the reference's fitted law L(D) = L_inf + B / D^beta reaches the
//! model's mean test loss, with the 10-90% interval over 100 bootstrap resamples of the
//! reference's runs (the fit of `noether scaling fit --form power` in the tagging-guide
//! box). The per-model fits come from `noether scaling fit` on the CSV written here
//! (the command is in the README).
//!
//! ```sh
//! noether sweep plan sweeps/data_scaling.toml --out runs/data_scaling
//! noether sweep submit runs/data_scaling --scheduler local --parallel 2 --threads 1
//! noether sweep collect runs/data_scaling
//! cargo run --release -p noether-examples --example data_scaling -- \
//!     [--results runs/data_scaling/results.csv] [--out docs]
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Parser;
use noether_examples::{csv_fields, mean_std, workspace_root};
use noether_scaling::{bootstrap, fit, resolve_bounds, Bound, FitConfig, Loss, PowerLaw, Runs};

/// The data-scaling tables (see the module documentation).
#[derive(Parser)]
struct Args {
    /// The sweep's collected results (`noether sweep collect DIR` writes DIR/results.csv)
    #[arg(long, default_value_os_t = workspace_root().join("runs/data_scaling/results.csv"))]
    results: PathBuf,
    /// Where `data_scaling.csv`, `data_scaling_boost.md` and `data_scaling_exchange.md` go
    #[arg(long, default_value_os_t = workspace_root().join("docs"))]
    out: PathBuf,
    /// The model whose training jets are the exchange table's currency
    #[arg(long, default_value = "pfn-cpu")]
    reference: String,
}

/// The columns of `data_scaling.csv`: the study's names, then the sweep's columns they
/// are read from (`_low` / `_high`: the bootstrap 68% interval on the test jets).
const COLUMNS: [(&str, &str); 20] = [
    ("train_jets", "data.train_jets"),
    ("seed", "train.seed"),
    ("test_loss", "test_loss"),
    ("auc", "auc"),
    ("rejection_at_0.3", "rejection_at_0.3"),
    ("rejection_at_0.5", "rejection_at_0.5"),
    ("params", "params"),
    ("train_flops", "train_flops"),
    ("seconds", "seconds"),
    ("boosted_test_loss", "extra_tests.boosted.test_loss"),
    ("boosted_auc", "extra_tests.boosted.auc"),
    (
        "boosted_rejection_at_0.3",
        "extra_tests.boosted.rejection_at_0.3",
    ),
    (
        "boosted_rejection_at_0.5",
        "extra_tests.boosted.rejection_at_0.5",
    ),
    ("best_epoch", "best_epoch"),
    ("auc_low", "intervals.auc.low"),
    ("auc_high", "intervals.auc.high"),
    ("rejection_at_0.3_low", "intervals.rejection_at_0.3.low"),
    ("rejection_at_0.3_high", "intervals.rejection_at_0.3.high"),
    ("rejection_at_0.5_low", "intervals.rejection_at_0.5.low"),
    ("rejection_at_0.5_high", "intervals.rejection_at_0.5.high"),
];

/// One finished run: the model (its config's file stem) and the study's columns.
struct Run {
    model: String,
    values: Vec<String>,
}

impl Run {
    fn number(&self, column: &str) -> f64 {
        COLUMNS
            .iter()
            .position(|(name, _)| *name == column)
            .and_then(|i| self.values[i].parse().ok())
            .unwrap_or(f64::NAN)
    }
}

/// The runs of the sweep's `results.csv`, sorted by model, size and seed.
fn read_runs(path: &Path) -> Result<Vec<Run>, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: {e} (run `noether sweep collect` on the sweep first)",
            path.display()
        )
    })?;
    let mut lines = text.lines();
    let header = csv_fields(lines.next().unwrap_or_default());
    let index = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("{}: no '{name}' column", path.display()))
    };
    let config = index("config")?;
    let sources = COLUMNS
        .iter()
        .map(|(_, source)| index(source))
        .collect::<Result<Vec<_>, _>>()?;
    let mut runs = Vec::new();
    for (row, line) in lines.enumerate() {
        let fields = csv_fields(line);
        if fields.len() != header.len() {
            return Err(format!(
                "{}: row {}: {} fields, the header has {}",
                path.display(),
                row + 1,
                fields.len(),
                header.len()
            )
            .into());
        }
        let model = Path::new(&fields[config])
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let values = sources.iter().map(|&i| fields[i].clone()).collect();
        runs.push(Run { model, values });
    }
    runs.sort_by(|a, b| {
        (a.model.as_str(), a.number("train_jets"), a.number("seed"))
            .partial_cmp(&(b.model.as_str(), b.number("train_jets"), b.number("seed")))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    Ok(runs)
}

fn csv(runs: &[Run]) -> String {
    let mut out = String::from("model");
    for (name, _) in COLUMNS {
        out.push(',');
        out.push_str(name);
    }
    out.push('\n');
    for run in runs {
        let _ = writeln!(out, "{},{}", run.model, run.values.join(","));
    }
    out
}

/// `mean +- std` of a column over runs, with `digits` decimals.
fn cell(runs: &[&Run], column: &str, digits: usize) -> String {
    let (mean, std) = mean_std(&runs.iter().map(|r| r.number(column)).collect::<Vec<_>>());
    format!("{mean:.digits$} +- {std:.digits$}")
}

/// The boost-generalisation table: per model and size, test and boosted metrics.
fn boost_table(runs: &[Run]) -> String {
    let mut md = String::from(
        "| model | train jets | seeds | AUC 550-650 GeV | AUC 1000-1200 GeV | AUC drop | \
         1/eps_B(0.3) 550-650 | 1/eps_B(0.3) 1000-1200 | rejection kept |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for ((model, size), group) in &groups(runs) {
        let drops: Vec<f64> = group
            .iter()
            .map(|r| r.number("auc") - r.number("boosted_auc"))
            .collect();
        let kept: Vec<f64> = group
            .iter()
            .map(|r| r.number("boosted_rejection_at_0.3") / r.number("rejection_at_0.3"))
            .collect();
        let (drop, drop_s) = mean_std(&drops);
        let (kept, kept_s) = mean_std(&kept);
        let _ = writeln!(
            md,
            "| {model} | {size} | {} | {} | {} | {drop:.4} +- {drop_s:.4} | {} | {} | {:.0}% +- {:.0}% |",
            group.len(),
            cell(group, "auc", 4),
            cell(group, "boosted_auc", 4),
            cell(group, "rejection_at_0.3", 0),
            cell(group, "boosted_rejection_at_0.3", 0),
            100.0 * kept,
            100.0 * kept_s,
        );
    }
    md
}

/// The runs grouped by model and training size.
fn groups(runs: &[Run]) -> BTreeMap<(&str, u64), Vec<&Run>> {
    let mut groups: BTreeMap<(&str, u64), Vec<&Run>> = BTreeMap::new();
    for run in runs {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let size = run.number("train_jets") as u64;
        groups.entry((&run.model, size)).or_default().push(run);
    }
    groups
}

/// A law's fit parameters and those of its bootstrap resamples.
type FittedLaw = (Vec<f64>, Vec<Vec<f64>>);

/// The fitted power law of `model`'s test loss against its training jets (fit
/// parameters) and the fit parameters of 100 bootstrap resamples; the tagging-guide
/// study's procedure (Huber, delta 1e-3, on log residuals; L_inf in [0.01, 1],
/// B <= 1000, beta in [0.01, 2]).
fn reference_law(runs: &[Run], model: &str) -> Result<FittedLaw, Box<dyn std::error::Error>> {
    let rows: Vec<&Run> = runs.iter().filter(|r| r.model == model).collect();
    if rows.is_empty() {
        return Err(format!("no runs of the reference model '{model}'").into());
    }
    let column = |name: &str| rows.iter().map(|r| r.number(name)).collect::<Vec<_>>();
    let table = Runs::from_columns(BTreeMap::from([
        ("N".to_owned(), column("train_jets")),
        ("loss".to_owned(), column("test_loss")),
    ]))?;
    let law = PowerLaw::default();
    let bounds = ["E=0.01:1", "A=:1000", "alpha=0.01:2"]
        .iter()
        .map(|b| b.parse::<Bound>())
        .collect::<Result<Vec<_>, _>>()?;
    let config = FitConfig {
        loss: Loss::Huber { delta: 1e-3 },
        bounds: resolve_bounds(&law, &bounds)?,
        ..FitConfig::default()
    };
    let result = fit(&law, &table, &config)?;
    let resampled = bootstrap(&law, &table, &result, &config, 100, 0)?;
    Ok((result.theta, resampled.thetas))
}

/// A number of jets, `12.3k` above a thousand; unbounded as `inf`.
fn jets(x: Option<f64>) -> String {
    match x {
        Some(x) if x >= 1000.0 => format!("{:.1}k", x / 1000.0),
        Some(x) => format!("{x:.0}"),
        None => "inf".into(),
    }
}

/// The exchange table: each model and size in `reference` training jets.
fn exchange_table(runs: &[Run], reference: &str) -> Result<String, Box<dyn std::error::Error>> {
    let (theta, resampled) = reference_law(runs, reference)?;
    let mut md = format!(
        "| model | train jets | mean test loss | = {reference} jets | 10-90% |\n|---|---|---|---|---|\n"
    );
    for ((model, size), group) in &groups(runs) {
        let (loss, _) = mean_std(
            &group
                .iter()
                .map(|r| r.number("test_loss"))
                .collect::<Vec<_>>(),
        );
        let mut draws: Vec<f64> = resampled
            .iter()
            .map(|t| PowerLaw::x_at_loss(t, loss).unwrap_or(f64::INFINITY))
            .collect();
        draws.sort_by(f64::total_cmp);
        let at = |q: f64| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let x = draws[((draws.len() - 1) as f64 * q).round() as usize];
            x.is_finite().then_some(x)
        };
        let _ = writeln!(
            md,
            "| {model} | {size} | {loss:.4} | {} | [{}, {}] |",
            jets(PowerLaw::x_at_loss(&theta, loss)),
            jets(at(0.1)),
            jets(at(0.9)),
        );
    }
    Ok(md)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let runs = read_runs(&args.results)?;
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("data_scaling.csv"), csv(&runs))?;
    let md = boost_table(&runs);
    std::fs::write(args.out.join("data_scaling_boost.md"), &md)?;
    println!("{md}");
    let md = exchange_table(&runs, &args.reference)?;
    std::fs::write(args.out.join("data_scaling_exchange.md"), &md)?;
    println!("{md}");
    eprintln!(
        "wrote {} runs to {}",
        runs.len(),
        args.out.join("data_scaling.csv").display()
    );
    Ok(())
}

//! The data-scaling study's tables and fits: reads the collected results of the sweep
//! `sweeps/data_scaling.toml` (`noether sweep collect DIR` writes `DIR/results.csv`) and
//! writes into `--out` (`docs/`):
//! - `data_scaling.csv`: one row per run in the study's columns, with the derived
//!   `one_minus_auc` and `background_efficiency_at_0.3` (= 1 / rejection at 0.3);
//! - `data_scaling_boost.md`: per model and training size, AUC and 1/eps_B(0.3) on the
//!   550-650 GeV test jets against the 1000-1200 GeV ones (`data/boosted_test.h5`, scored
//!   by every run as `extra_tests.boosted`), mean +- standard deviation over seeds;
//! - `data_scaling_fits.json` / `.md`: per model with three sizes or more, L(D) = L_inf +
//!   B / D^beta fitted to the test loss, 1 - AUC and eps_B(0.3) with the tagging-guide
//!   procedure (the library call behind `noether scaling fit --form power`), with 10-90%
//!   intervals over 100 bootstrap resamples of the runs;
//! - `data_scaling_exchange.md`: for every model and size, the number of reference-model
//!   (`--reference`, PFN and Transformer) training jets at which the reference's fitted
//!   test-loss law reaches the model's mean test loss, with the 10-90% interval over the
//!   reference law's resamples.
//!
//! ```sh
//! noether sweep plan sweeps/data_scaling.toml --out runs/data_scaling
//! noether sweep submit runs/data_scaling --scheduler local --parallel 2 --threads 1
//! noether sweep collect runs/data_scaling
//! cargo run --release -p noether-examples --example data_scaling -- \
//!     [--results runs/data_scaling/results.csv] [--out docs]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Parser;
use noether_examples::{csv_fields, mean_std, workspace_root};
use noether_scaling::{
    bootstrap, fit, percentile, resolve_bounds, Bootstrap, Bound, FitConfig, FitResult, Loss,
    PowerLaw, Runs,
};
use serde_json::json;

/// The data-scaling tables (see the module documentation).
#[derive(Parser)]
struct Args {
    /// The sweep's collected results (`noether sweep collect DIR` writes DIR/results.csv)
    #[arg(long, default_value_os_t = workspace_root().join("runs/data_scaling/results.csv"))]
    results: PathBuf,
    /// Where the `data_scaling*` files go
    #[arg(long, default_value_os_t = workspace_root().join("docs"))]
    out: PathBuf,
    /// The models whose training jets are the exchange tables' currencies (repeatable)
    #[arg(long, default_values_t = ["pfn-cpu".to_owned(), "transformer-cpu".to_owned()])]
    reference: Vec<String>,
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
    /// The training-set size.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn size(&self) -> u64 {
        self.number("train_jets") as u64
    }

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

/// `data_scaling.csv`: the study's columns, then the derived ones fitted beside the
/// test loss (`one_minus_auc`, `background_efficiency_at_0.3`).
fn csv(runs: &[Run]) -> String {
    let mut out = String::from("model");
    for name in COLUMNS.iter().map(|(name, _)| *name).chain(DERIVED) {
        out.push(',');
        out.push_str(name);
    }
    out.push('\n');
    for run in runs {
        let derived: Vec<String> = DERIVED
            .iter()
            .map(|name| run.objective(name).to_string())
            .collect();
        let _ = writeln!(
            out,
            "{},{},{}",
            run.model,
            run.values.join(","),
            derived.join(",")
        );
    }
    out
}

/// The objectives of [`OBJECTIVES`] that are not sweep columns.
const DERIVED: [&str; 2] = ["one_minus_auc", "background_efficiency_at_0.3"];

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
        groups
            .entry((&run.model, run.size()))
            .or_default()
            .push(run);
    }
    groups
}

/// The quantities fitted against the training jets: the study's column name (in
/// `data_scaling.csv`), the lower bound of the floor `L_inf`, and how to read it off a
/// run. The test loss keeps the tagging-guide box (`L_inf` >= 0.01); 1 - AUC and
/// eps_B(0.3) = 1 / (1/eps_B(0.3)) reach 1e-3 at 30k jets, so their floors may go down
/// to 1e-5.
const OBJECTIVES: [(&str, &str); 3] = [
    ("test_loss", "E=0.01:1"),
    ("one_minus_auc", "E=0.00001:1"),
    ("background_efficiency_at_0.3", "E=0.00001:1"),
];

impl Run {
    /// A fitted quantity of [`OBJECTIVES`] for this run.
    fn objective(&self, name: &str) -> f64 {
        match name {
            "one_minus_auc" => 1.0 - self.number("auc"),
            "background_efficiency_at_0.3" => 1.0 / self.number("rejection_at_0.3"),
            other => self.number(other),
        }
    }
}

/// The fewest distinct training sizes a three-parameter law is fitted to.
const MIN_SIZES: usize = 3;

/// One model's fitted law of one objective and its bootstrap resamples.
struct Fitted {
    result: FitResult,
    spread: Bootstrap,
}

impl Fitted {
    /// A natural parameter's estimate and 10-90% bootstrap interval.
    fn param(&self, name: &str) -> (f64, (f64, f64)) {
        let estimate = self.result.get(name).unwrap_or(f64::NAN);
        let interval = self
            .spread
            .get(name)
            .map_or((f64::NAN, f64::NAN), |p| p.interval(CI));
        (estimate, interval)
    }
}

/// The central bootstrap interval of every figure: 10% to 90%, as the tagging guide.
const CI: f64 = 0.8;

/// Fits L(D) = L_inf + B / D^beta to `model`'s runs of `objective` with the
/// tagging-guide procedure (Huber, delta 1e-3, on log residuals; `floor` bounds L_inf,
/// B <= 1000, beta in [0.01, 2]; 100 bootstrap resamples over runs): the same library
/// call as `noether scaling fit --form power --bound ...`. `None` below [`MIN_SIZES`].
fn fit_model(
    runs: &[Run],
    model: &str,
    objective: &str,
    floor: &str,
) -> Result<Option<Fitted>, Box<dyn std::error::Error>> {
    let rows: Vec<&Run> = runs.iter().filter(|r| r.model == model).collect();
    let sizes: BTreeSet<u64> = rows.iter().map(|r| r.size()).collect();
    if sizes.len() < MIN_SIZES {
        return Ok(None);
    }
    let table = Runs::from_columns(BTreeMap::from([
        (
            "N".to_owned(),
            rows.iter().map(|r| r.number("train_jets")).collect(),
        ),
        (
            "loss".to_owned(),
            rows.iter().map(|r| r.objective(objective)).collect(),
        ),
    ]))
    .map_err(|e| format!("{model}, {objective}: {e}"))?;
    let law = PowerLaw::default();
    let bounds = [floor, "A=:1000", "alpha=0.01:2"]
        .iter()
        .map(|b| b.parse::<Bound>())
        .collect::<Result<Vec<_>, _>>()?;
    let config = FitConfig {
        loss: Loss::Huber { delta: 1e-3 },
        bounds: resolve_bounds(&law, &bounds)?,
        ..FitConfig::default()
    };
    let result = fit(&law, &table, &config).map_err(|e| format!("{model}, {objective}: {e}"))?;
    let spread = bootstrap(&law, &table, &result, &config, 100, 0)
        .map_err(|e| format!("{model}, {objective}: {e}"))?;
    Ok(Some(Fitted { result, spread }))
}

/// Every model's fits, by model and objective.
type Fits = BTreeMap<String, BTreeMap<&'static str, Fitted>>;

fn fit_all(runs: &[Run]) -> Result<Fits, Box<dyn std::error::Error>> {
    let models: BTreeSet<&str> = runs.iter().map(|r| r.model.as_str()).collect();
    let mut fits = Fits::new();
    for model in models {
        for (objective, floor) in OBJECTIVES {
            if let Some(fitted) = fit_model(runs, model, objective, floor)? {
                fits.entry(model.to_owned())
                    .or_default()
                    .insert(objective, fitted);
            }
        }
    }
    Ok(fits)
}

/// The issue's names of the power law's parameters (the fit's `E`, `A`, `alpha`).
const PARAMS: [(&str, &str); 3] = [("L_inf", "E"), ("B", "A"), ("beta", "alpha")];

/// `data_scaling_fits.json`: per model and objective, L_inf, B, beta, their 10-90%
/// bootstrap intervals, the objective at the optimum, the parameters at a bound.
fn fits_json(runs: &[Run], fits: &Fits) -> serde_json::Value {
    let models: serde_json::Map<String, serde_json::Value> = fits
        .iter()
        .map(|(model, by_objective)| {
            let sizes: BTreeSet<u64> = runs
                .iter()
                .filter(|r| &r.model == model)
                .map(Run::size)
                .collect();
            let mut entry = serde_json::Map::new();
            entry.insert("train_jets".into(), json!(sizes));
            for (objective, fitted) in by_objective {
                let mut law = serde_json::Map::new();
                let mut intervals = serde_json::Map::new();
                for (name, internal) in PARAMS {
                    let (estimate, (lo, hi)) = fitted.param(internal);
                    law.insert(name.into(), json!(estimate));
                    intervals.insert(name.into(), json!([lo, hi]));
                }
                let renamed = |p: &String| {
                    PARAMS
                        .iter()
                        .find(|(_, internal)| internal == p)
                        .map_or(p.clone(), |(name, _)| (*name).to_owned())
                };
                law.insert("intervals_10_90".into(), json!(intervals));
                law.insert("objective".into(), json!(fitted.result.objective));
                law.insert(
                    "at_bound".into(),
                    json!(fitted
                        .result
                        .at_bound
                        .iter()
                        .map(renamed)
                        .collect::<Vec<_>>()),
                );
                law.insert("runs".into(), json!(fitted.result.runs));
                law.insert("bootstrap_failed".into(), json!(fitted.spread.failed));
                entry.insert((*objective).to_owned(), serde_json::Value::Object(law));
            }
            (model.clone(), serde_json::Value::Object(entry))
        })
        .collect();
    json!({
        "law": "L(D) = L_inf + B / D^beta, D = training jets",
        "procedure": "Huber loss (delta 1e-3) on log residuals, L-BFGS-B from a grid of \
            starts; B <= 1000, beta in [0.01, 2], L_inf in [0.01, 1] for test_loss and \
            [1e-5, 1] for one_minus_auc and background_efficiency_at_0.3 (= 1 / \
            rejection_at_0.3); 100 bootstrap resamples of the runs, 10% and 90% \
            percentiles",
        "models": models,
    })
}

/// The fits as the README's table: per model, L_inf and beta of every objective.
fn fits_table(runs: &[Run], fits: &Fits) -> String {
    let mut md = String::from(
        "| model | train jets | test loss: L_inf | beta | 1 - AUC: L_inf | beta | \
         eps_B(0.3): L_inf | beta |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (model, by_objective) in fits {
        let sizes: BTreeSet<u64> = runs
            .iter()
            .filter(|r| &r.model == model)
            .map(Run::size)
            .collect();
        let range = format!(
            "{}-{}",
            thousands(sizes.first().copied().unwrap_or_default()),
            thousands(sizes.last().copied().unwrap_or_default())
        );
        let _ = write!(md, "| {model} | {range} |");
        for (objective, _) in OBJECTIVES {
            let Some(fitted) = by_objective.get(objective) else {
                md.push_str("  |  |");
                continue;
            };
            let (floor, (lo, hi)) = fitted.param("E");
            let (beta, (beta_lo, beta_hi)) = fitted.param("alpha");
            let bound = if fitted.result.at_bound.iter().any(|p| p == "E") {
                " (bound)"
            } else {
                ""
            };
            let _ = write!(
                md,
                " {}{bound} [{}, {}] | {beta:.2} [{beta_lo:.2}, {beta_hi:.2}] |",
                small(floor),
                small(lo),
                small(hi)
            );
        }
        md.push('\n');
    }
    md
}

/// A training size in thousands, `30k`.
fn thousands(jets: u64) -> String {
    format!("{}k", jets as f64 / 1000.0)
}

/// A floor to three significant digits, in scientific notation below 0.01.
fn small(x: f64) -> String {
    if x.abs() < 0.01 {
        format!("{x:.2e}")
    } else {
        format!("{x:.3}")
    }
}

/// A number of jets, `12.3k` above a thousand; unbounded as `inf`.
fn jets(x: Option<f64>) -> String {
    match x {
        Some(x) if x >= 1000.0 => format!("{:.1}k", x / 1000.0),
        Some(x) => format!("{x:.0}"),
        None => "inf".into(),
    }
}

/// The exchange table against `reference`: rows of training sizes, a column per other
/// model, each cell the number of `reference` training jets at which the reference's
/// fitted test-loss law reaches the model's mean test loss at that size, with its 10-90%
/// interval over the reference law's bootstrap resamples (`inf`: never, or not within
/// that resample's floor).
fn exchange_table(
    runs: &[Run],
    fits: &Fits,
    reference: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let law = fits
        .get(reference)
        .and_then(|f| f.get("test_loss"))
        .ok_or_else(|| {
            format!("the reference model '{reference}' has runs at fewer than {MIN_SIZES} sizes")
        })?;
    let groups = groups(runs);
    let models: Vec<&str> = groups
        .keys()
        .map(|(model, _)| *model)
        .filter(|m| *m != reference)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let sizes: BTreeSet<u64> = groups.keys().map(|(_, size)| *size).collect();
    let mut md = format!("| train jets | {} |\n|---|", models.join(" | "));
    md.push_str(&"---|".repeat(models.len()));
    md.push('\n');
    for size in sizes {
        let _ = write!(md, "| {size} |");
        for model in &models {
            let Some(group) = groups.get(&(*model, size)) else {
                md.push_str(" |");
                continue;
            };
            let (loss, _) = mean_std(
                &group
                    .iter()
                    .map(|r| r.number("test_loss"))
                    .collect::<Vec<_>>(),
            );
            let mut draws: Vec<f64> = law
                .spread
                .thetas
                .iter()
                .map(|t| PowerLaw::x_at_loss(t, loss).unwrap_or(f64::INFINITY))
                .collect();
            draws.sort_by(f64::total_cmp);
            let at = |q: f64| {
                let x = percentile(&draws, q);
                x.is_finite().then_some(x)
            };
            let _ = write!(
                md,
                " {} [{}, {}] |",
                jets(PowerLaw::x_at_loss(&law.result.theta, loss)),
                jets(at(0.5 * (1.0 - CI))),
                jets(at(0.5 * (1.0 + CI))),
            );
        }
        md.push('\n');
    }
    Ok(md)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let runs = read_runs(&args.results)?;
    std::fs::create_dir_all(&args.out)?;
    let write = |name: &str, text: &str| -> std::io::Result<()> {
        println!("{name}:\n{text}");
        std::fs::write(args.out.join(name), text)
    };
    write("data_scaling.csv", &csv(&runs))?;
    write("data_scaling_boost.md", &boost_table(&runs))?;
    let fits = fit_all(&runs)?;
    write(
        "data_scaling_fits.json",
        &serde_json::to_string_pretty(&fits_json(&runs, &fits))?,
    )?;
    write("data_scaling_fits.md", &fits_table(&runs, &fits))?;
    let mut md = String::new();
    for reference in &args.reference {
        let _ = writeln!(md, "In {reference} training jets:\n");
        md.push_str(&exchange_table(&runs, &fits, reference)?);
        md.push('\n');
    }
    write("data_scaling_exchange.md", &md)?;
    eprintln!("wrote {} runs to {}", runs.len(), args.out.display());
    Ok(())
}

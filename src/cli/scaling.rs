//! `noether scaling fit` and `noether scaling allocate`.

use std::path::PathBuf;

use crate::cli::output::say;
use clap::{Args, Subcommand, ValueEnum};
use noether::scaling::{
    allocate, bootstrap, exchange_rates, fit, plot_fit, plot_groups, profile, resolve_bounds,
    Bound, BrokenPowerLaw, Chinchilla, ChinchillaParams, ColumnMap, DataConstrained, FitConfig,
    FitResult, GroupFit, Kaplan, Loss, PowerLaw, Runs, ScalingError, ScalingLaw,
};
use serde_json::{json, Map, Value};

/// Scaling-law subcommands.
#[derive(Debug, Subcommand)]
pub enum ScalingCommand {
    /// Fit a scaling law to a CSV of runs; prints the parameters (with bootstrap intervals)
    /// as JSON.
    Fit(Box<FitArgs>),
    /// Allocate a compute budget with a fitted Chinchilla law (C = 6 N D).
    Allocate(AllocateArgs),
}

/// The forms `scaling fit` knows.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Form {
    /// L = E + A/N^alpha + B/D^beta.
    Chinchilla,
    /// L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D.
    Kaplan,
    /// L = E + A x^-alpha in the --x-col (or --n-col) column.
    Power,
    /// Muennighoff et al.'s data-constrained law (fits R_D*, R_N*; needs --u-col).
    DataConstrained,
    /// Broken power law with one break in the --x-col (or --n-col) column.
    Bnsl1,
    /// Broken power law with two breaks in the --x-col (or --n-col) column.
    Bnsl2,
}

impl Form {
    /// Whether the form reads one variable (x) rather than N and D.
    fn single_variable(self) -> bool {
        matches!(self, Self::Power | Self::Bnsl1 | Self::Bnsl2)
    }
}

/// The robust losses.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LossKind {
    /// Huber on log residuals (threshold --delta).
    Huber,
    /// Absolute log residuals.
    L1,
    /// Huber likelihood with a fitted scale.
    Likelihood,
}

/// Arguments of `scaling fit`.
#[derive(Debug, Args)]
pub struct FitArgs {
    /// CSV file with a header row.
    runs: PathBuf,
    /// The form to fit.
    #[arg(long, value_enum, default_value = "chinchilla")]
    form: Form,
    /// Parameters column (the variable of the power and broken forms unless --x-col).
    #[arg(long, default_value = "N")]
    n_col: String,
    /// The variable of a single-variable form (power, bnsl1, bnsl2): e.g. the training
    /// jets D of a data-scaling fit.
    #[arg(long, conflicts_with = "n_col")]
    x_col: Option<String>,
    /// Data column.
    #[arg(long, default_value = "D", conflicts_with = "flops_col")]
    d_col: String,
    /// Compute column: D = FLOP / (6 N).
    #[arg(long)]
    flops_col: Option<String>,
    /// Loss column.
    #[arg(long, default_value = "loss")]
    loss_col: String,
    /// Unique-data column (data-constrained form).
    #[arg(long)]
    u_col: Option<String>,
    /// Multiply N, D (and U) by this factor (e.g. 1e9 for columns in billions).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Drop the K runs with the highest loss.
    #[arg(long, default_value_t = 0)]
    drop_highest: usize,
    /// Robust loss.
    #[arg(long, value_enum, default_value = "huber")]
    loss: LossKind,
    /// Huber threshold.
    #[arg(long, default_value_t = 1e-3)]
    delta: f64,
    /// Bootstrap resamples (0: none).
    #[arg(long, default_value_t = 0)]
    bootstrap: usize,
    /// Also profile every fit parameter and flag weakly identified ones.
    #[arg(long)]
    profile: bool,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write an SVG plot of the fit here (with --group-col: one panel, a colour per
    /// group).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Fit one law per value of this column (e.g. model) and print one JSON object per
    /// line, each with a `group` key.
    #[arg(long)]
    group_col: Option<String>,
    /// Bound a natural parameter, NAME=LO:HI with either side open (E=0.01:1, A=:1000);
    /// repeatable. A fit that ends on a bound lists it in `at_bound`.
    #[arg(long = "bound", value_name = "NAME=LO:HI")]
    bounds: Vec<Bound>,
    /// Central probability of the bootstrap intervals (`ci95` at 0.95, `ci80`, the 10 and
    /// 90 percentiles, at 0.8).
    #[arg(long, default_value_t = 0.95)]
    ci: f64,
    /// With --group-col and the power form: the group whose training-set size every
    /// other group is converted into ("LorentzNet at 2k jets = PFN at N jets").
    #[arg(long, requires = "group_col", requires = "exchange_at")]
    exchange_reference: Option<String>,
    /// The sizes at which to state the exchange rates (comma-separated).
    #[arg(long, value_delimiter = ',', requires = "exchange_reference")]
    exchange_at: Vec<f64>,
}

/// Arguments of `scaling allocate`.
#[derive(Debug, Args)]
pub struct AllocateArgs {
    /// JSON printed by `scaling fit --form chinchilla` (keys E, A, B, alpha, beta).
    #[arg(long)]
    fit: PathBuf,
    /// Compute budget in FLOP.
    #[arg(long)]
    compute: f64,
    /// Cap on the parameter count.
    #[arg(long)]
    max_params: Option<f64>,
    /// Cap on unique data (tokens / examples): allocate with Muennighoff's repeated-data law.
    #[arg(long)]
    unique_data: Option<f64>,
    /// R_D* of the data-constrained law.
    #[arg(long, default_value_t = 15.387756)]
    r_d: f64,
    /// R_N* of the data-constrained law.
    #[arg(long, default_value_t = 5.309743)]
    r_n: f64,
}

/// Runs a scaling subcommand, printing JSON.
pub fn run(command: ScalingCommand) -> Result<(), Box<dyn std::error::Error>> {
    let value = match command {
        ScalingCommand::Fit(args) => run_fit(&args)?,
        ScalingCommand::Allocate(args) => run_allocate(&args)?,
    };
    match value {
        // One group per line (JSON Lines), as a script reading per-model fits expects.
        Value::Array(lines) => {
            for line in lines {
                say!("{}", serde_json::to_string(&line)?)?;
            }
        }
        value => say!("{}", serde_json::to_string_pretty(&value)?)?,
    }
    Ok(())
}

fn column_map(args: &FitArgs) -> Result<ColumnMap, Box<dyn std::error::Error>> {
    let single = args.form.single_variable();
    if args.x_col.is_some() && !single {
        return Err(
            "--x-col names the variable of a single-variable form (power, bnsl1, bnsl2); \
             use --n-col and --d-col for this form"
                .into(),
        );
    }
    Ok(ColumnMap {
        n: args.x_col.clone().unwrap_or_else(|| args.n_col.clone()),
        d: (!single).then(|| args.d_col.clone()),
        flops: args.flops_col.clone(),
        loss: args.loss_col.clone(),
        unique: args.u_col.clone(),
    })
}

/// The CLI's error type: typed errors of the crates, or a message.
type CliResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The runs of the file, one entry per group (one group named "" without --group-col).
fn load_runs(args: &FitArgs) -> CliResult<Vec<(String, Runs)>> {
    let map = column_map(args)?;
    let groups = match &args.group_col {
        Some(col) => Runs::from_csv_grouped(&args.runs, &map, col)?,
        None => vec![(String::new(), Runs::from_csv(&args.runs, &map)?)],
    };
    let grouped = args.group_col.is_some();
    let prepare = |runs: Runs| -> Result<Runs, ScalingError> {
        let mut runs = runs;
        if args.scale != 1.0 {
            runs = runs
                .scaled("N", args.scale)?
                .scaled("D", args.scale)?
                .scaled("U", args.scale)?;
        }
        Ok(runs.drop_highest_loss(args.drop_highest))
    };
    groups
        .into_iter()
        .map(|(g, runs)| match prepare(runs) {
            Ok(r) => Ok((g, r)),
            Err(e) if grouped => Err(in_group(&g, e).into()),
            Err(e) => Err(e.into()),
        })
        .collect()
}

/// `e`, naming the group it happened in.
fn in_group(group: &str, e: ScalingError) -> ScalingError {
    ScalingError::InGroup {
        group: group.to_owned(),
        source: Box::new(e),
    }
}

fn build_law(
    args: &FitArgs,
    runs: &Runs,
) -> Result<Box<dyn ScalingLaw>, Box<dyn std::error::Error>> {
    Ok(match args.form {
        Form::Chinchilla => Box::new(Chinchilla),
        Form::Kaplan => Box::new(Kaplan),
        Form::Power => Box::new(PowerLaw::default()),
        Form::DataConstrained => {
            if args.u_col.is_none() {
                return Err(
                    "--form data-constrained needs --u-col (the unique-data column)".into(),
                );
            }
            Box::new(DataConstrained::muennighoff())
        }
        Form::Bnsl1 => Box::new(BrokenPowerLaw::for_runs(runs, "N", 1)?),
        Form::Bnsl2 => Box::new(BrokenPowerLaw::for_runs(runs, "N", 2)?),
    })
}

fn result_json(result: &FitResult) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("form".into(), json!(result.form));
    out.insert("at_bound".into(), json!(result.at_bound));
    for (name, value) in &result.natural {
        out.insert(name.clone(), json!(value));
    }
    out.insert("objective".into(), json!(result.objective));
    out.insert("runs".into(), json!(result.runs));
    out.insert("starts".into(), json!(result.starts));
    out.insert("converged_starts".into(), json!(result.converged_starts));
    let params: Map<String, Value> = result
        .param_names
        .iter()
        .zip(&result.theta)
        .map(|(n, v)| (n.clone(), json!(v)))
        .collect();
    out.insert("fit_params".into(), Value::Object(params));
    out
}

fn run_fit(args: &FitArgs) -> Result<Value, Box<dyn std::error::Error>> {
    if !(args.ci > 0.0 && args.ci < 1.0) {
        return Err(format!("--ci {} is not a probability in (0, 1)", args.ci).into());
    }
    let mut groups = load_runs(args)?;
    if args.group_col.is_none() {
        let (_, runs) = groups.remove(0);
        let (law, mut one) = fit_runs(args, &runs)?;
        if let Some(path) = &args.plot {
            plot_fit(path, law.as_ref(), &runs, &one.result, &one.band)?;
            one.json
                .insert("plot".into(), json!(path.display().to_string()));
        }
        return Ok(Value::Object(one.json));
    }
    if groups.is_empty() {
        return Err(format!("{}: no runs", args.runs.display()).into());
    }
    let mut fits = Vec::new();
    let mut lines = Vec::new();
    for (group, runs) in groups {
        let (law, mut one) = fit_runs(args, &runs).map_err(|e| boxed_in_group(&group, e))?;
        let mut line = Map::new();
        line.insert("group".into(), json!(group));
        line.append(&mut one.json);
        lines.push(Value::Object(line));
        fits.push(GroupFit {
            group,
            law,
            runs,
            result: one.result,
            band: one.band,
        });
    }
    if let Some(reference) = &args.exchange_reference {
        add_exchange_rates(args, reference, &fits, &mut lines)?;
    }
    if let Some(path) = &args.plot {
        let x = args.x_col.as_deref().unwrap_or(&args.n_col);
        plot_groups(path, &fits, x, args.ci)?;
    }
    Ok(Value::Array(lines))
}

/// Adds to every group's line its exchange rates against group `reference`.
fn add_exchange_rates(
    args: &FitArgs,
    reference: &str,
    fits: &[GroupFit],
    lines: &mut [Value],
) -> CliResult<()> {
    let Some(refit) = fits.iter().find(|f| f.group == reference) else {
        let groups: Vec<&str> = fits.iter().map(|f| f.group.as_str()).collect();
        return Err(format!(
            "--exchange-reference {reference:?} is not a group (groups: {})",
            groups.join(", ")
        )
        .into());
    };
    if let Some(bad) = args
        .exchange_at
        .iter()
        .find(|x| !(x.is_finite() && **x > 0.0))
    {
        return Err(format!("--exchange-at {bad} is not a positive size").into());
    }
    let interval_key = ci_key(args.ci);
    for (fit, line) in fits.iter().zip(lines.iter_mut()) {
        let rates = exchange_rates(
            (&fit.result, &fit.band),
            (&refit.result, &refit.band),
            &args.exchange_at,
            args.ci,
        )?;
        let rows: Vec<Value> = rates
            .iter()
            .map(|r| {
                let mut row = json!({ "x": r.x, "loss": r.loss, "reference_x": r.reference_x });
                if let Some((lo, hi)) = r.interval {
                    row[interval_key.as_str()] = json!([lo, hi]);
                }
                row
            })
            .collect();
        line["exchange_reference"] = json!(reference);
        line["exchange"] = Value::Array(rows);
    }
    Ok(())
}

/// The JSON key of a central interval of probability `level` (`ci95`, `ci80`).
fn ci_key(level: f64) -> String {
    format!("ci{}", (100.0 * level).round())
}

/// An error of one group's fit, naming the group.
fn boxed_in_group(group: &str, e: Box<dyn std::error::Error>) -> Box<dyn std::error::Error> {
    match e.downcast::<ScalingError>() {
        Ok(e) => Box::new(in_group(group, *e)),
        Err(e) => format!("group '{group}': {e}").into(),
    }
}

/// The fit of one set of runs.
struct OneFit {
    /// What `scaling fit` prints.
    json: Map<String, Value>,
    /// The bootstrap's fit parameters (empty without --bootstrap).
    band: Vec<Vec<f64>>,
    /// The fit.
    result: FitResult,
}

/// The form built for `runs` and its fit.
fn fit_runs(args: &FitArgs, runs: &Runs) -> CliResult<(Box<dyn ScalingLaw>, OneFit)> {
    let law = build_law(args, runs)?;
    let one = fit_one(args, law.as_ref(), runs)?;
    Ok((law, one))
}

/// The fit of one set of runs: its JSON, the bootstrap's fit parameters, the result.
fn fit_one(args: &FitArgs, law: &dyn ScalingLaw, runs: &Runs) -> CliResult<OneFit> {
    let bounds = resolve_bounds(law, &args.bounds)?;
    let huber = FitConfig {
        loss: Loss::Huber { delta: args.delta },
        bounds,
        ..FitConfig::default()
    };
    let mut result = fit(law, runs, &huber)?;
    let loss = match args.loss {
        LossKind::Huber => Loss::Huber { delta: args.delta },
        LossKind::L1 => Loss::L1,
        LossKind::Likelihood => Loss::HuberLikelihood { delta: args.delta },
    };
    let config = FitConfig { loss, ..huber };
    if !matches!(args.loss, LossKind::Huber) {
        // The non-smooth losses refine the Huber optimum rather than restart the grid.
        let refined = FitConfig {
            start: Some(result.theta.clone()),
            ..config.clone()
        };
        result = fit(law, runs, &refined)?;
    }
    let mut out = result_json(&result);
    let mut band = Vec::new();
    if args.bootstrap > 0 {
        let boot = bootstrap(law, runs, &result, &config, args.bootstrap, args.seed)?;
        let interval_key = ci_key(args.ci);
        let mut b = Map::new();
        b.insert("resamples".into(), json!(boot.resamples));
        b.insert("failed".into(), json!(boot.failed));
        for p in &boot.params {
            let (lo, hi) = p.interval(args.ci);
            b.insert(
                p.name.clone(),
                json!({ "se": p.se, interval_key.as_str(): [lo, hi] }),
            );
        }
        out.insert("bootstrap".into(), Value::Object(b));
        band = boot.thetas;
    }
    if args.profile {
        out.insert("profile".into(), profile_json(law, runs, &result, &config)?);
    }
    Ok(OneFit {
        json: out,
        band,
        result,
    })
}

/// Profiles every form parameter: log parameters over +-5 (a factor e^5 each way),
/// others over +-50% (at least +-0.5).
fn profile_json(
    law: &dyn ScalingLaw,
    runs: &Runs,
    result: &FitResult,
    config: &FitConfig,
) -> Result<Value, Box<dyn std::error::Error>> {
    let mut p = Map::new();
    for index in 0..law.param_names().len() {
        let width = if result.param_names[index].starts_with("ln_") {
            5.0
        } else {
            (0.5 * result.theta[index].abs()).max(0.5)
        };
        let prof = profile(law, runs, result, config, index, width, 41)?;
        p.insert(
            prof.param.clone(),
            json!({ "interval": [prof.interval.0, prof.interval.1], "weakly_identified": prof.weakly_identified }),
        );
    }
    Ok(Value::Object(p))
}

fn run_allocate(args: &AllocateArgs) -> Result<Value, Box<dyn std::error::Error>> {
    let text =
        std::fs::read_to_string(&args.fit).map_err(|e| format!("{}: {e}", args.fit.display()))?;
    let json: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", args.fit.display()))?;
    let get = |k: &str| {
        json.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("{}: key '{k}' missing or not a number (expected the JSON of `scaling fit --form chinchilla`)", args.fit.display()))
    };
    let params = ChinchillaParams {
        E: get("E")?,
        A: get("A")?,
        B: get("B")?,
        alpha: get("alpha")?,
        beta: get("beta")?,
    };
    let law = DataConstrained { base: params };
    let unique = args.unique_data.map(|u| (u, &law, args.r_d, args.r_n));
    let a = allocate(&params, args.compute, args.max_params, unique)?;
    Ok(json!({ "compute": a.flops, "N": a.n, "D": a.d, "epochs": a.epochs, "loss": a.loss }))
}

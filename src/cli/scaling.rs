//! `noether scaling fit` and `noether scaling allocate`.

use std::path::PathBuf;

use crate::cli::output::say;
use clap::{Args, Subcommand, ValueEnum};
use noether::scaling::{
    allocate, bootstrap, fit, plot_fit, profile, BrokenPowerLaw, Chinchilla, ChinchillaParams,
    ColumnMap, DataConstrained, FitConfig, FitResult, Kaplan, Loss, PowerLaw, Runs, ScalingLaw,
};
use serde_json::{json, Map, Value};

/// Scaling-law subcommands.
#[derive(Debug, Subcommand)]
pub enum ScalingCommand {
    /// Fit a scaling law to a CSV of runs; prints the parameters (with bootstrap intervals)
    /// as JSON.
    Fit(FitArgs),
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
    /// L = E + A x^-alpha in the N column.
    Power,
    /// Muennighoff et al.'s data-constrained law (fits R_D*, R_N*; needs --u-col).
    DataConstrained,
    /// Broken power law with one break in the N column.
    Bnsl1,
    /// Broken power law with two breaks in the N column.
    Bnsl2,
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
    /// Parameters column.
    #[arg(long, default_value = "N")]
    n_col: String,
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
    /// Write an SVG plot of the fit here.
    #[arg(long)]
    plot: Option<PathBuf>,
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
    say!("{}", serde_json::to_string_pretty(&value)?)?;
    Ok(())
}

fn load_runs(args: &FitArgs) -> Result<Runs, Box<dyn std::error::Error>> {
    let map = ColumnMap {
        n: args.n_col.clone(),
        d: args.d_col.clone(),
        flops: args.flops_col.clone(),
        loss: args.loss_col.clone(),
        unique: args.u_col.clone(),
    };
    let mut runs = Runs::from_csv(&args.runs, &map)?;
    if args.scale != 1.0 {
        runs = runs
            .scaled("N", args.scale)?
            .scaled("D", args.scale)?
            .scaled("U", args.scale)?;
    }
    Ok(runs.drop_highest_loss(args.drop_highest))
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
    let runs = load_runs(args)?;
    let law = build_law(args, &runs)?;
    let huber = FitConfig {
        loss: Loss::Huber { delta: args.delta },
        ..FitConfig::default()
    };
    let mut result = fit(law.as_ref(), &runs, &huber)?;
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
        result = fit(law.as_ref(), &runs, &refined)?;
    }
    let mut out = result_json(&result);
    let mut band = Vec::new();
    if args.bootstrap > 0 {
        let boot = bootstrap(
            law.as_ref(),
            &runs,
            &result,
            &config,
            args.bootstrap,
            args.seed,
        )?;
        let mut b = Map::new();
        b.insert("resamples".into(), json!(boot.resamples));
        b.insert("failed".into(), json!(boot.failed));
        for p in &boot.params {
            b.insert(p.name.clone(), json!({ "se": p.se, "ci95": [p.lo, p.hi] }));
        }
        out.insert("bootstrap".into(), Value::Object(b));
        band = boot.thetas;
    }
    if args.profile {
        out.insert(
            "profile".into(),
            profile_json(law.as_ref(), &runs, &result, &config)?,
        );
    }
    if let Some(path) = &args.plot {
        plot_fit(path, law.as_ref(), &runs, &result, &band)?;
        out.insert("plot".into(), json!(path.display().to_string()));
    }
    Ok(Value::Object(out))
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

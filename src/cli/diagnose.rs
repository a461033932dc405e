//! `noether diagnose`: learning-dynamics diagnostics of a trained checkpoint on a jet
//! file — Hessian spectrum, local learning coefficient, the path to another checkpoint,
//! and layer balance — written as JSON (and SVG plots) into a run directory.

use std::path::{Path, PathBuf};

use crate::cli::output::say;
use clap::{Args, Subcommand};
use noether::data::JetSet;
use noether::dynamics::hessian::{hutchinson_trace, slq_density, top_eigenvalues, PowerConfig};
use noether::dynamics::llc::{estimate_llc, SgldConfig};
use noether::dynamics::path::{
    barrier, lerp, profile, train_bezier, BezierConfig, Curvature, PathPoint,
};
use noether::dynamics::{Objective, TaggerObjective};
use plotters::prelude::*;
use serde_json::json;

type Error = Box<dyn std::error::Error>;

/// What every diagnostic needs.
#[derive(Debug, Args)]
pub struct Common {
    /// A noether checkpoint (its config is read from the file).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Jets the loss is measured on (any layout the data crate reads).
    #[arg(long)]
    data: PathBuf,
    /// A seeded class-balanced subset of this many jets (0: all).
    #[arg(long, default_value_t = 500)]
    jets: usize,
    /// Seed of the subset and of the random probes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory (default: runs/diagnose-<kind>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// CPU threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Device (default: the one the checkpoint was trained on): cpu, cuda:N or metal.
    #[arg(long)]
    device: Option<noether::train::DeviceSetting>,
}

/// The diagnostics.
#[derive(Debug, Subcommand)]
pub enum DiagnoseCommand {
    /// Top Hessian eigenvalues, Hutchinson trace and the SLQ spectral density.
    Hessian {
        #[command(flatten)]
        common: Common,
        /// Top eigenvalues wanted.
        #[arg(long, default_value_t = 3)]
        k: usize,
        /// Hutchinson probes.
        #[arg(long, default_value_t = 20)]
        trace_samples: usize,
        /// Lanczos steps per SLQ probe.
        #[arg(long, default_value_t = 20)]
        lanczos_steps: usize,
        /// SLQ probes.
        #[arg(long, default_value_t = 2)]
        probes: usize,
    },
    /// The local learning coefficient by SGLD around the checkpoint.
    Llc {
        #[command(flatten)]
        common: Common,
        /// SGLD step size.
        #[arg(long, default_value_t = 1e-5)]
        epsilon: f64,
        /// Localisation strength.
        #[arg(long, default_value_t = 100.0)]
        gamma: f64,
        /// Chains.
        #[arg(long, default_value_t = 2)]
        chains: usize,
        /// Draws kept per chain.
        #[arg(long, default_value_t = 100)]
        draws: usize,
        /// Burn-in steps per chain.
        #[arg(long, default_value_t = 20)]
        burn_in: usize,
        /// Jets per SGLD gradient (0: all).
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
    },
    /// Loss (and curvature) along the straight line and a trained Bezier curve to
    /// another checkpoint of the same architecture.
    Path {
        #[command(flatten)]
        common: Common,
        /// The other end.
        #[arg(long)]
        to: PathBuf,
        /// Points along each path (both ends included, so at least 2).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=100_000))]
        points: u64,
        /// SGD steps of the Bezier control point (0: straight line only).
        #[arg(long, default_value_t = 0)]
        bezier_steps: usize,
        /// Learning rate of the Bezier control point.
        #[arg(long, default_value_t = 0.01)]
        bezier_lr: f64,
        /// Also the top eigenvalue at each point.
        #[arg(long)]
        curvature: bool,
    },
    /// Squared weight and gradient norms of every parameter tensor.
    Balance {
        #[command(flatten)]
        common: Common,
    },
}

fn jets(common: &Common) -> Result<JetSet, Error> {
    let all = noether::data::load(&common.data)?;
    if common.jets == 0 || common.jets >= all.len() {
        return Ok(all);
    }
    let pick = noether::data::sampling::balanced_subset(all.labels(), common.jets, common.seed)?;
    Ok(all.select(&pick))
}

fn out_dir(common: &Common, kind: &str) -> Result<PathBuf, Error> {
    let out = common
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("diagnose-{kind}")));
    std::fs::create_dir_all(&out)?;
    Ok(out)
}

fn write_json(out: &Path, name: &str, value: &serde_json::Value) -> Result<(), Error> {
    let path = out.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value)?)?;
    say!("wrote {}", path.display())?;
    Ok(())
}

/// Runs one diagnostic.
///
/// # Errors
/// Data, checkpoint and setting errors naming the file or setting.
pub fn run(command: &DiagnoseCommand) -> Result<(), Error> {
    let common = match command {
        DiagnoseCommand::Hessian { common, .. }
        | DiagnoseCommand::Llc { common, .. }
        | DiagnoseCommand::Path { common, .. }
        | DiagnoseCommand::Balance { common } => common,
    };
    crate::cli::set_threads(common.threads);
    match command {
        DiagnoseCommand::Hessian {
            common,
            k,
            trace_samples,
            lanczos_steps,
            probes,
        } => hessian(common, *k, *trace_samples, *lanczos_steps, *probes),
        DiagnoseCommand::Llc {
            common,
            epsilon,
            gamma,
            chains,
            draws,
            burn_in,
            batch_size,
        } => {
            let config = SgldConfig {
                epsilon: *epsilon,
                gamma: *gamma,
                n_beta: None,
                chains: *chains,
                draws: *draws,
                burn_in: *burn_in,
                batch_size: (*batch_size > 0).then_some(*batch_size),
                seed: common.seed,
            };
            llc(common, &config)
        }
        DiagnoseCommand::Path {
            common,
            to,
            points,
            bezier_steps,
            bezier_lr,
            curvature,
        } => path(
            common,
            to,
            *points as usize,
            *bezier_steps,
            *bezier_lr,
            *curvature,
        ),
        DiagnoseCommand::Balance { common } => balance(common),
    }
}

fn hessian(
    common: &Common,
    k: usize,
    trace_samples: usize,
    steps: usize,
    probes: usize,
) -> Result<(), Error> {
    let obj =
        TaggerObjective::from_checkpoint_on(&common.checkpoint, jets(common)?, common.device)?;
    let w = obj.parameters()?;
    let top = top_eigenvalues(
        &obj,
        &w,
        &PowerConfig {
            k,
            max_iters: 100,
            tol: 1e-4,
            seed: common.seed,
        },
    )?;
    let trace = hutchinson_trace(&obj, &w, trace_samples, common.seed)?;
    let density = slq_density(&obj, &w, steps, probes, common.seed)?;
    let eigenvalues: Vec<f64> = top.iter().map(|p| p.value).collect();
    say!(
        "params={} jets={} top_eigenvalues={eigenvalues:?} trace={:.4} +- {:.4}",
        obj.dim(),
        obj.n_samples(),
        trace.trace,
        trace.std_error
    )?;
    let out = out_dir(common, "hessian")?;
    write_json(
        &out,
        "hessian.json",
        &json!({
            "params": obj.dim(), "jets": obj.n_samples(), "top_eigenvalues": eigenvalues,
            "trace": trace.trace, "trace_std_error": trace.std_error, "trace_samples": trace.samples,
            "density": {"nodes": density.nodes, "weights": density.weights},
        }),
    )?;
    density_svg(
        &out.join("eigen_density.svg"),
        &density.nodes,
        &density.weights,
    )
}

fn density_svg(path: &Path, nodes: &[f64], weights: &[f64]) -> Result<(), Error> {
    let (lo, hi) = nodes
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), x| (l.min(*x), h.max(*x)));
    let pad = 0.05 * (hi - lo).max(1e-6);
    let sigma = 0.02 * (hi - lo).max(1e-6);
    let density = noether::dynamics::hessian::SpectralDensity {
        nodes: nodes.to_vec(),
        weights: weights.to_vec(),
    };
    let grid: Vec<f64> = (0..400)
        .map(|i| lo - pad + (hi - lo + 2.0 * pad) * f64::from(i) / 399.0)
        .collect();
    let values = density.smoothed(&grid, sigma);
    let top = values.iter().copied().fold(0.0, f64::max).max(1e-300);
    let root = SVGBackend::new(path, (640, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Hessian eigenvalue density (SLQ)", ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(lo - pad..hi + pad, 0.0..top * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("eigenvalue")
        .y_desc("density")
        .draw()?;
    chart.draw_series(LineSeries::new(
        grid.iter().copied().zip(values.iter().copied()),
        BLUE.stroke_width(2),
    ))?;
    root.present()?;
    say!("wrote {}", path.display())?;
    Ok(())
}

fn llc(common: &Common, config: &SgldConfig) -> Result<(), Error> {
    let obj =
        TaggerObjective::from_checkpoint_on(&common.checkpoint, jets(common)?, common.device)?;
    let w = obj.parameters()?;
    let est = estimate_llc(&obj, &w, config)?;
    say!(
        "lambda_hat={:.3} std={:.3} n_beta={:.1} chains={}",
        est.lambda_hat,
        est.std,
        est.n_beta,
        est.per_chain.len()
    )?;
    let out = out_dir(common, "llc")?;
    write_json(
        &out,
        "llc.json",
        &json!({
            "lambda_hat": est.lambda_hat, "std": est.std, "per_chain": est.per_chain,
            "loss_at_center": est.loss_at_center, "mean_loss": est.mean_loss,
            "n_beta": est.n_beta, "epsilon": config.epsilon, "gamma": config.gamma,
            "draws": config.draws, "burn_in": config.burn_in, "params": obj.dim(), "jets": obj.n_samples(),
        }),
    )
}

fn path(
    common: &Common,
    to: &Path,
    points: usize,
    bezier_steps: usize,
    bezier_lr: f64,
    curvature: bool,
) -> Result<(), Error> {
    let data = jets(common)?;
    let obj = TaggerObjective::from_checkpoint_on(&common.checkpoint, data.clone(), common.device)?;
    let other = TaggerObjective::from_checkpoint_on(to, data, common.device)?;
    let (a, b) = (obj.parameters()?, other.parameters()?);
    if a.len() != b.len() {
        return Err(format!(
            "{} has {} parameters, {} has {}: not the same architecture",
            common.checkpoint.display(),
            a.len(),
            to.display(),
            b.len()
        )
        .into());
    }
    let what = Curvature {
        lambda_max: curvature,
        trace_samples: 0,
    };
    let straight = profile(&obj, &|t| lerp(&a, &b, t), points, what)?;
    let mut result = json!({
        "linear": straight.iter().map(|p| json!({"t": p.t, "loss": p.loss, "lambda_max": p.lambda_max})).collect::<Vec<_>>(),
        "linear_barrier": barrier(&straight),
    });
    say!("linear_barrier={:.5}", barrier(&straight))?;
    let mut curves = vec![("linear", straight)];
    if bezier_steps > 0 {
        let curve = train_bezier(
            &obj,
            &a,
            &b,
            &BezierConfig {
                steps: bezier_steps,
                lr: bezier_lr,
                batch_size: Some(64.min(obj.n_samples())),
                seed: common.seed,
            },
        )?;
        let bent = profile(&obj, &|t| curve.point(t), points, what)?;
        say!("bezier_barrier={:.5}", barrier(&bent))?;
        result["bezier"] = json!(bent
            .iter()
            .map(|p| json!({"t": p.t, "loss": p.loss, "lambda_max": p.lambda_max}))
            .collect::<Vec<_>>());
        result["bezier_barrier"] = json!(barrier(&bent));
        curves.push(("bezier", bent));
    }
    let out = out_dir(common, "path")?;
    write_json(&out, "path.json", &result)?;
    let series = |f: fn(&PathPoint) -> Option<f64>| -> Vec<(&str, Vec<(f64, f64)>)> {
        curves
            .iter()
            .map(|(name, c)| (*name, c.iter().filter_map(|p| Some((p.t, f(p)?))).collect()))
            .collect()
    };
    line_plot(
        &out.join("path.svg"),
        "loss along the path",
        "loss",
        &series(|p| Some(p.loss)),
    )?;
    if curvature {
        line_plot(
            &out.join("curvature.svg"),
            "top Hessian eigenvalue along the path",
            "lambda_max",
            &series(|p| p.lambda_max),
        )?;
    }
    Ok(())
}

/// One line per named curve of (t, y) points, t in [0, 1].
fn line_plot(
    svg: &Path,
    caption: &str,
    y_desc: &str,
    curves: &[(&str, Vec<(f64, f64)>)],
) -> Result<(), Error> {
    let (lo, hi) = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .fold((f64::MAX, f64::MIN), |(l, h), y| (l.min(y), h.max(y)));
    let pad = 0.05 * (hi - lo).abs().max(1e-9);
    let root = SVGBackend::new(svg, (640, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..1.0, lo - pad..hi + pad)?;
    chart.configure_mesh().x_desc("t").y_desc(y_desc).draw()?;
    for (k, (name, c)) in curves.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        chart
            .draw_series(LineSeries::new(c.iter().copied(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart.configure_series_labels().border_style(BLACK).draw()?;
    root.present()?;
    say!("wrote {}", svg.display())?;
    Ok(())
}

fn balance(common: &Common) -> Result<(), Error> {
    let obj =
        TaggerObjective::from_checkpoint_on(&common.checkpoint, jets(common)?, common.device)?;
    let w = obj.parameters()?;
    let mut g = vec![0.0; w.len()];
    let loss = obj.loss_grad(&w, None, &mut g);
    let sq = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>();
    let layers: Vec<serde_json::Value> = obj
        .layout()
        .into_iter()
        .map(
            |(name, r)| json!({"name": name, "weight_sq": sq(&w[r.clone()]), "grad_sq": sq(&g[r])}),
        )
        .collect();
    say!("loss={loss:.5} tensors={}", layers.len())?;
    let out = out_dir(common, "balance")?;
    write_json(
        &out,
        "balance.json",
        &json!({"loss": loss, "layers": layers}),
    )
}

//! SVG plots of a fit: loss versus N (at a few D) and versus D (at a few N), on
//! logarithmic N / D axes (loss linear, so that its ticks stay readable), with the observed runs, the fitted curves and the bootstrap 95% band.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::error::{Result, ScalingError};
use crate::fit::FitResult;
use crate::forms::ScalingLaw;
use crate::Runs;

const COLORS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
];

/// Writes the two-panel plot of `fit` to an SVG file. `band` holds bootstrap fit
/// parameters (may be empty: no band).
///
/// # Errors
/// [`ScalingError::Io`] when the file cannot be written; missing columns.
pub fn plot_fit(
    path: &Path,
    law: &dyn ScalingLaw,
    runs: &Runs,
    fit: &FitResult,
    band: &[Vec<f64>],
) -> Result<()> {
    let draw_err = |e: &dyn std::fmt::Display| ScalingError::Io {
        path: path.to_owned(),
        detail: e.to_string(),
    };
    let root = SVGBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(&e))?;
    let panels = root.split_evenly((1, 2));
    for (panel, (x_col, slice_col)) in panels.iter().zip([("N", "D"), ("D", "N")]) {
        draw_panel(panel, law, runs, fit, band, x_col, slice_col).map_err(|e| draw_err(&e))?;
    }
    root.present().map_err(|e| draw_err(&e))?;
    Ok(())
}

fn range(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        })
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() - 1) as f64 * q).round() as usize]
}

/// Predicted losses along `x_col` with every other column at its median and
/// `slice_col` at `slice_value`, for the given fit parameters.
fn predictions(
    law: &dyn ScalingLaw,
    runs: &Runs,
    xs: &[f64],
    x_col: &str,
    slice: Option<(&str, f64)>,
    theta: &[f64],
) -> Option<Vec<f64>> {
    let mut columns = BTreeMap::new();
    for name in ["N", "D", "U", "loss"] {
        if let Some(v) = runs.column(name) {
            columns.insert(name.to_owned(), vec![quantile(v, 0.5); xs.len()]);
        }
    }
    columns.insert(x_col.to_owned(), xs.to_vec());
    if let Some((name, value)) = slice.filter(|(name, _)| columns.contains_key(*name)) {
        columns.insert(name.to_owned(), vec![value; xs.len()]);
    }
    let grid = Runs::from_columns(columns).ok()?;
    let features = law.features(&grid).ok()?;
    let n_form = law.param_names().len();
    Some(
        features
            .iter()
            .map(|f| law.log_loss(&theta[..n_form], f).exp())
            .collect(),
    )
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    law: &dyn ScalingLaw,
    runs: &Runs,
    fit: &FitResult,
    band: &[Vec<f64>],
    x_col: &str,
    slice_col: &str,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let (Some(x), Some(loss)) = (runs.column(x_col), runs.column("loss")) else {
        return Ok(());
    };
    let caption = format!("{} fit: loss vs {x_col}", fit.form);
    let x_range = range(x);
    let mut chart = log_x_chart(area, &caption, x_col, x_range, range(loss), 2)?;
    chart.draw_series(
        x.iter()
            .zip(loss)
            .map(|(a, b)| Circle::new((*a, *b), 2, BLACK.mix(0.5).filled())),
    )?;
    let xs = log_grid(x_range);
    let slices = runs.column(slice_col).map_or_else(Vec::new, |v| {
        vec![quantile(v, 0.1), quantile(v, 0.5), quantile(v, 0.9)]
    });
    for (color, &s) in COLORS.iter().zip(&slices) {
        let Some(curve) = predictions(law, runs, &xs, x_col, Some((slice_col, s)), &fit.theta)
        else {
            continue;
        };
        if !band.is_empty() {
            let draws: Vec<Vec<f64>> = band
                .iter()
                .filter_map(|t| predictions(law, runs, &xs, x_col, Some((slice_col, s)), t))
                .collect();
            draw_band(&mut chart, &xs, &draws, 0.95, *color)?;
        }
        draw_curve(
            &mut chart,
            &xs,
            curve,
            *color,
            format!("{slice_col} = {s:.3e}"),
        )?;
    }
    draw_legend(&mut chart)
}

/// A chart's coordinates: log x, linear loss.
type LogXChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<LogCoord<f64>, RangedCoordf64>>;

/// A chart of loss against a log x axis spanning the data's ranges (with a margin), its
/// mesh drawn, loss labels with `decimals` digits.
fn log_x_chart<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    caption: &str,
    x_label: &str,
    (x_lo, x_hi): (f64, f64),
    (y_lo, y_hi): (f64, f64),
    decimals: usize,
) -> std::result::Result<LogXChart<'a, 'b>, Box<dyn std::error::Error>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (x_lo / 1.5..x_hi * 1.5).log_scale(),
            y_lo * 0.95..y_hi * 1.05,
        )?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("loss")
        .y_labels(10)
        .x_label_formatter(&|v| format!("{v:.0e}"))
        .y_label_formatter(&|v| format!("{v:.decimals$}"))
        .draw()?;
    Ok(chart)
}

/// 81 log-spaced points across the chart of [`log_x_chart`] for data in `x_lo..x_hi`.
fn log_grid((x_lo, x_hi): (f64, f64)) -> Vec<f64> {
    (0..=80)
        .map(|k| (x_lo / 1.5) * (2.25 * x_hi / x_lo).powf(f64::from(k) / 80.0))
        .collect()
}

/// The central `level` band of the curves `draws` (each over `xs`), if there are any.
fn draw_band(
    chart: &mut LogXChart<'_, '_>,
    xs: &[f64],
    draws: &[Vec<f64>],
    level: f64,
    color: RGBColor,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    if draws.is_empty() {
        return Ok(());
    }
    let tail = 0.5 * (1.0 - level);
    let at = |k: usize, q: f64| quantile(&draws.iter().map(|d| d[k]).collect::<Vec<_>>(), q);
    let mut poly: Vec<(f64, f64)> = (0..xs.len()).map(|k| (xs[k], at(k, tail))).collect();
    poly.extend((0..xs.len()).rev().map(|k| (xs[k], at(k, 1.0 - tail))));
    chart.draw_series(std::iter::once(Polygon::new(poly, color.mix(0.2))))?;
    Ok(())
}

/// A fitted curve over `xs`, with its legend entry.
fn draw_curve(
    chart: &mut LogXChart<'_, '_>,
    xs: &[f64],
    curve: Vec<f64>,
    color: RGBColor,
    label: String,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    chart
        .draw_series(LineSeries::new(
            xs.iter().copied().zip(curve),
            color.stroke_width(2),
        ))?
        .label(label)
        .legend(move |(a, b)| PathElement::new(vec![(a, b), (a + 20, b)], color.stroke_width(2)));
    Ok(())
}

/// The legend of the curves drawn with [`draw_curve`].
fn draw_legend<'a, 'b: 'a>(
    chart: &mut LogXChart<'a, 'b>,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// One group's fit, for [`plot_groups`].
pub struct GroupFit {
    /// The group's value (a model's name).
    pub group: String,
    /// The form fitted.
    pub law: Box<dyn ScalingLaw>,
    /// The group's runs (x in column `N`).
    pub runs: Runs,
    /// The fit.
    pub result: FitResult,
    /// Bootstrap fit parameters (may be empty: no band).
    pub band: Vec<Vec<f64>>,
}

/// Ten distinguishable colours (matplotlib's tab10).
const GROUP_COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Writes one panel with every group's runs (loss against the single variable, log x),
/// its fitted curve and, where bootstrapped, the central `level` band of the resampled
/// curves, one colour per group.
///
/// # Errors
/// [`ScalingError::Io`] when the file cannot be written.
pub fn plot_groups(path: &Path, fits: &[GroupFit], x_label: &str, level: f64) -> Result<()> {
    let draw_err = |e: &dyn std::fmt::Display| ScalingError::Io {
        path: path.to_owned(),
        detail: e.to_string(),
    };
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(&e))?;
    draw_groups(&root, fits, x_label, level).map_err(|e| draw_err(&e))?;
    root.present().map_err(|e| draw_err(&e))?;
    Ok(())
}

fn draw_groups(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    fits: &[GroupFit],
    x_label: &str,
    level: f64,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let all = |col: &str| -> Vec<f64> {
        fits.iter()
            .filter_map(|f| f.runs.column(col))
            .flatten()
            .copied()
            .collect()
    };
    let (x_range, y_range) = (range(&all("N")), range(&all("loss")));
    if !(x_range.0.is_finite() && y_range.0.is_finite()) {
        return Ok(());
    }
    let caption = format!("loss vs {x_label}");
    let mut chart = log_x_chart(area, &caption, x_label, x_range, y_range, 3)?;
    let xs = log_grid(x_range);
    for (fit, color) in fits.iter().zip(GROUP_COLORS.iter().cycle()) {
        let curve = |theta: &[f64]| predictions(fit.law.as_ref(), &fit.runs, &xs, "N", None, theta);
        let draws: Vec<Vec<f64>> = fit.band.iter().filter_map(|t| curve(t)).collect();
        draw_band(&mut chart, &xs, &draws, level, *color)?;
        if let (Some(x), Some(loss)) = (fit.runs.column("N"), fit.runs.column("loss")) {
            chart.draw_series(
                x.iter()
                    .zip(loss)
                    .map(|(a, b)| Circle::new((*a, *b), 3, color.filled())),
            )?;
        }
        if let Some(line) = curve(&fit.result.theta) {
            draw_curve(&mut chart, &xs, line, *color, fit.group.clone())?;
        }
    }
    draw_legend(&mut chart)
}

//! Run plots: the ROC curve as the tagging papers draw it (1/eps_B on a log axis versus
//! eps_S) and the training curve (losses and validation AUC per epoch).

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Result, TrainError};
use crate::metrics::Roc;
use crate::record::EpochRecord;

type Draw = std::result::Result<(), Box<dyn std::error::Error>>;

fn plot_error(path: &Path, e: &dyn std::fmt::Display) -> TrainError {
    TrainError::Plot {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Writes `roc.svg`-style curves: one line per (label, ROC).
///
/// # Errors
/// [`TrainError::Plot`] naming the file.
pub fn roc_svg(path: &Path, curves: &[(&str, &Roc)]) -> Result<()> {
    let draw = || -> Draw {
        let root = SVGBackend::new(path, (640, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "background rejection vs signal efficiency",
                ("sans-serif", 18),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..1.0, (1.0..1e5).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("signal efficiency eps_S")
            .y_desc("background rejection 1/eps_B")
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .draw()?;
        for (k, (label, roc)) in curves.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            let points = roc
                .tpr
                .iter()
                .zip(&roc.fpr)
                .filter(|(t, f)| **t > 0.0 && **f > 0.0)
                .map(|(t, f)| (*t, (1.0 / f).min(1e5)));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(label.to_string())
                .legend(move |(a, b)| PathElement::new(vec![(a, b), (a + 20, b)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| plot_error(path, &e))
}

/// Writes the training curve: train and validation loss, and validation AUC, per epoch.
///
/// # Errors
/// [`TrainError::Plot`] naming the file.
pub fn training_svg(path: &Path, history: &[EpochRecord]) -> Result<()> {
    let draw = || -> Draw {
        let root = SVGBackend::new(path, (900, 400)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(450);
        let epochs = history.len().max(1) as f64;
        let max_loss = history
            .iter()
            .flat_map(|r| [r.train_loss, r.val_loss])
            .filter(|v| v.is_finite())
            .fold(0.1_f64, f64::max);
        let mut chart = ChartBuilder::on(&left)
            .caption("loss", ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0.5..epochs + 0.5, 0.0..max_loss * 1.05)?;
        chart.configure_mesh().x_desc("epoch").draw()?;
        for (name, color, pick) in [
            (
                "train",
                BLUE,
                (|r: &EpochRecord| r.train_loss) as fn(&EpochRecord) -> f64,
            ),
            ("validation", RED, |r: &EpochRecord| r.val_loss),
        ] {
            chart
                .draw_series(LineSeries::new(
                    history.iter().map(|r| (r.epoch as f64, pick(r))),
                    color.stroke_width(2),
                ))?
                .label(name)
                .legend(move |(a, b)| PathElement::new(vec![(a, b), (a + 20, b)], color));
        }
        chart.configure_series_labels().border_style(BLACK).draw()?;
        let (lo, hi) = history
            .iter()
            .map(|r| r.val_auc)
            .fold((1.0_f64, 0.5_f64), |(l, h), v| (l.min(v), h.max(v)));
        let mut auc = ChartBuilder::on(&right)
            .caption("validation AUC", ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(
                0.5..epochs + 0.5,
                (lo - 0.01).max(0.0)..(hi + 0.01).min(1.0),
            )?;
        auc.configure_mesh().x_desc("epoch").draw()?;
        auc.draw_series(LineSeries::new(
            history.iter().map(|r| (r.epoch as f64, r.val_auc)),
            GREEN.stroke_width(2),
        ))?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| plot_error(path, &e))
}

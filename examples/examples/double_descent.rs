//! Double descent of min-norm least squares: the simulated test error against the
//! Belkin-Hsu-Xu formula, as the number of used features p crosses the number of samples
//! n. Prints a table and writes `double_descent.svg` (simulation points over the formula).
//!
//! Run: `cargo run --release -p noether-examples --example double_descent`

use noether_scaling::double_descent::{expected_test_error, simulate_test_error};
use plotters::prelude::*;

// candle allocates a buffer per operation; see `noether_equivariant::CachingAllocator`.
#[global_allocator]
static ALLOCATOR: noether_equivariant::CachingAllocator = noether_equivariant::CachingAllocator;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (total, n, sigma) = (120, 40, 0.5);
    let beta: Vec<f64> = (0..total).map(|k| 1.0 / (1.0 + k as f64).sqrt()).collect();
    println!("{:>4} {:>12} {:>12}", "p", "simulated", "formula");
    let mut points = Vec::new();
    let mut curve = Vec::new();
    for p in (2..total).step_by(2) {
        let used2: f64 = beta[..p].iter().map(|b| b * b).sum();
        let unused2: f64 = beta[p..].iter().map(|b| b * b).sum();
        let formula = expected_test_error(p, n, used2, unused2, sigma * sigma);
        let simulated = simulate_test_error(&beta, p, n, sigma, 200, p as u64);
        let shown = formula.map_or("diverges".to_owned(), |f| format!("{f:.3}"));
        println!("{p:>4} {simulated:>12.3} {shown:>12}");
        points.push((p as f64, simulated));
        if let Some(f) = formula {
            curve.push((p as f64, f));
        }
    }
    let root = SVGBackend::new("double_descent.svg", (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("min-norm least squares, n = {n}: test error vs p"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..total as f64, (0.5..50.0).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("features used p")
        .y_desc("test error")
        .draw()?;
    let below: Vec<(f64, f64)> = curve.iter().copied().filter(|c| c.0 < n as f64).collect();
    let above: Vec<(f64, f64)> = curve.iter().copied().filter(|c| c.0 > n as f64).collect();
    chart.draw_series(LineSeries::new(above, RED.stroke_width(2)))?;
    chart
        .draw_series(LineSeries::new(below, RED.stroke_width(2)))?
        .label("Belkin-Hsu-Xu formula")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart
        .draw_series(
            points
                .iter()
                .map(|&(x, y)| Circle::new((x, y.min(50.0)), 3, BLUE.filled())),
        )?
        .label("simulation (200 draws)")
        .legend(|(x, y)| Circle::new((x + 10, y), 3, BLUE.filled()));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    println!("wrote double_descent.svg");
    Ok(())
}

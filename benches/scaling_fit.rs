//! Scaling-fit benchmark: the full 4,500-start Chinchilla fit of the Besiroglu et al.
//! data plus 1,000 bootstrap refits, against the scipy implementation of the same
//! procedure (`benches/compare/scaling_fit_scipy.py`) in the same invocation.
//!
//! Run: `cargo bench --bench scaling_fit`. Prints both times and the ratio; skips with a
//! message when the shared reference data (or python3 with scipy) is absent.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use noether::scaling::{bootstrap, fit, Chinchilla, ColumnMap, FitConfig, Runs};

const BOOTSTRAP: usize = 1000;

fn main() {
    let csv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/scaling/besiroglu_svg_extracted_data.csv");
    if !csv.exists() {
        println!(
            "SKIPPED: {} not found (the shared reference folder is absent)",
            csv.display()
        );
        return;
    }
    let map = ColumnMap {
        n: "Model Size".into(),
        flops: Some("Training FLOP".into()),
        ..ColumnMap::default()
    };
    let runs = Runs::from_csv(&csv, &map)
        .expect("csv")
        .drop_highest_loss(5);
    let config = FitConfig::default();
    let threads = rayon::current_num_threads();

    let t0 = Instant::now();
    let result = fit(&Chinchilla, &runs, &config).expect("fit");
    let t1 = Instant::now();
    let boot = bootstrap(&Chinchilla, &runs, &result, &config, BOOTSTRAP, 0).expect("bootstrap");
    let t2 = Instant::now();
    let (fit_s, boot_s, total) = (
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64(),
        (t2 - t0).as_secs_f64(),
    );
    println!(
        "noether ({threads} threads) fit_seconds={fit_s:.3} bootstrap_seconds={boot_s:.3} total_seconds={total:.3} objective={:.7} alpha={:.4} beta={:.4} se_alpha={:.4}",
        result.objective,
        result.get("alpha").unwrap_or(f64::NAN),
        result.get("beta").unwrap_or(f64::NAN),
        boot.get("alpha").map_or(f64::NAN, |p| p.se)
    );

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/compare/scaling_fit_scipy.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&csv)
        .arg(BOOTSTRAP.to_string())
        .output();
    let Some(out) = out.ok().filter(|o| o.status.success()) else {
        println!("scipy reference unavailable (python3 with numpy, pandas and scipy needed)");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    let field = |key: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse::<f64>().ok())
    };
    if let (Some(sf), Some(st)) = (field("fit_seconds="), field("total_seconds=")) {
        println!(
            "ratio scipy/noether: total {:.1}x, fit {:.1}x, bootstrap {:.1}x",
            st / total,
            sf / fit_s,
            (st - sf) / boot_s
        );
    }
}

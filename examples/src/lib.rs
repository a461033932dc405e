//! End-to-end programs composing the noether crates; see `examples/`. The library holds
//! what several of them share.
//!
//! ```
//! let (mean, std) = noether_examples::mean_std(&[1.0, 2.0, 3.0]);
//! assert_eq!((mean, std), (2.0, 1.0));
//! ```

use std::path::PathBuf;

/// The workspace root (the directory of the top-level `Cargo.toml`): examples find
/// `configs/`, `data/`, `runs/` and `../shared` from here, wherever they are run from.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Mean and sample standard deviation (n - 1; 0 for a single value) of seeds' results.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// The seed-summary cells of a results table: `runs | AUC mean +- std | 1/eps_B(0.3)
/// mean +- std`, from one `(auc, rejection_at_0.3)` pair per seed.
pub fn seed_cells(runs: &[(f64, f64)]) -> String {
    let (auc, auc_s) = mean_std(&runs.iter().map(|r| r.0).collect::<Vec<_>>());
    let (rej, rej_s) = mean_std(&runs.iter().map(|r| r.1).collect::<Vec<_>>());
    format!(
        "{} | {auc:.4} +- {auc_s:.4} | {rej:.0} +- {rej_s:.0}",
        runs.len()
    )
}

/// The fields of one CSV line as the study examples and `noether sweep collect` write
/// them: comma-separated, a field quoted when it holds a comma or a quote (`""` inside).
///
/// ```
/// let fields = noether_examples::csv_fields(r#"a,"b,c","d""e",f"#);
/// assert_eq!(fields, ["a", "b,c", "d\"e", "f"]);
/// ```
pub fn csv_fields(line: &str) -> Vec<String> {
    let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

//! CSV run tables of scaling-law fits: read, rescale, evaluate a law on them.

use std::fmt::Write as _;
use std::path::Path;

use noether_scaling::{objective_at, Chinchilla, ColumnMap, Loss, Runs};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::{input_file, outcome};
use crate::mutate::{havoc, interesting_number_text, pick};
use crate::{Outcome, Target};

/// `Runs::from_csv` (`noether scaling fit RUNS.csv`).
pub struct CsvTarget;

impl Target for CsvTarget {
    fn name(&self) -> &'static str {
        "csv"
    }

    /// Chinchilla-like tables (N, D, loss, unique data U), synthetic so that the seeds
    /// need no file.
    fn seeds(&self) -> std::io::Result<Vec<Vec<u8>>> {
        Ok((0..4)
            .map(|k| {
                let mut text = String::from("N,D,loss,U\n");
                for i in 0..6 + 2 * k {
                    let n = 1e7 * 2f64.powi(i);
                    let d = 20.0 * n;
                    let loss = 1.69 + 406.4 / n.powf(0.34) + 410.7 / d.powf(0.28);
                    let _ = writeln!(text, "{n},{d},{loss:.6},{}", d / f64::from(k + 1));
                }
                text.into_bytes()
            })
            .collect())
    }

    fn mutate(&self, input: &[u8], corpus: &[Vec<u8>], rng: &mut ChaCha8Rng) -> Vec<u8> {
        if rng.random_range(0..10) < 6 {
            mutate_cells(&String::from_utf8_lossy(input), rng).into_bytes()
        } else {
            havoc(input, corpus, rng)
        }
    }

    fn execute(&self, input: &[u8], scratch: &Path) -> Outcome {
        let path = input_file(scratch, "input.csv", input);
        outcome(read_and_evaluate(&path))
    }
}

fn read_and_evaluate(path: &Path) -> noether_scaling::Result<f64> {
    let map = ColumnMap {
        unique: Some("U".into()),
        ..ColumnMap::default()
    };
    let runs = Runs::from_csv(path, &map)?
        .scaled("N", 1e-3)?
        .drop_highest_loss(1);
    let theta = [6.0, 6.0, 0.5, 0.34, 0.28];
    objective_at(&Chinchilla, &runs, &theta, Loss::default())
}

/// One cell replaced by an interesting number or junk, a row duplicated or dropped, a
/// column dropped or a header renamed.
fn mutate_cells(text: &str, rng: &mut ChaCha8Rng) -> String {
    let mut rows: Vec<Vec<String>> = text
        .lines()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    if rows.is_empty() {
        return text.to_owned();
    }
    let r = rng.random_range(0..rows.len());
    match rng.random_range(0..8) {
        0 => {
            let row = rows[r].clone();
            rows.insert(r, row);
        }
        1 => {
            rows.remove(r);
        }
        2 => {
            let c = rng.random_range(0..rows[0].len().max(1));
            for row in &mut rows {
                if c < row.len() {
                    row.remove(c);
                }
            }
        }
        3 => {
            let junk = ["N", "D", "loss", "U", "", "\"", "\"a,b\"", "loss\r", "é"];
            let c = rng.random_range(0..rows[0].len().max(1));
            if let Some(cell) = rows[0].get_mut(c) {
                (*pick(&junk, rng).expect("not empty")).clone_into(cell);
            }
        }
        _ => {
            let c = rng.random_range(0..rows[r].len().max(1));
            if let Some(cell) = rows[r].get_mut(c) {
                *cell = interesting_number_text(rng);
            }
        }
    }
    let mut out: Vec<String> = rows.into_iter().map(|r| r.join(",")).collect();
    out.push(String::new());
    out.join("\n")
}

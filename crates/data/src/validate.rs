//! Validation of jets as they are read, and the load report.

use std::fmt;
use std::path::PathBuf;

use crate::error::{DataError, Result};
use crate::jets::{JetSet, JetSetBuilder};
use crate::Layout;

/// Relative tolerance on E >= |p| for constituents stored in f32 (rounding of each
/// component is 6e-8 relative; 1e-5 leaves a wide margin).
pub const DEFAULT_MASS_SHELL_TOLERANCE: f32 = 1e-5;

/// What to do with jets that have no constituents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmptyJetPolicy {
    /// Drop them and count them in the [`LoadReport`].
    #[default]
    Skip,
    /// Fail with an error naming the jet.
    Error,
}

/// How strictly jets are checked while reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValidationPolicy {
    /// Relative tolerance on E >= |p| per constituent.
    pub mass_shell_tolerance: f32,
    /// Jets without constituents.
    pub empty_jets: EmptyJetPolicy,
}

impl Default for ValidationPolicy {
    fn default() -> Self {
        Self {
            mass_shell_tolerance: DEFAULT_MASS_SHELL_TOLERANCE,
            empty_jets: EmptyJetPolicy::Skip,
        }
    }
}

/// What a read did: which rows of the file were examined, kept and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// The file read.
    pub file: PathBuf,
    /// Its layout.
    pub layout: Layout,
    /// The file row of the first jet examined.
    pub first_row: usize,
    /// Jets examined: rows `first_row..first_row + jets_read`.
    pub jets_read: usize,
    /// Jets kept.
    pub jets_kept: usize,
    /// The file rows dropped because they had no constituents, ascending.
    pub skipped_empty: Vec<usize>,
}

impl LoadReport {
    /// Adds another report of the same file, of the rows that follow this one's.
    pub fn merge(&mut self, other: &Self) {
        self.jets_read += other.jets_read;
        self.jets_kept += other.jets_kept;
        self.skipped_empty.extend_from_slice(&other.skipped_empty);
    }

    /// The file row of each kept jet, in the order of the jet set read: per-jet outputs
    /// name jets by these, so that they line up with the file when rows were skipped.
    pub fn kept_rows(&self) -> Vec<usize> {
        let mut skipped = self.skipped_empty.iter().peekable();
        (self.first_row..self.first_row + self.jets_read)
            .filter(|row| {
                let skip = skipped.peek() == Some(&row);
                if skip {
                    skipped.next();
                }
                !skip
            })
            .collect()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): read {} jets, kept {}, skipped {} empty",
            self.file.display(),
            self.layout,
            self.jets_read,
            self.jets_kept,
            self.skipped_empty.len()
        )?;
        if !self.skipped_empty.is_empty() {
            write!(f, " (rows {})", row_list(&self.skipped_empty))?;
        }
        Ok(())
    }
}

/// Up to ten rows, then how many more.
pub fn row_list(rows: &[usize]) -> String {
    const SHOWN: usize = 10;
    let mut text: Vec<String> = rows.iter().take(SHOWN).map(ToString::to_string).collect();
    if rows.len() > SHOWN {
        text.push(format!("and {} more", rows.len() - SHOWN));
    }
    text.join(", ")
}

/// Receives jets from a layout reader, validates them and builds the [`JetSet`].
pub(crate) struct JetSink {
    file: PathBuf,
    momenta_dataset: String,
    label_dataset: String,
    policy: ValidationPolicy,
    builder: JetSetBuilder,
    report: LoadReport,
}

impl JetSink {
    pub(crate) fn new(
        file: PathBuf,
        layout: Layout,
        datasets: (&str, &str),
        policy: ValidationPolicy,
        first_row: usize,
    ) -> Self {
        Self {
            report: LoadReport {
                file: file.clone(),
                layout,
                first_row,
                jets_read: 0,
                jets_kept: 0,
                skipped_empty: Vec::new(),
            },
            file,
            momenta_dataset: datasets.0.to_owned(),
            label_dataset: datasets.1.to_owned(),
            policy,
            builder: JetSetBuilder::default(),
        }
    }

    fn invalid(&self, dataset: &str, row: usize, problem: String) -> DataError {
        DataError::InvalidJet {
            path: self.file.clone(),
            dataset: dataset.to_owned(),
            row,
            problem,
        }
    }

    /// Validates and adds jet `row` (its index in the file).
    pub(crate) fn push(
        &mut self,
        row: usize,
        constituents: &[[f32; 4]],
        label: f64,
        truth: Option<[f32; 4]>,
    ) -> Result<()> {
        self.report.jets_read += 1;
        let label = match label {
            0.0 => 0,
            1.0 => 1,
            other => {
                let problem = format!("label {other} is not 0 or 1");
                return Err(self.invalid(&self.label_dataset, row, problem));
            }
        };
        for (k, c) in constituents.iter().enumerate() {
            if let Some(problem) = constituent_problem(c, self.policy.mass_shell_tolerance) {
                let problem = format!("constituent {k} {c:?}: {problem}");
                return Err(self.invalid(&self.momenta_dataset, row, problem));
            }
        }
        if constituents.is_empty() {
            match self.policy.empty_jets {
                EmptyJetPolicy::Skip => {
                    self.report.skipped_empty.push(row);
                    return Ok(());
                }
                EmptyJetPolicy::Error => {
                    return Err(self.invalid(&self.momenta_dataset, row, "no constituents".into()));
                }
            }
        }
        if let Some(t) = truth {
            if t.iter().any(|x| !x.is_finite()) {
                return Err(self.invalid("truth", row, format!("non-finite truth vector {t:?}")));
            }
        }
        self.builder.push(constituents, label, truth);
        self.report.jets_kept += 1;
        Ok(())
    }

    pub(crate) fn finish(self) -> (JetSet, LoadReport) {
        (self.builder.finish(), self.report)
    }
}

/// Why a constituent is unphysical, if it is.
pub(crate) fn constituent_problem(c: &[f32; 4], tolerance: f32) -> Option<String> {
    if c.iter().any(|x| !x.is_finite()) {
        return Some("non-finite component".into());
    }
    let p = (f64::from(c[1]).powi(2) + f64::from(c[2]).powi(2) + f64::from(c[3]).powi(2)).sqrt();
    let e = f64::from(c[0]);
    if e < p * (1.0 - f64::from(tolerance)) {
        return Some(format!(
            "E = {e} GeV below |p| = {p} GeV (beyond relative tolerance {tolerance:e})"
        ));
    }
    None
}

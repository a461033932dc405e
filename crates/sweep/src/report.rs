//! Where a sweep stands ([`status`]) and what it found ([`collect`]: `results.csv`, one
//! row per finished trial with its varied settings and every metric of its
//! `metrics.json`, the input of `noether scaling fit`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Result, SweepError};
use crate::manifest::{self, Trial};
use crate::trial::{is_locked, record, run_dir, TrialState};

/// A trial's state as `noether sweep status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Finished: its `metrics.json` exists.
    Done,
    /// A worker holds its lock now, or Slurm runs its array task.
    Running,
    /// Queued in the batch system (Slurm lists its array task as pending).
    Queued,
    /// Its last attempt failed: the worker's error is in its `trial.json`, or Slurm ended
    /// its array task without a finished trial ([`SLURM_FAILURES`]).
    Failed,
    /// Started and stopped before the end (it resumes from `last.safetensors`).
    Interrupted,
    /// Not started.
    Pending,
}

impl Status {
    /// The word printed.
    pub fn name(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Running => "running",
            Self::Queued => "queued",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::Pending => "pending",
        }
    }
}

/// Slurm's states of an array task that ended without running to its end: failed,
/// cancelled (`scancel`), killed at its time or memory limit, lost with its node,
/// preempted. A resubmission resumes the trial from its `last.safetensors`.
pub const SLURM_FAILURES: [&str; 8] = [
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
];

/// The state of every trial, in manifest order. `slurm` holds what Slurm last said about
/// each trial's array task ([`crate::scheduler::slurm_states`]; empty when the sweep was
/// not submitted there): the run directory says done and running first, then Slurm's
/// pending, running and failure states, then the trial's own record.
///
/// # Errors
/// The manifest's errors.
pub fn status(dir: &Path, slurm: &BTreeMap<usize, String>) -> Result<Vec<(Trial, Status)>> {
    Ok(manifest::read(dir)?
        .into_iter()
        .map(|trial| {
            let run = run_dir(dir, &trial);
            let slurm = slurm.get(&trial.trial).map(String::as_str);
            let state = if run.is_finished() {
                Status::Done
            } else if is_locked(&run) || matches!(slurm, Some("RUNNING" | "CONFIGURING")) {
                Status::Running
            } else if slurm == Some("PENDING") {
                Status::Queued
            } else if slurm.is_some_and(|s| SLURM_FAILURES.contains(&s))
                || record(&run).is_some_and(|r| r.state == TrialState::Failed)
            {
                Status::Failed
            } else if run.last_checkpoint().is_file() || record(&run).is_some() {
                Status::Interrupted
            } else {
                Status::Pending
            };
            (trial, state)
        })
        .collect())
}

/// The scalar fields of a serialised record, nested tables flattened with dots
/// (`intervals.auc.low`); arrays (the data records) are left out. TOML rather than JSON
/// because TOML writes an infinite rejection (a tagger that lets no background jet pass)
/// as `inf` and a NaN bound as `nan`, where JSON would write `null` for both.
fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::Array(_) => {}
        toml::Value::String(s) => {
            out.insert(prefix.to_owned(), s.clone());
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

/// A CSV field: quoted when it holds a comma, a quote or a newline.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Writes `DIR/results.csv`: one row per finished trial (columns `trial`, `id`, the
/// varied settings, every metric of `metrics.json`, `train_seconds`: the summed epoch
/// times of `history.csv`). Returns the file and the number of rows.
///
/// # Errors
/// The manifest's errors; a finished trial whose records cannot be read.
pub fn collect(dir: &Path) -> Result<(PathBuf, usize)> {
    let trials = manifest::read(dir)?;
    let mut rows = Vec::new();
    let (mut settings_keys, mut metric_keys) = (BTreeSet::new(), BTreeSet::new());
    for trial in &trials {
        let run = run_dir(dir, trial);
        if !run.is_finished() {
            continue;
        }
        let summary = run.metrics()?;
        let mut metrics = BTreeMap::new();
        let summary = toml::Value::try_from(&summary).map_err(|e| {
            SweepError::from(noether_train::TrainError::Record {
                path: run.metrics_path(),
                message: e.to_string(),
            })
        })?;
        flatten("", &summary, &mut metrics);
        let train_seconds: f64 = run.history()?.iter().map(|r| r.seconds).sum();
        metrics.insert("train_seconds".into(), train_seconds.to_string());
        settings_keys.extend(trial.settings.keys().cloned());
        metric_keys.extend(metrics.keys().cloned());
        rows.push((trial, metrics));
    }
    let mut csv = String::from("trial,id");
    for key in settings_keys.iter().chain(&metric_keys) {
        let _ = write!(csv, ",{}", field(key));
    }
    csv.push('\n');
    for (trial, metrics) in &rows {
        let _ = write!(csv, "{},{}", trial.trial, trial.id);
        for key in &settings_keys {
            let value = trial
                .settings
                .get(key)
                .map_or_else(String::new, |v| match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
            let _ = write!(csv, ",{}", field(&value));
        }
        for key in &metric_keys {
            let _ = write!(
                csv,
                ",{}",
                field(metrics.get(key).map_or("", String::as_str))
            );
        }
        csv.push('\n');
    }
    let path = dir.join("results.csv");
    noether_train::checkpoint::write_atomically(&path, csv.as_bytes())
        .map_err(|e| SweepError::Train(Box::new(e)))?;
    Ok((path, rows.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_metrics_flatten_with_dots_and_fields_are_quoted() {
        #[derive(serde::Serialize)]
        struct Record {
            auc: f64,
            rejection: f64,
            intervals: BTreeMap<String, BTreeMap<String, f64>>,
            data: Vec<u8>,
            model: String,
            jets: usize,
        }
        let record = Record {
            auc: 0.9,
            rejection: f64::INFINITY,
            intervals: BTreeMap::from([(
                "auc".to_owned(),
                BTreeMap::from([("low".to_owned(), 0.8), ("high".to_owned(), f64::NAN)]),
            )]),
            data: vec![1],
            model: "pfn".into(),
            jets: 2000,
        };
        let mut out = BTreeMap::new();
        flatten("", &toml::Value::try_from(&record).unwrap(), &mut out);
        assert_eq!(out["auc"], "0.9");
        assert_eq!(out["jets"], "2000");
        assert_eq!(out["intervals.auc.low"], "0.8");
        assert_eq!(out["model"], "pfn");
        // What pandas, Python's float() and Rust's parse read as infinity and NaN.
        assert_eq!(out["rejection"], "inf");
        assert_eq!(out["intervals.auc.high"], "nan");
        assert!(!out.contains_key("data"));
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("[1, 2]"), "\"[1, 2]\"");
        assert_eq!(field("x\"y"), "\"x\"\"y\"");
        assert_eq!(field("plain"), "plain");
    }
}

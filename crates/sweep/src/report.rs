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
    /// A worker holds its lock now.
    Running,
    /// Queued in the batch system (Slurm's `squeue` lists its array task as pending).
    Queued,
    /// Its last attempt failed (the error is in its `trial.json`).
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

/// The state of every trial, in manifest order. `queued` holds the array indices that
/// the batch system lists as pending.
///
/// # Errors
/// The manifest's errors.
pub fn status(dir: &Path, queued: &BTreeSet<usize>) -> Result<Vec<(Trial, Status)>> {
    Ok(manifest::read(dir)?
        .into_iter()
        .map(|trial| {
            let run = run_dir(dir, &trial);
            let state = if run.is_finished() {
                Status::Done
            } else if is_locked(&run) {
                Status::Running
            } else if queued.contains(&trial.trial) {
                Status::Queued
            } else if record(&run).is_some_and(|r| r.state == TrialState::Failed) {
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

/// The scalar fields of a JSON object, nested objects flattened with dots
/// (`intervals.auc.low`); arrays (the data records) are left out.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::Array(_) => {}
        serde_json::Value::String(s) => {
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
        flatten(
            "",
            &serde_json::to_value(&summary).expect("a summary serialises"),
            &mut metrics,
        );
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
        let v: serde_json::Value = serde_json::from_str(
            r#"{"auc": 0.9, "intervals": {"auc": {"low": 0.8}}, "data": [1], "model": "pfn"}"#,
        )
        .unwrap();
        let mut out = BTreeMap::new();
        flatten("", &v, &mut out);
        assert_eq!(out["auc"], "0.9");
        assert_eq!(out["intervals.auc.low"], "0.8");
        assert_eq!(out["model"], "pfn");
        assert!(!out.contains_key("data"));
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("[1, 2]"), "\"[1, 2]\"");
        assert_eq!(field("x\"y"), "\"x\"\"y\"");
        assert_eq!(field("plain"), "plain");
    }
}

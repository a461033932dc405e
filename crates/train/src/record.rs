//! The run directory as a type: [`RunDir`] writes and reads `config.toml`,
//! `history.csv`, `metrics.json` ([`RunSummary`]) and names the checkpoints, so that
//! the trainer, the examples and the reports share one definition of each file instead
//! of string keys of parsed JSON.
//!
//! ```
//! use noether_train::{EpochRecord, RunDir};
//!
//! let dir = RunDir::new(tempfile::tempdir()?.path().join("run"));
//! let history = vec![EpochRecord { epoch: 1, train_loss: 0.6, val_loss: 0.5, val_acc: 0.8, val_auc: 0.9, lr: 1e-3, seconds: 2.0 }];
//! dir.write_history(&history)?;
//! assert_eq!(dir.history()?, history);
//! assert!(!dir.is_finished());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomically;
use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::metrics::Interval;

/// One epoch's record (a row of `history.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Validation loss.
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_acc: f64,
    /// Validation AUC.
    pub val_auc: f64,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Wall-clock seconds of the epoch (training and validation).
    pub seconds: f64,
}

/// The columns of `history.csv`, in order.
const HISTORY_HEADER: &str = "epoch,train_loss,val_loss,val_acc,val_auc,lr,seconds";

/// What reading one data file kept and dropped (noether-data's load report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataRecord {
    /// `train`, `val` or `test`.
    pub role: String,
    /// The file.
    pub file: PathBuf,
    /// Its layout.
    pub layout: String,
    /// Jets examined.
    pub jets_read: usize,
    /// Jets kept (before any subset).
    pub jets_kept: usize,
    /// The file rows dropped because they had no constituents.
    pub skipped_empty: Vec<usize>,
}

impl DataRecord {
    /// The record of `report`, for the file playing `role`.
    pub fn new(role: &str, report: &noether_data::LoadReport) -> Self {
        Self {
            role: role.to_owned(),
            file: report.file.clone(),
            layout: report.layout.name().to_owned(),
            jets_read: report.jets_read,
            jets_kept: report.jets_kept,
            skipped_empty: report.skipped_empty.clone(),
        }
    }
}

/// Reads a rejection back: JSON has no infinity, and serde_json writes the infinite
/// 1/eps_B of a tagger that lets no background jet pass as `null`.
fn rejection<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
}

/// The metrics of the best checkpoint on one test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestMetrics {
    /// Jets scored.
    pub test_jets: usize,
    /// Cross-entropy.
    pub test_loss: f64,
    /// Accuracy at a score of 0.5.
    pub acc: f64,
    /// ROC AUC.
    pub auc: f64,
    /// 1/eps_B at eps_S = 0.3.
    #[serde(rename = "rejection_at_0.3", deserialize_with = "rejection")]
    pub rejection_at_0_3: f64,
    /// 1/eps_B at eps_S = 0.5.
    #[serde(rename = "rejection_at_0.5", deserialize_with = "rejection")]
    pub rejection_at_0_5: f64,
    /// Bootstrap 68% intervals of acc, auc, rejection_at_0.3, rejection_at_0.5.
    pub intervals: HashMap<String, Interval>,
}

/// What a finished run reports (`metrics.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Model kind.
    pub model: String,
    /// Test accuracy.
    pub acc: f64,
    /// Test ROC AUC.
    pub auc: f64,
    /// Test 1/eps_B at eps_S = 0.3 (infinite when no background jet passes: `null` in
    /// the JSON).
    #[serde(rename = "rejection_at_0.3", deserialize_with = "rejection")]
    pub rejection_at_0_3: f64,
    /// Test 1/eps_B at eps_S = 0.5.
    #[serde(rename = "rejection_at_0.5", deserialize_with = "rejection")]
    pub rejection_at_0_5: f64,
    /// Test cross-entropy of the best checkpoint.
    #[serde(default)]
    pub test_loss: f64,
    /// Bootstrap 68% intervals of acc, auc, rejection_at_0.3, rejection_at_0.5.
    pub intervals: HashMap<String, Interval>,
    /// Training jets.
    pub train_jets: usize,
    /// Test jets.
    pub test_jets: usize,
    /// The metrics on each extra test set (`data.extra_tests`), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_tests: BTreeMap<String, TestMetrics>,
    /// Parameters of the model (adapters included; BatchNorm running statistics not).
    pub params: usize,
    /// Parameters the optimizer updated (all but the frozen ones).
    pub trainable_params: usize,
    /// Parameters that are not zero (after pruning: `1 - nonzero_params / params` is the
    /// model's sparsity).
    pub nonzero_params: usize,
    /// Forward FLOPs of one jet at `data.n_max` constituents
    /// (`TaggerModel::forward_flops`: the reference implementation's matrix products).
    #[serde(default)]
    pub forward_flops_per_jet: f64,
    /// Training FLOPs: 3 x forward (forward + backward) per training jet and epoch run.
    #[serde(default)]
    pub train_flops: f64,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
    /// Epochs run.
    pub epochs: usize,
    /// Epoch of the best validation AUC (its weights were tested); 0 is the starting
    /// weights (with `train.eval_on_start`).
    pub best_epoch: usize,
    /// Validation AUC of the starting weights (only with `train.eval_on_start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_val_auc: Option<f64>,
    /// What reading each data file kept and dropped.
    #[serde(default)]
    pub data: Vec<DataRecord>,
}

/// The settings a resumed run may change: where and how fast it runs, how long, and how
/// its test metrics are bootstrapped. Anything else would make `config.toml` claim the
/// whole run used settings it did not.
const RESUMABLE_CHANGES: [&str; 5] = [
    "train.threads",
    "train.device",
    "train.epochs",
    "train.bootstrap",
    "train.eval_batch_size",
];

/// The dotted keys whose values differ between two configs, with both values.
fn differences(old: &TrainConfig, new: &TrainConfig) -> Vec<String> {
    fn flatten(
        prefix: &str,
        value: &toml::Value,
        out: &mut std::collections::BTreeMap<String, String>,
    ) {
        match value {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.to_string());
            }
        }
    }
    let table = |c: &TrainConfig| {
        let mut out = std::collections::BTreeMap::new();
        let value: toml::Value = c
            .to_toml()
            .parse::<toml::Table>()
            .map_or(toml::Value::Boolean(false), toml::Value::Table);
        flatten("", &value, &mut out);
        out
    };
    let (a, b) = (table(old), table(new));
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k) && !RESUMABLE_CHANGES.contains(&k.as_str()))
        .map(|k| {
            let show = |v: Option<&String>| v.map_or_else(|| "(absent)".to_owned(), Clone::clone);
            format!("{k} {} -> {}", show(a.get(k)), show(b.get(k)))
        })
        .collect()
}

/// A run directory: where its files are and how each is written and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// The run directory at `path` (nothing is created yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.path.join("config.toml")
    }

    /// `metrics.json`.
    pub fn metrics_path(&self) -> PathBuf {
        self.path.join("metrics.json")
    }

    /// `history.csv`.
    pub fn history_path(&self) -> PathBuf {
        self.path.join("history.csv")
    }

    /// `best.safetensors`: the weights of the best validation AUC.
    pub fn best_checkpoint(&self) -> PathBuf {
        self.path.join("best.safetensors")
    }

    /// `last.safetensors`: the latest weights with optimizer and RNG state.
    pub fn last_checkpoint(&self) -> PathBuf {
        self.path.join("last.safetensors")
    }

    /// `history.json`: the epochs so far, beside `last.safetensors` for resuming.
    pub fn resume_history_path(&self) -> PathBuf {
        self.path.join("history.json")
    }

    /// Whether the directory holds (part of) a run: a checkpoint or metrics.
    pub fn holds_run(&self) -> bool {
        self.best_checkpoint().is_file()
            || self.last_checkpoint().is_file()
            || self.metrics_path().is_file()
    }

    /// Makes the directory ready for a run of `config`, refusing to clobber another:
    /// removes temporary files that killed writers left (`.<name>.tmp-<pid>`; the run's
    /// lock guarantees no writer is alive); without `resume`, a directory holding a run is
    /// refused unless `force` (which then removes that run's files); with `resume`, a run
    /// made with other settings (beyond threads, device, epochs, bootstrap, evaluation
    /// batch) is refused unless `force`, naming every changed key. Nothing is written.
    ///
    /// # Errors
    /// [`TrainError::RunDirectory`]; I/O errors.
    pub fn prepare(&self, config: &TrainConfig, resume: bool, force: bool) -> Result<()> {
        self.create()?;
        self.remove_temporaries()?;
        let refuse = |message: String| TrainError::RunDirectory {
            path: self.path.clone(),
            message,
        };
        if resume {
            if !self.last_checkpoint().is_file() {
                return Err(refuse("there is no last.safetensors to resume from".into()));
            }
            if self.config_path().is_file() && !force {
                let changed = differences(&self.config()?, config);
                if !changed.is_empty() {
                    return Err(refuse(format!(
                        "--resume with settings this run was not made with: {}; resume with the run's own config.toml, or pass --force",
                        changed.join(", ")
                    )));
                }
            }
        } else if self.holds_run() {
            if !force {
                return Err(refuse(
                    "holds a run (checkpoints or metrics.json): continue it with --resume, choose another --out, or pass --force to overwrite it".into(),
                ));
            }
            for file in [
                self.best_checkpoint(),
                self.last_checkpoint(),
                self.metrics_path(),
                self.history_path(),
                self.resume_history_path(),
            ] {
                if file.is_file() {
                    std::fs::remove_file(&file).map_err(|source| TrainError::Io {
                        path: file.clone(),
                        source,
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Removes `.<name>.tmp-<pid>` files (atomic writes that a killed process left).
    fn remove_temporaries(&self) -> Result<()> {
        let entries = std::fs::read_dir(&self.path).map_err(|source| TrainError::Io {
            path: self.path.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".tmp-") {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|source| TrainError::Io { path, source })?;
            }
        }
        Ok(())
    }

    /// Takes the run's lock (`.lock`, an OS file lock released when the process ends):
    /// one process per run directory.
    ///
    /// # Errors
    /// [`TrainError::RunDirectory`] naming the lock when another process holds it.
    pub fn lock(&self) -> Result<std::fs::File> {
        self.create()?;
        let path = self.path.join(".lock");
        let file = std::fs::File::create(&path).map_err(|source| TrainError::Io {
            path: path.clone(),
            source,
        })?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(TrainError::RunDirectory {
                path: self.path.clone(),
                message: format!(
                    "another process is running in it ({} is locked)",
                    path.display()
                ),
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(TrainError::Io { path, source }),
        }
    }

    /// Whether the run finished (its `metrics.json` exists).
    pub fn is_finished(&self) -> bool {
        self.metrics_path().is_file()
    }

    /// Creates the directory.
    ///
    /// # Errors
    /// [`TrainError::Io`].
    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.path).map_err(|source| TrainError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Writes the resolved `config.toml` atomically.
    ///
    /// # Errors
    /// [`TrainError::Io`].
    pub fn write_config(&self, config: &TrainConfig) -> Result<()> {
        self.create()?;
        write_atomically(&self.config_path(), config.to_toml().as_bytes())
    }

    /// The run's `config.toml`.
    ///
    /// # Errors
    /// I/O and config errors naming the file.
    pub fn config(&self) -> Result<TrainConfig> {
        TrainConfig::load(&self.config_path())
    }

    /// Writes `metrics.json` atomically.
    ///
    /// # Errors
    /// [`TrainError::Io`].
    pub fn write_metrics(&self, summary: &RunSummary) -> Result<()> {
        self.create()?;
        let json = serde_json::to_string_pretty(summary).expect("summary serialises");
        write_atomically(&self.metrics_path(), json.as_bytes())
    }

    /// The run's `metrics.json`.
    ///
    /// # Errors
    /// [`TrainError::Io`]; [`TrainError::Record`] naming the file for malformed JSON.
    pub fn metrics(&self) -> Result<RunSummary> {
        let path = self.metrics_path();
        let text = read(&path)?;
        serde_json::from_str(&text).map_err(|e| TrainError::Record {
            path,
            message: e.to_string(),
        })
    }

    /// Writes `history.csv` atomically.
    ///
    /// # Errors
    /// [`TrainError::Io`].
    pub fn write_history(&self, history: &[EpochRecord]) -> Result<()> {
        self.create()?;
        let mut csv = format!("{HISTORY_HEADER}\n");
        for r in history {
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{}",
                r.epoch, r.train_loss, r.val_loss, r.val_acc, r.val_auc, r.lr, r.seconds
            );
        }
        write_atomically(&self.history_path(), csv.as_bytes())
    }

    /// The run's `history.csv`.
    ///
    /// # Errors
    /// [`TrainError::Io`]; [`TrainError::Record`] naming the file and line of a row
    /// that is not seven numbers under the expected header.
    pub fn history(&self) -> Result<Vec<EpochRecord>> {
        let path = self.history_path();
        let text = read(&path)?;
        let bad = |line: usize, message: String| TrainError::Record {
            path: path.clone(),
            message: format!("line {line}: {message}"),
        };
        let mut lines = text.lines();
        match lines.next() {
            Some(HISTORY_HEADER) => {}
            other => {
                return Err(bad(
                    1,
                    format!("header {other:?}, expected \"{HISTORY_HEADER}\""),
                ))
            }
        }
        lines
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(k, line)| {
                let values: Vec<f64> = line
                    .split(',')
                    .map(|v| v.trim().parse::<f64>())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| bad(k + 2, format!("'{line}': {e}")))?;
                let [epoch, train_loss, val_loss, val_acc, val_auc, lr, seconds] = values[..]
                else {
                    return Err(bad(
                        k + 2,
                        format!("'{line}' has {} columns, not 7", values.len()),
                    ));
                };
                Ok(EpochRecord {
                    epoch: epoch as usize,
                    train_loss,
                    val_loss,
                    val_acc,
                    val_auc,
                    lr,
                    seconds,
                })
            })
            .collect()
    }

    /// Writes the epochs so far beside `last.safetensors` (for resuming).
    ///
    /// # Errors
    /// [`TrainError::Io`].
    pub fn write_resume_history(&self, history: &[EpochRecord]) -> Result<()> {
        let json = serde_json::to_string(history).expect("history serialises");
        write_atomically(&self.resume_history_path(), json.as_bytes())
    }

    /// The epochs saved for resuming.
    ///
    /// # Errors
    /// [`TrainError::Io`]; [`TrainError::Checkpoint`] for malformed JSON.
    pub fn resume_history(&self) -> Result<Vec<EpochRecord>> {
        let path = self.resume_history_path();
        let text = read(&path)?;
        serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
            path,
            message: e.to_string(),
        })
    }

    /// Every run directory directly under `root` (sorted by name), for reports over a
    /// study; directories without `config.toml` are not runs and are left out.
    ///
    /// # Errors
    /// [`TrainError::Io`] when `root` cannot be listed.
    pub fn list(root: &Path) -> Result<Vec<Self>> {
        let entries = std::fs::read_dir(root).map_err(|source| TrainError::Io {
            path: root.to_owned(),
            source,
        })?;
        let mut runs: Vec<Self> = entries
            .filter_map(std::result::Result::ok)
            .map(|e| Self::new(e.path()))
            .filter(|r| r.config_path().is_file())
            .collect();
        runs.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(runs)
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| TrainError::Io {
        path: path.to_owned(),
        source,
    })
}

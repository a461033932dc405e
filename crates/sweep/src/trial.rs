//! Running one trial, as `noether sweep run DIR --trial I` does on any worker: the
//! trial's directory is locked while it runs (an OS file lock, released when the
//! process ends however it ends), a finished trial is skipped, an interrupted one
//! resumes from its `last.safetensors`, and a directory holding a run with other
//! settings is refused rather than overwritten. Each trial keeps its state in
//! `trial.json` beside its run files.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use noether_train::{RunDir, TrainConfig, TrainJob};
use serde::{Deserialize, Serialize};

use crate::error::{io, Result, SweepError};
use crate::manifest::{self, Trial};

/// What a trial's `trial.json` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialState {
    /// A worker started it.
    Running,
    /// It finished (its `metrics.json` exists).
    Done,
    /// Its last attempt failed.
    Failed,
}

/// A trial's state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// The state after the last attempt (or during it).
    pub state: TrialState,
    /// The error of a failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Attempts started.
    pub attempts: usize,
}

/// What `run` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The trial had already finished.
    Skipped,
    /// The trial ran to its end (`resumed`: from an interrupted attempt).
    Finished {
        /// Whether it continued from `last.safetensors`.
        resumed: bool,
    },
}

/// The trial's run directory.
pub fn run_dir(dir: &Path, trial: &Trial) -> RunDir {
    RunDir::new(dir.join(&trial.dir))
}

fn lock_path(run: &RunDir) -> PathBuf {
    // Not the run directory's own `.lock`, which the training loop takes inside.
    run.path().join("trial.lock")
}

fn record_path(run: &RunDir) -> PathBuf {
    run.path().join("trial.json")
}

/// The trial's state file, if any.
pub fn record(run: &RunDir) -> Option<TrialRecord> {
    let text = std::fs::read_to_string(record_path(run)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_record(run: &RunDir, record: &TrialRecord) -> Result<()> {
    let text = serde_json::to_string_pretty(record).expect("the record serialises");
    Ok(noether_train::checkpoint::write_atomically(
        &record_path(run),
        text.as_bytes(),
    )?)
}

/// Whether another process holds the trial's lock now.
pub fn is_locked(run: &RunDir) -> bool {
    let Ok(file) = File::open(lock_path(run)) else {
        return false;
    };
    // A shared lock: two `status` calls do not block each other.
    matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
}

/// Takes the trial's lock, retrying for a second: `status` holds it for an instant
/// while it looks whether a worker runs the trial.
fn take_lock(file: &File, lock: &Path, trial: usize) -> Result<()> {
    for attempt in 0..10 {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) if attempt < 9 => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(TryLockError::WouldBlock) => break,
            Err(TryLockError::Error(e)) => return Err(io(lock)(e)),
        }
    }
    Err(SweepError::Locked {
        trial,
        lock: lock.to_owned(),
    })
}

/// `a` and `b` up to the thread count, which a worker may choose.
fn same_run(mut a: TrainConfig, b: &TrainConfig) -> bool {
    a.train.threads = b.train.threads;
    &a == b
}

/// Runs trial `index` of the sweep in `dir` (see the module docs); `threads` overrides
/// the config's thread count (0: all cores).
///
/// # Errors
/// [`SweepError::NoSuchTrial`], [`SweepError::Locked`] when another worker runs it,
/// [`SweepError::Clobber`] for a directory of another run, the manifest's and the
/// training's errors (a failed attempt is recorded in `trial.json`).
pub fn run(dir: &Path, index: usize, threads: Option<usize>, progress: bool) -> Result<Outcome> {
    let trials = manifest::read(dir)?;
    let trial = trials.get(index).ok_or(SweepError::NoSuchTrial {
        trial: index,
        trials: trials.len(),
    })?;
    let run = run_dir(dir, trial);
    run.create()?;
    let lock = lock_path(&run);
    let file = File::create(&lock).map_err(io(&lock))?;
    take_lock(&file, &lock, index)?;
    if run.is_finished() {
        return Ok(Outcome::Skipped);
    }
    let mut config = TrainConfig::from_toml(&trial.config, &manifest::manifest_path(dir))?;
    // `data.config` (a weaver data config) defines the inputs, as on `noether train`.
    config.apply_data_config()?;
    if let Some(t) = threads {
        config.train.threads = t;
    }
    if run.config_path().is_file() && !same_run(run.config()?, &config) {
        return Err(SweepError::Clobber {
            trial: index,
            dir: run.path().to_owned(),
        });
    }
    let resumed = run.last_checkpoint().is_file();
    let attempts = record(&run).map_or(0, |r| r.attempts) + 1;
    write_record(
        &run,
        &TrialRecord {
            state: TrialState::Running,
            error: None,
            attempts,
        },
    )?;
    let job = TrainJob {
        resume: resumed,
        progress,
        ..TrainJob::new(config, run.path())
    };
    let result = job.run();
    let (state, error) = match &result {
        Ok(_) => (TrialState::Done, None),
        Err(e) => (TrialState::Failed, Some(e.to_string())),
    };
    write_record(
        &run,
        &TrialRecord {
            state,
            error,
            attempts,
        },
    )?;
    drop(file);
    result?;
    Ok(Outcome::Finished { resumed })
}

//! # noether-sweep
//!
//! Sweeps of independent training runs, planned once and run anywhere: a sweep file
//! (a base config, data files, fixed overrides and axes by dotted config key) is planned
//! into `DIR/manifest.jsonl` ([`plan()`], [`manifest::write`]), one resolved and
//! validated trial per line with a stable id; each trial runs as `noether sweep run DIR
//! --trial I` ([`trial::run`]: locked, skipped when finished, resumed when
//! interrupted), as processes on this machine ([`scheduler::run_local`]) or as a Slurm
//! job array ([`scheduler::write_sbatch`], [`scheduler::submit_slurm`]); [`status`]
//! and [`collect`] read the run directories (`results.csv` feeds `noether scaling
//! fit`). We never schedule beyond a local process pool: Slurm does.
//!
//! ```
//! use std::io::Write;
//!
//! let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
//! let dir = tempfile::tempdir()?;
//! let sweep = dir.path().join("sweep.toml");
//! let configs = root.join("configs").display().to_string();
//! let data = root.join("data").display().to_string();
//! write!(
//!     std::fs::File::create(&sweep)?,
//!     "base = \"{configs}/pfn-cpu.toml\"\ndata = \"{data}/train.h5\"\nval_data = \"{data}/val.h5\"\ntest_data = \"{data}/test.h5\"\n[set]\n\"train.epochs\" = 1\n[axes]\n\"data.train_jets\" = [200, 400]\n\"train.seed\" = [0, 1]\n"
//! )?;
//! let trials = noether_sweep::plan(&sweep)?;
//! assert_eq!(trials.len(), 4);
//! assert_eq!(noether_sweep::plan::describe(&trials[1].settings), "data.train_jets=200,train.seed=1");
//! // Planning again gives the same ids.
//! assert_eq!(noether_sweep::plan(&sweep)?[3].id, trials[3].id);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
pub mod manifest;
pub mod plan;
mod report;
pub mod scheduler;
pub mod trial;

pub use error::{Result, SweepError};
pub use manifest::Trial;
pub use plan::{plan, MAX_TRIALS};
pub use report::{collect, status, Status, SLURM_FAILURES};

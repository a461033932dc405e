//! The plan on disk: `DIR/manifest.jsonl`, one resolved trial per line, and
//! `DIR/sweep.json` with the manifest's hash, so that a manifest edited after planning
//! is refused instead of run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io, Result, SweepError};

/// FNV-1a, 64 bit: a hash fixed by definition (the manifest's check and trial ids must
/// not change with the toolchain).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One trial of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// Its position in the manifest (what `--trial` and Slurm's array index name).
    pub trial: usize,
    /// Its stable id (a hash of its resolved config as written).
    pub id: String,
    /// Its run directory, relative to the sweep directory.
    pub dir: PathBuf,
    /// The settings this trial varies (dotted config keys, and `config` for the
    /// configs axis).
    pub settings: BTreeMap<String, toml::Value>,
    /// The resolved run config (TOML).
    pub config: String,
}

/// The record beside the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SweepRecord {
    /// The sweep file planned.
    sweep_file: PathBuf,
    /// FNV-1a (64 bit, hex) of `manifest.jsonl`.
    manifest_fnv1a: String,
    /// Trials planned.
    trials: usize,
}

/// `DIR/manifest.jsonl`.
pub fn manifest_path(dir: &Path) -> PathBuf {
    dir.join("manifest.jsonl")
}

fn record_path(dir: &Path) -> PathBuf {
    dir.join("sweep.json")
}

/// Writes the manifest and its record atomically (each file whole or not at all).
///
/// # Errors
/// [`SweepError::Io`].
pub fn write(dir: &Path, sweep_file: &Path, trials: &[Trial]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let text: String = trials
        .iter()
        .map(|t| serde_json::to_string(t).expect("a trial serialises") + "\n")
        .collect();
    let record = SweepRecord {
        sweep_file: sweep_file.to_owned(),
        manifest_fnv1a: format!("{:016x}", fnv1a(text.as_bytes())),
        trials: trials.len(),
    };
    let manifest = manifest_path(dir);
    noether_train::checkpoint::write_atomically(&manifest, text.as_bytes())?;
    let record_text = serde_json::to_string_pretty(&record).expect("the record serialises");
    noether_train::checkpoint::write_atomically(&record_path(dir), record_text.as_bytes())?;
    Ok(())
}

/// Reads the manifest of `dir`, refusing one that differs from what was planned.
///
/// # Errors
/// [`SweepError::Manifest`]: missing, malformed, or edited after planning.
pub fn read(dir: &Path) -> Result<Vec<Trial>> {
    let path = manifest_path(dir);
    let bad = |message: String| SweepError::Manifest {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        bad(format!(
            "{e} (plan the sweep first: noether sweep plan SWEEP.toml --out DIR)"
        ))
    })?;
    let record_file = record_path(dir);
    let record: SweepRecord = std::fs::read_to_string(&record_file)
        .map_err(|e| bad(format!("{}: {e}", record_file.display())))
        .and_then(|r| {
            serde_json::from_str(&r).map_err(|e| bad(format!("{}: {e}", record_file.display())))
        })?;
    let hash = format!("{:016x}", fnv1a(text.as_bytes()));
    if hash != record.manifest_fnv1a {
        return Err(bad(format!(
            "edited after planning (hash {hash}, planned {}); plan the sweep again instead of editing the manifest",
            record.manifest_fnv1a
        )));
    }
    let trials = text
        .lines()
        .enumerate()
        .map(|(k, line)| {
            serde_json::from_str::<Trial>(line).map_err(|e| bad(format!("line {}: {e}", k + 1)))
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some((k, t)) = trials.iter().enumerate().find(|(k, t)| t.trial != *k) {
        return Err(bad(format!("line {} holds trial {}", k + 1, t.trial)));
    }
    Ok(trials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_its_published_test_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}

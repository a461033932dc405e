//! safetensors checkpoints holding the model weights (PyTorch-style names), the
//! optimizer state (`optimizer.*`) and, in `__metadata__`, the resolved TOML config,
//! epoch, step, best validation AUC and the RNG state. Written atomically: a temporary
//! file in the same directory, flushed to disk, then renamed over the target.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, TensorView};

use noether_transfer::{apply_tensors, LoadOptions, TransferError};

use crate::error::{Context, Result, TrainError};

/// What a checkpoint records besides tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointMeta {
    /// The resolved run configuration (TOML).
    pub config: String,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: usize,
    /// Best validation AUC so far, and the epoch it was reached.
    pub best: Option<(f64, usize)>,
    /// Validation AUC of the starting weights, when they were evaluated
    /// (`train.eval_on_start`).
    pub start_val_auc: Option<f64>,
    /// Dropout RNG state: seed (hex), stream, word position.
    pub rng: ([u8; 32], u64, u128),
}

impl CheckpointMeta {
    /// Captures a ChaCha RNG's exact position.
    pub fn rng_state(rng: &ChaCha8Rng) -> ([u8; 32], u64, u128) {
        (rng.get_seed(), rng.get_stream(), rng.get_word_pos())
    }

    /// Rebuilds the RNG at the saved position.
    pub fn restore_rng(&self) -> ChaCha8Rng {
        use rand::SeedableRng;
        let (seed, stream, pos) = self.rng;
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(stream);
        rng.set_word_pos(pos);
        rng
    }

    fn to_map(&self) -> HashMap<String, String> {
        let (seed, stream, pos) = self.rng;
        let hex = seed.iter().fold(String::with_capacity(64), |mut h, b| {
            use std::fmt::Write as _;
            let _ = write!(h, "{b:02x}");
            h
        });
        let mut m = HashMap::new();
        m.insert("format".into(), "noether-checkpoint-1".into());
        m.insert("config".into(), self.config.clone());
        m.insert("epoch".into(), self.epoch.to_string());
        m.insert("step".into(), self.step.to_string());
        m.insert("rng_seed".into(), hex);
        m.insert("rng_stream".into(), stream.to_string());
        m.insert("rng_word_pos".into(), pos.to_string());
        if let Some((auc, epoch)) = self.best {
            m.insert("best_val_auc".into(), format!("{auc:?}"));
            m.insert("best_epoch".into(), epoch.to_string());
        }
        if let Some(auc) = self.start_val_auc {
            m.insert("start_val_auc".into(), format!("{auc:?}"));
        }
        m
    }

    fn from_map(m: &HashMap<String, String>, path: &Path) -> Result<Self> {
        let bad = |message: String| TrainError::Checkpoint {
            path: path.to_owned(),
            message,
        };
        let get = |key: &str| {
            m.get(key).ok_or_else(|| {
                bad(format!(
                    "metadata lacks '{key}' (not a noether checkpoint?)"
                ))
            })
        };
        let parse = |key: &str| -> Result<u128> {
            get(key)?
                .parse()
                .map_err(|_| bad(format!("metadata '{key}' is not a number")))
        };
        let hex = get("rng_seed")?;
        let mut seed = [0u8; 32];
        if hex.len() != 64 {
            return Err(bad("metadata 'rng_seed' is not 64 hex digits".into()));
        }
        for (k, byte) in seed.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * k..2 * k + 2], 16)
                .map_err(|_| bad("metadata 'rng_seed' is not hex".into()))?;
        }
        let best = match (m.get("best_val_auc"), m.get("best_epoch")) {
            (Some(a), Some(e)) => Some((
                a.parse()
                    .map_err(|_| bad("metadata 'best_val_auc' is not a number".into()))?,
                e.parse()
                    .map_err(|_| bad("metadata 'best_epoch' is not a number".into()))?,
            )),
            _ => None,
        };
        let start_val_auc = m
            .get("start_val_auc")
            .map(|a| a.parse())
            .transpose()
            .map_err(|_| bad("metadata 'start_val_auc' is not a number".into()))?;
        Ok(Self {
            config: get("config")?.clone(),
            epoch: parse("epoch")? as usize,
            step: parse("step")? as usize,
            best,
            start_val_auc,
            rng: (seed, parse("rng_stream")? as u64, parse("rng_word_pos")?),
        })
    }
}

/// Writes tensors and metadata to `path` atomically.
///
/// # Errors
/// [`TrainError::Io`] or a tensor conversion error.
pub fn save(path: &Path, tensors: &HashMap<String, Tensor>, meta: &CheckpointMeta) -> Result<()> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut buffers = Vec::with_capacity(names.len());
    for name in &names {
        let t = &tensors[*name];
        // f64 models keep their precision; everything else is stored as f32.
        let (dtype, bytes) = if t.dtype() == DType::F64 {
            let values: Vec<f64> = t.flatten_all().and_then(|t| t.to_vec1()).context(name)?;
            (
                Dtype::F64,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        } else {
            let values: Vec<f32> = t
                .to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .context(name)?;
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (Dtype::F32, bytes)
        };
        buffers.push((dtype, t.dims().to_vec(), bytes));
    }
    let views: Vec<(String, TensorView)> = names
        .iter()
        .zip(&buffers)
        .map(|(name, (dtype, shape, bytes))| {
            let view = TensorView::new(*dtype, shape.clone(), bytes).expect("consistent view");
            ((*name).clone(), view)
        })
        .collect();
    let bytes =
        safetensors::serialize(views, Some(meta.to_map())).map_err(|e| TrainError::Checkpoint {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    write_atomically(path, &canonical_header(bytes))
}

/// The safetensors file `bytes` with its JSON header's keys in sorted order: the
/// safetensors crate writes the metadata in the iteration order of a `HashMap`, which
/// differs between processes, so the same weights and metadata gave different bytes.
/// Reordering keys keeps the header's length, so no offset changes.
fn canonical_header(mut bytes: Vec<u8>) -> Vec<u8> {
    let Some(len) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    else {
        return bytes;
    };
    let Some(header) = bytes.get(8..8 + len) else {
        return bytes;
    };
    // serde_json's maps are sorted (no `preserve_order`): parsing sorts the keys.
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(header) else {
        return bytes;
    };
    let mut sorted = serde_json::to_vec(&value).expect("a JSON value serialises");
    if sorted.len() > len {
        return bytes;
    }
    sorted.resize(len, b' ');
    bytes[8..8 + len].copy_from_slice(&sorted);
    bytes
}

/// Writes `bytes` to a temporary sibling of `path`, syncs it, renames it over `path` and
/// syncs the directory: a crash leaves either the old file or the new one, never a
/// truncated one; a failed write (a full disk) removes the temporary file and leaves the
/// old file as it was.
///
/// # Errors
/// [`TrainError::Io`] naming the file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically_with(path, bytes, std::io::Write::write_all)
}

/// [`write_atomically`] with the write itself injected (tests make it fail).
fn write_atomically_with(
    path: &Path,
    bytes: &[u8],
    write: impl FnOnce(&mut std::fs::File, &[u8]) -> std::io::Result<()>,
) -> Result<()> {
    let io = |source| TrainError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().to_string());
    let tmp: PathBuf = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        write(&mut file, bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)?;
    // The rename is durable only once the directory entry is on disk.
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod atomic_write_tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_failed_write_leaves_the_previous_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.safetensors");
        write_atomically(&path, b"epoch 1").unwrap();
        let err = write_atomically_with(&path, b"epoch 2", |file, bytes| {
            file.write_all(&bytes[..3])?;
            Err(std::io::Error::from_raw_os_error(28))
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("last.safetensors") && err.contains("No space left"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"epoch 1");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "a temporary file survived: {left:?}");
    }
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    /// All tensors by name (weights and `optimizer.*`).
    pub tensors: HashMap<String, Tensor>,
    /// The metadata.
    pub meta: CheckpointMeta,
}

/// Reads a checkpoint written by [`save`].
///
/// # Errors
/// [`TrainError::Io`], or [`TrainError::Checkpoint`] for malformed files (the safetensors
/// crate's validation message, with the file name) and missing metadata.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|source| TrainError::Io {
        path: path.to_owned(),
        source,
    })?;
    let bad = |message: String| TrainError::Checkpoint {
        path: path.to_owned(),
        message,
    };
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let meta = header
        .metadata()
        .as_ref()
        .ok_or_else(|| bad("no __metadata__ (not a noether checkpoint?)".into()))?;
    let meta = CheckpointMeta::from_map(meta, path)?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| bad(e.to_string()))?;
    Ok(Checkpoint { tensors, meta })
}

/// Copies checkpoint tensors into the model's variables (converted to each variable's
/// dtype and moved to its device), through the one loader of `noether-transfer` with
/// [`LoadOptions::exact`]: every variable must be present with its shape; optimizer
/// state is skipped.
///
/// # Errors
/// [`TrainError::Checkpoint`] naming a missing or mis-shaped tensor.
pub fn load_weights(
    varmap: &candle_nn::VarMap,
    tensors: &HashMap<String, Tensor>,
    path: &Path,
) -> Result<()> {
    let bad = |message: String| TrainError::Checkpoint {
        path: path.to_owned(),
        message,
    };
    let report =
        apply_tensors(tensors, path, varmap, &LoadOptions::exact()).map_err(|e| match e {
            TransferError::Missing { missing, .. } => {
                bad(format!("tensor '{}' is missing", missing.join("', '")))
            }
            other => bad(crate::error::without_path(path, &other)),
        })?;
    if let Some(m) = report.mismatched.first() {
        return Err(bad(format!(
            "tensor '{}' has shape {:?}, the model needs {:?}",
            m.name, m.found, m.expected
        )));
    }
    Ok(())
}

/// The current value of every variable of `varmap`, by name.
pub fn weights(varmap: &candle_nn::VarMap) -> HashMap<String, Tensor> {
    varmap
        .data()
        .lock()
        .expect("VarMap lock poisoned")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect()
}

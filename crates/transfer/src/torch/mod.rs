//! PyTorch checkpoint files read without Python: the zip format `torch.save` writes
//! (PyTorch >= 1.6), a state dict of tensors through the restricted unpickler of
//! [`pickle`] (`weights_only=True` semantics), tensors of any float or integer dtype,
//! views with offsets and strides, storages shared between tensors.
//!
//! Nested dicts are flattened with dotted keys (`{"model": {"fc.weight": ..}}` gives
//! `model.fc.weight`, integer keys of optimizer states included); entries that are not
//! tensors (an epoch number, a learning rate) are listed as skipped.

mod pickle;

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{Result, TransferError};
use pickle::{unpickle, PickleError, StorageDtype, TensorView, Value};

/// The first bytes of a zip archive (`torch.save` since PyTorch 1.6).
pub(crate) const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// How deep dicts may nest (a pickle can make a dict contain itself).
const MAX_DEPTH: usize = 64;

/// A PyTorch checkpoint read into memory.
#[derive(Debug, Clone)]
pub struct TorchCheckpoint {
    /// Tensors by their flattened key, in the file's order.
    pub tensors: Vec<(String, Tensor)>,
    /// Keys of entries that are not tensors (numbers, strings, lists), skipped.
    pub skipped: Vec<String>,
}

impl TorchCheckpoint {
    /// The tensors by name.
    pub fn by_name(&self) -> HashMap<String, Tensor> {
        self.tensors.iter().cloned().collect()
    }

    /// The tensors as a safetensors file (keys and dtypes as read: F16, BF16, F32, F64,
    /// I64 for every integer type, U8 for bools), with `metadata` in its header.
    ///
    /// # Errors
    /// [`TransferError::Safetensors`] naming `path` (the output) if serialisation fails.
    pub fn to_safetensors(
        &self,
        metadata: HashMap<String, String>,
        path: &Path,
    ) -> Result<Vec<u8>> {
        let views = self
            .tensors
            .iter()
            .map(|(name, tensor)| (name.as_str(), tensor));
        safetensors::serialize(views, Some(metadata)).map_err(|e| TransferError::Safetensors {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

/// Whether `bytes` start like a legacy (pre-1.6, not zip) `torch.save` file: a pickle.
pub(crate) fn is_legacy(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x80)
}

/// Reads the PyTorch checkpoint at `path`.
///
/// # Errors
/// [`TransferError::Io`]; [`TransferError::NotTorch`] for a file that is not a readable
/// zip archive with one `*/data.pkl` (legacy format, truncated, wrong magic);
/// [`TransferError::ForbiddenObject`] for a pickle that names any class or function but
/// tensors and containers; [`TransferError::Pickle`] for a malformed pickle;
/// [`TransferError::NotStateDict`] when the file holds no dict of tensors;
/// [`TransferError::BadTensor`] for a view reaching past its storage or a storage of
/// the wrong length.
pub fn read_torch(path: &Path) -> Result<TorchCheckpoint> {
    let bytes = std::fs::read(path).map_err(|source| TransferError::Io {
        path: path.to_owned(),
        source,
    })?;
    read_torch_bytes(&bytes, path)
}

/// [`read_torch`] of bytes in memory (`path` names them in errors).
///
/// # Errors
/// As [`read_torch`].
pub fn read_torch_bytes(bytes: &[u8], path: &Path) -> Result<TorchCheckpoint> {
    let not_torch = |reason: String| TransferError::NotTorch {
        path: path.to_owned(),
        reason,
    };
    if !bytes.starts_with(ZIP_MAGIC) {
        return Err(not_torch(if is_legacy(bytes) {
            "the legacy (PyTorch < 1.6) torch.save format; re-save it with a current \
             PyTorch: torch.save(torch.load(f), f)"
                .into()
        } else {
            "not a zip archive (torch.save writes one since PyTorch 1.6)".into()
        }));
    }
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| not_torch(format!("unreadable zip archive: {e}")))?;
    let prefix = record_prefix(&archive).map_err(not_torch)?;
    if let Some(order) = read_record(&mut archive, &format!("{prefix}byteorder"), bytes.len())
        .ok()
        .flatten()
    {
        if order.as_slice() != b"little" {
            return Err(not_torch(format!(
                "byte order {:?} (only little-endian files are read)",
                String::from_utf8_lossy(&order)
            )));
        }
    }
    let pickle = read_record(&mut archive, &format!("{prefix}data.pkl"), bytes.len())
        .map_err(not_torch)?
        .ok_or_else(|| not_torch("no data.pkl record".into()))?;
    let root = unpickle(&pickle).map_err(|e| match e {
        PickleError::Forbidden { object } => TransferError::ForbiddenObject {
            path: path.to_owned(),
            object,
        },
        PickleError::Malformed { .. } => TransferError::Pickle {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    })?;
    let Value::Dict(_) = root else {
        return Err(TransferError::NotStateDict {
            path: path.to_owned(),
            found: format!(
                "the file holds {} at its top level, not a dict",
                root.kind()
            ),
        });
    };
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    flatten(&root, "", 0, &mut entries, &mut skipped, path)?;
    if entries.is_empty() {
        return Err(TransferError::NotStateDict {
            path: path.to_owned(),
            found: "a dict without tensors".into(),
        });
    }
    let mut storages = HashMap::new();
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, view) in entries {
        let bad = |reason: String| TransferError::BadTensor {
            path: path.to_owned(),
            tensor: name.clone(),
            reason,
        };
        if !storages.contains_key(&view.key) {
            let record = format!("{prefix}data/{}", view.key);
            let data = read_record(&mut archive, &record, bytes.len())
                .map_err(&bad)?
                .ok_or_else(|| bad(format!("its storage record {record:?} is missing")))?;
            storages.insert(view.key.clone(), data);
        }
        let tensor = materialise(&view, &storages[&view.key]).map_err(bad)?;
        tensors.push((name, tensor));
    }
    Ok(TorchCheckpoint { tensors, skipped })
}

/// The directory of the archive's one `data.pkl` (`archive/`, or the saved file's stem).
fn record_prefix<R: Read + std::io::Seek>(
    archive: &zip::ZipArchive<R>,
) -> std::result::Result<String, String> {
    let pickles: Vec<String> = archive
        .file_names_raw()
        .filter_map(|raw| std::str::from_utf8(raw).ok())
        .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .map(str::to_owned)
        .collect();
    match &pickles[..] {
        [one] => Ok(one.trim_end_matches("data.pkl").to_owned()),
        [] => Err("no '<name>/data.pkl' record: not a torch.save archive".into()),
        _ => Err(format!("{} data.pkl records", pickles.len())),
    }
}

/// The bytes of record `name` (`None` when absent), refusing compressed or oversized
/// entries before reading them.
fn read_record<R: Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    name: &str,
    file_len: usize,
) -> std::result::Result<Option<Vec<u8>>, String> {
    let mut entry = match archive.by_name(name) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(format!("record {name:?}: {e}")),
    };
    let size = entry.size();
    if size > file_len as u64 {
        return Err(format!(
            "record {name:?} declares {size} bytes, more than the file's {file_len}"
        ));
    }
    let mut data = Vec::with_capacity(size as usize);
    entry
        .read_to_end(&mut data)
        .map_err(|e| format!("record {name:?}: {e}"))?;
    Ok(Some(data))
}

/// Collects the tensors under `value` (a dict) with dotted keys.
fn flatten(
    value: &Value,
    prefix: &str,
    depth: usize,
    tensors: &mut Vec<(String, TensorView)>,
    skipped: &mut Vec<String>,
    path: &Path,
) -> Result<()> {
    let Value::Dict(dict) = value else {
        unreachable!("flatten is called on dicts")
    };
    if depth > MAX_DEPTH {
        return Err(TransferError::NotStateDict {
            path: path.to_owned(),
            found: format!("dicts nested more than {MAX_DEPTH} deep at {prefix:?}"),
        });
    }
    for (key, item) in dict.borrow().iter() {
        let key = match key {
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            other => {
                skipped.push(format!("{prefix}<key that is {}>", other.kind()));
                continue;
            }
        };
        let name = format!("{prefix}{key}");
        match item {
            Value::Tensor(view) => tensors.push((name, (**view).clone())),
            Value::Dict(_) => {
                flatten(item, &format!("{name}."), depth + 1, tensors, skipped, path)?;
            }
            _ => skipped.push(name),
        }
    }
    Ok(())
}

/// The candle dtype a storage's elements become (integers widen to I64, bools to U8).
fn candle_dtype(dtype: StorageDtype) -> DType {
    match dtype {
        StorageDtype::F16 => DType::F16,
        StorageDtype::BF16 => DType::BF16,
        StorageDtype::F32 => DType::F32,
        StorageDtype::F64 => DType::F64,
        StorageDtype::I64 | StorageDtype::I32 | StorageDtype::I16 | StorageDtype::I8 => DType::I64,
        StorageDtype::U8 | StorageDtype::Bool => DType::U8,
    }
}

/// The contiguous tensor of `view` into `storage` (its record's bytes), checking that
/// the record holds the declared elements and that the view stays inside them.
fn materialise(view: &TensorView, storage: &[u8]) -> std::result::Result<Tensor, String> {
    let width = view.dtype.size();
    let declared = view.storage_len.checked_mul(width as u64);
    if declared != Some(storage.len() as u64) {
        return Err(format!(
            "its storage {:?} holds {} bytes, not the {} {} elements the pickle declares",
            view.key,
            storage.len(),
            view.storage_len,
            view.dtype.name()
        ));
    }
    let elements = view
        .size
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= view.storage_len);
    let Some(elements) = elements else {
        // Also an expanded (stride 0) view, which a state dict never holds: refusing it
        // keeps what a file can make us allocate within its own size.
        return Err(format!(
            "shape {:?} holds more elements than its storage of {}",
            view.size, view.storage_len
        ));
    };
    if elements > 0 {
        let last = view
            .size
            .iter()
            .zip(&view.stride)
            .try_fold(view.offset, |at, (&d, &s)| {
                at.checked_add((d - 1).checked_mul(s)?)
            });
        if last.is_none_or(|l| l >= view.storage_len) {
            return Err(format!(
                "shape {:?}, stride {:?} and offset {} reach past its storage of {} elements",
                view.size, view.stride, view.offset, view.storage_len
            ));
        }
    }
    let bytes = if elements == 0 {
        // An empty tensor reads nothing (its offset is not checked against the storage).
        Vec::new()
    } else if is_contiguous(view) {
        // The common case (every parameter of a state dict): one slice.
        let start = view.offset as usize * width;
        storage[start..start + elements as usize * width].to_vec()
    } else {
        gather(view, storage, elements, width)
    };
    let widened = widen(view.dtype, bytes);
    let shape: Vec<usize> = view.size.iter().map(|&d| d as usize).collect();
    Tensor::from_raw_buffer(&widened, candle_dtype(view.dtype), &shape, &Device::Cpu)
        .map_err(|e| e.to_string())
}

/// Whether the view's strides are row-major over its shape (dimensions of size 1 aside).
fn is_contiguous(view: &TensorView) -> bool {
    let mut expected = 1u64;
    for (&d, &s) in view.size.iter().zip(&view.stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(d);
    }
    true
}

/// The `elements` of a strided view, element by element, in row-major order.
fn gather(view: &TensorView, storage: &[u8], elements: u64, width: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(elements as usize * width);
    let mut index = vec![0u64; view.size.len()];
    for _ in 0..elements {
        let at = view.offset
            + index
                .iter()
                .zip(&view.stride)
                .map(|(i, s)| i * s)
                .sum::<u64>();
        let start = at as usize * width;
        bytes.extend_from_slice(&storage[start..start + width]);
        for axis in (0..index.len()).rev() {
            index[axis] += 1;
            if index[axis] < view.size[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    bytes
}

/// Little-endian elements of `dtype` as the bytes of [`candle_dtype`]`(dtype)`.
fn widen(dtype: StorageDtype, bytes: Vec<u8>) -> Vec<u8> {
    let to_i64 = |v: i64| v.to_le_bytes();
    match dtype {
        StorageDtype::I32 => bytes
            .chunks_exact(4)
            .flat_map(|c| to_i64(i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))))
            .collect(),
        StorageDtype::I16 => bytes
            .chunks_exact(2)
            .flat_map(|c| to_i64(i64::from(i16::from_le_bytes([c[0], c[1]]))))
            .collect(),
        StorageDtype::I8 => bytes
            .iter()
            .flat_map(|&b| to_i64(i64::from(b as i8)))
            .collect(),
        _ => bytes,
    }
}

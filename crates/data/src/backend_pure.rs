//! The default HDF5 backend: the pure-Rust `hdf5-pure` crate, opened in streaming mode
//! (metadata and chunks are fetched on demand, so memory stays bounded by the row
//! windows read). It does not decode Blosc, LZ4, Zstandard or bitshuffle filters; a
//! dataset using one gives [`DataError::UnsupportedFilter`] naming the filter.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hdf5_pure::{AttrValue, DType, File};

use crate::error::{DataError, Result};
use crate::reader::{DatasetInfo, H5Reader};

/// Known HDF5 filters the pure-Rust backend cannot decode, with their names.
const UNSUPPORTED_FILTERS: [(u16, &str); 5] = [
    (307, "bzip2"),
    (32001, "Blosc"),
    (32004, "LZ4"),
    (32008, "bitshuffle"),
    (32015, "Zstandard"),
];

/// Filters the pure-Rust backend decodes: deflate, shuffle, fletcher32, scale-offset,
/// LZF.
pub(crate) const SUPPORTED_FILTERS: [u16; 5] = [1, 2, 3, 6, 32000];

/// The default backend: `hdf5-pure` in streaming mode.
pub struct PureBackend {
    path: PathBuf,
    file: File,
    /// The file's length in bytes.
    len: u64,
    /// Datasets whose chunk index was checked against the file length.
    checked: Mutex<HashSet<String>>,
}

impl PureBackend {
    /// Opens a file for streaming reads.
    ///
    /// # Errors
    /// [`DataError::Io`] when the file cannot be read, [`DataError::NotHdf5`] when it is
    /// not HDF5 or is truncated.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| DataError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.is_dir() {
            return Err(io(std::io::Error::other("is a directory, not a file")));
        }
        let file = File::open_streaming(path).map_err(|e| DataError::NotHdf5 {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        Ok(Self {
            path: path.to_owned(),
            file,
            len: meta.len(),
            checked: Mutex::new(HashSet::new()),
        })
    }

    /// Checks once per dataset that every chunk its index lists lies inside the file:
    /// `hdf5-pure` sizes its read buffer from the index before it reads (a fuzzed
    /// chunk size of 2^32 - 1 bytes in a 12 kB file allocated 4 GB), so a chunk that
    /// claims bytes beyond the end of the file is refused before it is read.
    fn check_chunks(&self, name: &str, ds: &hdf5_pure::Dataset) -> Result<()> {
        let mut checked = self
            .checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if checked.contains(name) || !ds.is_chunked() {
            return Ok(());
        }
        // A B-tree v2 chunk index has no enumerator in hdf5-pure: left to the reader.
        if let Ok(chunks) = ds.chunks() {
            if let Some(c) = chunks.iter().find(|c| {
                c.address
                    .checked_add(c.storage_size)
                    .is_none_or(|end| end > self.len)
            }) {
                return Err(self.err(
                    name,
                    &format!(
                        "a chunk at byte {} claims {} bytes, beyond the file's {} (corrupt chunk index)",
                        c.address, c.storage_size, self.len
                    ),
                ));
            }
        }
        checked.insert(name.to_owned());
        Ok(())
    }

    fn err(&self, dataset: &str, e: &impl std::fmt::Display) -> DataError {
        DataError::Hdf5 {
            path: self.path.clone(),
            dataset: dataset.to_owned(),
            detail: e.to_string(),
        }
    }

    fn dataset(&self, name: &str) -> Result<hdf5_pure::Dataset> {
        let ds = self.file.dataset(name).map_err(|e| self.err(name, &e))?;
        for id in ds.filters() {
            if let Some((_, filter_name)) = UNSUPPORTED_FILTERS.iter().find(|(f, _)| *f == id) {
                return Err(DataError::UnsupportedFilter {
                    path: self.path.clone(),
                    dataset: name.to_owned(),
                    filter_id: id,
                    filter_name,
                    feature: "libhdf5",
                });
            }
            if !SUPPORTED_FILTERS.contains(&id) {
                return Err(DataError::UnsupportedFilter {
                    path: self.path.clone(),
                    dataset: name.to_owned(),
                    filter_id: id,
                    filter_name: "unknown",
                    feature: "libhdf5",
                });
            }
        }
        self.check_chunks(name, &ds)?;
        Ok(ds)
    }

    fn group(&self, name: &str) -> Result<hdf5_pure::Group> {
        if name.is_empty() {
            Ok(self.file.root())
        } else {
            self.file.group(name).map_err(|e| self.err(name, &e))
        }
    }
}

fn dtype_name(dtype: &DType) -> String {
    match dtype {
        DType::Compound(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|(n, t)| format!("{n}: {}", dtype_name(t)))
                .collect();
            format!("compound{{{}}}", inner.join(", "))
        }
        DType::Array(base, dims) => format!("{}{dims:?}", dtype_name(base)),
        other => other.to_string(),
    }
}

/// An attribute as text: strings as they are, numeric scalars as plain numbers (as the
/// libhdf5 backend gives them), anything else in debug form.
fn attr_text(value: &AttrValue) -> String {
    match value {
        AttrValue::AsciiString(s) | AttrValue::String(s) => s.clone(),
        AttrValue::I8(v) => v.to_string(),
        AttrValue::I16(v) => v.to_string(),
        AttrValue::I32(v) => v.to_string(),
        AttrValue::I64(v) => v.to_string(),
        AttrValue::U8(v) => v.to_string(),
        AttrValue::U16(v) => v.to_string(),
        AttrValue::U32(v) => v.to_string(),
        AttrValue::U64(v) => v.to_string(),
        AttrValue::F32(v) => v.to_string(),
        AttrValue::F64(v) => v.to_string(),
        other => format!("{other:?}"),
    }
}

impl PureBackend {
    /// `values` if they are the rows asked for (`count` rows from `start`, clamped to
    /// the extent, each `unit` values per element): a corrupt file can make `hdf5-pure`
    /// return fewer, and every layout indexes rows by the count it asked for.
    fn whole_rows<T>(
        &self,
        dataset: &str,
        ds: &hdf5_pure::Dataset,
        start: u64,
        count: u64,
        unit: u64,
        values: Vec<T>,
    ) -> Result<Vec<T>> {
        let shape = ds.shape().map_err(|e| self.err(dataset, &e))?;
        let rows = count.min(shape.first().map_or(0, |&n| n.saturating_sub(start)));
        let per_row = shape.iter().skip(1).fold(unit, |n, &d| n.saturating_mul(d));
        let expected = rows.saturating_mul(per_row);
        if values.len() as u64 == expected {
            return Ok(values);
        }
        Err(self.err(
            dataset,
            &format!(
                "rows {start}..{} gave {} values, {expected} expected (corrupt data)",
                start + rows,
                values.len()
            ),
        ))
    }
}

impl H5Reader for PureBackend {
    fn path(&self) -> &Path {
        &self.path
    }

    fn datasets(&self, group: &str) -> Result<Vec<String>> {
        self.group(group)?
            .datasets()
            .map_err(|e| self.err(group, &e))
    }

    fn groups(&self, group: &str) -> Result<Vec<String>> {
        self.group(group)?.groups().map_err(|e| self.err(group, &e))
    }

    fn info(&self, dataset: &str) -> Result<DatasetInfo> {
        let ds = self
            .file
            .dataset(dataset)
            .map_err(|e| self.err(dataset, &e))?;
        Ok(DatasetInfo {
            shape: ds.shape().map_err(|e| self.err(dataset, &e))?,
            dtype: ds
                .dtype()
                .map_or_else(|e| format!("unreadable ({e})"), |d| dtype_name(&d)),
            filters: ds.filters(),
            chunks: ds.chunk_shape().map_err(|e| self.err(dataset, &e))?,
            element_size: ds.element_size().map_err(|e| self.err(dataset, &e))?,
        })
    }

    fn read_f32_rows(&self, dataset: &str, start: u64, count: u64) -> Result<Vec<f32>> {
        let ds = self.dataset(dataset)?;
        let values = ds
            .read_f32_rows(start, count)
            .map_err(|e| self.err(dataset, &e))?;
        self.whole_rows(dataset, &ds, start, count, 1, values)
    }

    fn read_f64_rows(&self, dataset: &str, start: u64, count: u64) -> Result<Vec<f64>> {
        let ds = self.dataset(dataset)?;
        let values = ds
            .read_f64_rows(start, count)
            .map_err(|e| self.err(dataset, &e))?;
        self.whole_rows(dataset, &ds, start, count, 1, values)
    }

    fn read_i64_rows(&self, dataset: &str, start: u64, count: u64) -> Result<Vec<i64>> {
        let ds = self.dataset(dataset)?;
        let values = ds
            .read_i64_rows(start, count)
            .map_err(|e| self.err(dataset, &e))?;
        self.whole_rows(dataset, &ds, start, count, 1, values)
    }

    fn read_raw_rows(&self, dataset: &str, start: u64, count: u64) -> Result<Vec<u8>> {
        let ds = self.dataset(dataset)?;
        let bytes = ds
            .read_raw_rows(start, count)
            .map_err(|e| self.err(dataset, &e))?;
        let unit = ds.element_size().map_err(|e| self.err(dataset, &e))?;
        self.whole_rows(dataset, &ds, start, count, unit, bytes)
    }

    fn read_strings(&self, dataset: &str) -> Result<Vec<String>> {
        self.dataset(dataset)?
            .read_string()
            .map_err(|e| self.err(dataset, &e))
    }

    fn attributes(&self, object: &str) -> Result<BTreeMap<String, String>> {
        let attrs = if object.is_empty() {
            self.file.root().attrs()
        } else if let Ok(ds) = self.file.dataset(object) {
            ds.attrs()
        } else {
            self.group(object)?.attrs()
        };
        let attrs = attrs.map_err(|e| self.err(object, &e))?;
        Ok(attrs
            .iter()
            .map(|(k, v)| (k.clone(), attr_text(v)))
            .collect())
    }
}

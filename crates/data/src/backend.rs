//! The HDF5 backend behind one small trait, so that the rest of the crate never sees
//! which library reads the file.
//!
//! The default backend is the pure-Rust `hdf5-pure` crate, opened in streaming mode
//! (metadata and chunks are fetched on demand, so memory stays bounded by the row
//! windows read). It does not decode Blosc, LZ4, Zstandard or bitshuffle filters; a
//! dataset using one gives [`DataError::UnsupportedFilter`] naming the filter.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdf5_pure::{AttrValue, DType, File};

use crate::error::{DataError, Result};

/// What [`H5Reader::info`] reports about a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInfo {
    /// The dimensions.
    pub shape: Vec<u64>,
    /// The element type, as text (`f32`, `i64`, `compound{...}`, ...).
    pub dtype: String,
    /// HDF5 filter ids in pipeline order (1 deflate, 2 shuffle, ...).
    pub filters: Vec<u16>,
    /// The chunk shape, if chunked.
    pub chunks: Option<Vec<u64>>,
    /// Bytes per element.
    pub element_size: u64,
}

/// Read access to an HDF5 file: the operations noether's layouts need. Paths are
/// relative to the root (`"table/table"`). Row reads take windows of the leading
/// dimension and return flattened row-major data.
pub trait H5Reader: Send {
    /// The file's path (for error messages).
    ///
    /// # Errors
    /// A [`DataError`] naming the file and the object.
    fn path(&self) -> &Path;
    /// Names of the datasets directly in `group` (`""` for the root).
    ///
    /// # Errors
    /// A [`DataError`] naming the file and the object.
    fn datasets(&self, group: &str) -> Result<Vec<String>>;
    /// Names of the subgroups directly in `group`.
    ///
    /// # Errors
    /// A [`DataError`] naming the file and the object.
    fn groups(&self, group: &str) -> Result<Vec<String>>;
    /// Shape, type and storage of a dataset.
    ///
    /// # Errors
    /// A [`DataError`] naming the file and the object.
    fn info(&self, dataset: &str) -> Result<DatasetInfo>;
    /// Rows `[start, start + count)` as f32 (converted from any numeric type).
    ///
    /// # Errors
    /// A [`DataError`] naming the file and the object.
    fn read_f32_rows(&self, dataset: &str, start: u64, count: u64) -> Result<Vec<f32>>;
    /// Rows as f64.
    ///
    /// # Errors
    /// A [`DataError`] naming the file and the object.
    fn read_f64_rows(&self, dataset: &str, start: u64, count: u64) -> Result<Vec<f64>>;
    /// Rows as i64 (converted from any integer type).
    ///
    /// # Errors
    /// A [`DataError`] naming the file and the object.
    fn read_i64_rows(&self, dataset: &str, start: u64, count: u64) -> Result<Vec<i64>>;
    /// Rows as raw element bytes (for compound datasets).
    ///
    /// # Errors
    /// A [`DataError`] naming the file and the object.
    fn read_raw_rows(&self, dataset: &str, start: u64, count: u64) -> Result<Vec<u8>>;
    /// A whole string dataset.
    ///
    /// # Errors
    /// A [`DataError`] naming the file and the object.
    fn read_strings(&self, dataset: &str) -> Result<Vec<String>>;
    /// The string attributes of an object (dataset or group; `""` for the root);
    /// non-string attributes are rendered as text.
    ///
    /// # Errors
    /// A [`DataError`] naming the file and the object.
    fn attributes(&self, object: &str) -> Result<BTreeMap<String, String>>;
}

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
const SUPPORTED_FILTERS: [u16; 5] = [1, 2, 3, 6, 32000];

/// The default backend: `hdf5-pure` in streaming mode.
pub struct PureBackend {
    path: PathBuf,
    file: File,
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
        })
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

fn attr_text(value: &AttrValue) -> String {
    match value {
        AttrValue::AsciiString(s) | AttrValue::String(s) => s.clone(),
        other => format!("{other:?}"),
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
        self.dataset(dataset)?
            .read_f32_rows(start, count)
            .map_err(|e| self.err(dataset, &e))
    }

    fn read_f64_rows(&self, dataset: &str, start: u64, count: u64) -> Result<Vec<f64>> {
        self.dataset(dataset)?
            .read_f64_rows(start, count)
            .map_err(|e| self.err(dataset, &e))
    }

    fn read_i64_rows(&self, dataset: &str, start: u64, count: u64) -> Result<Vec<i64>> {
        self.dataset(dataset)?
            .read_i64_rows(start, count)
            .map_err(|e| self.err(dataset, &e))
    }

    fn read_raw_rows(&self, dataset: &str, start: u64, count: u64) -> Result<Vec<u8>> {
        self.dataset(dataset)?
            .read_raw_rows(start, count)
            .map_err(|e| self.err(dataset, &e))
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

/// Which HDF5 library reads a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The pure-Rust backend, or — when built with the `libhdf5` feature — libhdf5 for
    /// files the pure backend cannot read (unsupported filters or format).
    #[default]
    Auto,
    /// Always the pure-Rust backend.
    Pure,
    /// Always libhdf5 (cargo feature `libhdf5`).
    #[cfg(feature = "libhdf5")]
    LibHdf5,
}

/// Opens a file with the automatic backend choice.
///
/// # Errors
/// As [`PureBackend::open`].
pub fn open_reader(path: &Path) -> Result<Box<dyn H5Reader>> {
    open_reader_with(path, Backend::Auto)
}

/// Opens a file with the given backend.
///
/// # Errors
/// As [`PureBackend::open`] (or the libhdf5 backend's open).
pub fn open_reader_with(path: &Path, backend: Backend) -> Result<Box<dyn H5Reader>> {
    match backend {
        Backend::Pure => Ok(Box::new(PureBackend::open(path)?)),
        #[cfg(feature = "libhdf5")]
        Backend::LibHdf5 => Ok(Box::new(crate::backend_libhdf5::LibHdf5Backend::open(
            path,
        )?)),
        Backend::Auto => {
            #[cfg(feature = "libhdf5")]
            {
                match PureBackend::open(path) {
                    Ok(pure) if !needs_libhdf5(&pure) => Ok(Box::new(pure)),
                    Err(e @ DataError::Io { .. }) => Err(e),
                    _ => Ok(Box::new(crate::backend_libhdf5::LibHdf5Backend::open(
                        path,
                    )?)),
                }
            }
            #[cfg(not(feature = "libhdf5"))]
            Ok(Box::new(PureBackend::open(path)?))
        }
    }
}

/// Whether any dataset of the file uses a filter the pure backend cannot decode.
#[cfg(feature = "libhdf5")]
fn needs_libhdf5(file: &PureBackend) -> bool {
    fn walk(file: &PureBackend, group: &str) -> bool {
        let join = |n: &str| {
            if group.is_empty() {
                n.to_owned()
            } else {
                format!("{group}/{n}")
            }
        };
        file.datasets(group).unwrap_or_default().iter().any(|d| {
            file.info(&join(d))
                .is_ok_and(|i| i.filters.iter().any(|f| !SUPPORTED_FILTERS.contains(f)))
        }) || file
            .groups(group)
            .unwrap_or_default()
            .iter()
            .any(|g| walk(file, &join(g)))
    }
    walk(file, "")
}

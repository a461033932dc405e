//! The crate's single error type: every variant names the file, and where it applies
//! the dataset and the row at fault.

use std::path::PathBuf;

/// Errors from reading, validating, sampling and writing collider data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not HDF5 (or is truncated before its metadata).
    #[error("{path}: not a readable HDF5 file ({detail})")]
    NotHdf5 {
        /// The file.
        path: PathBuf,
        /// What the HDF5 reader said.
        detail: String,
    },
    /// The HDF5 reader failed on a dataset (corrupt or truncated data, unsupported
    /// feature).
    #[error("{path}: {}: {detail}", object_name(.dataset))]
    Hdf5 {
        /// The file.
        path: PathBuf,
        /// The dataset (or group) being read; empty for the root group.
        dataset: String,
        /// What the HDF5 reader said.
        detail: String,
    },
    /// A dataset uses a compression filter the active backend cannot decode.
    #[error(
        "{path}: dataset '{dataset}' uses the {filter_name} filter (HDF5 filter id {filter_id}), \
         which the pure-Rust backend cannot decode; rebuild noether with the cargo feature \
         `{feature}`, which reads it through the system libhdf5"
    )]
    UnsupportedFilter {
        /// The file.
        path: PathBuf,
        /// The dataset.
        dataset: String,
        /// The HDF5 filter id.
        filter_id: u16,
        /// Its common name.
        filter_name: &'static str,
        /// The cargo feature that reads it.
        feature: &'static str,
    },
    /// No known layout matches the file's contents.
    #[error(
        "{path}: no known jet layout (expected Pmu+Nobj, table/table, table/block0_values, \
         particle_features, df/block0_values or a noether ragged file); root holds {found:?}"
    )]
    UnknownLayout {
        /// The file.
        path: PathBuf,
        /// The root members found.
        found: Vec<String>,
    },
    /// A dataset the layout needs is absent.
    #[error("{path}: layout {layout} needs dataset '{dataset}', which is missing")]
    MissingDataset {
        /// The file.
        path: PathBuf,
        /// The dataset.
        dataset: String,
        /// The layout being read.
        layout: String,
    },
    /// A dataset has the wrong rank or shape.
    #[error("{path}: dataset '{dataset}' has shape {found:?}, expected {expected}")]
    BadShape {
        /// The file.
        path: PathBuf,
        /// The dataset.
        dataset: String,
        /// What was expected, in words.
        expected: String,
        /// The shape found.
        found: Vec<u64>,
    },
    /// A dataset declares more data than the file can hold: a corrupt or hostile header,
    /// caught before anything is allocated for it.
    #[error(
        "{path}: dataset '{dataset}' declares shape {shape:?} ({declared} bytes), more than \
         the file's {file_len} bytes can hold{}", if *.compressed {" even compressed"} else {""}
    )]
    ExtentBeyondFile {
        /// The file.
        path: PathBuf,
        /// The dataset.
        dataset: String,
        /// Its declared shape.
        shape: Vec<u64>,
        /// The bytes that shape needs (saturated at `u64::MAX`).
        declared: u64,
        /// The file's length.
        file_len: u64,
        /// Whether the dataset is filtered (compressed).
        compressed: bool,
    },
    /// A file of a versioned layout written by a version this reader does not know.
    #[error(
        "{path}: attribute '{attribute}' = {found}, but this noether reads version {supported}"
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version attribute.
        attribute: &'static str,
        /// Its value.
        found: String,
        /// The version read.
        supported: u32,
    },
    /// A dataset has the wrong element type.
    #[error("{path}: dataset '{dataset}' has element type {found}, expected {expected}")]
    BadDtype {
        /// The file.
        path: PathBuf,
        /// The dataset.
        dataset: String,
        /// The expected type.
        expected: String,
        /// The type found.
        found: String,
    },
    /// A jet's content is not physical or not consistent.
    #[error("{path}: dataset '{dataset}', jet {row}: {problem}")]
    InvalidJet {
        /// The file.
        path: PathBuf,
        /// The dataset.
        dataset: String,
        /// The jet index in the file.
        row: usize,
        /// What is wrong.
        problem: String,
    },
    /// A user-supplied setting is impossible (e.g. more jets requested than exist).
    #[error("invalid {name}: {detail}")]
    InvalidArgument {
        /// The setting.
        name: &'static str,
        /// Why it is invalid.
        detail: String,
    },
    /// Writing a file failed.
    #[error("{path}: writing failed: {detail}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

/// The crate-wide result type.
pub type Result<T> = std::result::Result<T, DataError>;

/// How an error names an HDF5 object: the root group (whose path is empty) is named as
/// such, never as a dataset `''`.
fn object_name(object: &str) -> String {
    if object.is_empty() || object == "/" {
        "the root group (file header or index)".into()
    } else {
        format!("'{object}'")
    }
}

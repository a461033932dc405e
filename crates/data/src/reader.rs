//! The one small trait behind which every HDF5 backend sits ([`H5Reader`]), and what it
//! reports about a dataset ([`DatasetInfo`]). The backends implement it; the rest of the
//! crate sees only the trait.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::Result;

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
    /// A [`DataError`](crate::DataError) naming the file and the object.
    fn path(&self) -> &Path;
    /// Names of the datasets directly in `group` (`""` for the root).
    ///
    /// # Errors
    /// A [`DataError`](crate::DataError) naming the file and the object.
    fn datasets(&self, group: &str) -> Result<Vec<String>>;
    /// Names of the subgroups directly in `group`.
    ///
    /// # Errors
    /// A [`DataError`](crate::DataError) naming the file and the object.
    fn groups(&self, group: &str) -> Result<Vec<String>>;
    /// Shape, type and storage of a dataset.
    ///
    /// # Errors
    /// A [`DataError`](crate::DataError) naming the file and the object.
    fn info(&self, dataset: &str) -> Result<DatasetInfo>;
    /// Rows `[start, start + count)` as f32 (converted from any numeric type).
    ///
    /// # Errors
    /// A [`DataError`](crate::DataError) naming the file and the object.
    fn read_f32_rows(&self, dataset: &str, start: u64, count: u64) -> Result<Vec<f32>>;
    /// Rows as f64.
    ///
    /// # Errors
    /// A [`DataError`](crate::DataError) naming the file and the object.
    fn read_f64_rows(&self, dataset: &str, start: u64, count: u64) -> Result<Vec<f64>>;
    /// Rows as i64 (converted from any integer type).
    ///
    /// # Errors
    /// A [`DataError`](crate::DataError) naming the file and the object.
    fn read_i64_rows(&self, dataset: &str, start: u64, count: u64) -> Result<Vec<i64>>;
    /// Rows as raw element bytes (for compound datasets).
    ///
    /// # Errors
    /// A [`DataError`](crate::DataError) naming the file and the object.
    fn read_raw_rows(&self, dataset: &str, start: u64, count: u64) -> Result<Vec<u8>>;
    /// A whole string dataset.
    ///
    /// # Errors
    /// A [`DataError`](crate::DataError) naming the file and the object.
    fn read_strings(&self, dataset: &str) -> Result<Vec<String>>;
    /// The string attributes of an object (dataset or group; `""` for the root);
    /// non-string attributes are rendered as text.
    ///
    /// # Errors
    /// A [`DataError`](crate::DataError) naming the file and the object.
    fn attributes(&self, object: &str) -> Result<BTreeMap<String, String>>;
}

//! Which HDF5 library reads a file: the pure-Rust backend by default, libhdf5 (cargo
//! feature `libhdf5`) for files it cannot read. The rest of the crate opens files
//! through [`open_reader`] and never knows which backend is in use.

use std::path::Path;

#[cfg(feature = "libhdf5")]
use crate::backend_libhdf5::LibHdf5Backend;
use crate::backend_pure::PureBackend;
#[cfg(feature = "libhdf5")]
use crate::error::DataError;
use crate::error::Result;
use crate::reader::H5Reader;

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
        Backend::LibHdf5 => Ok(Box::new(LibHdf5Backend::open(path)?)),
        Backend::Auto => {
            #[cfg(feature = "libhdf5")]
            {
                match PureBackend::open(path) {
                    Ok(pure) if !needs_libhdf5(&pure) => Ok(Box::new(pure)),
                    Err(e @ DataError::Io { .. }) => Err(e),
                    _ => Ok(Box::new(LibHdf5Backend::open(path)?)),
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
            file.info(&join(d)).is_ok_and(|i| {
                i.filters
                    .iter()
                    .any(|f| !crate::backend_pure::SUPPORTED_FILTERS.contains(f))
            })
        }) || file
            .groups(group)
            .unwrap_or_default()
            .iter()
            .any(|g| walk(file, &join(g)))
    }
    walk(file, "")
}

//! # noether-data
//!
//! Turns the HDF5 files physicists already have into jets and padded batches:
//! the Top Quark Tagging Reference dataset (pandas `table` and `fixed`), the LGN /
//! LorentzNet / PELICAN layout, JetNet, LHC Olympics 2020 R&D, and noether's own
//! ragged layout ([`write_ragged`]). Every reader yields the same [`JetSet`]:
//! four-vectors (E, px, py, pz) in GeV, pT-ordered, with labels and optional truth.
//!
//! Reading goes through the pure-Rust `hdf5-pure` backend in streaming mode, behind the
//! [`H5Reader`] trait; bad input gives a [`DataError`] naming file, dataset and row.
//!
//! ```
//! use noether_data::{write_ragged, JetFile, JetSetBuilder, Layout};
//! let mut builder = JetSetBuilder::default();
//! builder.push(&[[50.0, 30.0, 40.0, 0.0], [10.0, 0.0, 6.0, 8.0]], 1, None);
//! builder.push(&[[20.0, 0.0, 0.0, 20.0]], 0, None);
//! let jets = builder.finish();
//!
//! let path = std::env::temp_dir().join("noether-doc-example.h5");
//! write_ragged(&path, &jets, "doc example")?;
//! let file = JetFile::open(&path)?;
//! assert_eq!(file.layout(), Layout::Ragged);
//! let (read, report) = file.read_all()?;
//! assert_eq!(read, jets);
//! assert_eq!(report.jets_kept, 2);
//! # std::fs::remove_file(&path).ok();
//! # Ok::<(), noether_data::DataError>(())
//! ```

mod backend;
#[cfg(feature = "libhdf5")]
mod backend_libhdf5;
mod backend_pure;
mod batch;
mod error;
mod file;
mod inspect;
mod jets;
mod layouts;
mod reader;
pub mod sampling;
mod validate;

pub use backend::{open_reader, open_reader_with, Backend};
#[cfg(feature = "libhdf5")]
pub use backend_libhdf5::LibHdf5Backend;
pub use backend_pure::PureBackend;
pub use batch::{batches, Batch, BatchConfig, Beams, StreamConfig, StreamingBatches};
pub use error::{DataError, Result};
pub use file::{expand_glob, load, JetFile, OpenOptions, DEFAULT_WINDOW};
pub use inspect::{inspect, Inspection};
pub use jets::{JetSet, JetSetBuilder};
pub use layouts::ragged::write_ragged;
pub use layouts::Layout;
pub use reader::{DatasetInfo, H5Reader};
pub use validate::{
    row_list, EmptyJetPolicy, LoadReport, ValidationPolicy, DEFAULT_MASS_SHELL_TOLERANCE,
};

//! The jet layouts noether reads, their detection, and one reader per layout.

mod jetnet;
mod lhco;
mod lorentznet;
mod pandas;
pub(crate) mod ragged;
mod toptag;

use std::fmt;
use std::str::FromStr;

use crate::error::{DataError, Result};
use crate::reader::{DatasetInfo, H5Reader};
use crate::validate::JetSink;

/// A file layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Top Quark Tagging Reference dataset, pandas `format='table'` (key `table`).
    TopTaggingTable,
    /// Top Quark Tagging Reference dataset, pandas `format='fixed'` (key `table`).
    TopTaggingFixed,
    /// The converted layout of LGN / LorentzNet / PELICAN: `Nobj`, `Pmu`, `is_signal`,
    /// `truth_Pmu`.
    LorentzNet,
    /// JetNet: `particle_features` (eta_rel, phi_rel, pt_rel, mask) and `jet_features`.
    JetNet,
    /// LHC Olympics 2020 R&D: pandas fixed format, key `df`, 700 x (pT, eta, phi) + label.
    LhcOlympics,
    /// noether's ragged layout (see [`crate::write_ragged`]).
    Ragged,
}

impl Layout {
    /// All layouts, in detection order.
    pub const ALL: [Self; 6] = [
        Self::Ragged,
        Self::LorentzNet,
        Self::TopTaggingTable,
        Self::TopTaggingFixed,
        Self::JetNet,
        Self::LhcOlympics,
    ];

    /// The name used on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::TopTaggingTable => "toptag-table",
            Self::TopTaggingFixed => "toptag-fixed",
            Self::LorentzNet => "lorentznet",
            Self::JetNet => "jetnet",
            Self::LhcOlympics => "lhco",
            Self::Ragged => "ragged",
        }
    }

    /// Whether the file's members match this layout.
    fn matches(self, root_datasets: &[String], file: &dyn H5Reader) -> bool {
        let has = |d: &str| root_datasets.iter().any(|x| x == d);
        let has_in = |group: &str, d: &str| {
            file.datasets(group)
                .is_ok_and(|ds| ds.iter().any(|x| x == d))
        };
        match self {
            Self::Ragged => has("constituents") && has("offsets"),
            Self::LorentzNet => has("Pmu") && has("Nobj"),
            Self::TopTaggingTable => has_in("table", "table"),
            Self::TopTaggingFixed => has_in("table", "block0_values"),
            Self::JetNet => has("particle_features"),
            Self::LhcOlympics => has_in("df", "block0_values"),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Layout {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| DataError::InvalidArgument {
                name: "layout",
                detail: format!(
                    "'{s}' is not one of {}",
                    Self::ALL.map(Self::name).join(", ")
                ),
            })
    }
}

/// Detects the layout from the file's members.
pub(crate) fn detect(file: &dyn H5Reader) -> Result<Layout> {
    let datasets = file.datasets("")?;
    Layout::ALL
        .into_iter()
        .find(|l| l.matches(&datasets, file))
        .ok_or_else(|| {
            let mut found = datasets;
            found.extend(
                file.groups("")
                    .unwrap_or_default()
                    .into_iter()
                    .map(|g| g + "/"),
            );
            DataError::UnknownLayout {
                path: file.path().to_owned(),
                found,
            }
        })
}

/// A layout-specific reader of jet windows.
pub(crate) trait LayoutSource: Send {
    /// The backend it reads from.
    fn file(&self) -> &dyn H5Reader;
    /// Number of jets (rows) in the file.
    fn len(&self) -> usize;
    /// The datasets holding momenta and labels (for error messages).
    fn datasets(&self) -> (&str, &str);
    /// Reads jets `[start, start + count)` into the sink.
    fn read(&self, start: usize, count: usize, sink: &mut JetSink) -> Result<()>;
    /// All labels (raw values), reading as little as the layout allows.
    fn labels(&self) -> Result<Vec<f64>>;
}

/// Opens the reader of `layout` over `file`, checking the datasets it needs.
pub(crate) fn open_source(
    file: Box<dyn H5Reader>,
    layout: Layout,
    label_override: Option<u8>,
) -> Result<Box<dyn LayoutSource>> {
    Ok(match layout {
        Layout::LorentzNet => Box::new(lorentznet::LorentzNetSource::open(file)?),
        Layout::TopTaggingTable => Box::new(toptag::TopTagSource::open_table(file)?),
        Layout::TopTaggingFixed => Box::new(toptag::TopTagSource::open_fixed(file)?),
        Layout::JetNet => Box::new(jetnet::JetNetSource::open(
            file,
            label_override.unwrap_or(0),
        )?),
        Layout::LhcOlympics => Box::new(lhco::LhcoSource::open(file)?),
        Layout::Ragged => Box::new(ragged::RaggedSource::open(file)?),
    })
}

/// Checks that `dataset` exists with rank `rank` and, where given, trailing dimensions
/// `tail`; returns its shape.
pub(crate) fn require(
    file: &dyn H5Reader,
    layout: Layout,
    dataset: &str,
    rank: usize,
    tail: &[Option<u64>],
) -> Result<Vec<u64>> {
    let (group, name) = dataset.rsplit_once('/').unwrap_or(("", dataset));
    if !file
        .datasets(group)
        .unwrap_or_default()
        .iter()
        .any(|d| d == name)
    {
        return Err(DataError::MissingDataset {
            path: file.path().to_owned(),
            dataset: dataset.to_owned(),
            layout: layout.to_string(),
        });
    }
    let info = file.info(dataset)?;
    check_extent(file, dataset, &info)?;
    let shape = info.shape;
    let tail_ok = tail
        .iter()
        .zip(shape.iter().skip(1))
        .all(|(want, got)| want.is_none_or(|w| w == *got));
    if shape.len() != rank || !tail_ok {
        let dims: Vec<String> = std::iter::once("N".to_owned())
            .chain(tail.iter().map(|t| t.map_or("*".into(), |v| v.to_string())))
            .collect();
        return Err(DataError::BadShape {
            path: file.path().to_owned(),
            dataset: dataset.to_owned(),
            expected: format!("({})", dims.join(", ")),
            found: shape,
        });
    }
    Ok(shape)
}

/// Checks that a dataset's leading dimension equals `n`.
/// The most a filtered dataset's bytes may exceed the file's: deflate, the strongest
/// codec the readers decode, compresses at most about 1032:1.
const MAX_COMPRESSION: u128 = 1100;

/// Checks that `dataset`'s declared extent fits in the file (uncompressed) or could
/// (compressed), so that a header declaring 10^8 jets in a small file is refused before
/// anything is read or allocated. HDF5 lets unwritten chunks read as the fill value; a
/// jet file whose rows were never written is corrupt, not empty.
pub(crate) fn check_extent(file: &dyn H5Reader, dataset: &str, info: &DatasetInfo) -> Result<()> {
    let file_len = std::fs::metadata(file.path()).map_or(u64::MAX, |m| m.len());
    let declared = info
        .shape
        .iter()
        .fold(u128::from(info.element_size), |n, &d| {
            n.saturating_mul(u128::from(d))
        });
    let filtered = !info.filters.is_empty();
    let capacity = u128::from(file_len) * if filtered { MAX_COMPRESSION } else { 1 };
    if declared <= capacity {
        return Ok(());
    }
    Err(DataError::ExtentBeyondFile {
        path: file.path().to_owned(),
        dataset: dataset.to_owned(),
        shape: info.shape.clone(),
        declared: u64::try_from(declared).unwrap_or(u64::MAX),
        file_len,
        compressed: filtered,
    })
}

pub(crate) fn require_rows(
    file: &dyn H5Reader,
    dataset: &str,
    shape: &[u64],
    n: u64,
) -> Result<()> {
    if shape.first() == Some(&n) {
        Ok(())
    } else {
        Err(DataError::BadShape {
            path: file.path().to_owned(),
            dataset: dataset.to_owned(),
            expected: format!("{n} rows like the momenta"),
            found: shape.to_vec(),
        })
    }
}

/// Checks that a dataset's element type is numeric (optionally: floating point).
pub(crate) fn require_numeric(file: &dyn H5Reader, dataset: &str, float: bool) -> Result<()> {
    let dtype = file.info(dataset)?.dtype;
    let ok = if float {
        matches!(dtype.as_str(), "f32" | "f64")
    } else {
        matches!(
            dtype.as_str(),
            "f32" | "f64" | "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64"
        )
    };
    if ok {
        Ok(())
    } else {
        Err(DataError::BadDtype {
            path: file.path().to_owned(),
            dataset: dataset.to_owned(),
            expected: if float {
                "f32 or f64"
            } else {
                "a numeric type"
            }
            .into(),
            found: dtype,
        })
    }
}

/// Splits a flat row-major buffer of `[f32; 4]` entries.
pub(crate) fn as_four_vectors(flat: &[f32]) -> Vec<[f32; 4]> {
    flat.chunks_exact(4)
        .map(|c| [c[0], c[1], c[2], c[3]])
        .collect()
}

/// A massless four-vector from (pT, eta, phi), in f32 via f64.
pub(crate) fn massless_from_pt_eta_phi(pt: f64, eta: f64, phi: f64) -> [f32; 4] {
    let (px, py, pz) = (pt * phi.cos(), pt * phi.sin(), pt * eta.sinh());
    let e = pt * eta.cosh();
    [e as f32, px as f32, py as f32, pz as f32]
}

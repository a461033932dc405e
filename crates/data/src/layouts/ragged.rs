//! noether's ragged layout, for variable-length constituents without padding.
//!
//! | dataset | shape | type | content |
//! |---|---|---|---|
//! | `constituents` | (M, 4) | f32 | (E, px, py, pz) in GeV of all jets back to back, each jet pT-ordered; chunked (16384, 4), shuffle + gzip |
//! | `offsets` | (N + 1,) | i64 | jet i owns rows `offsets[i]..offsets[i+1]`; `offsets[0] = 0`, non-decreasing, `offsets[N] = M` |
//! | `labels` | (N,) | i8 | 1 = signal, 0 = background |
//! | `multiplicity` | (N,) | i32 | constituents per jet (jet-level field, = diff of offsets) |
//! | `jet_p4` | (N, 4) | f32 | the jet four-momentum, sum of its constituents (jet-level field) |
//! | `truth` | (N, 4) | f32 | optional truth four-momentum (e.g. the top quark) |
//!
//! Root attributes: `noether_layout = "ragged"`, `noether_layout_version = 1`,
//! `units = "GeV"`, `components = "E,px,py,pz"`, and a free-text `source`.

use std::path::Path;

use hdf5_pure::{AttrValue, FileBuilder};

use super::{as_four_vectors, require, require_rows, LayoutSource};
use crate::error::{DataError, Result};
use crate::jets::JetSet;
use crate::reader::H5Reader;
use crate::validate::JetSink;
use crate::Layout;

/// Rows of `constituents` per chunk.
const CHUNK_ROWS: usize = 16384;

pub(crate) struct RaggedSource {
    file: Box<dyn H5Reader>,
    offsets: Vec<u64>,
    has_truth: bool,
}

impl RaggedSource {
    pub(crate) fn open(file: Box<dyn H5Reader>) -> Result<Self> {
        let l = Layout::Ragged;
        check_version(file.as_ref())?;
        let constituents = require(file.as_ref(), l, "constituents", 2, &[Some(4)])?;
        let offsets_shape = require(file.as_ref(), l, "offsets", 1, &[])?;
        let jets = offsets_shape[0]
            .checked_sub(1)
            .ok_or_else(|| DataError::BadShape {
                path: file.path().to_owned(),
                dataset: "offsets".into(),
                expected: "(N + 1,) with N >= 0".into(),
                found: offsets_shape.clone(),
            })?;
        let labels = require(file.as_ref(), l, "labels", 1, &[])?;
        require_rows(file.as_ref(), "labels", &labels, jets)?;
        let raw = file.read_i64_rows("offsets", 0, offsets_shape[0])?;
        let offsets = validate_offsets(file.as_ref(), &raw, constituents[0])?;
        let has_truth = file.datasets("")?.iter().any(|d| d == "truth");
        if has_truth {
            let truth = require(file.as_ref(), l, "truth", 2, &[Some(4)])?;
            require_rows(file.as_ref(), "truth", &truth, jets)?;
        }
        Ok(Self {
            file,
            offsets,
            has_truth,
        })
    }
}

/// The layout version noether writes and reads.
const VERSION: u32 = 1;

/// Refuses a file that says it was written in another version of the layout (a file
/// without the attribute, written by another tool, is read as version 1).
fn check_version(file: &dyn H5Reader) -> Result<()> {
    const ATTRIBUTE: &str = "noether_layout_version";
    let attrs = file.attributes("")?;
    match attrs.get(ATTRIBUTE) {
        Some(v) if v.trim().parse::<f64>() != Ok(f64::from(VERSION)) => {
            Err(DataError::UnsupportedVersion {
                path: file.path().to_owned(),
                attribute: ATTRIBUTE,
                found: v.clone(),
                supported: VERSION,
            })
        }
        _ => Ok(()),
    }
}

fn validate_offsets(file: &dyn H5Reader, raw: &[i64], rows: u64) -> Result<Vec<u64>> {
    let bad = |row: usize, problem: String| DataError::InvalidJet {
        path: file.path().to_owned(),
        dataset: "offsets".into(),
        row,
        problem,
    };
    if raw.first() != Some(&0) {
        return Err(bad(
            0,
            format!("offsets must start at 0, found {:?}", raw.first()),
        ));
    }
    if let Some(i) = raw.windows(2).position(|w| w[1] < w[0]) {
        return Err(bad(
            i,
            format!("offsets not monotone: {} then {}", raw[i], raw[i + 1]),
        ));
    }
    let last = *raw.last().unwrap_or(&0);
    if u64::try_from(last).ok() != Some(rows) {
        let problem = format!("last offset {last} does not match the {rows} constituent rows");
        return Err(bad(raw.len() - 1, problem));
    }
    Ok(raw.iter().map(|&o| o.unsigned_abs()).collect())
}

impl LayoutSource for RaggedSource {
    fn file(&self) -> &dyn H5Reader {
        self.file.as_ref()
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn datasets(&self) -> (&str, &str) {
        ("constituents", "labels")
    }

    fn read(&self, start: usize, count: usize, sink: &mut JetSink) -> Result<()> {
        let end = (start + count).min(self.len());
        let (first, last) = (self.offsets[start], self.offsets[end]);
        let momenta = as_four_vectors(&self.file.read_f32_rows(
            "constituents",
            first,
            last - first,
        )?);
        let n = (end - start) as u64;
        let labels = self.file.read_f64_rows("labels", start as u64, n)?;
        let truth = if self.has_truth {
            Some(as_four_vectors(&self.file.read_f32_rows(
                "truth",
                start as u64,
                n,
            )?))
        } else {
            None
        };
        for (k, row) in (start..end).enumerate() {
            let (a, b) = (
                (self.offsets[row] - first) as usize,
                (self.offsets[row + 1] - first) as usize,
            );
            sink.push(row, &momenta[a..b], labels[k], truth.as_ref().map(|t| t[k]))?;
        }
        Ok(())
    }

    fn labels(&self) -> Result<Vec<f64>> {
        self.file.read_f64_rows("labels", 0, self.len() as u64)
    }
}

/// Writes `jets` in the ragged layout, atomically: to a temporary file in the same
/// directory, then renamed over `path`, so a crash never leaves a half-written file.
///
/// # Errors
/// [`DataError::Write`] naming the file.
pub fn write_ragged(path: &Path, jets: &JetSet, source: &str) -> Result<()> {
    let werr = |detail: String| DataError::Write {
        path: path.to_owned(),
        detail,
    };
    let mut builder = FileBuilder::new();
    let flat: Vec<f32> = jets.momenta().iter().flatten().copied().collect();
    let rows = jets.total_constituents();
    let ds = builder
        .create_dataset("constituents")
        .with_f32_data(&flat)
        .with_shape(&[rows as u64, 4]);
    if rows > 0 {
        ds.with_chunks(&[rows.min(CHUNK_ROWS) as u64, 4])
            .with_shuffle()
            .with_deflate(4);
    }
    let offsets: Vec<i64> = jets.offsets().iter().map(|&o| o as i64).collect();
    builder.create_dataset("offsets").with_i64_data(&offsets);
    let labels: Vec<i8> = jets.labels().iter().map(|&l| l as i8).collect();
    builder.create_dataset("labels").with_i8_data(&labels);
    let multiplicity: Vec<i32> = (0..jets.len())
        .map(|i| jets.multiplicity(i) as i32)
        .collect();
    builder
        .create_dataset("multiplicity")
        .with_i32_data(&multiplicity);
    let jet_p4: Vec<f32> = (0..jets.len())
        .flat_map(|i| jets.jet_momentum(i).to_array().map(|x| x as f32))
        .collect();
    builder
        .create_dataset("jet_p4")
        .with_f32_data(&jet_p4)
        .with_shape(&[jets.len() as u64, 4]);
    if let Some(truth) = jets.truth_column() {
        let flat: Vec<f32> = truth.iter().flatten().copied().collect();
        builder
            .create_dataset("truth")
            .with_f32_data(&flat)
            .with_shape(&[jets.len() as u64, 4]);
    }
    builder.set_attr("noether_layout", AttrValue::AsciiString("ragged".into()));
    builder.set_attr("noether_layout_version", AttrValue::I64(i64::from(VERSION)));
    builder.set_attr("units", AttrValue::AsciiString("GeV".into()));
    builder.set_attr("components", AttrValue::AsciiString("E,px,py,pz".into()));
    builder.set_attr("source", AttrValue::AsciiString(source.into()));

    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    builder.write(&tmp).map_err(|e| werr(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        werr(e.to_string())
    })
}

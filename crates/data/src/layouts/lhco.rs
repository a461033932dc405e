//! LHC Olympics 2020 R&D: pandas fixed format under key `df`, `block0_values`
//! (N, 3K + 1) = K x (pT, eta, phi) then the label; particles with pT = 0 are padding.
//! Each event becomes one "jet" of massless particles.

use super::{massless_from_pt_eta_phi, require, LayoutSource};
use crate::error::{DataError, Result};
use crate::reader::H5Reader;
use crate::validate::JetSink;
use crate::Layout;

const VALUES: &str = "df/block0_values";

pub(crate) struct LhcoSource {
    file: Box<dyn H5Reader>,
    rows: usize,
    columns: usize,
}

impl LhcoSource {
    pub(crate) fn open(file: Box<dyn H5Reader>) -> Result<Self> {
        let shape = require(file.as_ref(), Layout::LhcOlympics, VALUES, 2, &[None])?;
        let columns = shape[1] as usize;
        if columns % 3 != 1 {
            return Err(DataError::BadShape {
                path: file.path().to_owned(),
                dataset: VALUES.into(),
                expected: "(N, 3K + 1): K x (pT, eta, phi) and a label".into(),
                found: shape,
            });
        }
        Ok(Self {
            file,
            rows: shape[0] as usize,
            columns,
        })
    }
}

impl LayoutSource for LhcoSource {
    fn file(&self) -> &dyn H5Reader {
        self.file.as_ref()
    }

    fn len(&self) -> usize {
        self.rows
    }

    fn datasets(&self) -> (&str, &str) {
        (VALUES, VALUES)
    }

    fn read(&self, start: usize, count: usize, sink: &mut JetSink) -> Result<()> {
        let values = self
            .file
            .read_f64_rows(VALUES, start as u64, count as u64)?;
        let mut jet = Vec::new();
        for (k, row) in values.chunks_exact(self.columns).enumerate() {
            jet.clear();
            for p in row[..self.columns - 1].chunks_exact(3) {
                if p[0] != 0.0 {
                    if p.iter().any(|x| !x.is_finite()) || p[0] < 0.0 {
                        let problem = format!("particle (pT, eta, phi) = {p:?} is not physical");
                        return Err(DataError::InvalidJet {
                            path: self.file.path().to_owned(),
                            dataset: VALUES.into(),
                            row: start + k,
                            problem,
                        });
                    }
                    jet.push(massless_from_pt_eta_phi(p[0], p[1], p[2]));
                }
            }
            sink.push(start + k, &jet, row[self.columns - 1], None)?;
        }
        Ok(())
    }

    fn labels(&self) -> Result<Vec<f64>> {
        let values = self.file.read_f64_rows(VALUES, 0, self.rows as u64)?;
        Ok(values
            .chunks_exact(self.columns)
            .map(|r| r[self.columns - 1])
            .collect())
    }
}

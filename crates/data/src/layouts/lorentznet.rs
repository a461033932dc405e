//! The LGN / LorentzNet / PELICAN layout: `Nobj` (N,), `Pmu` (N, M, 4), `is_signal`
//! (N,), optional `truth_Pmu` (N, 4).

use super::{as_four_vectors, require, require_numeric, require_rows, LayoutSource};
use crate::error::{DataError, Result};
use crate::reader::H5Reader;
use crate::validate::JetSink;
use crate::Layout;

pub(crate) struct LorentzNetSource {
    file: Box<dyn H5Reader>,
    jets: usize,
    max_constituents: usize,
    has_truth: bool,
}

impl LorentzNetSource {
    pub(crate) fn open(file: Box<dyn H5Reader>) -> Result<Self> {
        let l = Layout::LorentzNet;
        let pmu = require(file.as_ref(), l, "Pmu", 3, &[None, Some(4)])?;
        require_numeric(file.as_ref(), "Pmu", true)?;
        let n = pmu[0];
        for name in ["Nobj", "is_signal"] {
            let shape = require(file.as_ref(), l, name, 1, &[])?;
            require_rows(file.as_ref(), name, &shape, n)?;
            require_numeric(file.as_ref(), name, false)?;
        }
        let has_truth = file.datasets("")?.iter().any(|d| d == "truth_Pmu");
        if has_truth {
            let shape = require(file.as_ref(), l, "truth_Pmu", 2, &[Some(4)])?;
            require_rows(file.as_ref(), "truth_Pmu", &shape, n)?;
        }
        Ok(Self {
            file,
            jets: n as usize,
            max_constituents: pmu[1] as usize,
            has_truth,
        })
    }
}

impl LayoutSource for LorentzNetSource {
    fn file(&self) -> &dyn H5Reader {
        self.file.as_ref()
    }

    fn len(&self) -> usize {
        self.jets
    }

    fn datasets(&self) -> (&str, &str) {
        ("Pmu", "is_signal")
    }

    fn read(&self, start: usize, count: usize, sink: &mut JetSink) -> Result<()> {
        let (s, c) = (start as u64, count as u64);
        let counts = self.file.read_i64_rows("Nobj", s, c)?;
        let labels = self.file.read_f64_rows("is_signal", s, c)?;
        let momenta = as_four_vectors(&self.file.read_f32_rows("Pmu", s, c)?);
        let truth = if self.has_truth {
            Some(as_four_vectors(&self.file.read_f32_rows(
                "truth_Pmu",
                s,
                c,
            )?))
        } else {
            None
        };
        let m = self.max_constituents;
        for (k, (&nobj, &label)) in counts.iter().zip(&labels).enumerate() {
            let row = start + k;
            let n = usize::try_from(nobj)
                .ok()
                .filter(|&n| n <= m)
                .ok_or_else(|| DataError::InvalidJet {
                    path: self.file.path().to_owned(),
                    dataset: "Nobj".into(),
                    row,
                    problem: format!("Nobj = {nobj} outside [0, {m}]"),
                })?;
            let jet = &momenta[k * m..k * m + n];
            sink.push(row, jet, label, truth.as_ref().map(|t| t[k]))?;
        }
        Ok(())
    }

    fn labels(&self) -> Result<Vec<f64>> {
        self.file.read_f64_rows("is_signal", 0, self.jets as u64)
    }
}

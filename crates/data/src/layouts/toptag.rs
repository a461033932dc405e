//! The Top Quark Tagging Reference dataset (pandas HDFStore, key `table`): columns
//! E_i, PX_i, PY_i, PZ_i (i < 200, zero-padded), truthE/PX/PY/PZ, ttv, is_signal_new.

use super::pandas::{Column, PandasFrame};
use super::LayoutSource;
use crate::error::{DataError, Result};
use crate::reader::H5Reader;
use crate::validate::JetSink;

pub(crate) struct TopTagSource {
    file: Box<dyn H5Reader>,
    frame: PandasFrame,
    values: String,
    constituents: Vec<[Column; 4]>,
    truth: Option<[Column; 4]>,
    label: Column,
}

impl TopTagSource {
    pub(crate) fn open_table(file: Box<dyn H5Reader>) -> Result<Self> {
        let frame = PandasFrame::open_table(file.as_ref(), "table")?;
        Self::new(file, frame)
    }

    pub(crate) fn open_fixed(file: Box<dyn H5Reader>) -> Result<Self> {
        let frame = PandasFrame::open_fixed(file.as_ref(), "table")?;
        Self::new(file, frame)
    }

    fn new(file: Box<dyn H5Reader>, frame: PandasFrame) -> Result<Self> {
        let values = frame.values_dataset();
        let missing = |column: &str| DataError::MissingDataset {
            path: file.path().to_owned(),
            dataset: format!("{values} column {column}"),
            layout: "Top Tagging".into(),
        };
        let mut constituents = Vec::new();
        while let Some(e) = frame.column(&format!("E_{}", constituents.len())) {
            let i = constituents.len();
            let get = |name: String| frame.column(&name).ok_or_else(|| missing(&name));
            constituents.push([
                e,
                get(format!("PX_{i}"))?,
                get(format!("PY_{i}"))?,
                get(format!("PZ_{i}"))?,
            ]);
        }
        if constituents.is_empty() {
            return Err(missing("E_0"));
        }
        let label = frame
            .column("is_signal_new")
            .ok_or_else(|| missing("is_signal_new"))?;
        let truth = ["truthE", "truthPX", "truthPY", "truthPZ"].map(|c| frame.column(c));
        let truth = truth
            .iter()
            .all(Option::is_some)
            .then(|| truth.map(Option::unwrap));
        Ok(Self {
            file,
            frame,
            values,
            constituents,
            truth,
            label,
        })
    }
}

impl LayoutSource for TopTagSource {
    fn file(&self) -> &dyn H5Reader {
        self.file.as_ref()
    }

    fn len(&self) -> usize {
        self.frame.rows()
    }

    fn datasets(&self) -> (&str, &str) {
        (&self.values, &self.values)
    }

    fn read(&self, start: usize, count: usize, sink: &mut JetSink) -> Result<()> {
        let rows = self.frame.read(self.file.as_ref(), start, count)?;
        let mut jet = Vec::with_capacity(self.constituents.len());
        for k in 0..count.min(self.len().saturating_sub(start)) {
            jet.clear();
            for cols in &self.constituents {
                let c = cols.map(|col| rows.get(k, col) as f32);
                // The public files zero-pad to 200 constituents.
                if c != [0.0; 4] {
                    jet.push(c);
                }
            }
            let truth = self.truth.map(|t| t.map(|col| rows.get(k, col) as f32));
            let label = rows.get(k, self.label);
            sink.push(start + k, &jet, label, truth)?;
        }
        Ok(())
    }

    fn labels(&self) -> Result<Vec<f64>> {
        let rows = self.frame.read(self.file.as_ref(), 0, self.len())?;
        Ok((0..self.len()).map(|k| rows.get(k, self.label)).collect())
    }
}

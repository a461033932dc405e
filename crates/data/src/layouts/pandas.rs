//! Reading pandas `HDFStore` frames without Python: `format='table'` (a PyTables
//! compound dataset whose blocks' column names live in pickle-text attributes) and
//! `format='fixed'` (`blockN_items` + `blockN_values` datasets).

use crate::error::{DataError, Result};
use crate::reader::H5Reader;

/// Element types of pandas value blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Element {
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
}

impl Element {
    fn from_numpy(name: &str) -> Option<Self> {
        Some(match name {
            "float32" => Self::F32,
            "float64" => Self::F64,
            "int8" | "bool" => Self::I8,
            "int16" => Self::I16,
            "int32" => Self::I32,
            "int64" => Self::I64,
            _ => return None,
        })
    }

    const fn width(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 => 2,
            Self::F32 | Self::I32 => 4,
            Self::F64 | Self::I64 => 8,
        }
    }

    fn decode(self, b: &[u8]) -> f64 {
        let mut buf = [0u8; 8];
        buf[..b.len()].copy_from_slice(b);
        match self {
            Self::F32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Self::F64 => f64::from_le_bytes(buf),
            Self::I8 => f64::from(i8::from_le_bytes([b[0]])),
            Self::I16 => f64::from(i16::from_le_bytes([b[0], b[1]])),
            Self::I32 => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Self::I64 => i64::from_le_bytes(buf) as f64,
        }
    }
}

/// One block of same-typed columns.
#[derive(Debug, Clone)]
struct Block {
    columns: Vec<String>,
    /// Table format: element type and byte offset of the block in a row.
    element: Element,
    offset: usize,
    /// Fixed format: the values dataset.
    values: String,
}

/// A pandas frame in either format.
#[derive(Debug, Clone)]
pub(crate) struct PandasFrame {
    /// The compound dataset (table format) or `None` (fixed format).
    table: Option<String>,
    blocks: Vec<Block>,
    rows: usize,
}

/// Where a column lives: block index and position inside the block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    block: usize,
    index: usize,
}

/// The strings of a pickle (protocol 0) list, as pandas writes column names:
/// `(lp0\nVE_0\np1\naVPX_0\n...`.
pub(crate) fn pickle_strings(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix('V').or_else(|| l.strip_prefix("aV")))
        .map(str::to_owned)
        .collect()
}

fn bad_dtype(file: &dyn H5Reader, dataset: &str, found: &str) -> DataError {
    DataError::BadDtype {
        path: file.path().to_owned(),
        dataset: dataset.to_owned(),
        expected: "a pandas block of float32/float64/int8-64 values".into(),
        found: found.to_owned(),
    }
}

impl PandasFrame {
    /// A `format='table'` frame stored under `group` (dataset `group/table`).
    pub(crate) fn open_table(file: &dyn H5Reader, group: &str) -> Result<Self> {
        let dataset = format!("{group}/table");
        let attrs = file.attributes(&dataset)?;
        let info = file.info(&dataset)?;
        super::check_extent(file, &dataset, &info)?;
        let mut offset = 0;
        let mut blocks = Vec::new();
        for k in 0.. {
            let Some(field) = attrs.get(&format!("FIELD_{k}_NAME")) else {
                break;
            };
            if field == "index" {
                offset += 8;
                continue;
            }
            let kind = attrs
                .get(&format!("{field}_kind"))
                .map(|s| pickle_strings(s));
            let dtype = attrs
                .get(&format!("{field}_dtype"))
                .cloned()
                .unwrap_or_default();
            let element = Element::from_numpy(&dtype)
                .ok_or_else(|| bad_dtype(file, &format!("{dataset}.{field}"), &dtype))?;
            let columns = kind.ok_or_else(|| DataError::MissingDataset {
                path: file.path().to_owned(),
                dataset: format!("{dataset} attribute {field}_kind"),
                layout: "pandas table".into(),
            })?;
            let width = columns.len() * element.width();
            blocks.push(Block {
                columns,
                element,
                offset,
                values: String::new(),
            });
            offset += width;
        }
        if offset as u64 != info.element_size || blocks.is_empty() {
            return Err(DataError::BadDtype {
                path: file.path().to_owned(),
                dataset,
                expected: format!("a packed pandas row of {offset} bytes (index + value blocks)"),
                found: format!("{} ({} bytes per row)", info.dtype, info.element_size),
            });
        }
        Ok(Self {
            table: Some(dataset),
            blocks,
            rows: info.shape.first().copied().unwrap_or(0) as usize,
        })
    }

    /// A `format='fixed'` frame stored under `group`.
    pub(crate) fn open_fixed(file: &dyn H5Reader, group: &str) -> Result<Self> {
        let members = file.datasets(group)?;
        let mut blocks = Vec::new();
        let mut rows = None;
        for k in 0.. {
            let (items, values) = (format!("block{k}_items"), format!("block{k}_values"));
            if !members.contains(&items) || !members.contains(&values) {
                break;
            }
            let values = format!("{group}/{values}");
            let columns = file.read_strings(&format!("{group}/{items}"))?;
            let info = file.info(&values)?;
            super::check_extent(file, &values, &info)?;
            let first_rows = *rows.get_or_insert(info.shape.first().copied().unwrap_or(0));
            if info.shape.len() != 2
                || info.shape[1] as usize != columns.len()
                || info.shape[0] != first_rows
            {
                return Err(DataError::BadShape {
                    path: file.path().to_owned(),
                    dataset: values,
                    expected: format!(
                        "({first_rows}, {}): rows like block0, columns like its items",
                        columns.len()
                    ),
                    found: info.shape,
                });
            }
            blocks.push(Block {
                columns,
                element: Element::F64,
                offset: 0,
                values,
            });
        }
        let Some(rows) = rows else {
            return Err(DataError::MissingDataset {
                path: file.path().to_owned(),
                dataset: format!("{group}/block0_values"),
                layout: "pandas fixed".into(),
            });
        };
        Ok(Self {
            table: None,
            blocks,
            rows: rows as usize,
        })
    }

    /// Number of rows.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// The dataset holding the values (for error messages).
    pub(crate) fn values_dataset(&self) -> String {
        self.table
            .clone()
            .unwrap_or_else(|| self.blocks[0].values.clone())
    }

    /// Finds a column by name.
    pub(crate) fn column(&self, name: &str) -> Option<Column> {
        self.blocks.iter().enumerate().find_map(|(block, b)| {
            b.columns
                .iter()
                .position(|c| c == name)
                .map(|index| Column { block, index })
        })
    }

    /// Reads rows `[start, start + count)`: one row-major f64 buffer per block.
    pub(crate) fn read(&self, file: &dyn H5Reader, start: usize, count: usize) -> Result<Rows> {
        let (s, c) = (start as u64, count as u64);
        let values = match &self.table {
            Some(dataset) => {
                let raw = file.read_raw_rows(dataset, s, c)?;
                let row_size = raw.len() / count.max(1);
                self.blocks
                    .iter()
                    .map(|b| {
                        let w = b.element.width();
                        raw.chunks_exact(row_size.max(1))
                            .flat_map(|row| {
                                row[b.offset..b.offset + w * b.columns.len()]
                                    .chunks_exact(w)
                                    .map(|x| b.element.decode(x))
                            })
                            .collect()
                    })
                    .collect()
            }
            None => self
                .blocks
                .iter()
                .map(|b| file.read_f64_rows(&b.values, s, c))
                .collect::<Result<Vec<_>>>()?,
        };
        Ok(Rows {
            widths: self.blocks.iter().map(|b| b.columns.len()).collect(),
            values,
        })
    }
}

/// A window of rows, one buffer per block.
pub(crate) struct Rows {
    widths: Vec<usize>,
    values: Vec<Vec<f64>>,
}

impl Rows {
    /// The value of `column` in row `row` of the window.
    pub(crate) fn get(&self, row: usize, column: Column) -> f64 {
        self.values[column.block][row * self.widths[column.block] + column.index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pickle_lists_of_column_names_parse() {
        let text = "(lp0\nVttv\np1\naVis_signal_new\np2\na.";
        assert_eq!(pickle_strings(text), vec!["ttv", "is_signal_new"]);
    }
}

//! [`Runs`]: the (N, D, loss, ...) table a fit reads, loaded from CSV with validation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Result, ScalingError};

/// Training runs: named columns of positive finite numbers, one row per run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Runs {
    columns: BTreeMap<String, Vec<f64>>,
    rows: usize,
    source: PathBuf,
}

/// How to turn CSV columns into the inputs of a fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMap {
    /// Parameters column (default `N`).
    pub n: String,
    /// Tokens / training-examples column (default `D`); ignored when `flops` is set.
    pub d: String,
    /// Training-compute column: D is derived as FLOP / (6 N).
    pub flops: Option<String>,
    /// Loss column (default `loss`).
    pub loss: String,
    /// Unique-data column for the data-constrained form (e.g. `U`).
    pub unique: Option<String>,
}

impl Default for ColumnMap {
    fn default() -> Self {
        Self {
            n: "N".into(),
            d: "D".into(),
            flops: None,
            loss: "loss".into(),
            unique: None,
        }
    }
}

impl Runs {
    /// Builds runs from columns (all of equal length).
    ///
    /// # Errors
    /// Columns of different lengths, or non-positive / non-finite values.
    pub fn from_columns(columns: BTreeMap<String, Vec<f64>>) -> Result<Self> {
        let rows = columns.values().next().map_or(0, Vec::len);
        let source = PathBuf::from("<memory>");
        for (name, values) in &columns {
            if values.len() != rows {
                return Err(ScalingError::InvalidArgument {
                    name: "columns",
                    detail: format!("column '{name}' has {} rows, expected {rows}", values.len()),
                });
            }
            check_positive(&source, name, values)?;
        }
        Ok(Self {
            columns,
            rows,
            source,
        })
    }

    /// Loads the columns named in `map` from a CSV file with a header row. D is derived
    /// from FLOP / (6 N) when `map.flops` is set.
    ///
    /// # Errors
    /// [`ScalingError::MissingColumn`] naming the column and listing the header;
    /// [`ScalingError::BadValue`] naming row and column for empty, non-numeric, NaN or
    /// non-positive values.
    pub fn from_csv(path: impl AsRef<Path>, map: &ColumnMap) -> Result<Self> {
        let path = path.as_ref();
        let io = |detail: String| ScalingError::Io {
            path: path.to_owned(),
            detail,
        };
        let mut reader = csv::Reader::from_path(path).map_err(|e| io(e.to_string()))?;
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| io(e.to_string()))?
            .iter()
            .map(str::to_owned)
            .collect();
        let mut wanted: Vec<&str> = vec![&map.n, &map.loss];
        wanted.push(map.flops.as_deref().unwrap_or(&map.d));
        if let Some(u) = &map.unique {
            wanted.push(u);
        }
        let index = |column: &str| {
            header
                .iter()
                .position(|h| h == column)
                .ok_or_else(|| ScalingError::MissingColumn {
                    path: path.to_owned(),
                    column: column.to_owned(),
                    available: quoted(&header),
                })
        };
        let positions = wanted
            .iter()
            .map(|c| index(c))
            .collect::<Result<Vec<_>>>()?;
        let mut values: Vec<Vec<f64>> = vec![Vec::new(); wanted.len()];
        for (row, record) in reader.records().enumerate() {
            let record = record.map_err(|e| io(e.to_string()))?;
            for ((column, &pos), out) in wanted.iter().zip(&positions).zip(&mut values) {
                let text = record.get(pos).unwrap_or("").trim();
                let value: f64 = text.parse().map_err(|_| ScalingError::BadValue {
                    path: path.to_owned(),
                    row: row + 1,
                    column: (*column).to_owned(),
                    detail: format!("{text:?} is not a number"),
                })?;
                out.push(value);
            }
        }
        for (column, v) in wanted.iter().zip(&values) {
            check_positive(path, column, v)?;
        }
        let mut columns = BTreeMap::new();
        let n = values[0].clone();
        columns.insert("N".to_owned(), n.clone());
        columns.insert("loss".to_owned(), values[1].clone());
        let d = if map.flops.is_some() {
            values[2]
                .iter()
                .zip(&n)
                .map(|(c, n)| c / (6.0 * n))
                .collect()
        } else {
            values[2].clone()
        };
        columns.insert("D".to_owned(), d);
        if map.unique.is_some() {
            columns.insert("U".to_owned(), values[3].clone());
        }
        Ok(Self {
            rows: n.len(),
            columns,
            source: path.to_owned(),
        })
    }

    /// Number of runs.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether there are no runs.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// A column by name (`N`, `D`, `loss`, `U`, ...).
    pub fn column(&self, name: &str) -> Option<&[f64]> {
        self.columns.get(name).map(Vec::as_slice)
    }

    /// A column by name, or an error naming it.
    ///
    /// # Errors
    /// [`ScalingError::MissingColumn`].
    pub fn require(&self, name: &str) -> Result<&[f64]> {
        self.column(name)
            .ok_or_else(|| ScalingError::MissingColumn {
                path: self.source.clone(),
                column: name.to_owned(),
                available: self.columns.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// The runs at `indices` (repeats allowed: bootstrap resamples).
    #[must_use]
    pub fn select(&self, indices: &[usize]) -> Self {
        let columns = self
            .columns
            .iter()
            .map(|(k, v)| (k.clone(), indices.iter().map(|&i| v[i]).collect()))
            .collect();
        Self {
            columns,
            rows: indices.len(),
            source: self.source.clone(),
        }
    }

    /// Drops the `k` runs with the highest loss (as Besiroglu et al. do with the
    /// Chinchilla data).
    #[must_use]
    pub fn drop_highest_loss(&self, k: usize) -> Self {
        let loss = &self.columns["loss"];
        let mut order: Vec<usize> = (0..self.rows).collect();
        order.sort_by(|&a, &b| loss[a].total_cmp(&loss[b]));
        order.truncate(self.rows.saturating_sub(k));
        order.sort_unstable();
        self.select(&order)
    }

    /// Multiplies a column by a factor (e.g. billions to units).
    ///
    /// # Errors
    /// A factor that is not a positive finite number, or one that takes a value out of
    /// the finite positive numbers.
    pub fn scaled(mut self, column: &str, factor: f64) -> Result<Self> {
        if !(factor.is_finite() && factor > 0.0) {
            return Err(ScalingError::InvalidArgument {
                name: "scale",
                detail: format!("{factor} is not a positive finite number"),
            });
        }
        if let Some(v) = self.columns.get_mut(column) {
            for x in v.iter_mut() {
                *x *= factor;
            }
            if let Some(x) = v.iter().find(|x| !x.is_finite() || **x <= 0.0) {
                return Err(ScalingError::InvalidArgument {
                    name: "scale",
                    detail: format!("column '{column}' scaled by {factor} holds {x}"),
                });
            }
        }
        Ok(self)
    }
}

/// Column names as a list of quoted strings (escapes shown): a header's stray spaces,
/// quotes and control characters are what makes a column "missing".
fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_positive(path: &Path, column: &str, values: &[f64]) -> Result<()> {
    if let Some((row, v)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && **v > 0.0))
    {
        return Err(ScalingError::BadValue {
            path: path.to_owned(),
            row: row + 1,
            column: column.to_owned(),
            detail: format!("{v} is not a positive finite number"),
        });
    }
    Ok(())
}

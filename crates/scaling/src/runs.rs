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
    /// Parameters column (default `N`; the x of a single-variable form, such as the
    /// training-set size of a data-scaling fit).
    pub n: String,
    /// Tokens / training-examples column (default `D`; none for a single-variable form);
    /// ignored when `flops` is set.
    pub d: Option<String>,
    /// Training-compute column: D is derived as FLOP / (6 N).
    pub flops: Option<String>,
    /// Loss column (default `loss`), or `1-COL` (`1-auc`: the distance to a perfect
    /// AUC) or `1/COL` (`1/rejection_at_0.3`: the background efficiency eps_B), so that
    /// metrics that improve upwards are fitted as losses.
    pub loss: String,
    /// Unique-data column for the data-constrained form (e.g. `U`).
    pub unique: Option<String>,
}

impl Default for ColumnMap {
    fn default() -> Self {
        Self {
            n: "N".into(),
            d: Some("D".into()),
            flops: None,
            loss: "loss".into(),
            unique: None,
        }
    }
}

impl ColumnMap {
    /// The columns read from the file, each with the name it takes in [`Runs`]
    /// (`N`, `loss`, then `D` or the compute column, then `U`).
    fn wanted(&self) -> Vec<Wanted> {
        let plain = |column: &str, name| Wanted {
            column: column.to_owned(),
            label: column.to_owned(),
            name,
            map: ValueMap::Identity,
        };
        let (column, map) = if let Some(c) = self.loss.strip_prefix("1-") {
            (c, ValueMap::OneMinus)
        } else if let Some(c) = self.loss.strip_prefix("1/") {
            (c, ValueMap::Reciprocal)
        } else {
            (self.loss.as_str(), ValueMap::Identity)
        };
        let mut wanted = vec![
            plain(&self.n, "N"),
            Wanted {
                column: column.to_owned(),
                label: self.loss.clone(),
                name: "loss",
                map,
            },
        ];
        if let Some(flops) = &self.flops {
            wanted.push(plain(flops, "FLOP"));
        } else if let Some(d) = &self.d {
            wanted.push(plain(d, "D"));
        }
        if let Some(u) = &self.unique {
            wanted.push(plain(u, "U"));
        }
        wanted
    }
}

/// A column to read: its header name, how errors name it (`1-auc`), the name it takes in
/// [`Runs`] and the map applied to its values.
struct Wanted {
    column: String,
    label: String,
    name: &'static str,
    map: ValueMap,
}

/// What a loss column's values become.
#[derive(Debug, Clone, Copy)]
enum ValueMap {
    Identity,
    /// `1 - v` (`1-auc`).
    OneMinus,
    /// `1 / v` (`1/rejection_at_0.3`).
    Reciprocal,
}

impl ValueMap {
    fn apply(self, v: f64) -> f64 {
        match self {
            Self::Identity => v,
            Self::OneMinus => 1.0 - v,
            Self::Reciprocal => 1.0 / v,
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
            if let Some((row, v)) = values.iter().enumerate().find(|(_, v)| !positive(**v)) {
                return Err(bad_value(&source, row + 1, name, *v));
            }
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
        let mut groups = read_csv(path, map, None)?;
        Ok(groups.pop().map_or_else(
            || Self {
                source: path.to_owned(),
                ..Self::default()
            },
            |(_, runs)| runs,
        ))
    }

    /// Loads the runs of a CSV file split by the values of column `group` (a model, a
    /// dataset), in the order the groups first appear.
    ///
    /// # Errors
    /// As [`Runs::from_csv`], a missing group column; a bad value is wrapped in
    /// [`ScalingError::InGroup`] naming its row's group.
    pub fn from_csv_grouped(
        path: impl AsRef<Path>,
        map: &ColumnMap,
        group: &str,
    ) -> Result<Vec<(String, Self)>> {
        read_csv(path.as_ref(), map, Some(group))
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

fn positive(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

fn bad_value(path: &Path, row: usize, column: &str, v: f64) -> ScalingError {
    ScalingError::BadValue {
        path: path.to_owned(),
        row,
        column: column.to_owned(),
        detail: format!("{v} is not a positive finite number"),
    }
}

/// The values of one group: per wanted column, in file order.
type GroupColumns = (String, Vec<Vec<f64>>);

/// Reads the wanted columns of `path`, split by the `group` column if given (one group
/// named "" otherwise); each value checked as it is read, so that an error names its
/// row, column and group.
fn read_csv(path: &Path, map: &ColumnMap, group: Option<&str>) -> Result<Vec<(String, Runs)>> {
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
    let wanted = map.wanted();
    let positions = wanted
        .iter()
        .map(|w| index(&w.column))
        .collect::<Result<Vec<_>>>()?;
    let group_pos = group.map(index).transpose()?;
    let mut groups: Vec<GroupColumns> = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| io(e.to_string()))?;
        let name = group_pos.map_or("", |p| record.get(p).unwrap_or("").trim());
        let in_group = |e: ScalingError| match group {
            Some(_) => ScalingError::InGroup {
                group: name.to_owned(),
                source: Box::new(e),
            },
            None => e,
        };
        let mut values = Vec::with_capacity(wanted.len());
        for (w, &pos) in wanted.iter().zip(&positions) {
            let text = record.get(pos).unwrap_or("").trim();
            let value: f64 = text.parse().map_err(|_| {
                in_group(ScalingError::BadValue {
                    path: path.to_owned(),
                    row: row + 1,
                    column: w.column.clone(),
                    detail: format!("{text:?} is not a number"),
                })
            })?;
            let value = w.map.apply(value);
            if !positive(value) {
                return Err(in_group(bad_value(path, row + 1, &w.label, value)));
            }
            values.push(value);
        }
        let slot = if let Some(k) = groups.iter().position(|(g, _)| g == name) {
            k
        } else {
            groups.push((name.to_owned(), vec![Vec::new(); wanted.len()]));
            groups.len() - 1
        };
        for (column, v) in groups[slot].1.iter_mut().zip(values) {
            column.push(v);
        }
    }
    Ok(groups
        .into_iter()
        .map(|(name, values)| (name, runs_of(path, &wanted, values)))
        .collect())
}

/// Runs from the wanted columns' values (D derived from the compute column).
fn runs_of(path: &Path, wanted: &[Wanted], values: Vec<Vec<f64>>) -> Runs {
    let mut columns: BTreeMap<String, Vec<f64>> = wanted
        .iter()
        .map(|w| w.name.to_owned())
        .zip(values)
        .collect();
    if let Some(flops) = columns.remove("FLOP") {
        let d = flops
            .iter()
            .zip(&columns["N"])
            .map(|(c, n)| c / (6.0 * n))
            .collect();
        columns.insert("D".to_owned(), d);
    }
    Runs {
        rows: columns["N"].len(),
        columns,
        source: path.to_owned(),
    }
}

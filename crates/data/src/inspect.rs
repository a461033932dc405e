//! `noether inspect`: what a file holds, as a user needs to know before training.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::backend::open_reader;
use crate::error::Result;
use crate::file::JetFile;
use crate::reader::{DatasetInfo, H5Reader};
use crate::Layout;

/// A file's detected layout, datasets and jet counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    /// The file.
    pub path: PathBuf,
    /// The detected layout.
    pub layout: Layout,
    /// Every dataset (full path) with its shape, type and filters.
    pub datasets: Vec<(String, DatasetInfo)>,
    /// Number of jets (rows).
    pub jets: usize,
    /// Number of signal jets.
    pub signal: usize,
}

/// Inspects a file: layout, datasets, and jet / signal counts (reading only labels
/// where the layout allows).
///
/// # Errors
/// As [`JetFile::open`] and [`JetFile::labels`].
pub fn inspect(path: impl AsRef<Path>) -> Result<Inspection> {
    let path = path.as_ref();
    let reader = open_reader(path)?;
    let mut datasets = Vec::new();
    walk(reader.as_ref(), "", 0, &mut datasets)?;
    let file = JetFile::open(path)?;
    let labels = file.labels()?;
    Ok(Inspection {
        path: path.to_owned(),
        layout: file.layout(),
        datasets,
        jets: labels.len(),
        signal: labels.iter().filter(|&&l| l == 1).count(),
    })
}

/// How deep `inspect` follows groups: HDF5 allows hard links that make a group its own
/// ancestor, which an unbounded walk follows until the stack overflows (found by the
/// fuzzer); jet files nest two levels at most.
const MAX_DEPTH: usize = 32;

fn walk(
    file: &dyn H5Reader,
    group: &str,
    depth: usize,
    out: &mut Vec<(String, DatasetInfo)>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(crate::DataError::Hdf5 {
            path: file.path().to_owned(),
            dataset: group.to_owned(),
            detail: format!("groups nested deeper than {MAX_DEPTH} (a cycle of links?)"),
        });
    }
    let join = |name: &str| {
        if group.is_empty() {
            name.to_owned()
        } else {
            format!("{group}/{name}")
        }
    };
    for name in file.datasets(group)? {
        let full = join(&name);
        let info = file.info(&full)?;
        out.push((full, info));
    }
    for name in file.groups(group)? {
        walk(file, &join(&name), depth + 1, out)?;
    }
    Ok(())
}

fn filter_name(id: u16) -> String {
    match id {
        1 => "gzip".into(),
        2 => "shuffle".into(),
        3 => "fletcher32".into(),
        6 => "scaleoffset".into(),
        32000 => "lzf".into(),
        32001 => "blosc".into(),
        other => format!("filter-{other}"),
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "file: {}", self.path.display())?;
        writeln!(f, "layout: {}", self.layout)?;
        writeln!(f, "datasets:")?;
        for (name, info) in &self.datasets {
            let filters: Vec<String> = info.filters.iter().map(|&id| filter_name(id)).collect();
            let filters = if filters.is_empty() {
                "none".into()
            } else {
                filters.join("+")
            };
            let chunks = info
                .chunks
                .as_ref()
                .map_or_else(|| "contiguous".into(), |c| format!("chunks {c:?}"));
            writeln!(
                f,
                "  {name}: shape {:?} dtype {} filters {filters} {chunks}",
                info.shape, info.dtype
            )?;
        }
        write!(f, "jets={} signal={}", self.jets, self.signal)
    }
}

//! [`JetFile`]: an open jet file of any layout, read in windows.

use std::path::{Path, PathBuf};

use crate::backend::{open_reader_with, Backend};
use crate::error::{DataError, Result};
use crate::jets::JetSet;
use crate::layouts::{detect, open_source, LayoutSource};
use crate::reader::H5Reader;
use crate::validate::{JetSink, LoadReport, ValidationPolicy};
use crate::Layout;

/// Jets read per window by [`JetFile::read_all`] (the chunk size of the common files).
pub const DEFAULT_WINDOW: usize = 1000;

/// How to open a jet file: everything optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenOptions {
    /// Force the layout instead of detecting it.
    pub layout: Option<Layout>,
    /// The label every jet gets, for layouts without labels (JetNet); default 0.
    pub label: Option<u8>,
    /// The HDF5 backend.
    pub backend: Backend,
}

/// An open jet file. Reads are windows of jets, so memory stays bounded by the window.
///
/// ```no_run
/// use noether_data::JetFile;
/// let file = JetFile::open("data/train.h5")?;
/// println!("{} jets in layout {}", file.len(), file.layout());
/// let (jets, report) = file.read(0, 100)?;
/// assert_eq!(report.jets_read, 100.min(file.len()));
/// # Ok::<(), noether_data::DataError>(())
/// ```
pub struct JetFile {
    path: PathBuf,
    layout: Layout,
    source: Box<dyn LayoutSource>,
    policy: ValidationPolicy,
}

impl JetFile {
    /// Opens a file and detects its layout.
    ///
    /// # Errors
    /// I/O, non-HDF5 input, an unknown layout, or missing / mis-shaped datasets.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, &OpenOptions::default())
    }

    /// Opens a file with explicit options (layout, label, backend).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_with(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Self> {
        let path = path.as_ref();
        let reader = open_reader_with(path, options.backend)?;
        let layout = match options.layout {
            Some(l) => l,
            None => detect(reader.as_ref())?,
        };
        let source = open_source(reader, layout, options.label)?;
        Ok(Self {
            path: path.to_owned(),
            layout,
            source,
            policy: ValidationPolicy::default(),
        })
    }

    /// Sets the validation policy.
    #[must_use]
    pub fn with_policy(mut self, policy: ValidationPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Number of jets (rows) in the file, before validation drops any.
    pub fn len(&self) -> usize {
        self.source.len()
    }

    /// Whether the file holds no jets.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The HDF5 backend (for inspection).
    pub fn reader(&self) -> &dyn H5Reader {
        self.source.file()
    }

    /// Reads and validates jets `[start, start + count)` (clamped to the file).
    ///
    /// # Errors
    /// Read errors, and invalid jets per the policy, naming file, dataset and row.
    pub fn read(&self, start: usize, count: usize) -> Result<(JetSet, LoadReport)> {
        let count = count.min(self.len().saturating_sub(start));
        let mut sink = JetSink::new(
            self.path.clone(),
            self.layout,
            self.source.datasets(),
            self.policy,
            start,
        );
        if count > 0 {
            self.source.read(start, count, &mut sink)?;
        }
        Ok(sink.finish())
    }

    /// Reads the whole file, window by window.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub fn read_all(&self) -> Result<(JetSet, LoadReport)> {
        let (mut jets, mut report) = self.read(0, DEFAULT_WINDOW)?;
        let mut start = DEFAULT_WINDOW;
        while start < self.len() {
            let (more, more_report) = self.read(start, DEFAULT_WINDOW)?;
            jets.extend(&more);
            report.merge(&more_report);
            start += DEFAULT_WINDOW;
        }
        Ok((jets, report))
    }

    /// All labels as stored, without reading the constituents where the layout allows.
    ///
    /// # Errors
    /// Read errors, or a label outside {0, 1} (naming the row).
    pub fn labels(&self) -> Result<Vec<u8>> {
        let (_, label_dataset) = self.source.datasets();
        self.source
            .labels()?
            .into_iter()
            .enumerate()
            .map(|(row, l)| match l {
                0.0 => Ok(0),
                1.0 => Ok(1),
                other => Err(DataError::InvalidJet {
                    path: self.path.clone(),
                    dataset: label_dataset.to_owned(),
                    row,
                    problem: format!("label {other} is not 0 or 1"),
                }),
            })
            .collect()
    }
}

/// Reads every jet of a file of any layout.
///
/// # Errors
/// As [`JetFile::open`] and [`JetFile::read_all`].
pub fn load(path: impl AsRef<Path>) -> Result<JetSet> {
    Ok(JetFile::open(path)?.read_all()?.0)
}

/// Expands a path that may contain `*` / `?` wildcards in its file name into the sorted
/// list of matching files.
///
/// # Errors
/// [`DataError::InvalidArgument`] when nothing matches.
pub fn expand_glob(pattern: &Path) -> Result<Vec<PathBuf>> {
    let name = pattern
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return Ok(vec![pattern.to_owned()]);
    }
    let dir = pattern
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let entries = std::fs::read_dir(dir).map_err(|source| DataError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(std::result::Result::ok)
        .filter(|e| wildcard_match(&name, &e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(DataError::InvalidArgument {
            name: "data path",
            detail: format!("no file matches {}", pattern.display()),
        });
    }
    Ok(files)
}

fn wildcard_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("train_*.h5", "train_003.h5"));
        assert!(wildcard_match("t?st.h5", "test.h5"));
        assert!(!wildcard_match("train_*.h5", "val_1.h5"));
    }
}

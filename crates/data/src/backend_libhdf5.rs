//! The `libhdf5` backend: [`H5Reader`] on `hdf5-metno` and the system libhdf5, for what
//! the pure-Rust backend cannot read (Blosc-compressed PyTables files, HDF5 2.0 layouts).
//! Enabled by the cargo feature `libhdf5`; [`crate::JetFile::open`] switches to it by
//! itself when a file uses a filter the pure backend lacks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdf5_metno as h5;
use hdf5_metno::types::{FloatSize, IntSize, TypeDescriptor};
use hdf5_metno::{Hyperslab, SliceOrIndex};

use crate::error::{DataError, Result};
use crate::reader::{DatasetInfo, H5Reader};

/// [`H5Reader`] on the system libhdf5.
pub struct LibHdf5Backend {
    path: PathBuf,
    file: h5::File,
}

impl LibHdf5Backend {
    /// Opens a file read-only.
    ///
    /// # Errors
    /// [`DataError::Io`] for a missing file, [`DataError::NotHdf5`] when libhdf5 cannot
    /// open it.
    pub fn open(path: &Path) -> Result<Self> {
        std::fs::metadata(path).map_err(|source| DataError::Io {
            path: path.to_owned(),
            source,
        })?;
        // libhdf5 prints its error stack to stderr by default; errors are returned instead.
        h5::silence_errors(true);
        let file = h5::File::open(path).map_err(|e| DataError::NotHdf5 {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    fn err(&self, object: &str, e: &impl std::fmt::Display) -> DataError {
        DataError::Hdf5 {
            path: self.path.clone(),
            dataset: object.to_owned(),
            detail: e.to_string(),
        }
    }

    fn group(&self, name: &str) -> Result<h5::Group> {
        let name = if name.is_empty() { "/" } else { name };
        self.file.group(name).map_err(|e| self.err(name, &e))
    }

    fn dataset(&self, name: &str) -> Result<h5::Dataset> {
        self.file.dataset(name).map_err(|e| self.err(name, &e))
    }

    /// The hyperslab of rows `[start, start + count)` (clamped to the dataset).
    fn rows(ds: &h5::Dataset, start: u64, count: u64) -> (Hyperslab, usize) {
        let shape = ds.shape();
        let n = shape.first().copied().unwrap_or(0);
        let start = (start as usize).min(n);
        let end = start.saturating_add(count as usize).min(n);
        let mut dims = vec![SliceOrIndex::from(start..end)];
        dims.extend(shape.iter().skip(1).map(|_| SliceOrIndex::from(..)));
        (Hyperslab::from(dims), end - start)
    }

    fn read_rows<T: h5::H5Type + Clone>(
        &self,
        name: &str,
        start: u64,
        count: u64,
    ) -> Result<Vec<T>> {
        let ds = self.dataset(name)?;
        let (slab, rows) = Self::rows(&ds, start, count);
        if rows == 0 {
            return Ok(Vec::new());
        }
        let array: ndarray::ArrayD<T> = ds.read_slice(slab).map_err(|e| self.err(name, &e))?;
        Ok(array.iter().cloned().collect())
    }

    /// Reads the selected rows in the dataset's own (file) type, as bytes.
    #[allow(unsafe_code)]
    fn read_native_bytes(&self, name: &str, start: u64, count: u64) -> Result<Vec<u8>> {
        use hdf5_metno_sys::h5d::H5Dread;
        use hdf5_metno_sys::h5p::H5P_DEFAULT;
        let ds = self.dataset(name)?;
        let (slab, rows) = Self::rows(&ds, start, count);
        let dtype = ds.dtype().map_err(|e| self.err(name, &e))?;
        let row_elems: usize = ds.shape().iter().skip(1).product();
        let mut buf = vec![0u8; rows * row_elems * dtype.size()];
        if buf.is_empty() {
            return Ok(buf);
        }
        let file_space = ds
            .space()
            .and_then(|s| s.select(slab))
            .map_err(|e| self.err(name, &e))?;
        let mut mem_shape = vec![rows];
        mem_shape.extend(ds.shape().iter().skip(1));
        let mem_space = h5::Dataspace::try_new(mem_shape).map_err(|e| self.err(name, &e))?;
        // SAFETY: `buf` holds exactly the selected elements in the file type (rows x row
        // elements x type size); the ids are live objects owned by this function; libhdf5
        // calls are serialised by hdf5-metno's global lock.
        let status = h5::sync::sync(|| unsafe {
            H5Dread(
                ds.id(),
                dtype.id(),
                mem_space.id(),
                file_space.id(),
                H5P_DEFAULT,
                buf.as_mut_ptr().cast(),
            )
        });
        if status < 0 {
            return Err(self.err(name, &"H5Dread failed"));
        }
        Ok(buf)
    }

    /// Reads an attribute in its own type, as bytes.
    #[allow(unsafe_code)]
    fn attribute_bytes(&self, attr: &h5::Attribute, name: &str) -> Result<(Vec<u8>, h5::Datatype)> {
        use hdf5_metno_sys::h5a::H5Aread;
        let dtype = attr.dtype().map_err(|e| self.err(name, &e))?;
        let elements = attr.space().map_err(|e| self.err(name, &e))?.size().max(1);
        let mut buf = vec![0u8; elements * dtype.size()];
        // SAFETY: `buf` is sized for every element in the attribute's own type.
        let status =
            h5::sync::sync(|| unsafe { H5Aread(attr.id(), dtype.id(), buf.as_mut_ptr().cast()) });
        if status < 0 {
            return Err(self.err(name, &"H5Aread failed"));
        }
        Ok((buf, dtype))
    }
}

fn basename(full: &str) -> String {
    full.rsplit('/').next().unwrap_or(full).to_owned()
}

fn type_name(t: &TypeDescriptor) -> String {
    let int = |s: IntSize, signed: bool| {
        let bits = match s {
            IntSize::U1 => 8,
            IntSize::U2 => 16,
            IntSize::U4 => 32,
            IntSize::U8 => 64,
        };
        format!("{}{bits}", if signed { "i" } else { "u" })
    };
    match t {
        TypeDescriptor::Integer(s) => int(*s, true),
        TypeDescriptor::Unsigned(s) => int(*s, false),
        TypeDescriptor::Float(FloatSize::U4) => "f32".into(),
        TypeDescriptor::Float(FloatSize::U8) => "f64".into(),
        TypeDescriptor::FixedArray(base, n) => format!("{}[{n}]", type_name(base)),
        TypeDescriptor::Compound(c) => {
            let fields: Vec<String> = c
                .fields
                .iter()
                .map(|f| format!("{}: {}", f.name, type_name(&f.ty)))
                .collect();
            format!("compound{{{}}}", fields.join(", "))
        }
        TypeDescriptor::FixedAscii(_)
        | TypeDescriptor::FixedUnicode(_)
        | TypeDescriptor::VarLenAscii
        | TypeDescriptor::VarLenUnicode => "string".into(),
        other => format!("{other:?}"),
    }
}

fn filter_id(f: &h5::filters::Filter) -> u16 {
    use h5::filters::Filter;
    match f {
        Filter::Deflate(_) => 1,
        Filter::Shuffle => 2,
        Filter::Fletcher32 => 3,
        Filter::SZip(..) => 4,
        Filter::NBit => 5,
        Filter::ScaleOffset(_) => 6,
        Filter::Blosc(..) => 32001,
        Filter::User(id, _) => u16::try_from(*id).unwrap_or(u16::MAX),
        #[allow(unreachable_patterns)]
        _ => u16::MAX,
    }
}

/// Text of fixed-length strings: NUL padding and trailing spaces removed.
fn fixed_strings(bytes: &[u8], width: usize) -> Vec<String> {
    bytes
        .chunks_exact(width.max(1))
        .map(|s| {
            String::from_utf8_lossy(s)
                .trim_end_matches(['\0', ' '])
                .to_owned()
        })
        .collect()
}

impl H5Reader for LibHdf5Backend {
    fn path(&self) -> &Path {
        &self.path
    }

    fn datasets(&self, group: &str) -> Result<Vec<String>> {
        let g = self.group(group)?;
        let ds = g.datasets().map_err(|e| self.err(group, &e))?;
        Ok(ds.iter().map(|d| basename(&d.name())).collect())
    }

    fn groups(&self, group: &str) -> Result<Vec<String>> {
        let g = self.group(group)?;
        let gs = g.groups().map_err(|e| self.err(group, &e))?;
        Ok(gs.iter().map(|d| basename(&d.name())).collect())
    }

    fn info(&self, dataset: &str) -> Result<DatasetInfo> {
        let ds = self.dataset(dataset)?;
        let dtype = ds.dtype().map_err(|e| self.err(dataset, &e))?;
        Ok(DatasetInfo {
            shape: ds.shape().iter().map(|&d| d as u64).collect(),
            dtype: dtype
                .to_descriptor()
                .map_or_else(|e| format!("unreadable ({e})"), |d| type_name(&d)),
            filters: ds.filters().iter().map(filter_id).collect(),
            chunks: ds.chunk().map(|c| c.iter().map(|&d| d as u64).collect()),
            element_size: dtype.size() as u64,
        })
    }

    fn read_f32_rows(&self, dataset: &str, start: u64, count: u64) -> Result<Vec<f32>> {
        self.read_rows(dataset, start, count)
    }

    fn read_f64_rows(&self, dataset: &str, start: u64, count: u64) -> Result<Vec<f64>> {
        self.read_rows(dataset, start, count)
    }

    fn read_i64_rows(&self, dataset: &str, start: u64, count: u64) -> Result<Vec<i64>> {
        self.read_rows(dataset, start, count)
    }

    fn read_raw_rows(&self, dataset: &str, start: u64, count: u64) -> Result<Vec<u8>> {
        self.read_native_bytes(dataset, start, count)
    }

    fn read_strings(&self, dataset: &str) -> Result<Vec<String>> {
        let ds = self.dataset(dataset)?;
        let dtype = ds.dtype().map_err(|e| self.err(dataset, &e))?;
        match dtype.to_descriptor() {
            Ok(TypeDescriptor::FixedAscii(w) | TypeDescriptor::FixedUnicode(w)) => {
                let bytes = self.read_native_bytes(dataset, 0, u64::MAX)?;
                Ok(fixed_strings(&bytes, w))
            }
            Ok(TypeDescriptor::VarLenUnicode) => {
                let v: Vec<h5::types::VarLenUnicode> =
                    ds.read_raw().map_err(|e| self.err(dataset, &e))?;
                Ok(v.iter().map(|s| s.as_str().to_owned()).collect())
            }
            Ok(TypeDescriptor::VarLenAscii) => {
                let v: Vec<h5::types::VarLenAscii> =
                    ds.read_raw().map_err(|e| self.err(dataset, &e))?;
                Ok(v.iter().map(|s| s.as_str().to_owned()).collect())
            }
            other => Err(DataError::BadDtype {
                path: self.path.clone(),
                dataset: dataset.to_owned(),
                expected: "strings".into(),
                found: other.map_or_else(|e| e.to_string(), |d| type_name(&d)),
            }),
        }
    }

    fn attributes(&self, object: &str) -> Result<BTreeMap<String, String>> {
        let location: h5::Location = if object.is_empty() {
            (*self.group("")?).clone()
        } else if let Ok(ds) = self.file.dataset(object) {
            (**ds).clone()
        } else {
            (*self.group(object)?).clone()
        };
        let names = location.attr_names().map_err(|e| self.err(object, &e))?;
        let mut out = BTreeMap::new();
        for name in names {
            let Ok(attr) = location.attr(&name) else {
                continue;
            };
            let (bytes, dtype) = self.attribute_bytes(&attr, &name)?;
            let text = match dtype.to_descriptor() {
                Ok(TypeDescriptor::FixedAscii(w) | TypeDescriptor::FixedUnicode(w)) => {
                    fixed_strings(&bytes, w).join(",")
                }
                Ok(TypeDescriptor::VarLenAscii | TypeDescriptor::VarLenUnicode) => attr
                    .read_scalar::<h5::types::VarLenUnicode>()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                _ => attr.read_raw::<f64>().map_or_else(
                    |_| "<unreadable>".into(),
                    |v| match v.as_slice() {
                        [one] => one.to_string(),
                        many => format!("{many:?}"),
                    },
                ),
            };
            out.insert(name, text);
        }
        Ok(out)
    }
}

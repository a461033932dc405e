//! The fuzz targets: one per reader of untrusted bytes.

mod config;
mod csv;
mod hdf5;
mod safetensors;
mod torch;

use std::path::Path;

use crate::{error_kind, Outcome, Target};

pub use self::config::ConfigTarget;
pub use self::csv::CsvTarget;
pub use self::hdf5::Hdf5Target;
pub use self::safetensors::SafetensorsTarget;
pub use self::torch::TorchTarget;

/// Every target, by name.
pub fn all() -> Vec<Box<dyn Target>> {
    vec![
        Box::new(Hdf5Target),
        Box::new(SafetensorsTarget),
        Box::new(TorchTarget),
        Box::new(ConfigTarget),
        Box::new(CsvTarget),
    ]
}

/// The target called `name`.
pub fn by_name(name: &str) -> Option<Box<dyn Target>> {
    all().into_iter().find(|t| t.name() == name)
}

/// Writes `input` as the file `name` of `scratch` (the file the reader opens, and the
/// input a supervisor keeps when the worker dies on it).
fn input_file(scratch: &Path, name: &str, input: &[u8]) -> std::path::PathBuf {
    let path = scratch.join(name);
    std::fs::write(&path, input).expect("the scratch directory is writable");
    path
}

/// The outcome of a reader's result.
fn outcome<T, E: std::fmt::Display>(result: Result<T, E>) -> Outcome {
    match result {
        Ok(_) => Outcome::Accepted,
        Err(e) => Outcome::Rejected(error_kind(&e.to_string())),
    }
}

/// The files of a seed directory under the repository root, sorted.
fn seed_files(dir: &str, ext: &str) -> std::io::Result<Vec<Vec<u8>>> {
    let dir = crate::repository_root().join(dir);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    paths.sort();
    paths.into_iter().map(std::fs::read).collect()
}

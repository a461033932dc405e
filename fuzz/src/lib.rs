//! Structure-aware mutational fuzzing of noether's readers of untrusted bytes.
//!
//! Every reader of a file a user may hand noether is a [`Target`]: HDF5 jet files of each
//! layout, safetensors checkpoints, TOML run configs and CSV run tables. A target knows
//! its seeds (valid files), how to mutate an input with knowledge of its format (HDF5
//! size fields, a safetensors header's JSON, TOML values, CSV cells, on top of generic
//! byte mutations), and how to run the reader on it. Inputs are run in a worker process
//! under a memory limit, with a per-input time limit, watched by a supervisor
//! ([`engine`]): a panic, an abort (a failed allocation), a hang or a crash of the worker
//! is a finding, saved with its input; an error returned is the reader doing its job.
//! There is no coverage instrumentation on stable Rust; the distinct errors an input
//! provokes guide the corpus instead (an input with a new error joins it).
//!
//! ```no_run
//! use noether_fuzz::{engine, targets};
//! let target = targets::by_name("toml").unwrap();
//! let stats = engine::run_in_process(target.as_ref(), 10_000, 7, std::path::Path::new("/tmp"))?;
//! assert_eq!(stats.findings, 0);
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod engine;
pub mod mutate;
pub mod targets;

use std::path::Path;

use rand_chacha::ChaCha8Rng;

/// What running a reader on one input gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The input was read (it is valid, or valid enough).
    Accepted,
    /// The reader returned an error; its message with numbers blanked (the error's kind).
    Rejected(String),
}

/// A reader of untrusted bytes, with its seeds and format-aware mutations.
pub trait Target: Sync {
    /// Its name on the command line (`hdf5`, `safetensors`, `pt`, `toml`, `csv`).
    fn name(&self) -> &'static str;

    /// Valid inputs to start from.
    ///
    /// # Errors
    /// A seed file cannot be read.
    fn seeds(&self) -> std::io::Result<Vec<Vec<u8>>>;

    /// A mutant of `input`; `corpus` offers other inputs to splice from.
    fn mutate(&self, input: &[u8], corpus: &[Vec<u8>], rng: &mut ChaCha8Rng) -> Vec<u8>;

    /// Runs the reader on `input`; `scratch` is a private directory for files the
    /// reader needs (the input written as a file, a run directory).
    fn execute(&self, input: &[u8], scratch: &Path) -> Outcome;
}

/// The kind of an error message: its first line with digits blanked and quoted or
/// bracketed text elided (escapes inside quotes respected). Quoted text in these
/// readers' messages is what the input said (a cell, a header, a dataset name, a config
/// echoed by a parser), so "row 17, column 'N'" and "row 18, column 'D'" are one kind:
/// the corpus grows by new behaviour, not new bytes.
pub fn error_kind(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default();
    let mut kind = String::with_capacity(line.len().min(160));
    // The closers of the quotes and brackets open at this point, innermost last.
    let mut open: Vec<char> = Vec::new();
    let mut escaped = false;
    let mut last_digit = false;
    for c in line.chars().take(400) {
        let in_quote = open.last().is_some_and(|&q| matches!(q, '\'' | '"' | '`'));
        if in_quote && escaped {
            escaped = false;
        } else if in_quote && c == '\\' {
            escaped = true;
        } else if open.last() == Some(&c) {
            open.pop();
            if open.is_empty() {
                kind.push(c);
            }
        } else if let Some(close) = closer(c).filter(|_| !in_quote) {
            if open.is_empty() {
                kind.push(c);
                kind.push('…');
            }
            open.push(close);
        } else if !open.is_empty() {
        } else if c.is_ascii_digit() {
            if !last_digit {
                kind.push('#');
            }
        } else {
            kind.push(c);
        }
        last_digit = c.is_ascii_digit();
    }
    kind
}

/// The character that ends text opened by `c`, for the quotes and brackets whose
/// content error messages take from the input.
fn closer(c: char) -> Option<char> {
    match c {
        '\'' | '"' | '`' => Some(c),
        '(' => Some(')'),
        '[' => Some(']'),
        '{' => Some('}'),
        _ => None,
    }
}

/// The repository root (seeds are found from it).
pub fn repository_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the fuzz crate lives in the repository")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_ignore_numbers_and_what_the_input_said() {
        assert_eq!(
            error_kind("a.h5: row 17 of 200"),
            error_kind("a.h5: row 3 of 9")
        );
        assert_ne!(error_kind("row 1"), error_kind("col 1"));
        assert_eq!(
            error_kind("no column 'lss' (columns are: a)\nline 2"),
            error_kind("no column 'N2' (columns are: b, c)")
        );
        assert_ne!(
            error_kind("f: 'Pmu' declares shape"),
            error_kind("f: 'Pmu' has shape")
        );
        assert_eq!(
            error_kind(r#"no column 'D' (columns are: "N)", "lo'ss")"#),
            error_kind(r#"no column 'D' (columns are: "N")"#)
        );
        assert_eq!(
            error_kind("key 'model' must be a string, found { model = 1 }"),
            error_kind("key 'x' must be a string, found { x = [2] }")
        );
        let serde = format!("invalid type: string {:?}, expected a map", "a\"b\n[data]");
        assert_eq!(
            error_kind(&serde),
            error_kind("invalid type: string \"x\", expected a map")
        );
        assert_eq!(
            error_kind(r#"invalid type: string "a\"b" at x"#),
            error_kind(r#"invalid type: string "c" at x"#)
        );
    }
}

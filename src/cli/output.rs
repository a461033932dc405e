//! Standard output and error that fail as values, never as panics: `println!` panics on
//! a full disk (`> /dev/full`) and on a closed pipe, and `eprintln!` on a full stderr.

use std::fmt;
use std::io::{self, Write};

/// Writing the command's output to standard output failed.
#[derive(Debug, thiserror::Error)]
#[error("writing to standard output: {0}")]
pub struct StdoutError(#[source] pub io::Error);

impl StdoutError {
    /// Whether the reader went away (`noether ... | head -1`): not an error, the command
    /// ends quietly as other Unix tools do.
    pub fn is_closed_pipe(&self) -> bool {
        self.0.kind() == io::ErrorKind::BrokenPipe
    }
}

/// Writes `args` and a newline to standard output.
///
/// # Errors
/// The write error (a closed pipe, a full disk).
pub fn line(args: fmt::Arguments<'_>) -> Result<(), StdoutError> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(StdoutError)
}

/// Writes `args` and a newline to standard error, ignoring failure: a diagnostic that
/// cannot be shown must not turn into another error.
pub fn write_note(args: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{args}");
}

/// `println!` that returns [`StdoutError`] instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::output::line(format_args!($($arg)*))
    };
}
/// `eprintln!` that ignores a failed write instead of panicking.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::cli::output::write_note(format_args!($($arg)*))
    };
}
pub(crate) use {note, say};

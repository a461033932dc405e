//! Subcommand implementations of the `noether` binary.

pub mod eval;
pub mod scaling;

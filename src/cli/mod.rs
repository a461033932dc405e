//! Subcommand implementations of the `noether` binary.

pub mod scaling;

//! Subcommand implementations of the `noether` binary.

pub mod compress;
pub mod diagnose;
pub mod eval;
pub mod finetune;
pub mod output;
pub mod scaling;
pub mod sweep;
pub mod train;

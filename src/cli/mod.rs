//! Subcommand implementations of the `noether` binary.

pub mod checkpoint;
pub mod compress;
pub mod diagnose;
pub mod eval;
pub mod export;
pub mod finetune;
pub mod latency;
pub mod output;
pub mod scaling;
pub mod sweep;
pub mod train;

/// Sets the threads of a command (`--threads`, `train.threads`), saying so on stderr when
/// the request exceeds the machine's cores.
pub fn set_threads(threads: usize) {
    if let Some(message) = noether::equivariant::set_threads(threads).capped() {
        output::note!("{message}");
    }
}

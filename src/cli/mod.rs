//! Subcommand implementations of the `noether` binary.

pub mod compress;
pub mod diagnose;
pub mod eval;
pub mod finetune;
pub mod scaling;
pub mod train;

/// Sets candle's thread count (0: all cores) before the first tensor operation.
pub fn set_threads(threads: usize) {
    let n = if threads == 0 {
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    } else {
        threads
    };
    noether::equivariant::set_threads(n);
}

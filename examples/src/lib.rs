//! End-to-end programs composing the noether crates; see `examples/`.

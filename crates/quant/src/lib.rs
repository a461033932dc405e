//! # noether-quant
//!
//! The time-limited regime: trigger taggers in the fixed-point arithmetic of the FPGA
//! firmware hls4ml generates. [`FixedType`] has `ap_fixed<W, I, Q, O>`'s semantics
//! (checked against the C++ headers hls4ml ships).
//!
//! ```
//! use noether_quant::FixedType;
//!
//! let t: FixedType = "ap_fixed<8,3,AP_RND,AP_SAT>".parse()?;
//! assert_eq!(t.quantize(0.1), 0.09375); // 3 / 32: the nearest multiple of 2^-5
//! assert_eq!(t.quantize(100.0), 3.96875); // saturates at (2^7 - 1) / 32
//! # Ok::<(), noether_quant::QuantError>(())
//! ```

mod error;
mod fixed;

pub use error::{QuantError, Result};
pub use fixed::{FixedType, Overflow, Rounding, MAX_WIDTH};

//! # noether
//!
//! Physics-informed, symmetry-equivariant machine learning for particle physics under
//! constraints: little data, few parameters, little compute, little time. This facade
//! re-exports the workspace crates and ships the `noether` command-line tool.
//!
//! ```
//! use noether::kinematics::FourMomentum;
//! let a = FourMomentum::new(50.0, 0.0, 0.0, 50.0)?;
//! let b = FourMomentum::new(50.0, 0.0, 0.0, -50.0)?;
//! assert!(((a + b).mass() - 100.0).abs() < 1e-12);
//! # Ok::<(), noether::kinematics::KinematicsError>(())
//! ```

pub use noether_data as data;
pub use noether_dynamics as dynamics;
pub use noether_equivariant as equivariant;
pub use noether_kinematics as kinematics;
pub use noether_quant as quant;
pub use noether_scaling as scaling;
pub use noether_sweep as sweep;
pub use noether_train as train;
pub use noether_transfer as transfer;

/// The version of the noether package, as printed by `noether version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

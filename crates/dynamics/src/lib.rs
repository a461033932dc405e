//! # noether-dynamics
//!
//! Measurements of how training behaves, each validated against a known answer:
//! Hessian-vector products, top eigenvalues, trace and spectral density of the loss
//! curvature ([`hessian`]), the local learning coefficient of singular learning theory
//! by SGLD ([`llc`]), loss barriers, Bezier curves and curvature along paths between
//! minima ([`path`]), Langevin dynamics and mean-squared displacement ([`langevin`]), and
//! layer balance ([`balance`]). Everything works on an [`Objective`]: a loss and gradient
//! over a flat parameter vector, implemented here by exactly solvable toys
//! ([`Quadratic`], [`LeastSquares`], [`toy::PowerPotential`],
//! [`toy::ReducedRankRegression`]), and by a trained tagger checkpoint
//! ([`TaggerObjective`], what `noether diagnose` measures).
//!
//! ```
//! use noether_dynamics::hessian::{top_eigenvalues, PowerConfig};
//! use noether_dynamics::Quadratic;
//!
//! let q = Quadratic::diagonal(&[4.0, 2.0, 1.0]);
//! let top = top_eigenvalues(&q, &[0.3, -0.2, 0.1], &PowerConfig { k: 2, ..PowerConfig::default() })?;
//! assert!((top[0].value - 4.0).abs() < 1e-6 && (top[1].value - 2.0).abs() < 1e-6);
//! # Ok::<(), noether_dynamics::DynamicsError>(())
//! ```

pub mod balance;
mod error;
pub mod hessian;
pub mod langevin;
pub mod llc;
mod objective;
pub mod path;
pub mod rng;
mod tagger;
pub mod toy;

pub use error::{DynamicsError, Result};
pub use objective::{LeastSquares, Objective, Quadratic};
pub use tagger::TaggerObjective;

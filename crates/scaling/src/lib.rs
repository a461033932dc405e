//! # noether-scaling
//!
//! Constrained-regime scaling-law fits, usable on their own with a CSV of runs: decide
//! whether more simulated data, a bigger model or more epochs buys more when data,
//! parameters or compute are capped.
//!
//! ```
//! use std::collections::BTreeMap;
//! use noether_scaling::{fit, Chinchilla, ChinchillaParams, FitConfig, Runs};
//!
//! // Runs on a known law L = 1.7 + 400 / N^0.34 + 410 / D^0.28.
//! let truth = ChinchillaParams { E: 1.7, A: 400.0, B: 410.0, alpha: 0.34, beta: 0.28 };
//! let (mut n, mut d, mut loss) = (vec![], vec![], vec![]);
//! for i in 0..6 {
//!     for j in 0..6 {
//!         let (ni, dj) = (1e7 * 4f64.powi(i), 1e9 * 4f64.powi(j));
//!         n.push(ni);
//!         d.push(dj);
//!         loss.push(truth.loss(ni, dj));
//!     }
//! }
//! let runs = Runs::from_columns(BTreeMap::from([("N".into(), n), ("D".into(), d), ("loss".into(), loss)]))?;
//! let result = fit(&Chinchilla, &runs, &FitConfig::default())?;
//! assert!((result.get("alpha").unwrap() - 0.34).abs() < 1e-3);
//! # Ok::<(), noether_scaling::ScalingError>(())
//! ```

mod allocate;
mod bounds;
pub mod double_descent;
mod error;
mod exchange;
mod fit;
pub mod forms;
mod objective;
mod plot;
mod runs;
mod uncertainty;
mod varpro;

pub use allocate::{allocate, isoflop, Allocation, IsoFlop};
pub use bounds::{resolve_bounds, Bound, ParamBound};
pub use error::{Result, ScalingError};
pub use exchange::{exchange_rates, Exchange};
pub use fit::{fit, objective_at, FitConfig, FitResult};
pub use forms::{
    BrokenPowerLaw, Chinchilla, ChinchillaParams, DataConstrained, Kaplan, NaturalParam, PowerLaw,
    ScalingLaw,
};
pub use objective::Loss;
pub use plot::{plot_fit, plot_groups, GroupFit};
pub use runs::{ColumnMap, Runs};
pub use uncertainty::{bootstrap, percentile, profile, Bootstrap, ParamSpread, Profile};
pub use varpro::{fit_varpro, VarProFit};

//! # noether-kinematics
//!
//! Four-momenta, the Minkowski metric, the proper orthochronous Lorentz group SO+(1,3)
//! and its double cover SL(2,C): the physics foundation of noether.
//!
//! Conventions (see DESIGN.md): units of GeV, four-vectors stored as (E, px, py, pz),
//! metric signature (+,-,-,-), azimuth in (-pi, pi], active transformations.
//!
//! Precision: Minkowski products of nearly collinear particles lose all digits in f32;
//! [`invariants::stable_dot`] is cancellation-free (see [`invariants`] for when the naive
//! formula fails). Tests use the tolerance tiers of `noether-testkit`.
//!
//! ```
//! use nalgebra::Vector3;
//! use noether_kinematics::{random, FourMomentum, LorentzTransform};
//! use rand::SeedableRng;
//!
//! // A top quark at rest, boosted along x to pT = 600 GeV, keeps its mass.
//! let top = FourMomentum::from_pt_eta_phi_m(0.0, 0.0, 0.0, 172.5)?;
//! let boost = LorentzTransform::boost_rapidity(&Vector3::x(), (600.0_f64 / 172.5).asinh())?;
//! let moving = boost.apply(&top);
//! assert!((moving.pt() - 600.0).abs() < 1e-9);
//! assert!((moving.mass() - 172.5).abs() < 1e-9);
//!
//! // A random element of SO+(1,3) with rapidity <= 3, from a seeded RNG.
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
//! let lambda = random::random_lorentz(&mut rng, 3.0)?;
//! assert!(lambda.is_valid(1e-9));
//! assert!((lambda.apply(&moving).mass() - 172.5).abs() < 1e-9);
//! # Ok::<(), noether_kinematics::KinematicsError>(())
//! ```

mod error;
mod four_momentum;
pub mod invariants;
pub mod jet_frame;
mod lorentz;
pub mod random;
mod sl2c;

pub use error::{KinematicsError, Result};
pub use four_momentum::{delta_phi, wrap_phi, FourMomentum, DEFAULT_MASS_SHELL_TOLERANCE};
pub use invariants::{metric, PtYPhiM};
pub use lorentz::{LorentzTransform, DEFAULT_GROUP_TOLERANCE};
pub use sl2c::{from_hermitian, pauli_basis, to_hermitian, Sl2c, DEFAULT_DET_TOLERANCE};

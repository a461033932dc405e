//! [`FourMomentum`]: an (E, px, py, pz) four-vector in GeV with the collider observables.

use std::f64::consts::PI;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Mul, Neg, Sub};

use nalgebra::Vector4;

use crate::error::{finite, non_negative, KinematicsError, Result};

/// Relative tolerance of [`FourMomentum::new`] on E >= |p|.
///
/// 1e-6 accepts massless particles whose components were rounded to f32 (relative
/// rounding 6e-8 per component) while rejecting genuinely spacelike input.
pub const DEFAULT_MASS_SHELL_TOLERANCE: f64 = 1e-6;

/// A four-vector (E, px, py, pz) in GeV, metric signature (+,-,-,-).
///
/// The fallible constructors ([`new`](Self::new), [`from_pt_eta_phi_m`](Self::from_pt_eta_phi_m),
/// [`from_pt_y_phi_m`](Self::from_pt_y_phi_m)) accept only physical particles: finite
/// components and E >= |p| within [`DEFAULT_MASS_SHELL_TOLERANCE`]. Arithmetic
/// (differences, Lorentz transformations) may produce general four-vectors, which is why
/// [`new_unchecked`](Self::new_unchecked) exists.
///
/// ```
/// use noether_kinematics::FourMomentum;
/// let a = FourMomentum::new(50.0, 0.0, 0.0, 50.0)?;
/// let b = FourMomentum::new(50.0, 0.0, 0.0, -50.0)?;
/// assert!(((a + b).mass() - 100.0).abs() < 1e-12);
/// # Ok::<(), noether_kinematics::KinematicsError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FourMomentum {
    e: f64,
    px: f64,
    py: f64,
    pz: f64,
}

impl FourMomentum {
    /// A validated physical four-momentum: all components finite and
    /// E >= |p| (1 - [`DEFAULT_MASS_SHELL_TOLERANCE`]).
    ///
    /// # Errors
    /// [`KinematicsError::NonFinite`] naming the component, or
    /// [`KinematicsError::EnergyBelowMomentum`].
    pub fn new(e: f64, px: f64, py: f64, pz: f64) -> Result<Self> {
        Self::with_tolerance(e, px, py, pz, DEFAULT_MASS_SHELL_TOLERANCE)
    }

    /// Like [`new`](Self::new) with a chosen relative tolerance on E >= |p|.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_tolerance(e: f64, px: f64, py: f64, pz: f64, tolerance: f64) -> Result<Self> {
        let p = Self {
            e: finite("E", e)?,
            px: finite("px", px)?,
            py: finite("py", py)?,
            pz: finite("pz", pz)?,
        };
        let momentum = p.p();
        let deficit = p.e - momentum;
        if deficit < -tolerance * momentum.max(p.e.abs()) {
            return Err(KinematicsError::EnergyBelowMomentum {
                energy: p.e,
                momentum,
                deficit,
                tolerance,
            });
        }
        Ok(p)
    }

    /// Any four-vector, without validation (NaN, spacelike and negative-energy vectors
    /// are accepted). Use it for intermediate results such as differences x_i - x_j.
    pub const fn new_unchecked(e: f64, px: f64, py: f64, pz: f64) -> Self {
        Self { e, px, py, pz }
    }

    /// From transverse momentum, pseudorapidity, azimuth and mass.
    ///
    /// # Errors
    /// Non-finite arguments, or negative `pt` or `m`.
    pub fn from_pt_eta_phi_m(pt: f64, eta: f64, phi: f64, m: f64) -> Result<Self> {
        let pt = non_negative("pt", pt)?;
        let eta = finite("eta", eta)?;
        let phi = finite("phi", phi)?;
        let m = non_negative("mass", m)?;
        let pz = pt * eta.sinh();
        let p = pt * eta.cosh();
        // E = sqrt(p^2 + m^2) written so that E == |p| exactly when m == 0.
        let e = p.hypot(m);
        Ok(Self::new_unchecked(e, pt * phi.cos(), pt * phi.sin(), pz))
    }

    /// From transverse momentum, rapidity, azimuth and mass.
    ///
    /// # Errors
    /// Non-finite arguments, or negative `pt` or `m`.
    pub fn from_pt_y_phi_m(pt: f64, y: f64, phi: f64, m: f64) -> Result<Self> {
        let pt = non_negative("pt", pt)?;
        let y = finite("rapidity", y)?;
        let phi = finite("phi", phi)?;
        let m = non_negative("mass", m)?;
        let mt = pt.hypot(m);
        Ok(Self::new_unchecked(
            mt * y.cosh(),
            pt * phi.cos(),
            pt * phi.sin(),
            mt * y.sinh(),
        ))
    }

    /// From an array `[E, px, py, pz]` (the storage order of every noether tensor).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn from_array(components: [f64; 4]) -> Result<Self> {
        let [e, px, py, pz] = components;
        Self::new(e, px, py, pz)
    }

    /// Energy E (GeV).
    pub const fn e(&self) -> f64 {
        self.e
    }
    /// px (GeV).
    pub const fn px(&self) -> f64 {
        self.px
    }
    /// py (GeV).
    pub const fn py(&self) -> f64 {
        self.py
    }
    /// pz (GeV), along the beam.
    pub const fn pz(&self) -> f64 {
        self.pz
    }

    /// The components as `[E, px, py, pz]`.
    pub const fn to_array(&self) -> [f64; 4] {
        [self.e, self.px, self.py, self.pz]
    }

    /// The components as an nalgebra column vector (E, px, py, pz).
    pub fn to_vector(&self) -> Vector4<f64> {
        Vector4::new(self.e, self.px, self.py, self.pz)
    }

    /// From an nalgebra column vector (E, px, py, pz), without validation.
    pub fn from_vector_unchecked(v: &Vector4<f64>) -> Self {
        Self::new_unchecked(v[0], v[1], v[2], v[3])
    }

    /// Transverse momentum squared px^2 + py^2.
    pub fn pt2(&self) -> f64 {
        self.px * self.px + self.py * self.py
    }

    /// Transverse momentum sqrt(px^2 + py^2).
    pub fn pt(&self) -> f64 {
        self.px.hypot(self.py)
    }

    /// |p|^2.
    pub fn p2(&self) -> f64 {
        self.pt2() + self.pz * self.pz
    }

    /// |p|.
    pub fn p(&self) -> f64 {
        self.pt().hypot(self.pz)
    }

    /// Invariant mass squared E^2 - |p|^2, computed as (E - |p|)(E + |p|) so that a
    /// massless particle built with E == |p| gives exactly 0.
    pub fn mass2(&self) -> f64 {
        let p = self.p();
        (self.e - p) * (self.e + p)
    }

    /// Invariant mass. For m^2 < 0 (rounding of a massless particle, or a spacelike
    /// vector) it returns -sqrt(-m^2), the convention of FastJet and ROOT, so that the sign
    /// shows the problem instead of hiding it; use `mass().max(0.0)` for a clamped mass.
    pub fn mass(&self) -> f64 {
        let m2 = self.mass2();
        if m2 < 0.0 {
            -(-m2).sqrt()
        } else {
            m2.sqrt()
        }
    }

    /// Transverse mass squared m^2 + pT^2 = E^2 - pz^2.
    pub fn mt2(&self) -> f64 {
        self.mass2() + self.pt2()
    }

    /// Pseudorapidity eta = asinh(pz / pT). Zero for the null vector; +-infinity along
    /// the beam (pT = 0, pz != 0).
    pub fn eta(&self) -> f64 {
        let pt = self.pt();
        if pt == 0.0 {
            return if self.pz == 0.0 {
                0.0
            } else {
                f64::INFINITY.copysign(self.pz)
            };
        }
        (self.pz / pt).asinh()
    }

    /// Rapidity y = 1/2 ln((E + pz) / (E - pz)).
    ///
    /// Computed as sign(pz) ln((E + |pz|) / m_T) to avoid the cancellation in E - |pz| at
    /// large |y|; equals [`eta`](Self::eta) for massless particles. +-infinity when
    /// m_T^2 <= 0 (a massless particle along the beam).
    pub fn rapidity(&self) -> f64 {
        let mt2 = self.mt2();
        if mt2 <= 0.0 {
            return if self.pz == 0.0 {
                0.0
            } else {
                f64::INFINITY.copysign(self.pz)
            };
        }
        let abs_y = ((self.e + self.pz.abs()) / mt2.sqrt()).ln();
        abs_y.copysign(self.pz)
    }

    /// Azimuth phi in (-pi, pi]; 0 when pT = 0.
    pub fn phi(&self) -> f64 {
        if self.px == 0.0 && self.py == 0.0 {
            return 0.0;
        }
        wrap_phi(self.py.atan2(self.px))
    }

    /// Minkowski product E1 E2 - p1 . p2 (the naive formula; see
    /// [`crate::invariants`] for the cancellation-free version).
    pub fn dot(&self, other: &Self) -> f64 {
        self.e * other.e - self.px * other.px - self.py * other.py - self.pz * other.pz
    }

    /// Delta R = sqrt(Delta eta^2 + Delta phi^2), with Delta phi wrapped into (-pi, pi].
    pub fn delta_r(&self, other: &Self) -> f64 {
        (self.eta() - other.eta()).hypot(delta_phi(self.phi(), other.phi()))
    }

    /// Delta R with rapidity instead of pseudorapidity (the FastJet convention).
    pub fn delta_r_rapidity(&self, other: &Self) -> f64 {
        (self.rapidity() - other.rapidity()).hypot(delta_phi(self.phi(), other.phi()))
    }
}

/// Wraps an angle into (-pi, pi].
pub fn wrap_phi(phi: f64) -> f64 {
    let wrapped = (phi + PI).rem_euclid(2.0 * PI) - PI;
    // rem_euclid gives [-pi, pi); the interval convention is (-pi, pi].
    if wrapped <= -PI {
        wrapped + 2.0 * PI
    } else {
        wrapped
    }
}

/// phi1 - phi2 wrapped into (-pi, pi].
pub fn delta_phi(phi1: f64, phi2: f64) -> f64 {
    wrap_phi(phi1 - phi2)
}

impl Add for FourMomentum {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self::new_unchecked(self.e + o.e, self.px + o.px, self.py + o.py, self.pz + o.pz)
    }
}

impl AddAssign for FourMomentum {
    fn add_assign(&mut self, o: Self) {
        *self = *self + o;
    }
}

impl Sub for FourMomentum {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self::new_unchecked(self.e - o.e, self.px - o.px, self.py - o.py, self.pz - o.pz)
    }
}

impl Neg for FourMomentum {
    type Output = Self;
    fn neg(self) -> Self {
        Self::new_unchecked(-self.e, -self.px, -self.py, -self.pz)
    }
}

impl Mul<f64> for FourMomentum {
    type Output = Self;
    fn mul(self, s: f64) -> Self {
        Self::new_unchecked(self.e * s, self.px * s, self.py * s, self.pz * s)
    }
}

impl Sum for FourMomentum {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), Add::add)
    }
}

impl<'a> Sum<&'a FourMomentum> for FourMomentum {
    fn sum<I: Iterator<Item = &'a Self>>(iter: I) -> Self {
        iter.copied().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_to_back_50_gev_massless_pair_has_mass_100_gev() {
        let a = FourMomentum::from_pt_eta_phi_m(50.0, 0.0, 0.3, 0.0).unwrap();
        let b = FourMomentum::from_pt_eta_phi_m(50.0, 0.0, 0.3 - PI, 0.0).unwrap();
        assert!(((a + b).mass() - 100.0).abs() < 1e-12, "{}", (a + b).mass());
    }

    #[test]
    fn observables_of_known_vector() {
        let p = FourMomentum::from_pt_eta_phi_m(100.0, 1.2, -2.0, 5.0).unwrap();
        assert!((p.pt() - 100.0).abs() < 1e-12);
        assert!((p.eta() - 1.2).abs() < 1e-12);
        assert!((p.phi() + 2.0).abs() < 1e-12);
        assert!((p.mass() - 5.0).abs() < 1e-9);
        let q = FourMomentum::from_pt_y_phi_m(100.0, 1.2, 2.0, 5.0).unwrap();
        assert!((q.rapidity() - 1.2).abs() < 1e-12);
        assert!((q.mass() - 5.0).abs() < 1e-9);
        // A massive particle has |y| < |eta|.
        assert!(p.rapidity() < p.eta());
    }

    #[test]
    fn phi_is_in_half_open_interval() {
        let p = FourMomentum::new_unchecked(1.0, -1.0, -0.0, 0.0);
        assert_eq!(p.phi(), PI);
        assert_eq!(wrap_phi(-PI), PI);
        assert_eq!(wrap_phi(3.0 * PI), PI);
        assert!((delta_phi(3.1, -3.1) - (6.2 - 2.0 * PI)).abs() < 1e-12);
    }

    #[test]
    fn delta_r_wraps_phi() {
        let a = FourMomentum::from_pt_eta_phi_m(10.0, 0.5, 3.1, 0.0).unwrap();
        let b = FourMomentum::from_pt_eta_phi_m(10.0, 0.2, -3.1, 0.0).unwrap();
        let expected = 0.3_f64.hypot(2.0 * PI - 6.2);
        assert!((a.delta_r(&b) - expected).abs() < 1e-12);
    }

    #[test]
    fn mass_of_rounded_massless_vector_is_tiny_and_signed() {
        let p = FourMomentum::new_unchecked(1.0, 0.0, 0.0, 1.0 + 1e-15);
        assert!(p.mass() < 0.0 && p.mass() > -1e-7);
    }

    #[test]
    fn bad_input_gives_typed_errors() {
        assert!(matches!(
            FourMomentum::new(f64::NAN, 0.0, 0.0, 0.0),
            Err(KinematicsError::NonFinite { name: "E", .. })
        ));
        assert!(matches!(
            FourMomentum::new(1.0, 0.0, f64::INFINITY, 0.0),
            Err(KinematicsError::NonFinite { name: "py", .. })
        ));
        assert!(matches!(
            FourMomentum::new(1.0, 2.0, 0.0, 0.0),
            Err(KinematicsError::EnergyBelowMomentum { .. })
        ));
        assert!(matches!(
            FourMomentum::new(-1.0, 0.0, 0.0, 0.0),
            Err(KinematicsError::EnergyBelowMomentum { .. })
        ));
        assert!(matches!(
            FourMomentum::from_pt_eta_phi_m(-1.0, 0.0, 0.0, 0.0),
            Err(KinematicsError::Negative { name: "pt", .. })
        ));
        // f32 rounding of a massless particle stays within the default tolerance.
        let e = f64::from(300.0_f32);
        let pz = f64::from(300.00002_f32);
        assert!(FourMomentum::new(e, 0.0, 0.0, pz).is_ok());
    }
}

//! [`LorentzTransform`]: elements of the proper orthochronous Lorentz group SO+(1,3).

use std::fmt;
use std::ops::Mul;

use nalgebra::{Matrix4, Rotation3, Unit, Vector3};

use crate::error::{finite, KinematicsError, Result};
use crate::invariants::metric;
use crate::FourMomentum;

/// Default tolerance of [`LorentzTransform::validate`]: 1e-9 on the metric condition
/// relative to the squared size of the matrix (entries grow like cosh(rapidity)).
pub const DEFAULT_GROUP_TOLERANCE: f64 = 1e-9;

/// A proper orthochronous Lorentz transformation Lambda acting on column vectors
/// (E, px, py, pz): x' = Lambda x.
///
/// Boosts are *active*: `boost(beta)` gives a particle at rest the velocity `beta`.
/// Composition follows matrix multiplication: `(a * b).apply(p) == a.apply(&b.apply(p))`.
///
/// ```
/// use nalgebra::Vector3;
/// use noether_kinematics::{FourMomentum, LorentzTransform};
/// let top = FourMomentum::from_pt_eta_phi_m(0.0, 0.0, 0.0, 172.5)?;
/// let boost = LorentzTransform::boost(Vector3::new(0.6, 0.0, 0.0))?;
/// let moving = boost.apply(&top);
/// assert!((moving.px() - 0.75 * 172.5).abs() < 1e-9); // gamma beta = 0.75
/// assert!((moving.mass() - 172.5).abs() < 1e-9);
/// # Ok::<(), noether_kinematics::KinematicsError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LorentzTransform {
    matrix: Matrix4<f64>,
}

impl LorentzTransform {
    /// The identity.
    pub fn identity() -> Self {
        Self {
            matrix: Matrix4::identity(),
        }
    }

    /// From a matrix, validated with [`DEFAULT_GROUP_TOLERANCE`].
    ///
    /// # Errors
    /// [`KinematicsError::NotProperOrthochronous`] naming the failed condition.
    pub fn from_matrix(matrix: Matrix4<f64>) -> Result<Self> {
        let t = Self::from_matrix_unchecked(matrix);
        t.validate(DEFAULT_GROUP_TOLERANCE)?;
        Ok(t)
    }

    /// From a matrix without validation (e.g. for a matrix known to be a product of
    /// valid elements).
    pub const fn from_matrix_unchecked(matrix: Matrix4<f64>) -> Self {
        Self { matrix }
    }

    /// The boost giving a particle at rest the velocity `beta` (in units of c).
    ///
    /// # Errors
    /// Non-finite components, or |beta| >= 1 ([`KinematicsError::Superluminal`]).
    pub fn boost(beta: Vector3<f64>) -> Result<Self> {
        for (name, v) in ["beta_x", "beta_y", "beta_z"].into_iter().zip(beta.iter()) {
            finite(name, *v)?;
        }
        let speed = beta.norm();
        if speed >= 1.0 {
            return Err(KinematicsError::Superluminal { beta: speed });
        }
        if speed == 0.0 {
            return Ok(Self::identity());
        }
        Ok(Self::boost_unit(
            &Unit::new_unchecked(beta / speed),
            speed.atanh(),
        ))
    }

    /// The boost with rapidity `rapidity` along `axis` (any non-zero vector; its length
    /// is ignored). Negative rapidities boost against the axis.
    ///
    /// # Errors
    /// Non-finite input or a zero axis.
    pub fn boost_rapidity(axis: &Vector3<f64>, rapidity: f64) -> Result<Self> {
        let rapidity = finite("rapidity", rapidity)?;
        Ok(Self::boost_unit(&unit_axis(axis, "boost axis")?, rapidity))
    }

    fn boost_unit(n: &Unit<Vector3<f64>>, rapidity: f64) -> Self {
        let (gamma, gamma_beta) = (rapidity.cosh(), rapidity.sinh());
        let mut m = Matrix4::identity();
        m[(0, 0)] = gamma;
        for i in 0..3 {
            m[(0, i + 1)] = gamma_beta * n[i];
            m[(i + 1, 0)] = gamma_beta * n[i];
            for j in 0..3 {
                m[(i + 1, j + 1)] += (gamma - 1.0) * n[i] * n[j];
            }
        }
        Self { matrix: m }
    }

    /// The (active, right-handed) rotation by `angle` radians about `axis`.
    ///
    /// # Errors
    /// Non-finite input or a zero axis.
    pub fn rotation(axis: &Vector3<f64>, angle: f64) -> Result<Self> {
        let angle = finite("rotation angle", angle)?;
        let axis = unit_axis(axis, "rotation axis")?;
        Ok(Self::from_rotation(&Rotation3::from_axis_angle(
            &axis, angle,
        )))
    }

    /// Embeds a spatial rotation.
    pub fn from_rotation(rotation: &Rotation3<f64>) -> Self {
        let mut m = Matrix4::identity();
        m.fixed_view_mut::<3, 3>(1, 1).copy_from(rotation.matrix());
        Self { matrix: m }
    }

    /// The 4x4 matrix Lambda^mu_nu.
    pub const fn matrix(&self) -> &Matrix4<f64> {
        &self.matrix
    }

    /// `self` after `other`: the matrix product `self * other`.
    #[must_use]
    pub fn compose(&self, other: &Self) -> Self {
        Self {
            matrix: self.matrix * other.matrix,
        }
    }

    /// The inverse, eta Lambda^T eta (exact for group elements, no matrix inversion).
    #[must_use]
    pub fn inverse(&self) -> Self {
        let eta = metric();
        Self {
            matrix: eta * self.matrix.transpose() * eta,
        }
    }

    /// Applies the transformation to a four-vector.
    pub fn apply(&self, p: &FourMomentum) -> FourMomentum {
        FourMomentum::from_vector_unchecked(&(self.matrix * p.to_vector()))
    }

    /// Applies the transformation to every four-vector of a slice.
    pub fn apply_all(&self, momenta: &[FourMomentum]) -> Vec<FourMomentum> {
        momenta.iter().map(|p| self.apply(p)).collect()
    }

    /// Largest |(Lambda^T eta Lambda - eta)_{mu nu}| divided by max(1, max|Lambda|^2):
    /// the relative violation of the defining condition.
    pub fn metric_deviation(&self) -> f64 {
        let eta = metric();
        let defect = self.matrix.transpose() * eta * self.matrix - eta;
        let scale = self.matrix.amax().powi(2).max(1.0);
        defect.amax() / scale
    }

    /// Checks Lambda^T eta Lambda = eta (relative to the matrix size), det = +1 and
    /// Lambda^0_0 >= 1, each within `tolerance`.
    ///
    /// # Errors
    /// [`KinematicsError::NotProperOrthochronous`] naming the first failed condition.
    pub fn validate(&self, tolerance: f64) -> Result<()> {
        let fail = |check, deviation| {
            Err(KinematicsError::NotProperOrthochronous {
                check,
                deviation,
                tolerance,
            })
        };
        if !self.matrix.iter().all(|x| x.is_finite()) {
            return fail("finite entries", f64::INFINITY);
        }
        let metric_dev = self.metric_deviation();
        if metric_dev > tolerance {
            return fail("Lambda^T eta Lambda = eta", metric_dev);
        }
        // Given the metric condition det = +-1; its sign separates SO from O.
        let scale = self.matrix.amax().powi(4).max(1.0);
        let det_dev = (self.matrix.determinant() - 1.0).abs() / scale;
        if det_dev > tolerance {
            return fail("det = +1", det_dev);
        }
        let l00 = self.matrix[(0, 0)];
        if l00 < 1.0 - tolerance {
            return fail("Lambda^0_0 >= 1", 1.0 - l00);
        }
        Ok(())
    }

    /// Whether [`validate`](Self::validate) passes.
    pub fn is_valid(&self, tolerance: f64) -> bool {
        self.validate(tolerance).is_ok()
    }

    /// The rapidity of the boost part: acosh(Lambda^0_0) (rotations have 0).
    pub fn rapidity(&self) -> f64 {
        self.matrix[(0, 0)].max(1.0).acosh()
    }
}

impl Mul for LorentzTransform {
    type Output = Self;
    fn mul(self, rhs: Self) -> Self {
        self.compose(&rhs)
    }
}

impl fmt::Display for LorentzTransform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lorentz transform (rapidity {:.3}) [", self.rapidity())?;
        for r in 0..4 {
            let row: Vec<String> = (0..4)
                .map(|c| format!("{:.6}", self.matrix[(r, c)]))
                .collect();
            write!(f, "[{}]", row.join(", "))?;
        }
        write!(f, "]")
    }
}

fn unit_axis(axis: &Vector3<f64>, name: &'static str) -> Result<Unit<Vector3<f64>>> {
    for v in axis.iter() {
        finite(name, *v)?;
    }
    let norm = axis.norm();
    if norm == 0.0 {
        return Err(KinematicsError::ZeroDirection { name });
    }
    Ok(Unit::new_unchecked(axis / norm))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_quark_boosted_to_600_gev_keeps_its_mass() {
        let top = FourMomentum::from_pt_eta_phi_m(0.0, 0.0, 0.0, 172.5).unwrap();
        // pT = m sinh(y) along x: choose y so that pT = 600 GeV.
        let y = (600.0_f64 / 172.5).asinh();
        let boosted = LorentzTransform::boost_rapidity(&Vector3::x(), y)
            .unwrap()
            .apply(&top);
        assert!((boosted.pt() - 600.0).abs() < 1e-9);
        assert!(
            (boosted.mass() - 172.5).abs() / 172.5 < 1e-9,
            "{}",
            boosted.mass()
        );
    }

    #[test]
    fn boost_by_velocity_matches_boost_by_rapidity() {
        let beta = Vector3::new(0.3, -0.4, 0.5);
        let a = LorentzTransform::boost(beta).unwrap();
        let b = LorentzTransform::boost_rapidity(&beta, beta.norm().atanh()).unwrap();
        assert!((a.matrix() - b.matrix()).amax() < 1e-12);
        assert!(a.is_valid(1e-12));
    }

    #[test]
    fn rotation_is_active_right_handed() {
        let r = LorentzTransform::rotation(&Vector3::z(), std::f64::consts::FRAC_PI_2).unwrap();
        let p = r.apply(&FourMomentum::new(1.0, 1.0, 0.0, 0.0).unwrap());
        assert!(p.px().abs() < 1e-15 && (p.py() - 1.0).abs() < 1e-15);
    }

    #[test]
    fn invalid_transforms_are_rejected() {
        assert!(matches!(
            LorentzTransform::boost(Vector3::new(0.6, 0.8, 0.0)),
            Err(KinematicsError::Superluminal { .. })
        ));
        assert!(matches!(
            LorentzTransform::boost(Vector3::new(f64::NAN, 0.0, 0.0)),
            Err(KinematicsError::NonFinite { .. })
        ));
        assert!(matches!(
            LorentzTransform::rotation(&Vector3::zeros(), 1.0),
            Err(KinematicsError::ZeroDirection { .. })
        ));
        // Parity is in O(1,3) but not SO+(1,3).
        let parity = Matrix4::from_diagonal(&nalgebra::Vector4::new(1.0, -1.0, -1.0, -1.0));
        assert!(matches!(
            LorentzTransform::from_matrix(parity),
            Err(KinematicsError::NotProperOrthochronous {
                check: "det = +1",
                ..
            })
        ));
        // Time reversal combined with parity: det +1 but not orthochronous.
        assert!(matches!(
            LorentzTransform::from_matrix(-Matrix4::identity()),
            Err(KinematicsError::NotProperOrthochronous {
                check: "Lambda^0_0 >= 1",
                ..
            })
        ));
        let mut skew = Matrix4::identity();
        skew[(0, 1)] = 0.1;
        assert!(matches!(
            LorentzTransform::from_matrix(skew),
            Err(KinematicsError::NotProperOrthochronous {
                check: "Lambda^T eta Lambda = eta",
                ..
            })
        ));
    }
}

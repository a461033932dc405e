//! [`Sl2c`]: the double cover SL(2,C) of the Lorentz group, and its covering map.
//!
//! A four-vector x is identified with the Hermitian matrix X = x^mu s_mu, with
//! s_mu = (1, sigma_1, sigma_2, sigma_3), so that det X = x . x. An element A of SL(2,C)
//! acts as X -> A X A^dagger, which preserves det X, and the covering map is
//! Lambda(A)^mu_nu = 1/2 tr(sigma-bar^mu A sigma_nu A^dagger) with sigma-bar^mu =
//! eta^{mu nu} sigma-bar_nu = s_mu. A and -A give the same Lambda.

use std::ops::{Mul, Neg};

use nalgebra::{Matrix2, Matrix4, Vector3};
use num_complex::Complex64;

use crate::error::{finite, KinematicsError, Result};
use crate::{FourMomentum, LorentzTransform};

/// Default tolerance on |det A - 1| for [`Sl2c::new`].
pub const DEFAULT_DET_TOLERANCE: f64 = 1e-10;

/// The basis s_mu = (1, sigma_x, sigma_y, sigma_z) of 2x2 Hermitian matrices.
pub fn pauli_basis() -> [Matrix2<Complex64>; 4] {
    let (o, z, i) = (Complex64::ONE, Complex64::ZERO, Complex64::I);
    [
        Matrix2::new(o, z, z, o),
        Matrix2::new(z, o, o, z),
        Matrix2::new(z, -i, i, z),
        Matrix2::new(o, z, z, -o),
    ]
}

/// The Hermitian matrix X = x^mu s_mu of a four-vector; det X = x . x.
pub fn to_hermitian(p: &FourMomentum) -> Matrix2<Complex64> {
    pauli_basis()
        .iter()
        .zip(p.to_array())
        .map(|(s, x)| s * Complex64::from(x))
        .sum()
}

/// The four-vector x^mu = 1/2 tr(s_mu X) of a Hermitian matrix (the anti-Hermitian part
/// is dropped).
pub fn from_hermitian(x: &Matrix2<Complex64>) -> FourMomentum {
    let c = pauli_basis().map(|s| 0.5 * (s * x).trace().re);
    FourMomentum::new_unchecked(c[0], c[1], c[2], c[3])
}

/// An element of SL(2,C): a complex 2x2 matrix with determinant 1.
///
/// ```
/// use nalgebra::Vector3;
/// use noether_kinematics::{LorentzTransform, Sl2c};
/// let a = Sl2c::boost_rapidity(&Vector3::z(), 0.7)?;
/// let lambda = a.to_lorentz();
/// let expected = LorentzTransform::boost_rapidity(&Vector3::z(), 0.7)?;
/// assert!((lambda.matrix() - expected.matrix()).amax() < 1e-12);
/// assert_eq!((-a).to_lorentz(), lambda);
/// # Ok::<(), noether_kinematics::KinematicsError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sl2c {
    matrix: Matrix2<Complex64>,
}

impl Sl2c {
    /// The identity.
    pub fn identity() -> Self {
        Self {
            matrix: Matrix2::identity(),
        }
    }

    /// From a matrix with |det - 1| <= [`DEFAULT_DET_TOLERANCE`].
    ///
    /// # Errors
    /// [`KinematicsError::NonFinite`] or [`KinematicsError::NotUnimodular`].
    pub fn new(matrix: Matrix2<Complex64>) -> Result<Self> {
        for z in matrix.iter() {
            finite("SL(2,C) entry (real part)", z.re)?;
            finite("SL(2,C) entry (imaginary part)", z.im)?;
        }
        let det = matrix.determinant();
        if (det - Complex64::ONE).norm() > DEFAULT_DET_TOLERANCE {
            return Err(KinematicsError::NotUnimodular {
                det,
                tolerance: DEFAULT_DET_TOLERANCE,
            });
        }
        Ok(Self { matrix })
    }

    /// The rotation by `angle` about `axis`: cos(angle/2) - i sin(angle/2) n.sigma.
    /// Covers [`LorentzTransform::rotation`] with the same arguments.
    ///
    /// # Errors
    /// Non-finite input or a zero axis.
    pub fn rotation(axis: &Vector3<f64>, angle: f64) -> Result<Self> {
        let angle = finite("rotation angle", angle)?;
        let n_sigma = n_dot_sigma(axis, "rotation axis")?;
        let (s, c) = (angle / 2.0).sin_cos();
        Ok(Self {
            matrix: Matrix2::identity() * Complex64::from(c) - n_sigma * Complex64::new(0.0, s),
        })
    }

    /// The boost with rapidity `rapidity` along `axis`: cosh(y/2) + sinh(y/2) n.sigma.
    /// Covers [`LorentzTransform::boost_rapidity`] with the same arguments.
    ///
    /// # Errors
    /// Non-finite input or a zero axis.
    pub fn boost_rapidity(axis: &Vector3<f64>, rapidity: f64) -> Result<Self> {
        let rapidity = finite("rapidity", rapidity)?;
        let n_sigma = n_dot_sigma(axis, "boost axis")?;
        let half = rapidity / 2.0;
        Ok(Self {
            matrix: Matrix2::identity() * Complex64::from(half.cosh())
                + n_sigma * Complex64::from(half.sinh()),
        })
    }

    /// The unit quaternion (w, x, y, z) as an SU(2) element w - i (x, y, z).sigma,
    /// covering the rotation that nalgebra's `UnitQuaternion` with the same components
    /// represents. The quaternion is normalised here.
    ///
    /// # Errors
    /// A zero or non-finite quaternion.
    pub fn from_quaternion(w: f64, x: f64, y: f64, z: f64) -> Result<Self> {
        let norm = (w * w + x * x + y * y + z * z).sqrt();
        finite("quaternion norm", norm)?;
        if norm == 0.0 {
            return Err(KinematicsError::ZeroDirection { name: "quaternion" });
        }
        let [_, sx, sy, sz] = pauli_basis();
        let v = (sx * Complex64::from(x) + sy * Complex64::from(y) + sz * Complex64::from(z))
            * Complex64::new(0.0, -1.0 / norm);
        Ok(Self {
            matrix: Matrix2::identity() * Complex64::from(w / norm) + v,
        })
    }

    /// The complex matrix A.
    pub const fn matrix(&self) -> &Matrix2<Complex64> {
        &self.matrix
    }

    /// The covering map A -> Lambda(A), Lambda^mu_nu = 1/2 tr(s_mu A s_nu A^dagger).
    pub fn to_lorentz(&self) -> LorentzTransform {
        let s = pauli_basis();
        let a_dagger = self.matrix.adjoint();
        let images: Vec<Matrix2<Complex64>> =
            s.iter().map(|s_nu| self.matrix * s_nu * a_dagger).collect();
        let m = Matrix4::from_fn(|mu, nu| 0.5 * (s[mu] * images[nu]).trace().re);
        LorentzTransform::from_matrix_unchecked(m)
    }

    /// Acts on a four-vector through X -> A X A^dagger (equal to applying
    /// [`to_lorentz`](Self::to_lorentz)).
    pub fn act(&self, p: &FourMomentum) -> FourMomentum {
        from_hermitian(&(self.matrix * to_hermitian(p) * self.matrix.adjoint()))
    }
}

impl Mul for Sl2c {
    type Output = Self;
    fn mul(self, rhs: Self) -> Self {
        Self {
            matrix: self.matrix * rhs.matrix,
        }
    }
}

impl Neg for Sl2c {
    type Output = Self;
    fn neg(self) -> Self {
        Self {
            matrix: -self.matrix,
        }
    }
}

fn n_dot_sigma(axis: &Vector3<f64>, name: &'static str) -> Result<Matrix2<Complex64>> {
    for v in axis.iter() {
        finite(name, *v)?;
    }
    let norm = axis.norm();
    if norm == 0.0 {
        return Err(KinematicsError::ZeroDirection { name });
    }
    let [_, sx, sy, sz] = pauli_basis();
    let n = axis / norm;
    Ok(sx * Complex64::from(n.x) + sy * Complex64::from(n.y) + sz * Complex64::from(n.z))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_covers_lorentz_rotation() {
        let axis = Vector3::new(0.2, -1.0, 0.4);
        let a = Sl2c::rotation(&axis, 2.3).unwrap().to_lorentz();
        let b = LorentzTransform::rotation(&axis, 2.3).unwrap();
        assert!((a.matrix() - b.matrix()).amax() < 1e-12);
    }

    #[test]
    fn quaternion_matches_nalgebra_rotation() {
        let q = nalgebra::UnitQuaternion::from_quaternion(nalgebra::Quaternion::new(
            0.3, -0.5, 0.7, 0.1,
        ));
        let a = Sl2c::from_quaternion(q.w, q.i, q.j, q.k)
            .unwrap()
            .to_lorentz();
        let b = LorentzTransform::from_rotation(&q.to_rotation_matrix());
        assert!((a.matrix() - b.matrix()).amax() < 1e-12);
    }

    #[test]
    fn hermitian_determinant_is_minkowski_square() {
        let p = FourMomentum::new(10.0, 1.0, -2.0, 3.0).unwrap();
        let det = to_hermitian(&p).determinant();
        assert!((det.re - p.mass2()).abs() < 1e-12 && det.im.abs() < 1e-12);
        assert_eq!(from_hermitian(&to_hermitian(&p)), p);
    }

    #[test]
    fn non_unimodular_matrix_is_rejected() {
        let m = Matrix2::identity() * Complex64::from(2.0);
        assert!(matches!(
            Sl2c::new(m),
            Err(KinematicsError::NotUnimodular { .. })
        ));
    }
}

//! The Minkowski metric and pair invariants, naive and cancellation-free.
//!
//! # When the naive formula fails
//! The naive Minkowski product p_i . p_j = E_i E_j - p_i . p_j subtracts two numbers of
//! size E_i E_j to obtain a result of size E_i E_j theta_ij^2 / 2 for nearly collinear
//! massless particles. The relative rounding error is therefore about
//! `eps / (theta_ij^2 / 2)`: with f32 (eps = 6e-8) and theta_ij = 1e-3 it is of order
//! 10%, i.e. the pair mass of two collinear 300 GeV particles is garbage, while in f64
//! (eps = 1.1e-16) it is about 2e-10. Jets are made of exactly such pairs.
//!
//! [`stable_dot`] rewrites the product in (pT, y, phi, m) coordinates as a sum of
//! non-negative terms,
//!
//! ```text
//! p_i . p_j = 2 mT_i mT_j sinh^2(dy/2) + 2 pT_i pT_j sin^2(dphi/2)
//!           + (m_i^2 pT_j^2 + m_j^2 pT_i^2 + m_i^2 m_j^2) / (mT_i mT_j + pT_i pT_j)
//! ```
//!
//! (using cosh dy - 1 = 2 sinh^2(dy/2), 1 - cos dphi = 2 sin^2(dphi/2) and
//! mT_i mT_j - pT_i pT_j written without subtraction), so its relative error is a few eps
//! in any precision, given accurate coordinate differences.
//!
//! ```
//! use noether_kinematics::invariants::{naive_dot, stable_dot, PtYPhiM};
//! // Two massless 300 GeV particles at eta = 0, Delta R = 1e-3 apart in phi.
//! let (a, b) = (PtYPhiM::<f32>::new(300.0, 0.0, 0.25, 0.0), PtYPhiM::<f32>::new(300.0, 0.0, 0.251, 0.0));
//! let dphi = f64::from(b.phi) - f64::from(a.phi); // the exact difference of the f32 inputs
//! let exact = 300.0_f64 * 300.0 * (1.0 - dphi.cos()); // pT_a pT_b (1 - cos dphi)
//! let stable = f64::from(stable_dot(&a, &b));
//! let naive = f64::from(naive_dot(&a.to_e_px_py_pz(), &b.to_e_px_py_pz()));
//! assert!((stable - exact).abs() / exact < 1e-6);
//! assert!((naive - exact).abs() / exact > 1e-2); // f32 cancellation: tens of percent off
//! ```

use nalgebra::Matrix4;
use num_traits::Float;

use crate::FourMomentum;

/// The diagonal of the Minkowski metric, signature (+,-,-,-).
pub const METRIC_DIAGONAL: [f64; 4] = [1.0, -1.0, -1.0, -1.0];

/// The Minkowski metric eta = diag(1, -1, -1, -1) as a matrix.
pub fn metric() -> Matrix4<f64> {
    Matrix4::from_diagonal(&METRIC_DIAGONAL.into())
}

/// Naive Minkowski product a . b = a0 b0 - a1 b1 - a2 b2 - a3 b3 of `[E, px, py, pz]`
/// arrays, in any float type. Suffers cancellation for nearly collinear vectors.
pub fn naive_dot<T: Float>(a: &[T; 4], b: &[T; 4]) -> T {
    a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3]
}

/// Naive invariant mass squared (a + b)^2 of a pair of `[E, px, py, pz]` arrays.
pub fn naive_pair_mass2<T: Float>(a: &[T; 4], b: &[T; 4]) -> T {
    let s = [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]];
    naive_dot(&s, &s)
}

/// A momentum in cylindrical collider coordinates: transverse momentum, rapidity,
/// azimuth and mass, in any float type. The coordinates of [`stable_dot`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PtYPhiM<T> {
    /// Transverse momentum (GeV).
    pub pt: T,
    /// Rapidity.
    pub y: T,
    /// Azimuth (radians).
    pub phi: T,
    /// Mass (GeV), >= 0.
    pub m: T,
}

impl<T: Float> PtYPhiM<T> {
    /// From the four coordinates (no validation).
    pub fn new(pt: T, y: T, phi: T, m: T) -> Self {
        Self { pt, y, phi, m }
    }

    /// Transverse mass sqrt(pT^2 + m^2).
    pub fn mt(&self) -> T {
        self.pt.hypot(self.m)
    }

    /// The Cartesian components `[E, px, py, pz]` in the same float type.
    pub fn to_e_px_py_pz(&self) -> [T; 4] {
        let mt = self.mt();
        [
            mt * self.y.cosh(),
            self.pt * self.phi.cos(),
            self.pt * self.phi.sin(),
            mt * self.y.sinh(),
        ]
    }

    /// Converts the float type (e.g. f64 -> f32 for the network input).
    ///
    /// # Panics
    /// Never for the f32/f64 pair: both represent every value of the other, with
    /// rounding or overflow to infinity.
    pub fn cast<U: Float>(&self) -> PtYPhiM<U> {
        let c = |x: T| U::from(x).expect("float-to-float casts always succeed");
        PtYPhiM::new(c(self.pt), c(self.y), c(self.phi), c(self.m))
    }
}

impl PtYPhiM<f64> {
    /// From a four-momentum. A negative m^2 from rounding is clamped to m = 0.
    pub fn from_four_momentum(p: &FourMomentum) -> Self {
        Self::new(p.pt(), p.rapidity(), p.phi(), p.mass().max(0.0))
    }
}

impl From<&FourMomentum> for PtYPhiM<f64> {
    fn from(p: &FourMomentum) -> Self {
        Self::from_four_momentum(p)
    }
}

/// Cancellation-free Minkowski product p_a . p_b (see the module docs for the formula).
/// Accurate to a few ulp of `T` when the inputs are exact.
pub fn stable_dot<T: Float>(a: &PtYPhiM<T>, b: &PtYPhiM<T>) -> T {
    let two = T::one() + T::one();
    let half_dy = (a.y - b.y) / two;
    let half_dphi = (a.phi - b.phi) / two;
    let (mta, mtb) = (a.mt(), b.mt());
    let sh = half_dy.sinh();
    let sn = half_dphi.sin();
    let longitudinal = two * mta * mtb * sh * sh;
    let azimuthal = two * a.pt * b.pt * sn * sn;
    let (ma2, mb2) = (a.m * a.m, b.m * b.m);
    let denominator = mta * mtb + a.pt * b.pt;
    let mass_term = if denominator > T::zero() {
        (ma2 * b.pt * b.pt + mb2 * a.pt * a.pt + ma2 * mb2) / denominator
    } else {
        T::zero()
    };
    longitudinal + azimuthal + mass_term
}

/// Cancellation-free invariant mass squared (p_a + p_b)^2 = m_a^2 + m_b^2 + 2 p_a . p_b.
pub fn stable_pair_mass2<T: Float>(a: &PtYPhiM<T>, b: &PtYPhiM<T>) -> T {
    a.m * a.m + b.m * b.m + (T::one() + T::one()) * stable_dot(a, b)
}

/// All pairwise naive Minkowski products of a set of `[E, px, py, pz]` arrays, as a
/// row-major `n x n` symmetric matrix (the PELICAN input).
pub fn pairwise_naive_dots<T: Float>(momenta: &[[T; 4]]) -> Vec<T> {
    pairwise(momenta, naive_dot)
}

/// All pairwise cancellation-free Minkowski products in f64, row-major `n x n`; the
/// diagonal holds m_i^2. Cast the result to f32 for a network, never the inputs.
///
/// Faster than calling [`stable_dot`] per pair: the transcendental functions are
/// evaluated once per particle, using
/// 2 mT_i mT_j sinh^2(dy/2) = (u_i - u_j)^2 w_i w_j / 2 with u = e^y, w = mT e^-y, and
/// 2 sin^2(dphi/2) = |n_i - n_j|^2 / 2 with n = (cos phi, sin phi). The differences
/// u_i - u_j and n_i - n_j carry the same relative rounding (eps / Delta R) as the
/// coordinate differences themselves, so in f64 the result stays accurate to ~1e-12 at
/// Delta R = 1e-3. Particles need finite rapidity (pT > 0 or m > 0).
pub fn pairwise_stable_dots(momenta: &[PtYPhiM<f64>]) -> Vec<f64> {
    let prepared: Vec<Prepared> = momenta.iter().map(Prepared::new).collect();
    pairwise(&prepared, Prepared::dot)
}

/// All pairwise [`stable_dot`] products in any float type (transcendental functions per
/// pair; the accuracy reference for [`pairwise_stable_dots`]).
pub fn pairwise_stable_dots_exact<T: Float>(momenta: &[PtYPhiM<T>]) -> Vec<T> {
    pairwise(momenta, stable_dot)
}

/// Per-particle quantities of the factorised stable product.
struct Prepared {
    u: f64,
    w: f64,
    cos_phi: f64,
    sin_phi: f64,
    pt: f64,
    m2: f64,
    mt: f64,
}

impl Prepared {
    fn new(p: &PtYPhiM<f64>) -> Self {
        let mt = p.mt();
        let (sin_phi, cos_phi) = p.phi.sin_cos();
        Self {
            u: p.y.exp(),
            w: mt * (-p.y).exp(),
            cos_phi,
            sin_phi,
            pt: p.pt,
            m2: p.m * p.m,
            mt,
        }
    }

    fn dot(a: &Self, b: &Self) -> f64 {
        let du = a.u - b.u;
        let longitudinal = 0.5 * du * du * a.w * b.w;
        let (dc, ds) = (a.cos_phi - b.cos_phi, a.sin_phi - b.sin_phi);
        let azimuthal = 0.5 * a.pt * b.pt * (dc * dc + ds * ds);
        let denominator = a.mt * b.mt + a.pt * b.pt;
        let mass_term = if denominator > 0.0 {
            (a.m2 * b.pt * b.pt + b.m2 * a.pt * a.pt + a.m2 * b.m2) / denominator
        } else {
            0.0
        };
        longitudinal + azimuthal + mass_term
    }
}

fn pairwise<P, T: Float>(items: &[P], dot: impl Fn(&P, &P) -> T) -> Vec<T> {
    let n = items.len();
    let mut out = vec![T::zero(); n * n];
    for i in 0..n {
        for j in i..n {
            let d = dot(&items[i], &items[j]);
            out[i * n + j] = d;
            out[j * n + i] = d;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs()
    }

    #[test]
    fn stable_dot_agrees_with_naive_in_f64_for_wide_angles() {
        let a = FourMomentum::from_pt_eta_phi_m(120.0, 0.4, 1.0, 4.0).unwrap();
        let b = FourMomentum::from_pt_eta_phi_m(35.0, -1.3, -2.5, 0.14).unwrap();
        let stable = stable_dot(&(&a).into(), &(&b).into());
        assert!(rel(stable, a.dot(&b)) < 1e-12, "{stable} vs {}", a.dot(&b));
    }

    #[test]
    fn stable_dot_of_particle_with_itself_is_its_mass_squared() {
        let a = PtYPhiM::new(50.0, 0.7, 0.2, 1.5);
        assert!(rel(stable_dot(&a, &a), 2.25) < 1e-14);
    }

    #[test]
    fn collinear_f32_pair_mass_naive_fails_stable_holds() {
        // Two massless 300 GeV particles at eta = 0, Delta R = 1e-3 (in phi).
        let (phi_a, phi_b) = (0.25_f32, 0.251_f32);
        let a = PtYPhiM::<f32>::new(300.0, 0.0, phi_a, 0.0);
        let b = PtYPhiM::<f32>::new(300.0, 0.0, phi_b, 0.0);
        // Exact answer for the f32-rounded inputs: m^2 = 4 pT^2 sin^2(dphi/2).
        let dphi = f64::from(phi_b) - f64::from(phi_a);
        let exact = 4.0 * 300.0 * 300.0 * (dphi / 2.0).sin().powi(2);
        let naive = f64::from(naive_pair_mass2(&a.to_e_px_py_pz(), &b.to_e_px_py_pz()));
        let stable32 = f64::from(stable_pair_mass2(&a, &b));
        let stable64 = stable_pair_mass2(&a.cast::<f64>(), &b.cast::<f64>());
        assert!(
            rel(naive.sqrt(), exact.sqrt()) > 1e-2,
            "naive f32 pair mass unexpectedly accurate: {} vs {}",
            naive.sqrt(),
            exact.sqrt()
        );
        assert!(
            rel(stable32.sqrt(), exact.sqrt()) < 1e-6,
            "stable f32 {stable32} vs {exact}"
        );
        assert!(
            rel(stable64.sqrt(), exact.sqrt()) < 1e-12,
            "stable f64 {stable64} vs {exact}"
        );
    }

    #[test]
    fn pairwise_matrix_is_symmetric_with_masses_on_diagonal() {
        let ps = [
            PtYPhiM::new(10.0, 0.1, 0.2, 0.0),
            PtYPhiM::new(20.0, -0.3, 1.2, 0.5),
            PtYPhiM::new(5.0, 2.0, -3.0, 0.14),
        ];
        let m = pairwise_stable_dots(&ps);
        for i in 0..3 {
            assert!((m[i * 3 + i] - ps[i].m * ps[i].m).abs() < 1e-12);
            for j in 0..3 {
                assert_eq!(m[i * 3 + j], m[j * 3 + i]);
            }
        }
        let cart: Vec<[f64; 4]> = ps.iter().map(PtYPhiM::to_e_px_py_pz).collect();
        let naive = pairwise_naive_dots(&cart);
        for (s, n) in m.iter().zip(&naive) {
            assert!((s - n).abs() < 1e-9 * (1.0 + n.abs()), "{s} vs {n}");
        }
    }

    #[test]
    fn factorised_pairwise_matches_per_pair_formula_for_collinear_pairs() {
        // Pairs from Delta R = 1e-1 down to 1e-5, at central and forward rapidity.
        let mut ps = vec![PtYPhiM::new(300.0, 2.1, 0.25, 0.0)];
        for k in 1..=5 {
            let d = 10f64.powi(-k);
            ps.push(PtYPhiM::new(120.0, 2.1 + d, 0.25 - d, 0.13957));
            ps.push(PtYPhiM::new(80.0, -0.3, 3.1 + d, 0.0));
        }
        let fast = pairwise_stable_dots(&ps);
        let exact = pairwise_stable_dots_exact(&ps);
        for (f, e) in fast.iter().zip(&exact) {
            assert!((f - e).abs() <= 1e-9 * e.abs() + 1e-12, "{f} vs {e}");
        }
    }

    #[test]
    fn metric_is_diag_plus_minus() {
        let p = FourMomentum::new(5.0, 1.0, 2.0, 3.0).unwrap();
        let v = p.to_vector();
        assert!(((v.transpose() * metric() * v)[0] - p.mass2()).abs() < 1e-12);
    }
}

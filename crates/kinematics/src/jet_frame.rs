//! Jet-frame helpers: rotate the jet axis onto z, boost to the jet rest frame.
//!
//! Non-equivariant models are often fed constituents in such a canonical frame; comparing
//! them with equivariant models on raw momenta needs the same transformations.

use nalgebra::Vector3;

use crate::error::{KinematicsError, Result};
use crate::{FourMomentum, LorentzTransform};

/// The rotation that takes the jet's three-momentum direction onto +z: first by -phi
/// about z, then by -theta about y.
///
/// # Errors
/// [`KinematicsError::ZeroDirection`] for a jet with zero three-momentum.
pub fn axis_to_z(jet: &FourMomentum) -> Result<LorentzTransform> {
    if jet.p() == 0.0 {
        return Err(KinematicsError::ZeroDirection { name: "jet axis" });
    }
    let phi = jet.py().atan2(jet.px());
    let theta = jet.pt().atan2(jet.pz());
    let about_z = LorentzTransform::rotation(&Vector3::z(), -phi)?;
    let about_y = LorentzTransform::rotation(&Vector3::y(), -theta)?;
    Ok(about_y * about_z)
}

/// The boost to the jet's rest frame (velocity -p/E), after which the jet four-momentum
/// is (m, 0, 0, 0).
///
/// # Errors
/// [`KinematicsError::NoRestFrame`] when m^2 <= 0 or E <= 0.
pub fn rest_frame(jet: &FourMomentum) -> Result<LorentzTransform> {
    let mass2 = jet.mass2();
    if mass2 <= 0.0 || jet.e() <= 0.0 {
        return Err(KinematicsError::NoRestFrame {
            mass2,
            energy: jet.e(),
        });
    }
    let beta = -Vector3::new(jet.px(), jet.py(), jet.pz()) / jet.e();
    LorentzTransform::boost(beta)
}

/// The canonical jet frame: rotate the axis onto z, then boost along z to rest. Unlike
/// [`rest_frame`] alone, the orientation of the constituents is then fixed relative to
/// the original jet axis.
///
/// # Errors
/// As [`axis_to_z`] and [`rest_frame`].
pub fn jet_frame(jet: &FourMomentum) -> Result<LorentzTransform> {
    let rotate = axis_to_z(jet)?;
    let boost = rest_frame(&rotate.apply(jet))?;
    Ok(boost * rotate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jet() -> FourMomentum {
        FourMomentum::from_pt_eta_phi_m(600.0, -1.1, 2.5, 172.5).unwrap()
    }

    #[test]
    fn axis_to_z_aligns_the_jet() {
        let j = axis_to_z(&jet()).unwrap().apply(&jet());
        assert!(j.pt() < 1e-9 && (j.pz() - jet().p()).abs() < 1e-9);
    }

    #[test]
    fn rest_frame_leaves_only_the_mass() {
        for t in [rest_frame(&jet()).unwrap(), jet_frame(&jet()).unwrap()] {
            let j = t.apply(&jet());
            assert!((j.e() - 172.5).abs() < 1e-9 && j.p() < 1e-9, "{j:?}");
        }
    }

    #[test]
    fn massless_jet_has_no_rest_frame() {
        let j = FourMomentum::from_pt_eta_phi_m(100.0, 0.0, 0.0, 0.0).unwrap();
        assert!(matches!(
            rest_frame(&j),
            Err(KinematicsError::NoRestFrame { .. })
        ));
        assert!(matches!(
            axis_to_z(&FourMomentum::default()),
            Err(KinematicsError::ZeroDirection { .. })
        ));
    }
}

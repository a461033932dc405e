//! JetNet: `particle_features` (N, P, 4) = (eta_rel, phi_rel, pt_rel, mask) and
//! `jet_features` (N, 4) = (pt, eta, mass, num_particles). Constituents are massless
//! with pT = pt_rel * jet pT, eta = eta_rel + jet eta and phi = phi_rel (the jet at
//! phi = 0). JetNet files hold one jet type and carry no label: every jet gets the label
//! given when opening (default 0).

use super::{massless_from_pt_eta_phi, require, require_rows, LayoutSource};
use crate::error::{DataError, Result};
use crate::reader::H5Reader;
use crate::validate::JetSink;
use crate::Layout;

const PARTICLES: &str = "particle_features";
const JETS: &str = "jet_features";

pub(crate) struct JetNetSource {
    file: Box<dyn H5Reader>,
    jets: usize,
    particles: usize,
    jet_columns: usize,
    label: u8,
}

impl JetNetSource {
    pub(crate) fn open(file: Box<dyn H5Reader>, label: u8) -> Result<Self> {
        let shape = require(
            file.as_ref(),
            Layout::JetNet,
            PARTICLES,
            3,
            &[None, Some(4)],
        )?;
        let jets = require(file.as_ref(), Layout::JetNet, JETS, 2, &[None])?;
        require_rows(file.as_ref(), JETS, &jets, shape[0])?;
        if jets[1] < 2 {
            return Err(DataError::BadShape {
                path: file.path().to_owned(),
                dataset: JETS.into(),
                expected: "(N, >= 2): pt, eta, ...".into(),
                found: jets,
            });
        }
        Ok(Self {
            file,
            jets: shape[0] as usize,
            particles: shape[1] as usize,
            jet_columns: jets[1] as usize,
            label,
        })
    }
}

impl LayoutSource for JetNetSource {
    fn file(&self) -> &dyn H5Reader {
        self.file.as_ref()
    }

    fn len(&self) -> usize {
        self.jets
    }

    fn datasets(&self) -> (&str, &str) {
        (PARTICLES, JETS)
    }

    fn read(&self, start: usize, count: usize, sink: &mut JetSink) -> Result<()> {
        let (s, c) = (start as u64, count as u64);
        let particles = self.file.read_f64_rows(PARTICLES, s, c)?;
        let jets = self.file.read_f64_rows(JETS, s, c)?;
        let mut jet = Vec::new();
        for (k, features) in jets.chunks_exact(self.jet_columns).enumerate() {
            let (jet_pt, jet_eta) = (features[0], features[1]);
            jet.clear();
            let rows = &particles[k * self.particles * 4..(k + 1) * self.particles * 4];
            for p in rows.chunks_exact(4) {
                if p[3] != 0.0 {
                    jet.push(massless_from_pt_eta_phi(
                        p[2] * jet_pt,
                        p[0] + jet_eta,
                        p[1],
                    ));
                }
            }
            sink.push(start + k, &jet, f64::from(self.label), None)?;
        }
        Ok(())
    }

    fn labels(&self) -> Result<Vec<f64>> {
        Ok(vec![f64::from(self.label); self.jets])
    }
}

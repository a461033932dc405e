//! Jets as token sequences for the transformer taggers (L-GATr-slim and the plain
//! Transformer), as the heidelberg-hepml tagging-guide embeds them
//! (`experiments/tagging/embedding.py`, `wrappers.py`):
//!
//! - an optional global class token (zero vector, a one-hot flag in an extra scalar
//!   channel) whose output is the jet's logits;
//! - the model's spurions (its [`crate::TaggerModel::BEAMS`]) with zero scalar features;
//! - the constituents: four-momenta divided by `units` as vectors, and the seven tagging
//!   features `log pT, log E, log pT/pT_jet, log E/E_jet, dphi, deta, dR`, standardised
//!   with weaver's defaults `(x - mean) * factor`, as scalars (or a subset of them,
//!   [`TaggingFeatures`]).
//!
//! With `canonicalize = beam_y` the constituents are first rotated about the beam and
//! boosted along it so that the jet has azimuth 0 and rapidity 0. noether applies the
//! exact Lorentz transformation to the constituents only; the tagging-guide shifts every
//! particle's pseudorapidity by the jet's rapidity (exact for massless particles) and, with
//! its `canonicalize_spurions = true`, transforms the spurions too. Ours makes the whole
//! tagger exactly invariant under rotations about the beam and boosts along it, which is
//! what the canonicalisation is for.

use candle_core::Tensor;
use noether_kinematics::{delta_phi, FourMomentum};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Result};
use crate::model::{ModelInput, PaddedJets};
use crate::placement::Placement;

/// Tagging features per constituent.
pub const TAGGING_FEATURES: usize = 7;

/// weaver's standardisation `(x - mean) * factor` of the tagging features, as the
/// tagging-guide's `TAGGING_FEATURES_PREPROCESSING` lists it.
const STANDARDISATION: [(f64, f64); TAGGING_FEATURES] = [
    (1.7, 0.7),
    (2.0, 0.7),
    (-4.7, 0.7),
    (-4.7, 0.7),
    (0.0, 1.0),
    (0.0, 1.0),
    (0.2, 4.0),
];

/// The floor of energies and squared distances under a logarithm or root (the
/// tagging-guide's `eps`).
const EPS: f64 = 1e-10;

/// Which of the seven tagging features become scalar inputs (the tagging-guide's
/// `data.tagging_features`, `experiments/tagging/embedding.py`): all of them, or the
/// subsets it names after the symmetry they keep, so that a run can measure what the
/// features add to what the vectors carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TaggingFeatures {
    /// `log pT, log E, log pT/pT_jet, log E/E_jet, dphi, deta, dR`.
    #[default]
    All,
    /// Without the two energies, which boosts along the beam change:
    /// `log pT, log pT/pT_jet, dphi, deta, dR`. `deta` is a difference of
    /// pseudorapidities and the jet is massive, so only with `canonicalize = "beam_y"` (the
    /// default) is every one of them exactly invariant under those boosts.
    Zinvariant,
    /// The two energies alone, which rotations keep: `log E, log E/E_jet`.
    So3invariant,
    /// No tagging features (the package's `null`): the vectors carry the jet.
    None,
}

impl TaggingFeatures {
    /// Positions of the selected features in [`TAGGING_FEATURES`]' order.
    pub fn indices(self) -> &'static [usize] {
        match self {
            Self::All => &[0, 1, 2, 3, 4, 5, 6],
            Self::Zinvariant => &[0, 2, 4, 5, 6],
            Self::So3invariant => &[1, 3],
            Self::None => &[],
        }
    }
}

/// How jets are canonicalised before the features are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Canonicalize {
    /// Rotate about and boost along the beam so that the jet has phi = 0 and y = 0.
    #[default]
    BeamY,
    /// Use the momenta as measured.
    None,
}

/// What goes into the token sequence: the model-dependent part of the embedding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenRecipe {
    /// GeV per unit of the constituents' vector inputs (spurions are not scaled).
    pub units: f64,
    /// Whether a global class token comes first.
    pub global_token: bool,
    /// The canonicalisation.
    pub canonicalize: Canonicalize,
    /// The tagging features among the scalars.
    pub features: TaggingFeatures,
}

impl Default for TokenRecipe {
    fn default() -> Self {
        Self {
            units: 20.0,
            global_token: true,
            canonicalize: Canonicalize::BeamY,
            features: TaggingFeatures::All,
        }
    }
}

/// The tokens of a set of jets.
#[derive(Debug, Clone)]
pub struct TokenInput {
    /// Four-vectors `[jets, tokens, 4]`: zero for the global token and for padding.
    pub vectors: Tensor,
    /// Scalars `[jets, tokens, features (+ 1 with a global token)]`: the selected tagging
    /// features (seven by default).
    pub scalars: Tensor,
    /// 1 for tokens that exist (global token, spurions, constituents), 0 for padding,
    /// `[jets, tokens]`.
    pub mask: Tensor,
}

/// The tokens of one jet, flat, in f64.
struct JetTokens {
    vectors: Vec<f64>,
    scalars: Vec<f64>,
    mask: Vec<f64>,
}

/// The Lorentz transformation (rotation about z by -phi, then boost along z by -y) that
/// takes `jet` to phi = 0, y = 0, applied to `p`.
fn to_jet_frame(p: &FourMomentum, jet_phi: f64, jet_y: f64) -> FourMomentum {
    let (sin, cos) = (-jet_phi).sin_cos();
    let (px, py) = (cos * p.px() - sin * p.py(), sin * p.px() + cos * p.py());
    let (ch, sh) = (jet_y.cosh(), jet_y.sinh());
    FourMomentum::new_unchecked(ch * p.e() - sh * p.pz(), px, py, ch * p.pz() - sh * p.e())
}

/// The standardised tagging features of `p` in a jet `jet`.
fn tagging_features(p: &FourMomentum, jet: &FourMomentum) -> [f64; TAGGING_FEATURES] {
    let (pt, jet_pt) = (p.pt().max(EPS), jet.pt().max(EPS));
    let (e, jet_e) = (p.e().max(EPS), jet.e().max(EPS));
    let dphi = delta_phi(p.phi(), jet.phi());
    let eta = |q: &FourMomentum| (q.pz() / q.pt().max(EPS)).asinh();
    let deta = -(eta(p) - eta(jet));
    let raw = [
        pt.ln(),
        e.ln(),
        pt.ln() - jet_pt.ln(),
        e.ln() - jet_e.ln(),
        dphi,
        deta,
        (dphi * dphi + deta * deta).max(EPS).sqrt(),
    ];
    std::array::from_fn(|k| (raw[k] - STANDARDISATION[k].0) * STANDARDISATION[k].1)
}

impl TokenRecipe {
    /// Scalar channels: the selected tagging features and the global token's flag.
    pub fn scalar_channels(&self) -> usize {
        self.features.indices().len() + usize::from(self.global_token)
    }

    /// Tokens per jet of `nodes` padded nodes (beams included).
    pub fn tokens(&self, nodes: usize) -> usize {
        nodes + usize::from(self.global_token)
    }

    fn jet(&self, jets: &PaddedJets, b: usize) -> JetTokens {
        let s = self.scalar_channels();
        let offset = usize::from(self.global_token);
        let tokens = self.tokens(jets.nodes);
        let mut out = JetTokens {
            vectors: vec![0.0; tokens * 4],
            scalars: vec![0.0; tokens * s],
            mask: vec![0.0; tokens],
        };
        if self.global_token {
            out.mask[0] = 1.0;
            out.scalars[s - 1] = 1.0;
        }
        for i in 0..jets.beams {
            out.mask[offset + i] = 1.0;
            out.vectors[(offset + i) * 4..(offset + i + 1) * 4].copy_from_slice(&jets.node(b, i));
        }
        let particles = crate::jet_particles(jets, b);
        let lab_jet = particles.iter().fold(
            FourMomentum::new_unchecked(0.0, 0.0, 0.0, 0.0),
            |sum, (_, p)| sum + *p,
        );
        let (phi, y) = (lab_jet.phi(), lab_jet.rapidity());
        let frame = |p: &FourMomentum| match self.canonicalize {
            Canonicalize::BeamY if y.is_finite() => to_jet_frame(p, phi, y),
            _ => *p,
        };
        let jet = frame(&lab_jet);
        for (i, p) in &particles {
            let (t, p) = (offset + i, frame(p));
            out.mask[t] = 1.0;
            for (slot, x) in out.vectors[t * 4..(t + 1) * 4].iter_mut().zip(p.to_array()) {
                *slot = x / self.units;
            }
            let all = tagging_features(&p, &jet);
            for (slot, &k) in out.scalars[t * s..].iter_mut().zip(self.features.indices()) {
                *slot = all[k];
            }
        }
        out
    }

    /// The tokens of `jets` on `place` (computed in f64, cast once).
    ///
    /// # Errors
    /// Tensor errors.
    pub fn compute(&self, jets: &PaddedJets, place: &Placement) -> Result<TokenInput> {
        let (batch, tokens, s) = (jets.jets, self.tokens(jets.nodes), self.scalar_channels());
        let (mut vectors, mut scalars, mut mask) = (Vec::new(), Vec::new(), Vec::new());
        for b in 0..batch {
            let jet = self.jet(jets, b);
            vectors.extend(jet.vectors);
            scalars.extend(jet.scalars);
            mask.extend(jet.mask);
        }
        let on = |values: Vec<f64>, shape: &[usize], what: &str| {
            Tensor::from_vec(values, shape, &place.device)
                .and_then(|t| t.to_dtype(place.dtype))
                .context(what)
        };
        Ok(TokenInput {
            vectors: on(vectors, &[batch, tokens, 4], "token vectors")?,
            scalars: on(scalars, &[batch, tokens, s], "token scalars")?,
            mask: on(mask, &[batch, tokens], "token mask")?,
        })
    }
}

impl ModelInput for TokenInput {
    /// The default recipe ([`TokenRecipe::default`]); the models compute theirs with
    /// [`TokenRecipe::compute`] from their configuration.
    fn compute(jets: &PaddedJets, place: &Placement) -> Result<Self> {
        TokenRecipe::default().compute(jets, place)
    }

    fn select(&self, rows: &Tensor) -> Result<Self> {
        Ok(Self {
            vectors: self.vectors.index_select(rows, 0).context("vector rows")?,
            scalars: self.scalars.index_select(rows, 0).context("scalar rows")?,
            mask: self.mask.index_select(rows, 0).context("mask rows")?,
        })
    }

    fn cat(parts: &[Self]) -> Result<Self> {
        let field = |f: fn(&Self) -> &Tensor| parts.iter().map(f).cloned().collect::<Vec<_>>();
        Ok(Self {
            vectors: Tensor::cat(&field(|p| &p.vectors), 0).context("vectors")?,
            scalars: Tensor::cat(&field(|p| &p.scalars), 0).context("scalars")?,
            mask: Tensor::cat(&field(|p| &p.mask), 0).context("mask")?,
        })
    }

    fn len(&self) -> usize {
        self.mask.dims().first().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jet_frame_puts_the_jet_at_zero_azimuth_and_rapidity() {
        let jet = FourMomentum::new_unchecked(900.0, 300.0, -400.0, 700.0);
        let moved = to_jet_frame(&jet, jet.phi(), jet.rapidity());
        assert!(
            moved.py().abs() < 1e-9 && moved.pz().abs() < 1e-9,
            "{moved:?}"
        );
        assert!((moved.px() - jet.pt()).abs() < 1e-9);
        assert!((moved.mass2() - jet.mass2()).abs() < 1e-6);
    }

    #[test]
    fn feature_subsets_are_the_named_columns_of_the_full_set_before_the_flag() {
        // Two jets of three constituents (no spurions), one of them padded.
        let momenta: Vec<f64> = [
            [120.0, 100.0, 20.0, 50.0],
            [80.0, 70.0, -10.0, 30.0],
            [40.0, 30.0, 5.0, 25.0],
            [300.0, -50.0, 250.0, 150.0],
            [90.0, -10.0, 80.0, 30.0],
            [0.0, 0.0, 0.0, 0.0],
        ]
        .concat();
        let mask = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        let jets = PaddedJets {
            momenta: &momenta,
            mask: &mask,
            jets: 2,
            nodes: 3,
            beams: 0,
        };
        let place = Placement {
            device: candle_core::Device::Cpu,
            dtype: candle_core::DType::F64,
        };
        let scalars = |features: TaggingFeatures| {
            let recipe = TokenRecipe {
                features,
                ..TokenRecipe::default()
            };
            let input = recipe.compute(&jets, &place).unwrap();
            let width = recipe.scalar_channels();
            assert_eq!(input.scalars.dims(), [2, 4, width]);
            let values = input
                .scalars
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            (values, width)
        };
        let (all, all_width) = scalars(TaggingFeatures::All);
        assert_eq!(all_width, TAGGING_FEATURES + 1);
        for (features, columns) in [
            (TaggingFeatures::Zinvariant, vec![0, 2, 4, 5, 6]),
            (TaggingFeatures::So3invariant, vec![1, 3]),
            (TaggingFeatures::None, vec![]),
        ] {
            let (subset, width) = scalars(features);
            assert_eq!(width, columns.len() + 1, "{features:?}");
            for (token, row) in subset.chunks(width).enumerate() {
                let full = &all[token * all_width..(token + 1) * all_width];
                for (c, &k) in columns.iter().enumerate() {
                    assert_eq!(row[c], full[k], "{features:?} token {token} column {k}");
                }
                assert_eq!(row[width - 1], full[all_width - 1], "the class-token flag");
            }
        }
    }

    #[test]
    fn a_particle_on_the_jet_axis_has_the_standardised_zero_angles() {
        let jet = FourMomentum::new_unchecked(500.0, 400.0, 0.0, 0.0);
        let f = tagging_features(&jet, &jet);
        assert!((f[2] - 4.7 * 0.7).abs() < 1e-12, "log pT ratio 0 -> 3.29");
        assert_eq!((f[4], f[5]), (0.0, 0.0));
        assert!(
            (f[6] - (1e-5 - 0.2) * 4.0).abs() < 1e-12,
            "dR floor sqrt(eps)"
        );
    }
}

//! [`JetSet`]: the one in-memory representation every reader yields.

use noether_kinematics::FourMomentum;

use crate::error::{DataError, Result};

/// A collection of jets stored column-wise: all constituents' four-momenta
/// `[E, px, py, pz]` (GeV, f32 as in the files) back to back, jet `i` owning
/// `momenta[offsets[i]..offsets[i + 1]]`, sorted by decreasing pT; one label per jet
/// (1 = signal) and optionally the truth four-momentum (e.g. the top quark).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JetSet {
    momenta: Vec<[f32; 4]>,
    offsets: Vec<usize>,
    labels: Vec<u8>,
    truth: Option<Vec<[f32; 4]>>,
}

impl JetSet {
    /// Builds a set from its columns.
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] when offsets are not monotone, do not start at 0 or
    /// end at `momenta.len()`, or when labels / truth have the wrong length or a label is
    /// not 0 or 1.
    pub fn new(
        momenta: Vec<[f32; 4]>,
        offsets: Vec<usize>,
        labels: Vec<u8>,
        truth: Option<Vec<[f32; 4]>>,
    ) -> Result<Self> {
        let bad = |detail: String| {
            Err(DataError::InvalidArgument {
                name: "jet columns",
                detail,
            })
        };
        if offsets.first() != Some(&0) || offsets.last() != Some(&momenta.len()) {
            return bad(format!(
                "offsets must run from 0 to {} (got {:?}..{:?})",
                momenta.len(),
                offsets.first(),
                offsets.last()
            ));
        }
        if let Some(i) = offsets.windows(2).position(|w| w[1] < w[0]) {
            return bad(format!("offsets decrease at jet {i}"));
        }
        let n = offsets.len() - 1;
        if labels.len() != n {
            return bad(format!("{} labels for {n} jets", labels.len()));
        }
        if let Some(i) = labels.iter().position(|&l| l > 1) {
            return bad(format!("label {} of jet {i} is not 0 or 1", labels[i]));
        }
        if truth.as_ref().is_some_and(|t| t.len() != n) {
            return bad(format!("truth vectors do not match the {n} jets"));
        }
        Ok(Self {
            momenta,
            offsets,
            labels,
            truth,
        })
    }

    /// Number of jets.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no jets.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Total number of constituents.
    pub fn total_constituents(&self) -> usize {
        self.momenta.len()
    }

    /// The constituents of jet `i` as `[E, px, py, pz]`, pT-ordered.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn constituents(&self, i: usize) -> &[[f32; 4]] {
        &self.momenta[self.offsets[i]..self.offsets[i + 1]]
    }

    /// Number of constituents of jet `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn multiplicity(&self, i: usize) -> usize {
        self.offsets[i + 1] - self.offsets[i]
    }

    /// The constituents of jet `i` as f64 four-momenta.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn four_momenta(&self, i: usize) -> Vec<FourMomentum> {
        self.constituents(i)
            .iter()
            .map(|c| {
                let [e, px, py, pz] = c.map(f64::from);
                FourMomentum::new_unchecked(e, px, py, pz)
            })
            .collect()
    }

    /// The jet four-momentum (sum of constituents, in f64).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn jet_momentum(&self, i: usize) -> FourMomentum {
        self.four_momenta(i).iter().sum()
    }

    /// All labels (1 = signal).
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The label of jet `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    /// Number of signal jets.
    pub fn signal_count(&self) -> usize {
        self.labels.iter().filter(|&&l| l == 1).count()
    }

    /// The truth four-momentum of jet `i`, if the file had one.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn truth(&self, i: usize) -> Option<[f32; 4]> {
        self.truth.as_ref().map(|t| t[i])
    }

    /// The flat constituent column.
    pub fn momenta(&self) -> &[[f32; 4]] {
        &self.momenta
    }

    /// The offsets column (`len() + 1` entries).
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }

    /// The truth column, if any.
    pub fn truth_column(&self) -> Option<&[[f32; 4]]> {
        self.truth.as_deref()
    }

    /// The jets at `indices`, in that order (indices may repeat).
    ///
    /// # Panics
    /// If an index is out of range.
    #[must_use]
    pub fn select(&self, indices: &[usize]) -> Self {
        let mut builder = JetSetBuilder::default();
        for &i in indices {
            builder.push(self.constituents(i), self.labels[i], self.truth(i));
        }
        builder.finish()
    }

    /// Appends all jets of `other`. Truth vectors are kept only if both sets have them.
    pub fn extend(&mut self, other: &Self) {
        let base = self.momenta.len();
        self.momenta.extend_from_slice(&other.momenta);
        self.offsets
            .extend(other.offsets[1..].iter().map(|o| o + base));
        self.labels.extend_from_slice(&other.labels);
        self.truth = match (self.truth.take(), &other.truth) {
            (Some(mut a), Some(b)) => {
                a.extend_from_slice(b);
                Some(a)
            }
            _ => None,
        };
    }

    /// Sets every constituent's energy to |p| (massless constituents, as detector-level
    /// eflow objects are; the `--massless` option).
    pub fn make_massless(&mut self) {
        for c in &mut self.momenta {
            let p = (f64::from(c[1]).powi(2) + f64::from(c[2]).powi(2) + f64::from(c[3]).powi(2))
                .sqrt();
            c[0] = p as f32;
        }
    }
}

/// Builds a [`JetSet`] jet by jet.
#[derive(Debug, Clone, Default)]
pub struct JetSetBuilder {
    momenta: Vec<[f32; 4]>,
    offsets: Vec<usize>,
    labels: Vec<u8>,
    truth: Vec<[f32; 4]>,
    has_truth: bool,
}

impl JetSetBuilder {
    /// Adds a jet (constituents in any order: they are sorted by decreasing pT here).
    pub fn push(&mut self, constituents: &[[f32; 4]], label: u8, truth: Option<[f32; 4]>) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
            self.has_truth = truth.is_some();
        }
        let start = self.momenta.len();
        self.momenta.extend_from_slice(constituents);
        sort_by_pt(&mut self.momenta[start..]);
        self.offsets.push(self.momenta.len());
        self.labels.push(label);
        self.has_truth &= truth.is_some();
        self.truth.push(truth.unwrap_or_default());
    }

    /// The finished set.
    pub fn finish(mut self) -> JetSet {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        JetSet {
            momenta: self.momenta,
            offsets: self.offsets,
            labels: self.labels,
            truth: self.has_truth.then_some(self.truth),
        }
    }
}

fn pt2(c: &[f32; 4]) -> f32 {
    c[1] * c[1] + c[2] * c[2]
}

/// Sorts constituents by decreasing pT (stable; a no-op on sorted input).
pub(crate) fn sort_by_pt(constituents: &mut [[f32; 4]]) {
    if !constituents.windows(2).all(|w| pt2(&w[0]) >= pt2(&w[1])) {
        constituents.sort_by(|a, b| pt2(b).total_cmp(&pt2(a)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sorts_by_pt_and_select_preserves_content() {
        let mut b = JetSetBuilder::default();
        b.push(&[[1.0, 1.0, 0.0, 0.0], [5.0, 3.0, 4.0, 0.0]], 1, None);
        b.push(&[[2.0, 0.0, 2.0, 0.0]], 0, None);
        let set = b.finish();
        assert_eq!(set.constituents(0)[0], [5.0, 3.0, 4.0, 0.0]);
        assert_eq!(set.len(), 2);
        assert_eq!(set.signal_count(), 1);
        let picked = set.select(&[1, 0, 1]);
        assert_eq!(picked.labels(), &[0, 1, 0]);
        assert_eq!(picked.constituents(1), set.constituents(0));
    }

    #[test]
    fn inconsistent_columns_are_rejected() {
        let m = vec![[1.0, 0.0, 0.0, 1.0]; 3];
        assert!(JetSet::new(m.clone(), vec![0, 2, 1, 3], vec![0, 1, 0], None).is_err());
        assert!(JetSet::new(m.clone(), vec![0, 1, 3], vec![0, 2], None).is_err());
        assert!(JetSet::new(m.clone(), vec![0, 1, 2], vec![0, 1], None).is_err());
        assert!(JetSet::new(m, vec![0, 1, 3], vec![0, 1], None).is_ok());
    }

    #[test]
    fn massless_sets_energy_to_momentum() {
        let mut b = JetSetBuilder::default();
        b.push(&[[10.0, 3.0, 4.0, 0.0]], 0, None);
        let mut set = b.finish();
        set.make_massless();
        assert_eq!(set.constituents(0)[0][0], 5.0);
    }
}

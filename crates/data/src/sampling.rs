//! Seeded, deterministic sampling for small data and rare events: stratified splits,
//! class-balanced data-limited subsets, class weights, balanced epochs, signal injection
//! at a chosen S/B, and stratified k-fold indices.
//!
//! Every function takes the labels (1 = signal) and a seed, and returns jet indices;
//! the same inputs give the same indices on every machine (ChaCha8).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{DataError, Result};

/// Indices of the background (0) and signal (1) jets, each shuffled with `seed`.
fn shuffled_classes(labels: &[u8], seed: u64) -> [Vec<usize>; 2] {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut classes = [Vec::new(), Vec::new()];
    for (i, &l) in labels.iter().enumerate() {
        classes[usize::from(l.min(1))].push(i);
    }
    for c in &mut classes {
        c.shuffle(&mut rng);
    }
    classes
}

/// A train / validation / test partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Training indices.
    pub train: Vec<usize>,
    /// Validation indices.
    pub val: Vec<usize>,
    /// Test indices.
    pub test: Vec<usize>,
}

/// Splits the jets into train / validation / test with the given fractions (summing to
/// 1), preserving the signal fraction in each part.
///
/// # Errors
/// Fractions that are negative or do not sum to 1.
pub fn stratified_split(labels: &[u8], fractions: [f64; 3], seed: u64) -> Result<Split> {
    let sum: f64 = fractions.iter().sum();
    if fractions.iter().any(|f| !(0.0..=1.0).contains(f)) || (sum - 1.0).abs() > 1e-9 {
        return Err(DataError::InvalidArgument {
            name: "split fractions",
            detail: format!("{fractions:?} must be in [0, 1] and sum to 1"),
        });
    }
    let mut split = Split {
        train: Vec::new(),
        val: Vec::new(),
        test: Vec::new(),
    };
    for class in shuffled_classes(labels, seed) {
        let n = class.len();
        let n_train = (fractions[0] * n as f64).round() as usize;
        let n_val = ((fractions[1] * n as f64).round() as usize).min(n - n_train);
        split.train.extend_from_slice(&class[..n_train]);
        split
            .val
            .extend_from_slice(&class[n_train..n_train + n_val]);
        split.test.extend_from_slice(&class[n_train + n_val..]);
    }
    for part in [&mut split.train, &mut split.val, &mut split.test] {
        part.sort_unstable();
    }
    Ok(split)
}

/// A class-balanced random subset of `n` jets (n/2 signal, n/2 background; an odd `n`
/// gives the extra jet to background). Subsets with the same seed are nested: the
/// 1,000-jet subset is contained in the 3,000-jet subset, as a data-limited study needs.
///
/// # Errors
/// [`DataError::InvalidArgument`] when a class has fewer jets than requested.
pub fn balanced_subset(labels: &[u8], n: usize, seed: u64) -> Result<Vec<usize>> {
    let [background, signal] = shuffled_classes(labels, seed);
    let (n_sig, n_bkg) = (n / 2, n - n / 2);
    if signal.len() < n_sig || background.len() < n_bkg {
        return Err(DataError::InvalidArgument {
            name: "train-jets",
            detail: format!(
                "{n} balanced jets need {n_sig} signal and {n_bkg} background; the data has {} and {}",
                signal.len(),
                background.len()
            ),
        });
    }
    let mut subset: Vec<usize> = signal[..n_sig]
        .iter()
        .chain(&background[..n_bkg])
        .copied()
        .collect();
    subset.sort_unstable();
    Ok(subset)
}

/// Class weights `n / (2 n_c)` (scikit-learn's "balanced"): background first, signal
/// second. A missing class gets weight 0.
pub fn class_weights(labels: &[u8]) -> [f64; 2] {
    let n = labels.len() as f64;
    let n_sig = labels.iter().filter(|&&l| l == 1).count() as f64;
    let w = |count: f64| if count > 0.0 { n / (2.0 * count) } else { 0.0 };
    [w(n - n_sig), w(n_sig)]
}

/// One epoch of indices in which both classes appear equally often: the minority class
/// is oversampled (with reshuffling) up to the majority's size, then all are shuffled.
///
/// # Errors
/// [`DataError::InvalidArgument`] when a class is absent.
pub fn balanced_epoch(labels: &[u8], seed: u64) -> Result<Vec<usize>> {
    let [background, signal] = shuffled_classes(labels, seed);
    if background.is_empty() || signal.is_empty() {
        return Err(DataError::InvalidArgument {
            name: "balanced sampling",
            detail: format!(
                "needs both classes; found {} background and {} signal",
                background.len(),
                signal.len()
            ),
        });
    }
    let n = background.len().max(signal.len());
    let mut epoch: Vec<usize> = background
        .iter()
        .cycle()
        .take(n)
        .chain(signal.iter().cycle().take(n))
        .copied()
        .collect();
    epoch.shuffle(&mut ChaCha8Rng::seed_from_u64(seed.wrapping_add(1)));
    Ok(epoch)
}

/// A background sample with injected signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    /// Indices of all background jets and of the injected signal jets, sorted.
    pub indices: Vec<usize>,
    /// Number of signal jets injected (the true count).
    pub signal: usize,
    /// Number of background jets.
    pub background: usize,
}

impl Injection {
    /// The realised S/B.
    pub fn s_over_b(&self) -> f64 {
        self.signal as f64 / self.background as f64
    }
}

/// All background jets plus `round(s_over_b * n_background)` randomly chosen signal jets,
/// for weakly supervised (CWoLa-style) rare-signal studies.
///
/// # Errors
/// A negative or non-finite S/B, no background, or fewer signal jets than needed.
pub fn inject_signal(labels: &[u8], s_over_b: f64, seed: u64) -> Result<Injection> {
    if !s_over_b.is_finite() || s_over_b < 0.0 {
        return Err(DataError::InvalidArgument {
            name: "S/B",
            detail: format!("{s_over_b} must be a non-negative number"),
        });
    }
    let [background, signal] = shuffled_classes(labels, seed);
    let wanted = (s_over_b * background.len() as f64).round() as usize;
    if background.is_empty() || wanted > signal.len() {
        return Err(DataError::InvalidArgument {
            name: "S/B",
            detail: format!(
                "S/B = {s_over_b} with {} background jets needs {wanted} signal jets; the data has {}",
                background.len(),
                signal.len()
            ),
        });
    }
    let mut indices: Vec<usize> = background
        .iter()
        .chain(&signal[..wanted])
        .copied()
        .collect();
    indices.sort_unstable();
    Ok(Injection {
        indices,
        signal: wanted,
        background: background.len(),
    })
}

/// One fold of a k-fold partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fold {
    /// Training indices (the other k - 1 folds).
    pub train: Vec<usize>,
    /// Validation indices (this fold).
    pub val: Vec<usize>,
}

/// Stratified k-fold indices: each jet is in exactly one validation fold, and every fold
/// has the same signal fraction up to one jet per class.
///
/// # Errors
/// `k < 2` or more folds than jets.
pub fn kfold(labels: &[u8], k: usize, seed: u64) -> Result<Vec<Fold>> {
    if k < 2 || k > labels.len() {
        return Err(DataError::InvalidArgument {
            name: "k-fold",
            detail: format!("k = {k} must be in [2, {}]", labels.len()),
        });
    }
    let mut fold_of = vec![0usize; labels.len()];
    for class in shuffled_classes(labels, seed) {
        for (position, &i) in class.iter().enumerate() {
            fold_of[i] = position % k;
        }
    }
    Ok((0..k)
        .map(|f| {
            let (val, train): (Vec<usize>, Vec<usize>) =
                (0..labels.len()).partition(|&i| fold_of[i] == f);
            Fold { train, val }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n_sig: usize, n_bkg: usize) -> Vec<u8> {
        let mut l = vec![1u8; n_sig];
        l.extend(vec![0u8; n_bkg]);
        l
    }

    #[test]
    fn split_is_stratified_disjoint_and_complete() {
        let l = labels(300, 700);
        let s = stratified_split(&l, [0.6, 0.2, 0.2], 1).unwrap();
        let sig = |idx: &[usize]| idx.iter().filter(|&&i| l[i] == 1).count();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (600, 200, 200));
        assert_eq!((sig(&s.train), sig(&s.val), sig(&s.test)), (180, 60, 60));
        let mut all: Vec<usize> = s
            .train
            .iter()
            .chain(&s.val)
            .chain(&s.test)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(s, stratified_split(&l, [0.6, 0.2, 0.2], 1).unwrap());
        assert_ne!(s, stratified_split(&l, [0.6, 0.2, 0.2], 2).unwrap());
        assert!(stratified_split(&l, [0.6, 0.6, 0.2], 1).is_err());
    }

    #[test]
    fn balanced_subsets_are_balanced_reproducible_and_nested() {
        let l = labels(400, 1600);
        let small = balanced_subset(&l, 100, 7).unwrap();
        let large = balanced_subset(&l, 300, 7).unwrap();
        assert_eq!(small.iter().filter(|&&i| l[i] == 1).count(), 50);
        assert!(small.iter().all(|i| large.contains(i)));
        assert_eq!(small, balanced_subset(&l, 100, 7).unwrap());
        let err = balanced_subset(&l, 1000, 7).unwrap_err().to_string();
        assert!(
            err.contains("train-jets") && err.contains("500 signal"),
            "{err}"
        );
    }

    #[test]
    fn class_weights_match_sklearn_balanced() {
        // sklearn.utils.class_weight.compute_class_weight("balanced", classes=[0, 1], y)
        // for 750 zeros and 250 ones gives [0.6667, 2.0].
        let w = class_weights(&labels(250, 750));
        assert!((w[0] - 2.0 / 3.0).abs() < 1e-12 && (w[1] - 2.0).abs() < 1e-12);
    }

    #[test]
    fn balanced_epoch_has_equal_classes() {
        let l = labels(10, 90);
        let e = balanced_epoch(&l, 3).unwrap();
        assert_eq!(e.len(), 180);
        assert_eq!(e.iter().filter(|&&i| l[i] == 1).count(), 90);
    }

    #[test]
    fn injection_reports_the_true_count() {
        let l = labels(500, 10_000);
        let inj = inject_signal(&l, 0.01, 5).unwrap();
        assert_eq!((inj.signal, inj.background), (100, 10_000));
        assert_eq!(inj.indices.iter().filter(|&&i| l[i] == 1).count(), 100);
        assert!((inj.s_over_b() - 0.01).abs() < 1e-12);
        assert_eq!(inject_signal(&l, 0.001, 5).unwrap().signal, 10);
        assert!(inject_signal(&l, 0.1, 5).is_err());
        assert!(inject_signal(&l, f64::NAN, 5).is_err());
    }

    #[test]
    fn kfold_partitions_every_jet_once() {
        let l = labels(30, 70);
        let folds = kfold(&l, 5, 9).unwrap();
        let mut seen = vec![0; 100];
        for f in &folds {
            assert_eq!(f.val.len(), 20);
            assert_eq!(f.val.iter().filter(|&&i| l[i] == 1).count(), 6);
            assert_eq!(f.train.len(), 80);
            for &i in &f.val {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&s| s == 1));
        assert!(kfold(&l, 1, 0).is_err());
    }
}

//! Tagging metrics as the top-tagging literature reports them: accuracy, ROC curve, ROC
//! AUC, background rejection 1/eps_B at a signal efficiency (eps_B interpolated linearly
//! on the ROC curve, as `np.interp(eps_s, tpr, fpr)` in the reference analyses), all with
//! optional per-jet weights, and seeded bootstrap intervals.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::{Result, TrainError};

/// A ROC curve: false and true positive rates at every distinct score threshold,
/// from (0, 0) to (1, 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Roc {
    /// Background efficiency eps_B (false positive rate), non-decreasing.
    pub fpr: Vec<f64>,
    /// Signal efficiency eps_S (true positive rate), non-decreasing.
    pub tpr: Vec<f64>,
}

/// Scores with labels (1 = signal) and optional weights, validated once.
#[derive(Debug, Clone, Copy)]
pub struct Scored<'a> {
    scores: &'a [f64],
    labels: &'a [u8],
    weights: Option<&'a [f64]>,
}

impl<'a> Scored<'a> {
    /// Jets scored.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// Whether no jet was scored (never, once built: both classes are present).
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// Validates lengths, finiteness and that both classes are present.
    ///
    /// # Errors
    /// [`TrainError::Metric`] naming the problem.
    pub fn new(scores: &'a [f64], labels: &'a [u8], weights: Option<&'a [f64]>) -> Result<Self> {
        let bad = |what: String| Err(TrainError::Metric(what));
        if scores.len() != labels.len() {
            return bad(format!(
                "{} scores but {} labels",
                scores.len(),
                labels.len()
            ));
        }
        if let Some(w) = weights {
            if w.len() != scores.len() {
                return bad(format!("{} scores but {} weights", scores.len(), w.len()));
            }
            if let Some(i) = w.iter().position(|x| !x.is_finite() || *x < 0.0) {
                return bad(format!("weight {i} is {} (must be finite and >= 0)", w[i]));
            }
        }
        if let Some(i) = scores.iter().position(|x| !x.is_finite()) {
            return bad(format!("score {i} is {}", scores[i]));
        }
        if let Some(i) = labels.iter().position(|&l| l > 1) {
            return bad(format!("label {i} is {} (expected 0 or 1)", labels[i]));
        }
        let signal = labels.iter().filter(|&&l| l == 1).count();
        if signal == 0 || signal == labels.len() {
            return bad("ROC metrics need both signal and background jets".into());
        }
        Ok(Self {
            scores,
            labels,
            weights,
        })
    }

    fn weight(&self, i: usize) -> f64 {
        self.weights.map_or(1.0, |w| w[i])
    }

    /// Fraction (weighted) of jets classified correctly with score > `threshold`
    /// meaning signal.
    pub fn accuracy(&self, threshold: f64) -> f64 {
        let (mut right, mut total) = (0.0, 0.0);
        for i in 0..self.scores.len() {
            let predicted = u8::from(self.scores[i] > threshold);
            let w = self.weight(i);
            total += w;
            if predicted == self.labels[i] {
                right += w;
            }
        }
        right / total
    }

    /// The ROC curve (thresholds at every distinct score, ties grouped).
    pub fn roc(&self) -> Roc {
        let mut order: Vec<usize> = (0..self.scores.len()).collect();
        order.sort_by(|&a, &b| self.scores[b].total_cmp(&self.scores[a]));
        let (mut tp, mut fp) = (0.0, 0.0);
        let (mut tpr, mut fpr) = (vec![0.0], vec![0.0]);
        let (total_s, total_b) = self.totals();
        let mut k = 0;
        while k < order.len() {
            let score = self.scores[order[k]];
            while k < order.len() && self.scores[order[k]] == score {
                let i = order[k];
                if self.labels[i] == 1 {
                    tp += self.weight(i);
                } else {
                    fp += self.weight(i);
                }
                k += 1;
            }
            tpr.push(tp / total_s);
            fpr.push(fp / total_b);
        }
        Roc { fpr, tpr }
    }

    fn totals(&self) -> (f64, f64) {
        (0..self.scores.len()).fold((0.0, 0.0), |(s, b), i| {
            if self.labels[i] == 1 {
                (s + self.weight(i), b)
            } else {
                (s, b + self.weight(i))
            }
        })
    }

    /// Area under the ROC curve (trapezoids, so ties count one half: the Mann-Whitney
    /// statistic).
    pub fn auc(&self) -> f64 {
        let roc = self.roc();
        roc.fpr
            .windows(2)
            .zip(roc.tpr.windows(2))
            .map(|(f, t)| (f[1] - f[0]) * (t[1] + t[0]) / 2.0)
            .sum()
    }

    /// Background rejection 1/eps_B at signal efficiency `eps_s` (eps_B interpolated
    /// linearly in eps_S on the ROC curve); infinite when eps_B is 0 there.
    pub fn rejection(&self, eps_s: f64) -> f64 {
        1.0 / self.roc().background_efficiency(eps_s)
    }
}

impl Roc {
    /// eps_B at signal efficiency `eps_s`, interpolated exactly as
    /// `np.interp(eps_s, tpr, fpr)` (at a run of equal tpr, its last point).
    pub fn background_efficiency(&self, eps_s: f64) -> f64 {
        let k = self.tpr.partition_point(|&t| t <= eps_s);
        if k == 0 {
            return self.fpr[0];
        }
        if k >= self.tpr.len() {
            return *self.fpr.last().unwrap_or(&1.0);
        }
        let (t0, t1, f0, f1) = (self.tpr[k - 1], self.tpr[k], self.fpr[k - 1], self.fpr[k]);
        f0 + (f1 - f0) * (eps_s - t0) / (t1 - t0)
    }
}

/// The headline metrics of a tagger on one data set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TaggingMetrics {
    /// Accuracy at score threshold 0.5.
    pub acc: f64,
    /// ROC AUC.
    pub auc: f64,
    /// 1/eps_B at eps_S = 0.3.
    pub rejection_at_0_3: f64,
    /// 1/eps_B at eps_S = 0.5.
    pub rejection_at_0_5: f64,
}

impl TaggingMetrics {
    /// Computes all four.
    pub fn of(scored: &Scored) -> Self {
        Self {
            acc: scored.accuracy(0.5),
            auc: scored.auc(),
            rejection_at_0_3: scored.rejection(0.3),
            rejection_at_0_5: scored.rejection(0.5),
        }
    }
}

/// A central value with a bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Interval {
    /// Value on the full sample.
    #[serde(deserialize_with = "not_finite_as_nan")]
    pub value: f64,
    /// 16th percentile over the resamples.
    #[serde(deserialize_with = "not_finite_as_nan")]
    pub low: f64,
    /// 84th percentile over the resamples (low..high is a 68% interval).
    #[serde(deserialize_with = "not_finite_as_nan")]
    pub high: f64,
}

/// Reads an interval bound back: serde_json writes any value that is not finite as
/// `null` (an infinite rejection in some resamples, or NaN when no resample was kept),
/// which cannot tell the two apart; it reads back as NaN, "not a finite number".
fn not_finite_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Bootstrap 68% intervals of the four metrics from `resamples` seeded resamples of the
/// jets (with replacement). Resamples that lose a class are redrawn, at most
/// `100 x resamples` draws in all (a set whose rare class is lost by nearly every
/// resample ends with the intervals of the resamples kept, possibly none: NaN).
pub fn bootstrap(scored: &Scored, resamples: usize, seed: u64) -> [Interval; 4] {
    let central = TaggingMetrics::of(scored);
    let n = scored.scores.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut draws: [Vec<f64>; 4] = Default::default();
    let (mut s, mut l, mut w) = (vec![0.0; n], vec![0u8; n], vec![0.0; n]);
    let mut attempts = resamples.saturating_mul(100);
    while draws[0].len() < resamples && attempts > 0 && n > 0 {
        attempts -= 1;
        for k in 0..n {
            let i = rng.random_range(0..n);
            s[k] = scored.scores[i];
            l[k] = scored.labels[i];
            w[k] = scored.weight(i);
        }
        let Ok(resampled) = Scored::new(&s, &l, Some(&w)) else {
            continue;
        };
        let m = TaggingMetrics::of(&resampled);
        for (d, v) in draws
            .iter_mut()
            .zip([m.acc, m.auc, m.rejection_at_0_3, m.rejection_at_0_5])
        {
            d.push(v);
        }
    }
    let values = [
        central.acc,
        central.auc,
        central.rejection_at_0_3,
        central.rejection_at_0_5,
    ];
    std::array::from_fn(|k| {
        let d = &mut draws[k];
        d.sort_by(f64::total_cmp);
        let at = |q: f64| {
            d.get(((d.len().max(1) - 1) as f64 * q).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        Interval {
            value: values[k],
            low: at(0.16),
            high: at(0.84),
        }
    })
}

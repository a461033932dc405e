//! Layer balance (arXiv:2505.12387): for a two-layer linear network `y = B A x`,
//! gradient flow conserves `|A|^2 - |B|^2`; a discrete step changes it by
//! `eta^2 (|g_A|^2 - |g_B|^2)`, which SGD's gradient noise keeps non-zero at the minimum,
//! driving the layers toward balance of their gradient norms. [`BalanceMonitor`] records
//! per-layer weight and gradient norms along a training run.

/// Per-layer norms at one step.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNorms {
    /// Step.
    pub step: usize,
    /// Squared weight norm of each layer.
    pub weight_sq: Vec<f64>,
    /// Squared gradient norm of each layer.
    pub grad_sq: Vec<f64>,
}

/// Records the squared weight and gradient norms of parameter blocks (layers) given as
/// ranges of a flat parameter vector.
#[derive(Debug, Clone)]
pub struct BalanceMonitor {
    layers: Vec<std::ops::Range<usize>>,
    /// The records, in order.
    pub records: Vec<LayerNorms>,
}

impl BalanceMonitor {
    /// A monitor of the given layers.
    pub fn new(layers: Vec<std::ops::Range<usize>>) -> Self {
        Self {
            layers,
            records: Vec::new(),
        }
    }

    /// Records the norms of `w` and `grad` at `step`.
    pub fn record(&mut self, step: usize, w: &[f64], grad: &[f64]) {
        let sq = |v: &[f64], r: &std::ops::Range<usize>| v[r.clone()].iter().map(|x| x * x).sum();
        self.records.push(LayerNorms {
            step,
            weight_sq: self.layers.iter().map(|r| sq(w, r)).collect(),
            grad_sq: self.layers.iter().map(|r| sq(grad, r)).collect(),
        });
    }

    /// `|layer 0|^2 - |layer 1|^2` at each record.
    pub fn imbalance(&self) -> Vec<f64> {
        self.records
            .iter()
            .map(|r| r.weight_sq[0] - r.weight_sq.get(1).copied().unwrap_or(0.0))
            .collect()
    }
}

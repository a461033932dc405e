//! The integer inference engine: a [`QuantGraph`] run in integer arithmetic, every
//! tensor held as the raw integers of its fixed-point type, sums carried exactly (in
//! 32-bit lanes where weights and inputs fit 16 bits and the sums 31, else in 64 bits)
//! and cast with the types' rounding and overflow. It defines the same numbers as
//! the fake-quantised float forward (checked bit for bit on thousands of jets) and
//! allocates nothing per jet.

use crate::error::{QuantError, Result};
use crate::fixed::{Cast, FixedType};
use crate::graph::{Pooling, QuantGraph, MAX_PARTICLES};
use crate::int_dense::IntDense;
use crate::pair_engine::IntPairStage;
use crate::pairs::{PairStage, MAX_NODES};
use crate::slim::MAX_TOKENS;
use crate::slim_engine::IntSlimStage;

/// The per-particle stage in raw integers.
#[derive(Debug, Clone)]
struct IntStage {
    features: usize,
    layers: Vec<IntDense>,
    pooling: Pooling,
    /// The cast of the pooled sum to the pool type.
    pool: Cast,
}

impl IntStage {
    /// Widths of the pooled latent.
    fn outputs(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    /// Runs the per-particle layers on every real particle and sums their outputs
    /// (weighted for EFN) into `scratch.pooled`, exactly.
    fn pool(&self, input: FixedType, features: &[f32], mask: &[f32], scratch: &mut Scratch) {
        let n = self.outputs();
        scratch.pooled[..n].fill(0);
        for (row, _) in features
            .chunks_exact(self.features)
            .zip(mask)
            .filter(|(_, m)| **m > 0.0)
        {
            let mut weight = 1;
            let mut width = 0;
            for (k, &v) in row.iter().enumerate() {
                let raw = input.quantize_raw(f64::from(v));
                if self.pooling == Pooling::Weighted(k) {
                    weight = raw;
                } else {
                    scratch.x[width] = raw;
                    width += 1;
                }
            }
            for layer in &self.layers {
                width = scratch.apply(layer, width);
            }
            for (p, &v) in scratch.pooled[..n].iter_mut().zip(&scratch.x) {
                *p += weight * v;
            }
        }
    }
}

/// The engine's buffers, sized once for the widest layer.
#[derive(Debug, Clone)]
struct Scratch {
    /// The current activations.
    x: Vec<i64>,
    /// The next layer's output.
    fresh: Vec<i64>,
    /// The pooled sum.
    pooled: Vec<i64>,
    /// 32-bit sums of narrow layers.
    narrow: Vec<i32>,
}

impl Scratch {
    fn new(width: usize) -> Self {
        Self {
            x: vec![0; width],
            fresh: vec![0; width],
            pooled: vec![0; width],
            narrow: vec![0; width],
        }
    }

    /// Applies `layer` to the first `width` activations; returns the new width.
    fn apply(&mut self, layer: &IntDense, width: usize) -> usize {
        layer.run(&self.x[..width], &mut self.fresh, &mut self.narrow);
        std::mem::swap(&mut self.x, &mut self.fresh);
        layer.outputs
    }
}

/// Runs a [`QuantGraph`] jet by jet.
#[derive(Debug, Clone)]
pub struct Engine {
    input: FixedType,
    particles: Option<IntStage>,
    pairs: Option<IntPairStage>,
    slim: Option<IntSlimStage>,
    jet_features: usize,
    jet: Vec<IntDense>,
    /// The logits' type.
    out: FixedType,
    scratch: Scratch,
    logits: Vec<f64>,
}

impl Engine {
    /// The engine of `graph` (validated first).
    ///
    /// # Errors
    /// As [`QuantGraph::validate`].
    pub fn new(graph: &QuantGraph) -> Result<Self> {
        graph.validate()?;
        let layers = graph.layers();
        let mut ints = layers.iter().map(|(l, ty)| IntDense::new(l, *ty));
        let particles = graph.particles.as_ref().map(|p| {
            let layers: Vec<IntDense> = ints.by_ref().take(p.layers.len()).collect();
            let last = p.layers.last().map_or(graph.input, |l| l.precision.result);
            let sum_fraction = match p.pooling {
                Pooling::Sum => last.fraction(),
                Pooling::Weighted(_) => last.fraction() + graph.input.fraction(),
            };
            IntStage {
                features: p.features,
                layers,
                pooling: p.pooling,
                pool: Cast::new(sum_fraction, p.pool),
            }
        });
        let jet: Vec<IntDense> = ints.collect();
        let pairs = graph
            .pairs
            .as_ref()
            .map(|p| IntPairStage::new(p, graph.input));
        let slim = graph
            .slim
            .as_ref()
            .map(|p| IntSlimStage::new(p, graph.input));
        let widest = layers
            .iter()
            .map(|(l, _)| l.inputs.max(l.outputs))
            .chain(graph.particles.as_ref().map(|p| p.features))
            .chain([graph.jet_features])
            .chain(graph.pairs.as_ref().map(PairStage::outputs))
            .chain(graph.slim.as_ref().map(|p| p.channels().1))
            .max()
            .unwrap_or(1);
        Ok(Self {
            input: graph.input,
            particles,
            pairs,
            slim,
            jet_features: graph.jet_features,
            logits: vec![0.0; graph.classes()],
            jet,
            out: graph.jet.last().map_or(graph.input, |l| l.precision.result),
            scratch: Scratch::new(widest),
        })
    }

    /// Features one jet takes per row: per particle for Deep Sets graphs, per jet for
    /// jet-level graphs, and `nodes + 2` per node for pair graphs (its products with every
    /// node, then its particle and beam labels), `4 + scalars` per token for token graphs
    /// (the four-vector, then the scalars).
    pub fn features(&self, nodes: usize) -> usize {
        match (&self.particles, &self.pairs, &self.slim) {
            (Some(p), _, _) => p.features,
            (None, Some(_), _) => nodes + 2,
            (None, None, Some(p)) => p.features(),
            (None, None, None) => self.jet_features,
        }
    }

    /// The logits of one jet. `features` holds `[nodes, features(nodes)]` for particle
    /// and pair models (`mask[i] > 0` marks real nodes) or `[features(1)]` with an empty
    /// mask for jet-level models, as f32, the values the float model sees.
    ///
    /// # Errors
    /// [`QuantError::BadInput`] for a length that does not fit, more nodes than the
    /// engine takes or a non-finite value.
    pub fn run(&mut self, features: &[f32], mask: &[f32]) -> Result<&[f64]> {
        let (nodes, limit, what) = match (&self.particles, &self.pairs, &self.slim) {
            (Some(_), _, _) => (mask.len(), MAX_PARTICLES, "particles"),
            (None, Some(_), _) => (mask.len(), MAX_NODES, "nodes (beams included)"),
            (None, None, Some(_)) => (
                mask.iter().filter(|m| **m > 0.0).count(),
                MAX_TOKENS,
                "real tokens",
            ),
            (None, None, None) => (1, 1, "rows"),
        };
        let width = self.features(nodes);
        if nodes > limit {
            return Err(QuantError::BadInput {
                input: "mask".into(),
                detail: format!("{nodes} {what}, more than the {limit} the engine takes"),
            });
        }
        let rows = if self.slim.is_some() {
            mask.len()
        } else {
            nodes
        };
        if self.slim.is_some() && mask.first().is_none_or(|m| *m <= 0.0) {
            return Err(QuantError::BadInput {
                input: "mask".into(),
                detail: "the class token (row 0) is missing or masked".into(),
            });
        }
        if features.len() != rows * width {
            return Err(QuantError::BadInput {
                input: "features".into(),
                detail: format!("{} values for {rows} rows of {width}", features.len()),
            });
        }
        if let Some(k) = features.iter().position(|x| !x.is_finite()) {
            return Err(QuantError::BadInput {
                input: "features".into(),
                detail: format!("value {k} is {}", features[k]),
            });
        }
        let scratch = &mut self.scratch;
        let mut width = if let Some(stage) = &mut self.slim {
            stage.run(features, mask, &mut scratch.x)
        } else if let Some(stage) = &mut self.pairs {
            stage.run(features, mask, &mut scratch.x)
        } else if let Some(stage) = &self.particles {
            stage.pool(self.input, features, mask, scratch);
            let n = stage.outputs();
            scratch.x[..n].copy_from_slice(&scratch.pooled[..n]);
            stage.pool.apply_all(&mut scratch.x[..n], i64::MIN);
            n
        } else {
            for (dst, &v) in scratch.x.iter_mut().zip(features) {
                *dst = self.input.quantize_raw(f64::from(v));
            }
            width
        };
        for layer in &self.jet {
            width = scratch.apply(layer, width);
        }
        for (l, &raw) in self.logits.iter_mut().zip(&scratch.x) {
            *l = self.out.value(raw);
        }
        Ok(&self.logits)
    }
}

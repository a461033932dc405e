//! A trained tagger as an [`Objective`]: its trainable parameters as
//! one flat f64 vector, its mean cross-entropy on a fixed set of jets (evaluation mode:
//! BatchNorm running statistics, no dropout, so the loss is a deterministic function of
//! the parameters) and the gradient by backward. This is what `noether diagnose` runs
//! the Hessian, LLC, path and balance diagnostics on.

use std::ops::Range;
use std::path::Path;

use candle_core::{Tensor, Var};
use noether_data::{batches, JetSet};
use noether_equivariant::{Mode, TaggerInput};
use noether_train::{
    cross_entropy, eval_batch_config, jet_inputs, load_model_on, parameters, select, DeviceSetting,
    Result, Tagger, TrainError,
};

use crate::objective::Objective;

/// Adds context to candle errors (as noether-train does).
fn context(what: &str) -> impl FnOnce(candle_core::Error) -> TrainError + '_ {
    move |source| TrainError::Candle {
        context: what.to_owned(),
        source,
    }
}

/// A tagger and jets viewed as a loss over flat parameters.
#[derive(Debug)]
pub struct TaggerObjective {
    model: Tagger,
    params: Vec<(String, Var)>,
    jets: JetSet,
    /// The model's input of every jet, computed once.
    inputs: TaggerInput,
    n_max: usize,
    batch_size: usize,
}

impl TaggerObjective {
    /// The model of a noether checkpoint (config from its metadata) on `jets` (made
    /// massless when the run was).
    ///
    /// # Errors
    /// Checkpoint, config and model errors naming the file.
    pub fn from_checkpoint(path: &Path, jets: JetSet) -> Result<Self> {
        Self::from_checkpoint_on(path, jets, None)
    }

    /// [`TaggerObjective::from_checkpoint`] with the model on `device` instead of the
    /// one it was trained on.
    ///
    /// # Errors
    /// As [`TaggerObjective::from_checkpoint`], and a device this build cannot use.
    pub fn from_checkpoint_on(
        path: &Path,
        mut jets: JetSet,
        device: Option<DeviceSetting>,
    ) -> Result<Self> {
        let (model, varmap, config) = load_model_on(path, device)?;
        if config.data.massless {
            jets.make_massless();
        }
        let inputs = jet_inputs(&model, &jets, config.data.n_max)?;
        let params = parameters(&varmap, &config)?
            .into_iter()
            .map(|p| (p.name, p.var))
            .collect();
        Ok(Self {
            model,
            params,
            jets,
            inputs,
            n_max: config.data.n_max,
            batch_size: config.train.eval_batch_size,
        })
    }

    /// The current parameters, flattened in name order.
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn parameters(&self) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(self.dim());
        for (name, var) in &self.params {
            let v = var
                .as_tensor()
                .flatten_all()
                .and_then(|t| t.to_dtype(candle_core::DType::F64))
                .and_then(|t| t.to_vec1::<f64>())
                .map_err(context(name))?;
            out.extend(v);
        }
        Ok(out)
    }

    /// Each parameter tensor's name and its range in the flat vector.
    pub fn layout(&self) -> Vec<(String, Range<usize>)> {
        let mut offset = 0;
        self.params
            .iter()
            .map(|(name, var)| {
                let range = offset..offset + var.elem_count();
                offset = range.end;
                (name.clone(), range)
            })
            .collect()
    }

    fn set(&self, w: &[f64]) -> Result<()> {
        for ((name, var), (_, range)) in self.params.iter().zip(self.layout()) {
            let t = Tensor::from_slice(&w[range], var.shape(), var.device())
                .and_then(|t| t.to_dtype(var.dtype()))
                .map_err(context(name))?;
            var.set(&t).map_err(context(name))?;
        }
        Ok(())
    }

    fn evaluate(&self, w: &[f64], batch: Option<&[usize]>, grad: &mut [f64]) -> Result<f64> {
        self.set(w)?;
        let all: Vec<usize>;
        let indices = if let Some(b) = batch {
            b
        } else {
            all = (0..self.jets.len()).collect();
            &all
        };
        let config = eval_batch_config(&self.model, self.batch_size, self.n_max);
        grad.fill(0.0);
        let layout = self.layout();
        let mut total = 0.0;
        for b in batches(&self.jets, indices, &config, 0)? {
            let input = select(&self.model, &self.inputs, &b)?;
            let logits = self.model.forward_t(&input, &mut Mode::Eval)?;
            let loss = cross_entropy(&logits, &b.labels, &b.weights)?;
            let share = b.batch_size as f64 / indices.len().max(1) as f64;
            let value = loss
                .to_dtype(candle_core::DType::F64)
                .and_then(|l| l.to_scalar::<f64>())
                .map_err(context("loss"))?;
            total += value * share;
            let grads = loss.backward().map_err(context("backward"))?;
            for ((name, var), (_, range)) in self.params.iter().zip(&layout) {
                if let Some(g) = grads.get(var.as_tensor()) {
                    let g = g
                        .flatten_all()
                        .and_then(|t| t.to_dtype(candle_core::DType::F64))
                        .and_then(|t| t.to_vec1::<f64>())
                        .map_err(context(name))?;
                    for (acc, v) in grad[range.clone()].iter_mut().zip(g) {
                        *acc += v * share;
                    }
                }
            }
        }
        Ok(total)
    }
}

impl Objective for TaggerObjective {
    fn dim(&self) -> usize {
        self.params.iter().map(|(_, v)| v.elem_count()).sum()
    }

    fn n_samples(&self) -> usize {
        self.jets.len()
    }

    /// f32 gradients: a step near the cube root of their rounding error.
    fn fd_step(&self) -> f64 {
        1e-2
    }

    /// # Panics
    /// On a tensor-backend failure (the trait has no error channel; shapes are fixed at
    /// construction, so this does not happen for a loaded checkpoint).
    fn loss_grad(&self, w: &[f64], batch: Option<&[usize]>, grad: &mut [f64]) -> f64 {
        self.evaluate(w, batch, grad)
            .unwrap_or_else(|e| panic!("tagger objective: {e}"))
    }
}

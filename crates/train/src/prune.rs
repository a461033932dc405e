//! Global magnitude pruning (Han et al. 2015; `torch.nn.utils.prune.global_unstructured`
//! with L1 magnitude): the `sparsity` fraction of the targeted weights with the smallest
//! |w|, over all targeted tensors together, is set to zero, and the masks are re-applied
//! after every optimizer step so that pruned weights stay zero while the rest fine-tune.

use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use noether_equivariant::is_buffer;
use regex::Regex;

use crate::adapt::{is_adapter, Freeze};
use crate::config::PruneConfig;
use crate::error::{invalid, Context, Result};

/// The masks of the pruned tensors.
#[derive(Debug, Clone, Default)]
pub struct PruneMasks {
    masks: Vec<(String, Var, Tensor)>,
    pruned: usize,
    targeted: usize,
}

impl PruneMasks {
    /// Multiplies every pruned variable by its mask (after an optimizer step).
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn apply(&self) -> Result<()> {
        for (name, var, mask) in &self.masks {
            let kept = (var.as_tensor() * mask).context(name)?;
            var.set(&kept).context(name)?;
        }
        Ok(())
    }

    /// Weights set to zero.
    pub fn pruned(&self) -> usize {
        self.pruned
    }

    /// Weights in the targeted tensors.
    pub fn targeted(&self) -> usize {
        self.targeted
    }
}

/// The variables `config.targets` selects: 2-D, trainable, not adapters, sorted by name.
fn targets(varmap: &VarMap, config: &PruneConfig, freeze: &Freeze) -> Result<Vec<(String, Var)>> {
    let pattern = Regex::new(&config.targets)
        .map_err(|e| invalid("prune.targets", &config.targets, &e.to_string()))?;
    let data = varmap.data().lock().expect("VarMap lock poisoned");
    let mut out: Vec<(String, Var)> = data
        .iter()
        .filter(|(name, var)| {
            pattern.is_match(name)
                && var.rank() == 2
                && !is_adapter(name)
                && !is_buffer(name)
                && !freeze.is_frozen(name)
        })
        .map(|(name, var)| (name.clone(), var.clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn values(var: &Var, name: &str) -> Result<Vec<f32>> {
    var.as_tensor()
        .flatten_all()
        .and_then(|t| t.to_dtype(candle_core::DType::F32))
        .and_then(|t| t.to_vec1::<f32>())
        .context(name)
}

fn masks_from(vars: Vec<(String, Var)>, keep: &[Vec<bool>]) -> Result<PruneMasks> {
    let mut masks = PruneMasks::default();
    for ((name, var), keep) in vars.into_iter().zip(keep) {
        masks.targeted += keep.len();
        masks.pruned += keep.iter().filter(|k| !**k).count();
        let m: Vec<f32> = keep.iter().map(|&k| f32::from(u8::from(k))).collect();
        let mask = Tensor::from_vec(m, var.shape(), var.device())
            .and_then(|t| t.to_dtype(var.dtype()))
            .context(&name)?;
        masks.masks.push((name, var, mask));
    }
    masks.apply()?;
    Ok(masks)
}

/// Prunes the smallest-magnitude `config.sparsity` fraction of the targeted weights
/// (exactly `floor(sparsity * n)` of them; ties broken by name and position) and returns
/// the masks.
///
/// # Errors
/// [`crate::TrainError::InvalidConfig`] for a bad `prune.targets` or when it selects
/// nothing.
pub fn magnitude_prune(
    varmap: &VarMap,
    config: &PruneConfig,
    freeze: &Freeze,
) -> Result<PruneMasks> {
    let vars = targets(varmap, config, freeze)?;
    if vars.is_empty() {
        return Err(invalid(
            "prune.targets",
            &config.targets,
            "selects no trainable weight matrix",
        ));
    }
    let all: Vec<Vec<f32>> = vars
        .iter()
        .map(|(name, var)| values(var, name))
        .collect::<Result<_>>()?;
    let mut order: Vec<(f32, usize, usize)> = all
        .iter()
        .enumerate()
        .flat_map(|(t, v)| v.iter().enumerate().map(move |(i, w)| (w.abs(), t, i)))
        .collect();
    let n_prune = (config.sparsity * order.len() as f64).floor() as usize;
    let mut keep: Vec<Vec<bool>> = all.iter().map(|v| vec![true; v.len()]).collect();
    if n_prune > 0 {
        order.select_nth_unstable_by(n_prune - 1, |a, b| {
            a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
        });
        for &(_, t, i) in &order[..n_prune] {
            keep[t][i] = false;
        }
    }
    masks_from(vars, &keep)
}

/// The masks of a run that was pruned before (resume): the zero pattern of the targeted
/// weights.
///
/// # Errors
/// As [`magnitude_prune`].
pub fn masks_from_zeros(
    varmap: &VarMap,
    config: &PruneConfig,
    freeze: &Freeze,
) -> Result<PruneMasks> {
    let vars = targets(varmap, config, freeze)?;
    let keep: Vec<Vec<bool>> = vars
        .iter()
        .map(|(name, var)| Ok(values(var, name)?.iter().map(|w| *w != 0.0).collect()))
        .collect::<Result<_>>()?;
    masks_from(vars, &keep)
}

/// Non-zero parameters of `varmap` (BatchNorm running statistics excluded).
///
/// # Errors
/// Only from the tensor backend.
pub fn nonzero_parameters(varmap: &VarMap) -> Result<usize> {
    let data = varmap.data().lock().expect("VarMap lock poisoned");
    let mut count = 0;
    for (name, var) in data.iter().filter(|(n, _)| !is_buffer(n)) {
        count += values(var, name)?.iter().filter(|w| **w != 0.0).count();
    }
    Ok(count)
}

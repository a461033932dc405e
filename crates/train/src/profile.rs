//! What a compressed model costs and keeps: parameters, sparsity, test AUC and
//! 1/eps_B(0.3), and single-jet latency, for the before/after reports of pruning and
//! distillation.

use std::path::Path;
use std::time::Instant;

use candle_nn::VarMap;
use noether_data::{batches, JetSet};
use noether_equivariant::{parameter_count, Mode, Tagger};
use serde::Serialize;

use crate::error::Result;
use crate::evaluate::predict;
use crate::inputs::{batch_input, eval_batch_config};
use crate::metrics::{Scored, TaggingMetrics};
use crate::model::load_inference_model;
use crate::prune::nonzero_parameters;

/// Size, quality and speed of one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelProfile {
    /// Parameters (BatchNorm running statistics excluded).
    pub params: usize,
    /// Parameters that are not zero.
    pub nonzero_params: usize,
    /// `1 - nonzero_params / params`.
    pub sparsity: f64,
    /// Test ROC AUC.
    pub auc: f64,
    /// Test 1/eps_B at eps_S = 0.3.
    #[serde(rename = "rejection_at_0.3")]
    pub rejection_at_0_3: f64,
    /// Median single-jet forward time (ms) over the first jets of the test set.
    pub latency_ms: f64,
}

/// Single-jet latency samples taken (after three warm-up passes).
const LATENCY_JETS: usize = 30;

/// Profiles `model` (weights in `varmap`) on `test` with `n_max` constituents.
///
/// # Errors
/// Model errors.
pub fn profile(
    model: &Tagger,
    varmap: &VarMap,
    test: &JetSet,
    n_max: usize,
    batch_size: usize,
) -> Result<ModelProfile> {
    let (scores, labels, _) = predict(model, test, n_max, batch_size)?;
    let m = TaggingMetrics::of(&Scored::new(&scores, &labels, None)?);
    let params = parameter_count(varmap);
    let nonzero_params = nonzero_parameters(varmap)?;
    Ok(ModelProfile {
        params,
        nonzero_params,
        sparsity: 1.0 - nonzero_params as f64 / params.max(1) as f64,
        auc: m.auc,
        rejection_at_0_3: m.rejection_at_0_3,
        latency_ms: single_jet_latency_ms(model, test, n_max)?,
    })
}

/// Profiles a noether checkpoint (its config read from the file's metadata).
///
/// # Errors
/// Checkpoint and model errors naming the file.
pub fn profile_checkpoint(path: &Path, test: &JetSet) -> Result<ModelProfile> {
    let (model, varmap, config) = load_inference_model(path)?;
    profile(
        &model,
        &varmap,
        test,
        config.data.n_max,
        config.train.eval_batch_size,
    )
}

/// Median single-jet forward time (ms) of `model` over the first test jets, after three
/// warm-up passes.
///
/// # Errors
/// Model errors.
pub fn single_jet_latency_ms(model: &Tagger, test: &JetSet, n_max: usize) -> Result<f64> {
    let config = eval_batch_config(model, 1, n_max);
    let jets: Vec<usize> = (0..test.len().min(LATENCY_JETS)).collect();
    let all: Vec<_> = batches(test, &jets, &config, 0)?.collect();
    // A jet's latency includes computing its input from the momenta.
    let run = |batch| -> Result<()> {
        model.forward_t(&batch_input(model, batch)?, &mut Mode::Eval)?;
        Ok(())
    };
    for batch in all.iter().take(3) {
        run(batch)?;
    }
    let mut times = Vec::with_capacity(all.len());
    for batch in &all {
        let start = Instant::now();
        run(batch)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times.get(times.len() / 2).copied().unwrap_or(f64::NAN))
}

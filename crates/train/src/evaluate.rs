//! Evaluation-mode passes over a set of jets: scores, labels and mean loss
//! ([`predict`]), or the logits ([`logits`]), on inputs computed once per set.

use candle_core::Tensor;
use noether_data::JetSet;
use noether_equivariant::{Mode, Tagger, TaggerInput};

use crate::error::{Context, Result};
use crate::inputs::{jet_inputs, row_indices};
use crate::loss::{cross_entropy, scalar, signal_scores};

/// The logits of consecutive slices of `batch_size` jets, with their row range.
fn slices<'a>(
    model: &'a Tagger,
    inputs: &'a TaggerInput,
    batch_size: usize,
) -> impl Iterator<Item = Result<(std::ops::Range<usize>, Tensor)>> + 'a {
    let n = inputs.len();
    (0..n).step_by(batch_size.max(1)).map(move |start| {
        let range = start..(start + batch_size).min(n);
        let rows = row_indices(range.clone(), &model.placement().device)?;
        let logits = model.forward_t(&inputs.select(&rows)?, &mut Mode::Eval)?;
        Ok((range, logits))
    })
}

/// Scores, labels and mean loss of `model` on all `jets` (evaluation mode), with the
/// input of the jets already computed ([`jet_inputs`]).
///
/// # Errors
/// Model errors.
pub fn predict_inputs(
    model: &Tagger,
    jets: &JetSet,
    inputs: &TaggerInput,
    batch_size: usize,
) -> Result<(Vec<f64>, Vec<u8>, f64)> {
    let (mut scores, mut loss_sum) = (Vec::with_capacity(jets.len()), 0.0);
    for slice in slices(model, inputs, batch_size) {
        let (range, logits) = slice?;
        let labels = &jets.labels()[range.clone()];
        let loss = cross_entropy(&logits, labels, &vec![1.0; labels.len()])?;
        loss_sum += scalar(&loss)? * range.len() as f64;
        scores.extend(signal_scores(&logits)?);
    }
    Ok((
        scores,
        jets.labels().to_vec(),
        loss_sum / jets.len().max(1) as f64,
    ))
}

/// Scores, labels and mean loss of `model` on all `jets` (evaluation mode), with
/// `n_max` constituents per jet.
///
/// # Errors
/// Model errors.
pub fn predict(
    model: &Tagger,
    jets: &JetSet,
    n_max: usize,
    batch_size: usize,
) -> Result<(Vec<f64>, Vec<u8>, f64)> {
    let inputs = jet_inputs(model, jets, n_max)?;
    predict_inputs(model, jets, &inputs, batch_size)
}

/// Logits `[jets, n_class]` of `model` on all `jets`, in order (evaluation mode).
///
/// # Errors
/// Model errors.
pub fn logits(model: &Tagger, jets: &JetSet, n_max: usize, batch_size: usize) -> Result<Tensor> {
    let inputs = jet_inputs(model, jets, n_max)?;
    let parts = slices(model, &inputs, batch_size)
        .map(|s| s.map(|(_, logits)| logits))
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 0).context("logits")
}

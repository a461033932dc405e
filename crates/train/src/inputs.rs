//! Model inputs computed once per data set: the jets padded with the model's beams
//! (noether-data's batching, so truncation and padding are the data crate's), widened
//! to f64, turned into the model's input ([`Tagger::input`]: pair invariants and jet
//! features in f64, cast to the model's dtype on its device once), and cut into batches
//! by rows.

use candle_core::Tensor;
use noether_data::{batches, Batch, BatchConfig, Beams, JetSet};
use noether_equivariant::{PaddedJets, Tagger, TaggerInput};

use crate::error::{Context, Result};

/// Jets per chunk while computing inputs (bounds the f64 staging memory).
const CHUNK: usize = 1024;

/// The data crate's beams for `model`.
pub fn beams_of(model: &Tagger) -> Beams {
    match model.beams() {
        [] => Beams::None,
        beams => Beams::Prepend(beams),
    }
}

/// Batches of `jets` in order, unshuffled, with `model`'s beams.
pub fn eval_batch_config(model: &Tagger, batch_size: usize, n_max: usize) -> BatchConfig {
    BatchConfig {
        beams: beams_of(model),
        shuffle: false,
        ..BatchConfig::new(batch_size, n_max)
    }
}

/// The input of one padded batch.
///
/// # Errors
/// Non-finite momenta; tensor errors.
pub fn batch_input(model: &Tagger, batch: &Batch) -> Result<TaggerInput> {
    let wide: Vec<f64> = batch.momenta.iter().map(|&x| f64::from(x)).collect();
    let jets = PaddedJets {
        momenta: &wide,
        mask: &batch.mask,
        jets: batch.batch_size,
        nodes: batch.particles,
        beams: model.beams().len(),
    };
    Ok(model.input(&jets)?)
}

/// The input of every jet of `jets` (in order) with `n_max` constituents.
///
/// # Errors
/// Data errors; non-finite momenta; tensor errors.
pub fn jet_inputs(model: &Tagger, jets: &JetSet, n_max: usize) -> Result<TaggerInput> {
    let config = eval_batch_config(model, CHUNK, n_max);
    let indices: Vec<usize> = (0..jets.len()).collect();
    let parts = batches(jets, &indices, &config, 0)?
        .map(|batch| batch_input(model, &batch))
        .collect::<Result<Vec<_>>>()?;
    if parts.is_empty() {
        let nodes = config.particles();
        let jets = PaddedJets {
            momenta: &[],
            mask: &[],
            jets: 0,
            nodes,
            beams: model.beams().len(),
        };
        return Ok(model.input(&jets)?);
    }
    Ok(TaggerInput::cat(&parts)?)
}

/// Jet positions as the `u32` index tensor `index_select` takes, on `device`.
///
/// # Errors
/// Tensor errors.
pub fn row_indices(
    rows: impl IntoIterator<Item = usize>,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let rows: Vec<u32> = rows.into_iter().map(|i| i as u32).collect();
    Tensor::new(rows.as_slice(), device).context("batch rows")
}

/// The precomputed input of `batch`'s jets.
///
/// # Errors
/// Rows out of range.
pub fn select(model: &Tagger, all: &TaggerInput, batch: &Batch) -> Result<TaggerInput> {
    let rows = row_indices(batch.indices.iter().copied(), &model.placement().device)?;
    Ok(all.select(&rows)?)
}

/// Logits of one padded batch, its input computed on the spot (for one-off passes; a
/// training or evaluation loop computes its inputs once with [`jet_inputs`]).
///
/// # Errors
/// Non-finite momenta; model errors.
pub fn forward_batch(
    model: &Tagger,
    batch: &Batch,
    mode: &mut noether_equivariant::Mode,
) -> Result<Tensor> {
    Ok(model.forward_t(&batch_input(model, batch)?, mode)?)
}

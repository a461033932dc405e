//! A quantised run's model in the integer engine: the logits of a set of jets computed
//! by [`noether_quant::Engine`] from the model's [`noether_quant::QuantGraph`], on the
//! inputs the float model sees.

use noether_data::JetSet;
use noether_equivariant::{FixedPointInput, Tagger};
use noether_quant::Engine;

use crate::error::Result;
use crate::inputs::jet_inputs;

/// Logits per jet of the quantised `model` on all `jets` (`n_max` constituents), from the
/// integer engine.
///
/// # Errors
/// A model that was not trained with `[quant]`; data and input errors.
pub fn fixed_point_logits(model: &Tagger, jets: &JetSet, n_max: usize) -> Result<Vec<Vec<f32>>> {
    let mut engine =
        Engine::new(&model.quant_graph()?).map_err(noether_equivariant::ModelError::from)?;
    let input = FixedPointInput::new(&jet_inputs(model, jets, n_max)?)?;
    (0..input.len())
        .map(|b| {
            let (features, mask) = input.jet(b);
            let logits = engine
                .run(features, mask)
                .map_err(noether_equivariant::ModelError::from)?;
            Ok(logits.iter().map(|&l| l as f32).collect())
        })
        .collect()
}

//! A quantised run's model in the integer engine: the logits of a set of jets computed
//! by [`noether_quant::Engine`] from the model's [`noether_quant::QuantGraph`], on the
//! inputs the float model sees.

use noether_data::JetSet;
use noether_equivariant::{FixedPointInput, Tagger};
use noether_quant::Engine;

use crate::error::Result;
use crate::inputs::{jet_inputs, row_indices};

/// Logits per jet of the quantised `model` on all `jets` (`n_max` constituents), from the
/// integer engine.
///
/// # Errors
/// A model that was not trained with `[quant]`; data and input errors.
pub fn fixed_point_logits(model: &Tagger, jets: &JetSet, n_max: usize) -> Result<Vec<Vec<f32>>> {
    let mut engine = Engine::new(&model.quant_graph()?)?;
    let input = FixedPointInput::new(&jet_inputs(model, jets, n_max)?)?;
    (0..input.len())
        .map(|b| {
            let (features, mask) = input.jet(b);
            Ok(engine
                .run(features, mask)?
                .iter()
                .map(|&l| l as f32)
                .collect())
        })
        .collect()
}

/// The time one jet takes, batch of one, as [`engine_latency`] and [`float_latency`]
/// measure it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Median of the timed single-jet calls.
    pub median: std::time::Duration,
    /// Calls per second over all timed calls.
    pub jets_per_second: f64,
    /// Timed calls.
    pub calls: usize,
}

/// Times `calls` single-jet calls of `call(k)` (jet `k` of those cycled through) after
/// `warmup` untimed ones.
fn time_calls(
    calls: usize,
    warmup: usize,
    mut call: impl FnMut(usize) -> Result<()>,
) -> Result<Latency> {
    let calls = calls.max(1);
    for k in 0..warmup {
        call(k)?;
    }
    let mut times = Vec::with_capacity(calls);
    let started = std::time::Instant::now();
    for k in 0..calls {
        let t = std::time::Instant::now();
        call(k)?;
        times.push(t.elapsed());
    }
    let total = started.elapsed();
    times.sort_unstable();
    Ok(Latency {
        median: times[calls / 2],
        jets_per_second: calls as f64 / total.as_secs_f64().max(f64::MIN_POSITIVE),
        calls,
    })
}

/// Latency of the integer engine of the quantised `model` on the jets of `input`
/// (features computed beforehand, as a trigger receives them), on the calling thread.
///
/// # Errors
/// A model not trained with `[quant]`; inputs the engine rejects.
pub fn engine_latency(
    model: &Tagger,
    input: &noether_equivariant::TaggerInput,
    calls: usize,
) -> Result<Latency> {
    let mut engine = Engine::new(&model.quant_graph()?)?;
    let features = FixedPointInput::new(input)?;
    time_calls(calls, calls.min(1000), |k| {
        let (x, mask) = features.jet(k % features.len());
        std::hint::black_box(engine.run(std::hint::black_box(x), mask)?);
        Ok(())
    })
}

/// Latency of `model`'s float forward (evaluation mode, candle) on single jets of
/// `input`, with the threads candle was given.
///
/// # Errors
/// Model errors.
pub fn float_latency(
    model: &Tagger,
    input: &noether_equivariant::TaggerInput,
    calls: usize,
) -> Result<Latency> {
    let device = &model.placement().device;
    let singles = (0..input.len())
        .map(|b| Ok(input.select(&row_indices([b], device)?)?))
        .collect::<Result<Vec<_>>>()?;
    time_calls(calls, calls.min(20), |k| {
        let out = model.forward_t(
            &singles[k % singles.len()],
            &mut noether_equivariant::Mode::Eval,
        )?;
        std::hint::black_box(out);
        Ok(())
    })
}

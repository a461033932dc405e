//! Training and evaluation modes, and dropout driven by our own seeded RNG (candle's CPU
//! RNG cannot be seeded, so `candle_nn::Dropout` would make runs irreproducible).

use candle_core::{Result, Tensor};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// How a forward pass runs.
#[derive(Debug)]
pub enum Mode<'a> {
    /// Evaluation: BatchNorm uses running statistics, dropout is the identity.
    Eval,
    /// Training: BatchNorm uses (masked) batch statistics and updates its running
    /// statistics; dropout masks are drawn from the given RNG.
    Train(&'a mut ChaCha8Rng),
}

impl Mode<'_> {
    /// Whether this is training mode.
    pub fn is_train(&self) -> bool {
        matches!(self, Mode::Train(_))
    }
}

/// Inverted dropout: in training, zeroes each entry with probability `p` and scales the
/// rest by 1 / (1 - p); in evaluation (or with `p = 0`) returns `x` unchanged.
///
/// # Errors
/// Only from the tensor backend.
pub fn dropout(x: &Tensor, p: f64, mode: &mut Mode) -> Result<Tensor> {
    let Mode::Train(rng) = mode else {
        return Ok(x.clone());
    };
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 - p;
    let scale = (1.0 / keep) as f32;
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| {
            if rng.random_range(0.0..1.0) < keep {
                scale
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    x * mask
}

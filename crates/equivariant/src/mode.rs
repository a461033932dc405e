//! Training and evaluation modes, and dropout driven by our own seeded RNG (candle's CPU
//! RNG cannot be seeded, so `candle_nn::Dropout` would make runs irreproducible).

use candle_core::{Result, Tensor};
use rand::Rng;
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
/// rest by 1 / (1 - p); in evaluation (or with `p = 0`) returns `x` unchanged. The mask
/// multiplies through [`crate::fused::mask_product`] (no gradient formed for the mask).
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
    let mask = keep_mask(rng, x.elem_count(), keep, scale);
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    crate::fused::mask_product(x, &mask)
}

/// Words drawn from the RNG per batch of [`keep_mask`].
const MASK_WORDS: usize = 4096;

/// `n` entries of an inverted-dropout mask: `scale` where a uniform draw on [0, 1) is
/// below `keep`, else 0. The same draws as `rng.random_range(0.0..1.0)` per entry (one
/// 64-bit word each, its top 52 bits as the fraction, rand's `UniformFloat`), taken from
/// the RNG in batches of bytes (the same stream: ChaCha's words in order), where drawing
/// one value at a time was ~9% of a PELICAN training step (`perf`).
fn keep_mask(rng: &mut ChaCha8Rng, n: usize, keep: f64, scale: f32) -> Vec<f32> {
    let mut bytes = vec![0u8; 8 * MASK_WORDS.min(n)];
    let mut mask = Vec::with_capacity(n);
    while mask.len() < n {
        let words = (n - mask.len()).min(MASK_WORDS);
        let bytes = &mut bytes[..8 * words];
        rng.fill_bytes(bytes);
        mask.extend(bytes.chunks_exact(8).map(|word| {
            let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            if unit_interval(word) < keep {
                scale
            } else {
                0.0
            }
        }));
    }
    mask
}

/// rand's uniform f64 on [0, 1) from one 64-bit word: the top 52 bits as the fraction of
/// a float in [1, 2), minus one (exact).
fn unit_interval(word: u64) -> f64 {
    f64::from_bits((word >> 12) | 1f64.to_bits()) - 1.0
}

#[cfg(test)]
mod tests {
    use rand::{Rng, RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::keep_mask;

    /// The mask as drawn one entry at a time by rand's own range sampler.
    fn one_at_a_time(rng: &mut ChaCha8Rng, n: usize, keep: f64, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                if rng.random_range(0.0..1.0) < keep {
                    scale
                } else {
                    0.0
                }
            })
            .collect()
    }

    #[test]
    fn batched_draws_equal_rands_sampler_and_leave_the_rng_in_the_same_state() {
        // Lengths around the batch size and ChaCha's block, and a stream started on an odd
        // word (after one 32-bit draw).
        for (n, offset) in [
            (0, false),
            (1, true),
            (7, false),
            (4095, true),
            (4097, false),
            (9000, true),
        ] {
            let (mut a, mut b) = (ChaCha8Rng::seed_from_u64(5), ChaCha8Rng::seed_from_u64(5));
            if offset {
                a.next_u32();
                b.next_u32();
            }
            assert_eq!(
                keep_mask(&mut a, n, 0.9, 1.25),
                one_at_a_time(&mut b, n, 0.9, 1.25)
            );
            assert_eq!(a.next_u64(), b.next_u64(), "n = {n}");
        }
    }

    #[test]
    fn the_kept_fraction_is_keep() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mask = keep_mask(&mut rng, 100_000, 0.7, 2.0);
        let kept = mask.iter().filter(|&&m| m == 2.0).count() as f64 / 1e5;
        // Binomial standard deviation sqrt(0.21 / 1e5) = 0.0015.
        assert!((kept - 0.7).abs() < 0.006, "{kept}");
        assert!(mask.iter().all(|&m| m == 0.0 || m == 2.0));
    }
}

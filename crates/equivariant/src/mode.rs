//! Training and evaluation modes, and dropout driven by our own seeded RNG (candle's CPU
//! RNG cannot be seeded, so `candle_nn::Dropout` would make runs irreproducible).

use candle_core::{DType, Device, Result, Shape, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

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
    match dropout_mask(x.shape(), x.dtype(), x.device(), p, mode)? {
        Some(mask) => crate::fused::mask_product(x, &mask),
        None => Ok(x.clone()),
    }
}

/// The mask [`dropout`] multiplies by, for a tensor of `shape`, `dtype` and `device`:
/// `1 / (1 - p)` where kept, 0 where dropped; `None` in evaluation or with `p = 0`. For
/// kernels that apply dropout themselves (PELICAN's 2 -> 2 layer); drawn from the RNG
/// exactly as [`dropout`] draws it.
///
/// # Errors
/// Only from the tensor backend.
pub fn dropout_mask(
    shape: &Shape,
    dtype: DType,
    device: &Device,
    p: f64,
    mode: &mut Mode,
) -> Result<Option<Tensor>> {
    let Mode::Train(rng) = mode else {
        return Ok(None);
    };
    if p <= 0.0 {
        return Ok(None);
    }
    let keep = 1.0 - p;
    let scale = (1.0 / keep) as f32;
    let mask = keep_mask(rng, shape.elem_count(), keep, scale);
    Tensor::from_vec(mask, shape, device)?
        .to_dtype(dtype)
        .map(Some)
}

/// Words drawn from the RNG per batch of [`keep_mask`].
const MASK_WORDS: usize = 4096;
/// Entries of a mask per parallel task of [`keep_mask`].
const MASK_TASK: usize = 1 << 16;

/// `n` entries of an inverted-dropout mask: `scale` where a uniform draw on [0, 1) is
/// below `keep`, else 0. The same draws as `rng.random_range(0.0..1.0)` per entry (one
/// 64-bit word each, its top 52 bits as the fraction, rand's `UniformFloat`), taken from
/// the RNG in batches of bytes (the same stream: ChaCha's words in order), where drawing
/// one value at a time was ~9% of a PELICAN training step (`perf`). Longer masks are cut
/// into tasks that each seek their own copy of the RNG to their first word (ChaCha is
/// seekable), run in parallel; the RNG then moves past the mask's last word, as if it had
/// drawn every entry itself: the same mask and state on any thread count.
fn keep_mask(rng: &mut ChaCha8Rng, n: usize, keep: f64, scale: f32) -> Vec<f32> {
    if n <= MASK_TASK {
        let mut mask = vec![0.0; n];
        fill_keep_mask(rng, &mut mask, keep, scale);
        return mask;
    }
    let start = rng.get_word_pos();
    let words = |entries: usize| 2 * entries as u128;
    let mut mask = vec![0.0; n];
    mask.par_chunks_mut(MASK_TASK)
        .enumerate()
        .for_each(|(k, chunk)| {
            let mut own = rng.clone();
            own.set_word_pos(start + words(k * MASK_TASK));
            fill_keep_mask(&mut own, chunk, keep, scale);
        });
    rng.set_word_pos(start + words(n));
    mask
}

/// Fills `mask` as [`keep_mask`] describes, drawing from `rng` in order.
fn fill_keep_mask(rng: &mut ChaCha8Rng, mask: &mut [f32], keep: f64, scale: f32) {
    let mut bytes = vec![0u8; 8 * MASK_WORDS.min(mask.len())];
    for chunk in mask.chunks_mut(MASK_WORDS) {
        let bytes = &mut bytes[..8 * chunk.len()];
        rng.fill_bytes(bytes);
        for (entry, word) in chunk.iter_mut().zip(bytes.chunks_exact(8)) {
            let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            *entry = if unit_interval(word) < keep {
                scale
            } else {
                0.0
            };
        }
    }
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
        // Lengths around the batch size and ChaCha's block, one cut into parallel tasks,
        // and a stream started on an odd word (after one 32-bit draw).
        for (n, offset) in [
            (0, false),
            (1, true),
            (7, false),
            (4095, true),
            (4097, false),
            (9000, true),
            // Past MASK_TASK: the parallel tasks that seek their own copies.
            (200_001, true),
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

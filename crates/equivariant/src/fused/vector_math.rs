//! Element-wise math over slices that the compiler vectorises: `exp` for f32 in the Cephes
//! single-precision form, and sums with several accumulators.
//!
//! glibc's `expf` / `tanhf` / `expm1f` are scalar calls: in L-GATr-slim's evaluation pass
//! GELU's `tanhf` (through `expm1f`) alone took 22% of a single jet (`perf`). Here `exp`
//! reduces `x = n ln 2 + r` with `|r| <= ln 2 / 2`, evaluates Cephes' degree-6 polynomial
//! for `e^r` and scales by `2^n` through the exponent bits: within 1 ulp of the true value (0.65 measured)
//! over the whole range (test below against f64), and plain arithmetic that runs eight
//! lanes at a time where AVX2 is detected. f64 keeps the standard library's `exp`.

use candle_core::WithDType;
use num_traits::Float;

/// The float types of the kernels, with their slice-wise `exp`.
pub(crate) trait VectorMath:
    WithDType + Float + num_traits::NumAssign + Default + Send + Sync + 'static
{
    /// `x <- e^x` for every value.
    fn exp_in_place(values: &mut [Self]);
}

impl VectorMath for f32 {
    fn exp_in_place(values: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            #[allow(unsafe_code)]
            unsafe {
                exp_all_avx2(values);
            }
            return;
        }
        exp_all(values);
    }
}

impl VectorMath for f64 {
    fn exp_in_place(values: &mut [f64]) {
        for x in values {
            *x = x.exp();
        }
    }
}

/// [`exp_all`] compiled for AVX2 (the same operations, so the same results).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn exp_all_avx2(values: &mut [f32]) {
    exp_all(values);
}

/// The loop, always inlined so that the AVX2 build compiles it with its features.
#[allow(clippy::inline_always)]
#[inline(always)]
fn exp_all(values: &mut [f32]) {
    for x in values {
        *x = exp(*x);
    }
}

/// e^x in f32 (Cephes' `expf`: ln 2 split in two for the reduction, a degree-6
/// polynomial, the exponent built in the bits; arguments clamped to [-87, 88], where
/// e^x stays a normal number; NaN stays NaN).
#[allow(
    clippy::inline_always,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]
#[inline(always)]
fn exp(x: f32) -> f32 {
    /// 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_2e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 5e-1;
    let e = r * r * p + r + 1.0;
    let exponent = (shifted.to_bits() as i32 - ROUND.to_bits() as i32) + 127;
    e * f32::from_bits((exponent << 23) as u32)
}

/// The sum of `term(i)` for `i < n`, in eight interleaved partial sums (a loop the
/// compiler vectorises, where one running sum waits on each addition).
#[inline]
pub(crate) fn lane_sum<T: Float + num_traits::NumAssign>(n: usize, term: impl Fn(usize) -> T) -> T {
    let mut lanes = [T::zero(); 8];
    let full = n / 8 * 8;
    for base in (0..full).step_by(8) {
        for (l, lane) in lanes.iter_mut().enumerate() {
            *lane += term(base + l);
        }
    }
    let tail = (full..n).fold(T::zero(), |acc, i| acc + term(i));
    lanes.iter().fold(tail, |acc, &l| acc + l)
}

/// The dot product of `a` and `b` (their common length) in eight interleaved partial
/// sums, as [`lane_sum`]: a per-row dot product folded into one running sum waits on
/// each addition (LorentzNet's attention logits, 5% of a training step so). The same
/// sums in the same order as `lane_sum(n, |i| a[i] * b[i])` (tested), over slices so
/// that it vectorises: through `lane_sum`'s indexed closure LorentzNet's step was 6%
/// slower.
#[inline]
pub(crate) fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let n = a.len().min(b.len());
    let (a, b) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
    let tail = a
        .remainder()
        .iter()
        .zip(b.remainder())
        .fold(T::zero(), |acc, (&x, &y)| acc + x * y);
    let mut lanes = [T::zero(); 8];
    for (x, y) in a.zip(b) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *lane = *lane + x * y;
        }
    }
    lanes.iter().fold(tail, |acc, &l| acc + l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_equals_the_exact_sum_for_lengths_around_the_lanes() {
        // Integers small enough that every partial sum is exact in f64: any order gives
        // the same value, so a lane or tail left out or counted twice shows.
        for n in [0, 1, 7, 8, 9, 16, 71, 72, 73] {
            let a: Vec<f64> = (0..n).map(|i| f64::from(i as u32 % 13) - 6.0).collect();
            let b: Vec<f64> = (0..n).map(|i| f64::from(i as u32 % 7) + 1.0).collect();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert_eq!(dot(&a, &b), exact, "length {n}");
            // Slices of different lengths: their common length.
            assert_eq!(dot(&a, &b[..n / 2]), dot(&a[..n / 2], &b[..n / 2]));
            // Inexact values: bit for bit lane_sum's order.
            let (x, y): (Vec<f32>, Vec<f32>) = (0..n)
                .map(|i| ((i as f32 * 0.37).sin(), (i as f32 * 1.3).cos() / 3.0))
                .unzip();
            assert_eq!(
                dot(&x, &y).to_bits(),
                lane_sum(n, |i| x[i] * y[i]).to_bits()
            );
        }
    }

    #[test]
    fn exp_is_within_one_ulp_over_its_range() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let mut got = [x];
            f32::exp_in_place(&mut got);
            let want = f64::from(x).exp();
            let ulp = f64::from(f32::EPSILON) * want;
            worst = worst.max((f64::from(got[0]) - want).abs() / ulp);
            x += 0.001_3;
        }
        println!("exp: worst error {worst:.2} ulp");
        assert!(worst <= 1.0, "worst error {worst:.2} ulp");
        let mut edges = [0.0, -200.0, 200.0, f32::NAN];
        f32::exp_in_place(&mut edges);
        assert_eq!(edges[0], 1.0);
        assert!(edges[1] > 0.0 && edges[1] < 1e-37);
        assert!(edges[2] > 1e38 && edges[2].is_finite());
        assert!(edges[3].is_nan());
        // The portable loop and the AVX2 build agree bit for bit.
        let xs: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.173).collect();
        let (mut a, mut b) = (xs.clone(), xs);
        exp_all(&mut a);
        f32::exp_in_place(&mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn lane_sums_equal_the_plain_sum() {
        for n in [0, 1, 7, 8, 9, 31, 100] {
            let want: f64 = (0..n).map(|i| f64::from(i as u32) * 0.5).sum();
            assert_eq!(lane_sum(n, |i| f64::from(i as u32) * 0.5), want);
        }
    }
}

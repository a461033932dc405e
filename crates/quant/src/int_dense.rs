//! A dense layer in raw integers, as the engine's stages run it.

use crate::dense::{product_bits, Dense};
use crate::fixed::{Cast, FixedType};

/// The widest output of a row [`IntDense::run_rows`] sums in 32-bit lanes on the stack.
const NARROW_ROW: usize = 64;

/// A dense layer in raw integers.
#[derive(Debug, Clone)]
pub(crate) struct IntDense {
    pub(crate) inputs: usize,
    pub(crate) outputs: usize,
    /// Raw weights transposed, `[inputs][outputs]`, shifted left to the sum's fraction
    /// bits (so that a sum needs no shift).
    weight: Vec<i64>,
    /// The same in `i16` when weights and inputs fit 16 bits and every sum 31: the
    /// products then run in 32-bit lanes (8 per SSE2 register, against 2 for `i64`).
    narrow: Option<Vec<i16>>,
    /// Raw biases aligned to the sum's fraction bits.
    bias: Vec<i64>,
    /// The cast of a sum to the accumulator type, if any.
    accum: Option<Cast>,
    /// The cast to the result type (from the accumulator's or the sum's fraction bits).
    result: Cast,
    relu: bool,
}

impl IntDense {
    pub(crate) fn new(layer: &Dense, input: FixedType) -> Self {
        let p = layer.precision;
        let product_fraction = p.weight.fraction() + input.fraction();
        let sum_fraction = product_fraction.max(p.bias.fraction());
        let (product_shift, bias_shift) = (
            (sum_fraction - product_fraction) as u32,
            (sum_fraction - p.bias.fraction()) as u32,
        );
        let raw = |o: usize, k: usize| p.weight.quantize_raw(layer.weight[o * layer.inputs + k]);
        let (n_in, n_out) = (layer.inputs, layer.outputs);
        let weight: Vec<i64> = (0..n_in * n_out)
            .map(|j| raw(j % n_out, j / n_out) << product_shift)
            .collect();
        let fits = |ty: FixedType| ty.width() <= if ty.is_signed() { 16 } else { 15 };
        let narrow = (fits(p.weight)
            && fits(input)
            && product_shift == 0
            && product_bits(n_in, p.weight, input) <= 31)
            .then(|| weight.iter().map(|&w: &i64| w as i16).collect());
        Self {
            inputs: n_in,
            outputs: n_out,
            weight,
            narrow,
            bias: layer
                .bias
                .iter()
                .map(|v| p.bias.quantize_raw(*v) << bias_shift)
                .collect(),
            accum: p.accum.map(|a| Cast::new(sum_fraction, a)),
            result: Cast::new(p.accum.map_or(sum_fraction, |a| a.fraction()), p.result),
            relu: layer.relu,
        }
    }

    /// [`IntDense::run`] on every row of `x` (`[rows, inputs]`) into `y`
    /// (`[rows, outputs]`), the casts applied once over all rows (a pair stage's layers
    /// run on every pair of nodes).
    pub(crate) fn run_rows(&self, x: &[i64], y: &mut [i64]) {
        if let Some(weight) = self.narrow.as_ref().filter(|_| self.outputs <= NARROW_ROW) {
            self.run_rows_narrow(weight, x, y);
            return;
        }
        for (row, out) in x
            .chunks_exact(self.inputs)
            .zip(y.chunks_exact_mut(self.outputs))
        {
            out.copy_from_slice(&self.bias);
            for (&xk, column) in row.iter().zip(self.weight.chunks_exact(self.outputs)) {
                if xk != 0 {
                    for (acc, &w) in out.iter_mut().zip(column) {
                        *acc += w * xk;
                    }
                }
            }
        }
        self.cast(y);
    }

    /// [`IntDense::run_rows`] with 16-bit weights and inputs summed in 32-bit lanes (a
    /// row's sums on the stack).
    fn run_rows_narrow(&self, weight: &[i16], x: &[i64], y: &mut [i64]) {
        let mut sums = [0i32; NARROW_ROW];
        let sums = &mut sums[..self.outputs];
        for (row, out) in x
            .chunks_exact(self.inputs)
            .zip(y.chunks_exact_mut(self.outputs))
        {
            sums.fill(0);
            for (&xk, column) in row.iter().zip(weight.chunks_exact(self.outputs)) {
                if xk != 0 {
                    let xk = xk as i32;
                    for (acc, &w) in sums.iter_mut().zip(column) {
                        *acc += i32::from(w) * xk;
                    }
                }
            }
            for ((o, &sum), &b) in out.iter_mut().zip(&*sums).zip(&self.bias) {
                *o = i64::from(sum) + b;
            }
        }
        self.cast(y);
    }

    /// The accumulator and result casts of finished sums, with the ReLU.
    fn cast(&self, y: &mut [i64]) {
        if let Some(accum) = &self.accum {
            accum.apply_all(y, i64::MIN);
        }
        self.result
            .apply_all(y, if self.relu { 0 } else { i64::MIN });
    }

    /// `y = relu?(result(accum(W x + b)))` in raw integers: the sums accumulate input by
    /// input over all outputs (contiguous weights, and the zeros a ReLU leaves skipped),
    /// exactly (the graph checks the widths); `narrow` is scratch for the 32-bit sums.
    pub(crate) fn run(&self, x: &[i64], y: &mut [i64], narrow: &mut [i32]) {
        let y = &mut y[..self.outputs];
        if let Some(weight) = &self.narrow {
            let sums = &mut narrow[..self.outputs];
            sums.fill(0);
            for (&xk, column) in x[..self.inputs]
                .iter()
                .zip(weight.chunks_exact(self.outputs))
            {
                if xk != 0 {
                    let xk = xk as i32;
                    for (acc, &w) in sums.iter_mut().zip(column) {
                        *acc += i32::from(w) * xk;
                    }
                }
            }
            for ((acc, &sum), &b) in y.iter_mut().zip(&*sums).zip(&self.bias) {
                *acc = i64::from(sum) + b;
            }
        } else {
            y.copy_from_slice(&self.bias);
            for (&xk, column) in x[..self.inputs]
                .iter()
                .zip(self.weight.chunks_exact(self.outputs))
            {
                if xk != 0 {
                    for (acc, &w) in y.iter_mut().zip(column) {
                        *acc += w * xk;
                    }
                }
            }
        }
        self.cast(y);
    }
}

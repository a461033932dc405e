//! The per-token layers on feature-major activations, forward and backward: `SlimRMSNorm`,
//! `SlimGLU`'s gates and their nonlinearities.
//!
//! The norm of a token: `f = 1 / sqrt((sum_c |<v_c, v_c>| + sum_c s_c^2) / C + eps)`,
//! outputs `x f g`. Its backward, with `x^ = x f` and `a = dout g`:
//! `dx = f (a - (sum a x^) sign(<v_c, v_c>) eta x^ / C)` for vector components (`eta`
//! the metric), `f (a - (sum a x^) x^ / C)` for scalars, `dg = sum over tokens dout x^`.

use super::Real;
use crate::slim_layers::{Nonlinearity, NORM_EPSILON};

fn constant<T: Real>(x: f64) -> T {
    T::from(x).expect("a finite constant")
}

/// A norm's outputs and its factor per token.
pub(super) struct Normed<T> {
    pub(super) v: Vec<T>,
    pub(super) s: Vec<T>,
    pub(super) factors: Vec<T>,
}

/// <v, v> for one token's vector `[t, x, y, z]`.
fn minkowski_square<T: Real>(v: &[T]) -> T {
    v[0] * v[0] - v[1] * v[1] - v[2] * v[2] - v[3] * v[3]
}

/// `SlimRMSNorm` of `(v, s)` over `cols` tokens with optional gains `(g_v, g_s)`.
pub(super) fn norm_forward<T: Real>(
    (v, s): (&[T], &[T]),
    cols: usize,
    gains: Option<&(&[T], &[T])>,
) -> Normed<T> {
    let (cv, cs) = (v.len() / (4 * cols), s.len() / cols);
    let mut factors = vec![T::zero(); cols];
    for row in v.chunks_exact(4 * cols) {
        for (f, v) in factors.iter_mut().zip(row.chunks_exact(4)) {
            *f = *f + minkowski_square(v).abs();
        }
    }
    for row in s.chunks_exact(cols) {
        for (f, &x) in factors.iter_mut().zip(row) {
            *f = *f + x * x;
        }
    }
    let (channels, eps): (T, T) = (constant((cv + cs) as f64), constant(NORM_EPSILON));
    factors
        .iter_mut()
        .for_each(|f| *f = T::one() / (*f / channels + eps).sqrt());
    let gain = |g: Option<&[T]>, c: usize| g.map_or(T::one(), |g| g[c]);
    let mut out_v = vec![T::zero(); v.len()];
    for (c, (row, out)) in v
        .chunks_exact(4 * cols)
        .zip(out_v.chunks_exact_mut(4 * cols))
        .enumerate()
    {
        let g = gain(gains.map(|g| g.0), c);
        for ((o, x), &f) in out
            .chunks_exact_mut(4)
            .zip(row.chunks_exact(4))
            .zip(&factors)
        {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = x * f * g;
            }
        }
    }
    let mut out_s = vec![T::zero(); s.len()];
    for (c, (row, out)) in s
        .chunks_exact(cols)
        .zip(out_s.chunks_exact_mut(cols))
        .enumerate()
    {
        let g = gain(gains.map(|g| g.1), c);
        for ((o, &x), &f) in out.iter_mut().zip(row).zip(&factors) {
            *o = x * f * g;
        }
    }
    Normed {
        v: out_v,
        s: out_s,
        factors,
    }
}

/// The backward of [`norm_forward`] on the inputs `(v, s)` with the forward's `factors`:
/// the input gradients; the gain gradients are written into `d_gains`.
pub(super) fn norm_backward<T: Real>(
    (v, s): (&[T], &[T]),
    factors: &[T],
    gains: Option<&(&[T], &[T])>,
    (dv, ds): (&[T], &[T]),
    d_gains: Option<&mut (&mut [T], &mut [T])>,
) -> (Vec<T>, Vec<T>) {
    let cols = factors.len();
    let (cv, cs) = (v.len() / (4 * cols), s.len() / cols);
    let gain = |g: Option<&[T]>, c: usize| g.map_or(T::one(), |g| g[c]);
    // a = dout g, x^ = x f; dot = sum a x^ per token; dg = sum dout x^.
    let mut dot = vec![T::zero(); cols];
    let mut dg_v = vec![T::zero(); cv];
    let mut dg_s = vec![T::zero(); cs];
    for (c, (x, d)) in v
        .chunks_exact(4 * cols)
        .zip(dv.chunks_exact(4 * cols))
        .enumerate()
    {
        let g = gain(gains.map(|g| g.0), c);
        let mut sum = T::zero();
        for ((x, d), (&f, dot)) in x
            .chunks_exact(4)
            .zip(d.chunks_exact(4))
            .zip(factors.iter().zip(dot.iter_mut()))
        {
            let xd = (0..4).fold(T::zero(), |acc, k| acc + x[k] * d[k]) * f;
            sum = sum + xd;
            *dot = *dot + xd * g;
        }
        dg_v[c] = sum;
    }
    for (c, (x, d)) in s.chunks_exact(cols).zip(ds.chunks_exact(cols)).enumerate() {
        let g = gain(gains.map(|g| g.1), c);
        let mut sum = T::zero();
        for ((&x, &d), (&f, dot)) in x.iter().zip(d).zip(factors.iter().zip(dot.iter_mut())) {
            let xd = x * d * f;
            sum = sum + xd;
            *dot = *dot + xd * g;
        }
        dg_s[c] = sum;
    }
    if let Some((gv, gs)) = d_gains {
        gv.copy_from_slice(&dg_v);
        gs.copy_from_slice(&dg_s);
    }
    let channels: T = constant((cv + cs) as f64);
    let mut out_v = vec![T::zero(); v.len()];
    for (c, ((x, d), out)) in v
        .chunks_exact(4 * cols)
        .zip(dv.chunks_exact(4 * cols))
        .zip(out_v.chunks_exact_mut(4 * cols))
        .enumerate()
    {
        let g = gain(gains.map(|g| g.0), c);
        for (t, ((x, d), out)) in x
            .chunks_exact(4)
            .zip(d.chunks_exact(4))
            .zip(out.chunks_exact_mut(4))
            .enumerate()
        {
            let f = factors[t];
            let square = minkowski_square(x);
            let sign = if square > T::zero() {
                T::one()
            } else if square < T::zero() {
                -T::one()
            } else {
                T::zero()
            };
            let k = dot[t] * sign / channels;
            for comp in 0..4 {
                let metric = if comp == 0 { k } else { -k };
                out[comp] = f * (d[comp] * g - metric * x[comp] * f);
            }
        }
    }
    let mut out_s = vec![T::zero(); s.len()];
    for (c, ((x, d), out)) in s
        .chunks_exact(cols)
        .zip(ds.chunks_exact(cols))
        .zip(out_s.chunks_exact_mut(cols))
        .enumerate()
    {
        let g = gain(gains.map(|g| g.1), c);
        for (t, ((&x, &d), out)) in x.iter().zip(d).zip(out.iter_mut()).enumerate() {
            let f = factors[t];
            *out = f * (d * g - dot[t] * x * f / channels);
        }
    }
    (out_v, out_s)
}

/// The vector gates' arguments `<a_c, b_c> / 2` `[ov, cols]` of a unit's linear outputs
/// `v` `[3 ov, 4 cols]` (the second and third blocks of channels).
fn vector_gate_arguments<T: Real>(v: &[T], ov: usize, cols: usize) -> Vec<T> {
    let width = 4 * cols;
    let half: T = constant(0.5);
    let mut out = Vec::with_capacity(ov * cols);
    for c in 0..ov {
        let a = &v[(ov + c) * width..(ov + c + 1) * width];
        let b = &v[(2 * ov + c) * width..(2 * ov + c + 1) * width];
        out.extend(
            a.chunks_exact(4)
                .zip(b.chunks_exact(4))
                .map(|(a, b)| (a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3]) * half),
        );
    }
    out
}

/// `SlimGLU`'s gates on the unit's linear outputs `v` `[3 ov, 4 cols]`, `s`
/// `[2 os, cols]`: `(act_v(<b, c> / 2) a, act_s(s_2) s_1)`.
pub(super) fn gate_forward<T: Real>(
    (act_s, act_v): (Nonlinearity, Nonlinearity),
    (v, s): (&[T], &[T]),
    cols: usize,
) -> (Vec<T>, Vec<T>) {
    let (ov, os) = (v.len() / (12 * cols), s.len() / (2 * cols));
    let width = 4 * cols;
    let mut gates = vector_gate_arguments(v, ov, cols);
    activation(act_v, &mut gates);
    let mut out_v = vec![T::zero(); ov * width];
    for ((out, pre), g) in out_v
        .chunks_exact_mut(width)
        .zip(v.chunks_exact(width))
        .zip(gates.chunks_exact(cols))
    {
        for ((o, x), &g) in out.chunks_exact_mut(4).zip(pre.chunks_exact(4)).zip(g) {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = g * x;
            }
        }
    }
    let mut out_s = s[os * cols..2 * os * cols].to_vec();
    activation(act_s, &mut out_s);
    for (o, &x) in out_s.iter_mut().zip(&s[..os * cols]) {
        *o = *o * x;
    }
    (out_v, out_s)
}

/// The backward of [`gate_forward`]: gradients of the linear outputs `(v, s)`.
pub(super) fn gate_backward<T: Real>(
    (act_s, act_v): (Nonlinearity, Nonlinearity),
    (v, s): (&[T], &[T]),
    (dv, ds): (&[T], &[T]),
    cols: usize,
) -> (Vec<T>, Vec<T>) {
    let (ov, os) = (v.len() / (12 * cols), s.len() / (2 * cols));
    let width = 4 * cols;
    let mut gates = vector_gate_arguments(v, ov, cols);
    let slopes = activation_with_slope(act_v, &mut gates);
    let mut d_v = vec![T::zero(); v.len()];
    let half: T = constant(0.5);
    for c in 0..ov {
        let rows = |block: usize| (block * ov + c) * width..(block * ov + c + 1) * width;
        let (pre, a, b) = (&v[rows(0)], &v[rows(1)], &v[rows(2)]);
        let d_out = &dv[c * width..(c + 1) * width];
        for t in 0..cols {
            let (g, slope) = (gates[c * cols + t], slopes[c * cols + t]);
            let at = 4 * t..4 * t + 4;
            let d_gate = (0..4).fold(T::zero(), |acc, k| {
                acc + d_out[at.start + k] * pre[at.start + k]
            });
            let d_arg = d_gate * slope * half;
            for k in 0..4 {
                let i = at.start + k;
                let metric = if k == 0 { d_arg } else { -d_arg };
                d_v[rows(0).start + i] = d_out[i] * g;
                d_v[rows(1).start + i] = metric * b[i];
                d_v[rows(2).start + i] = metric * a[i];
            }
        }
    }
    let mut gates_s = s[os * cols..2 * os * cols].to_vec();
    let slopes_s = activation_with_slope(act_s, &mut gates_s);
    let mut d_s = vec![T::zero(); s.len()];
    let (d_first, d_second) = d_s.split_at_mut(os * cols);
    for i in 0..os * cols {
        d_first[i] = ds[i] * gates_s[i];
        d_second[i] = ds[i] * s[i] * slopes_s[i];
    }
    (d_v, d_s)
}

/// The element-wise nonlinearity `act` on every value, as [`Nonlinearity::apply`]
/// computes it up to rounding (sigmoid, SiLU and GELU through [`crate::fused::vector_math::VectorMath::exp_in_place`];
/// GELU as `x sigmoid(2 u)`, which equals `x (1 + tanh u) / 2`).
pub(super) fn activation<T: Real>(act: Nonlinearity, values: &mut [T]) {
    let one = T::one();
    match act {
        Nonlinearity::Relu => values
            .iter_mut()
            .for_each(|x| *x = num_traits::Float::max(*x, T::zero())),
        Nonlinearity::Tanh => values.iter_mut().for_each(|x| *x = x.tanh()),
        Nonlinearity::Sigmoid => {
            let e = exp_of(values, |x| -x);
            values
                .iter_mut()
                .zip(&e)
                .for_each(|(x, &e)| *x = one / (one + e));
        }
        Nonlinearity::Silu => {
            let e = exp_of(values, |x| -x);
            values
                .iter_mut()
                .zip(&e)
                .for_each(|(x, &e)| *x = *x / (one + e));
        }
        Nonlinearity::Gelu => {
            let e = exp_of(values, gelu_exponent);
            values
                .iter_mut()
                .zip(&e)
                .for_each(|(x, &e)| *x = *x / (one + e));
        }
    }
}

/// `-2 u` of GELU's tanh form, `u = sqrt(2/pi) (x + 0.044715 x^3)`.
fn gelu_exponent<T: Real>(x: T) -> T {
    let (c, k): (T, T) = (
        constant(-2.0 * crate::fused::SQRT_TWO_OVER_PI),
        constant(crate::fused::GELU_CUBIC),
    );
    c * x * (T::one() + k * x * x)
}

/// `e^(f(x))` for every value.
fn exp_of<T: Real>(values: &[T], f: impl Fn(T) -> T) -> Vec<T> {
    let mut e: Vec<T> = values.iter().map(|&x| f(x)).collect();
    T::exp_in_place(&mut e);
    e
}

/// [`activation`] in place, returning the derivative at each argument.
pub(super) fn activation_with_slope<T: Real>(act: Nonlinearity, values: &mut [T]) -> Vec<T> {
    let one = T::one();
    match act {
        Nonlinearity::Relu => values
            .iter_mut()
            .map(|x| {
                let positive = *x > T::zero();
                *x = if positive { *x } else { T::zero() };
                if positive {
                    one
                } else {
                    T::zero()
                }
            })
            .collect(),
        Nonlinearity::Tanh => values
            .iter_mut()
            .map(|x| {
                *x = x.tanh();
                one - *x * *x
            })
            .collect(),
        Nonlinearity::Sigmoid => {
            let e = exp_of(values, |x| -x);
            values
                .iter_mut()
                .zip(&e)
                .map(|(x, &e)| {
                    *x = one / (one + e);
                    *x * (one - *x)
                })
                .collect()
        }
        Nonlinearity::Silu => {
            let e = exp_of(values, |x| -x);
            values
                .iter_mut()
                .zip(&e)
                .map(|(x, &e)| {
                    let sigma = one / (one + e);
                    let slope = sigma * (one + *x * (one - sigma));
                    *x = *x * sigma;
                    slope
                })
                .collect()
        }
        Nonlinearity::Gelu => {
            let e = exp_of(values, gelu_exponent);
            let (c, k): (T, T) = (
                constant(2.0 * crate::fused::SQRT_TWO_OVER_PI),
                constant(3.0 * crate::fused::GELU_CUBIC),
            );
            values
                .iter_mut()
                .zip(&e)
                .map(|(x, &e)| {
                    // gelu = x sigma(2u), d/dx = sigma + x sigma (1 - sigma) 2u'.
                    let sigma = one / (one + e);
                    let slope = sigma + *x * sigma * (one - sigma) * c * (one + k * *x * *x);
                    *x = *x * sigma;
                    slope
                })
                .collect()
        }
    }
}

/// The softmax of one row in place.
pub(super) fn softmax<T: Real>(row: &mut [T]) {
    let max = row
        .iter()
        .copied()
        .fold(T::neg_infinity(), num_traits::Float::max);
    for x in row.iter_mut() {
        *x = *x - max;
    }
    T::exp_in_place(row);
    let inv = T::one() / crate::fused::vector_math::lane_sum(row.len(), |i| row[i]);
    for x in row.iter_mut() {
        *x = *x * inv;
    }
}

//! The per-token layers on feature-major activations, forward and backward: `SlimRMSNorm`,
//! `SlimGLU`'s gates and their nonlinearities.
//!
//! The norm of a token: `f = 1 / sqrt((sum_c |<v_c, v_c>| + sum_c s_c^2) / C + eps)`,
//! outputs `x f g`. Its backward, with `x^ = x f` and `a = dout g`:
//! `dx = f (a - (sum a x^) sign(<v_c, v_c>) eta x^ / C)` for vector components (`eta`
//! the metric), `f (a - (sum a x^) x^ / C)` for scalars, `dg = sum over tokens dout x^`.

use rayon::prelude::*;

use super::linear::min_rows;
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
pub(super) fn minkowski_square<T: Real>(v: &[T]) -> T {
    v[0] * v[0] - v[1] * v[1] - v[2] * v[2] - v[3] * v[3]
}

/// Tokens per parallel task of the per-token sums over channels.
const COLUMN_BLOCK: usize = 64;

/// `f(first column, factors of the block)` for blocks of [`COLUMN_BLOCK`] columns in
/// parallel.
fn per_column_block<T: Real>(values: &mut [T], f: impl Fn(usize, &mut [T]) + Sync + Send) {
    values
        .par_chunks_mut(COLUMN_BLOCK)
        .enumerate()
        .for_each(|(b, block)| f(b * COLUMN_BLOCK, block));
}

/// `x g` over each row `c` (gain `g[c]`) of `x` `[channels, width]`, times the factor
/// of each token (`group` values per token).
fn scaled_rows<T: Real>(
    x: &[T],
    width: usize,
    group: usize,
    factors: &[T],
    gains: Option<&[T]>,
) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(width.max(1))
        .with_min_len(min_rows(width.max(1)))
        .zip(x.par_chunks(width.max(1)))
        .enumerate()
        .for_each(|(c, (out, row))| {
            let g = gains.map_or(T::one(), |g| g[c]);
            for ((o, x), &f) in out
                .chunks_exact_mut(group)
                .zip(row.chunks_exact(group))
                .zip(factors)
            {
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = x * f * g;
                }
            }
        });
    out
}

/// `SlimRMSNorm` of `(v, s)` over `cols` tokens with optional gains `(g_v, g_s)`.
pub(super) fn norm_forward<T: Real>(
    (v, s): (&[T], &[T]),
    cols: usize,
    gains: Option<&(&[T], &[T])>,
) -> Normed<T> {
    let (cv, cs) = (v.len() / (4 * cols), s.len() / cols);
    let (channels, eps): (T, T) = (constant((cv + cs) as f64), constant(NORM_EPSILON));
    let mut factors = vec![T::zero(); cols];
    per_column_block(&mut factors, |first, block| {
        let n = block.len();
        for row in v.chunks_exact(4 * cols) {
            for (f, v) in block
                .iter_mut()
                .zip(row[4 * first..][..4 * n].chunks_exact(4))
            {
                *f += minkowski_square(v).abs();
            }
        }
        for row in s.chunks_exact(cols) {
            for (f, &x) in block.iter_mut().zip(&row[first..first + n]) {
                *f += x * x;
            }
        }
        for f in block.iter_mut() {
            *f = T::one() / (*f / channels + eps).sqrt();
        }
    });
    Normed {
        v: scaled_rows(v, 4 * cols, 4, &factors, gains.map(|g| g.0)),
        s: scaled_rows(s, cols, 1, &factors, gains.map(|g| g.1)),
        factors,
    }
}

/// The sign of a Minkowski square (0 at 0, as `abs`'s derivative).
pub(super) fn sign_of<T: Real>(square: T) -> T {
    if square > T::zero() {
        T::one()
    } else if square < T::zero() {
        -T::one()
    } else {
        T::zero()
    }
}

/// The backward of [`norm_forward`] on the inputs `(v, s)` with the forward's `factors`:
/// the input gradients; the gain gradients are written into `d_gains`.
pub(super) fn norm_backward<T: Real>(
    (v, s): (&[T], &[T]),
    factors: &[T],
    gains: Option<&(&[T], &[T])>,
    (dv, ds): (&[T], &[T]),
    d_gains: Option<(&mut [T], &mut [T])>,
) -> (Vec<T>, Vec<T>) {
    let cols = factors.len();
    let (cv, cs) = (v.len() / (4 * cols), s.len() / cols);
    let gain = |g: Option<&[T]>, c: usize| g.map_or(T::one(), |g| g[c]);
    let (gv, gs) = (gains.map(|g| g.0), gains.map(|g| g.1));
    // x . dout per channel and token (a vector channel's four components summed): read
    // once for both the gains' gradients and the per-token sums.
    let mut xd = vec![T::zero(); (cv + cs) * cols];
    let (xd_v, xd_s) = xd.split_at_mut(cv * cols);
    xd_v.par_chunks_mut(cols)
        .with_min_len(min_rows(4 * cols))
        .zip(v.par_chunks(4 * cols).zip(dv.par_chunks(4 * cols)))
        .for_each(|(out, (x, d))| {
            for ((o, x), d) in out.iter_mut().zip(x.chunks_exact(4)).zip(d.chunks_exact(4)) {
                *o = x[0] * d[0] + x[1] * d[1] + x[2] * d[2] + x[3] * d[3];
            }
        });
    xd_s.par_chunks_mut(cols)
        .with_min_len(min_rows(cols))
        .zip(s.par_chunks(cols).zip(ds.par_chunks(cols)))
        .for_each(|(out, (x, d))| {
            for ((o, &x), &d) in out.iter_mut().zip(x).zip(d) {
                *o = x * d;
            }
        });
    if let Some((d_gv, d_gs)) = d_gains {
        // dg = sum over tokens of dout x^ = sum of (x . dout) f.
        let gain_gradient = |row: &[T]| {
            row.iter()
                .zip(factors)
                .fold(T::zero(), |acc, (&xd, &f)| acc + xd * f)
        };
        d_gv.par_iter_mut()
            .with_min_len(min_rows(cols))
            .zip(xd_v.par_chunks(cols))
            .for_each(|(g, row)| *g = gain_gradient(row));
        d_gs.par_iter_mut()
            .with_min_len(min_rows(cols))
            .zip(xd_s.par_chunks(cols))
            .for_each(|(g, row)| *g = gain_gradient(row));
    }
    // dot = sum over channels of dout g x^ per token (x^ = x f).
    let mut dot = vec![T::zero(); cols];
    per_column_block(&mut dot, |first, block| {
        let n = block.len();
        for (c, row) in xd.chunks_exact(cols).enumerate() {
            let g = if c < cv {
                gain(gv, c)
            } else {
                gain(gs, c - cv)
            };
            for (dot, &x) in block.iter_mut().zip(&row[first..first + n]) {
                *dot += x * g;
            }
        }
        for (dot, &f) in block.iter_mut().zip(&factors[first..]) {
            *dot *= f;
        }
    });
    let channels: T = constant((cv + cs) as f64);
    let mut out_v = vec![T::zero(); v.len()];
    out_v
        .par_chunks_mut(4 * cols)
        .with_min_len(min_rows(4 * cols))
        .zip(v.par_chunks(4 * cols).zip(dv.par_chunks(4 * cols)))
        .enumerate()
        .for_each(|(c, (out, (x, d)))| {
            let g = gain(gv, c);
            for (t, ((x, d), out)) in x
                .chunks_exact(4)
                .zip(d.chunks_exact(4))
                .zip(out.chunks_exact_mut(4))
                .enumerate()
            {
                let f = factors[t];
                let k = dot[t] * sign_of(minkowski_square(x)) / channels;
                for comp in 0..4 {
                    let metric = if comp == 0 { k } else { -k };
                    out[comp] = f * (d[comp] * g - metric * x[comp] * f);
                }
            }
        });
    let mut out_s = vec![T::zero(); s.len()];
    out_s
        .par_chunks_mut(cols)
        .with_min_len(min_rows(cols))
        .zip(s.par_chunks(cols).zip(ds.par_chunks(cols)))
        .enumerate()
        .for_each(|(c, (out, (x, d)))| {
            let g = gain(gs, c);
            for (t, ((&x, &d), out)) in x.iter().zip(d).zip(out.iter_mut()).enumerate() {
                let f = factors[t];
                *out = f * (d * g - dot[t] * x * f / channels);
            }
        });
    (out_v, out_s)
}

/// Channel `c`'s vector gate arguments `<a_c, b_c> / 2` `[cols]` of a unit's linear
/// outputs `v` `[3 ov, 4 cols]` (a, b: the second and third blocks of channels).
fn gate_arguments<T: Real>(v: &[T], ov: usize, c: usize, cols: usize) -> Vec<T> {
    let width = 4 * cols;
    let half: T = constant(0.5);
    let a = &v[(ov + c) * width..][..width];
    let b = &v[(2 * ov + c) * width..][..width];
    a.chunks_exact(4)
        .zip(b.chunks_exact(4))
        .map(|(a, b)| (a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3]) * half)
        .collect()
}

/// A gated unit's activated gates and their slopes (the activation's derivative at each
/// argument), vector gates `[ov, cols]` and scalar gates `[os, cols]`: what the backward
/// needs besides the linear outputs.
pub(super) struct Gates<T> {
    v: Vec<T>,
    v_slopes: Vec<T>,
    s: Vec<T>,
    s_slopes: Vec<T>,
}

/// A gated unit's outputs (vectors, scalars) and, when kept, its [`Gates`].
pub(super) type Gated<T> = ((Vec<T>, Vec<T>), Option<Gates<T>>);

/// Activated gates of `cols` values per row, with their slopes when `keep`.
fn gate_row<T: Real>(act: Nonlinearity, gates: &mut [T], keep: bool) -> Vec<T> {
    if keep {
        activation_with_slope(act, gates)
    } else {
        activation(act, gates);
        Vec::new()
    }
}

/// `SlimGLU`'s gates on the unit's linear outputs `v` `[3 ov, 4 cols]`, `s`
/// `[2 os, cols]`: `(act_v(<b, c> / 2) a, act_s(s_2) s_1)`, channels in parallel; with
/// `keep`, also the gates and slopes the backward needs.
pub(super) fn gate_forward<T: Real>(
    (act_s, act_v): (Nonlinearity, Nonlinearity),
    (v, s): (&[T], &[T]),
    cols: usize,
    keep: bool,
) -> Gated<T> {
    let (ov, os) = (v.len() / (12 * cols), s.len() / (2 * cols));
    let width = 4 * cols;
    let mut out_v = vec![T::zero(); ov * width];
    let vector_gates: Vec<(Vec<T>, Vec<T>)> = out_v
        .par_chunks_mut(width)
        .with_min_len(min_rows(width))
        .zip(v.par_chunks(width))
        .enumerate()
        .map(|(c, (out, pre))| {
            let mut gates = gate_arguments(v, ov, c, cols);
            let slopes = gate_row(act_v, &mut gates, keep);
            for ((o, x), &g) in out.chunks_exact_mut(4).zip(pre.chunks_exact(4)).zip(&gates) {
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = g * x;
                }
            }
            (gates, slopes)
        })
        .collect();
    let mut s_gates = s[os * cols..2 * os * cols].to_vec();
    let mut out_s = vec![T::zero(); os * cols];
    let scalar_slopes: Vec<Vec<T>> = out_s
        .par_chunks_mut(cols)
        .with_min_len(min_rows(cols))
        .zip(s_gates.par_chunks_mut(cols))
        .zip(s.par_chunks(cols))
        .map(|((out, gates), first)| {
            let slopes = gate_row(act_s, gates, keep);
            for ((o, &g), &x) in out.iter_mut().zip(gates.iter()).zip(first) {
                *o = g * x;
            }
            slopes
        })
        .collect();
    let gates = keep.then(|| {
        let (v_gates, v_slopes): (Vec<Vec<T>>, Vec<Vec<T>>) = vector_gates.into_iter().unzip();
        Gates {
            v: v_gates.concat(),
            v_slopes: v_slopes.concat(),
            s: s_gates,
            s_slopes: scalar_slopes.concat(),
        }
    });
    ((out_v, out_s), gates)
}

/// The backward of [`gate_forward`] with its kept `gates`: gradients of the linear
/// outputs `(v, s)`.
pub(super) fn gate_backward<T: Real>(
    gates: &Gates<T>,
    (v, s): (&[T], &[T]),
    (dv, ds): (&[T], &[T]),
    cols: usize,
) -> (Vec<T>, Vec<T>) {
    let (ov, os) = (v.len() / (12 * cols), s.len() / (2 * cols));
    let width = 4 * cols;
    let half: T = constant(0.5);
    let mut d_v = vec![T::zero(); v.len()];
    let (d_pre, rest) = d_v.split_at_mut(ov * width);
    let (d_a, d_b) = rest.split_at_mut(ov * width);
    d_pre
        .par_chunks_mut(width)
        .with_min_len(min_rows(width))
        .zip(d_a.par_chunks_mut(width).zip(d_b.par_chunks_mut(width)))
        .enumerate()
        .for_each(|(c, (d_pre, (d_a, d_b)))| {
            let row = |block: usize| &v[(block * ov + c) * width..][..width];
            let (pre, a, b) = (row(0), row(1), row(2));
            let d_out = &dv[c * width..][..width];
            let g = &gates.v[c * cols..][..cols];
            let slopes = &gates.v_slopes[c * cols..][..cols];
            for (t, (&g, &slope)) in g.iter().zip(slopes).enumerate() {
                let at = 4 * t;
                let d_gate = (0..4).fold(T::zero(), |acc, k| acc + d_out[at + k] * pre[at + k]);
                let d_arg = d_gate * slope * half;
                for k in 0..4 {
                    let i = at + k;
                    let metric = if k == 0 { d_arg } else { -d_arg };
                    d_pre[i] = d_out[i] * g;
                    d_a[i] = metric * b[i];
                    d_b[i] = metric * a[i];
                }
            }
        });
    let mut d_s = vec![T::zero(); s.len()];
    let (d_first, d_second) = d_s.split_at_mut(os * cols);
    d_first
        .par_chunks_mut(cols)
        .with_min_len(min_rows(cols))
        .zip(d_second.par_chunks_mut(cols))
        .enumerate()
        .for_each(|(c, (d_first, d_second))| {
            let first = &s[c * cols..][..cols];
            let g = &gates.s[c * cols..][..cols];
            let slopes = &gates.s_slopes[c * cols..][..cols];
            let d = &ds[c * cols..][..cols];
            for t in 0..cols {
                d_first[t] = d[t] * g[t];
                d_second[t] = d[t] * first[t] * slopes[t];
            }
        });
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
            values.iter_mut().zip(&e).for_each(|(x, &e)| *x /= one + e);
        }
        Nonlinearity::Gelu => {
            let e = exp_of(values, gelu_exponent);
            values.iter_mut().zip(&e).for_each(|(x, &e)| *x /= one + e);
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

/// [`activation`] in place (by the same formulas), returning the derivative at each
/// argument.
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
                    *x /= one + e;
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
                    *x /= one + e;
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
        *x -= max;
    }
    T::exp_in_place(row);
    let inv = T::one() / crate::fused::vector_math::lane_sum(row.len(), |i| row[i]);
    for x in row.iter_mut() {
        *x *= inv;
    }
}

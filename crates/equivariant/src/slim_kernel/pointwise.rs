//! The per-token layers on feature-major activations, forward and backward: `SlimRMSNorm`,
//! `SlimGLU`'s gates and their nonlinearities.
//!
//! The norm of a token: `f = 1 / sqrt((sum_c |<v_c, v_c>| + sum_c s_c^2) / C + eps)`,
//! outputs `x f g`. Its backward, with `x^ = x f` and `a = dout g`:
//! `dx = f (a - (sum a x^) sign(<v_c, v_c>) eta x^ / C)` for vector components (`eta`
//! the metric), `f (a - (sum a x^) x^ / C)` for scalars, `dg = sum over tokens dout x^`.

use rayon::prelude::*;

use super::linear::min_rows;
use super::rows::par_rows;
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
/// of each token (`group` values per token: 4 or 1).
fn scaled_rows<T: Real>(
    x: &[T],
    width: usize,
    group: usize,
    factors: &[T],
    gains: Option<&[T]>,
) -> Vec<T> {
    par_rows(x.len() / width.max(1), width, |out| {
        let c = out.index();
        let g = gains.map_or(T::one(), |g| g[c]);
        let row = &x[c * width..][..width];
        if group == 4 {
            out.fill_groups::<4>(|t| {
                let f = factors[t];
                std::array::from_fn(|k| row[4 * t + k] * f * g)
            })
        } else {
            out.fill(row.iter().zip(factors).map(|(&x, &f)| x * f * g))
        }
    })
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

/// The sign of a Minkowski square (0 at 0 and for NaN, as `abs`'s derivative), as two
/// selects of constants: the squares of mixed vectors change sign from token to token,
/// which a branch would mispredict.
pub(super) fn sign_of<T: Real>(square: T) -> T {
    let positive = if square > T::zero() {
        T::one()
    } else {
        T::zero()
    };
    let negative = if square < T::zero() {
        T::one()
    } else {
        T::zero()
    };
    positive - negative
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
    let xd = par_rows(cv + cs, cols, |out| {
        let c = out.index();
        if c < cv {
            let (x, d) = (
                &v[c * 4 * cols..][..4 * cols],
                &dv[c * 4 * cols..][..4 * cols],
            );
            out.fill(
                x.chunks_exact(4)
                    .zip(d.chunks_exact(4))
                    .map(|(x, d)| x[0] * d[0] + x[1] * d[1] + x[2] * d[2] + x[3] * d[3]),
            )
        } else {
            let (x, d) = (
                &s[(c - cv) * cols..][..cols],
                &ds[(c - cv) * cols..][..cols],
            );
            out.fill(x.iter().zip(d).map(|(&x, &d)| x * d))
        }
    });
    let (xd_v, xd_s) = xd.split_at(cv * cols);
    if let Some((d_gv, d_gs)) = d_gains {
        // dg = sum over tokens of dout x^ = sum of (x . dout) f, in lanes (one running
        // sum over the batch's ~1,700 tokens waited on every addition).
        let gain_gradient = |row: &[T]| crate::fused::vector_math::dot(row, factors);
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
    // Per token, what the x term of every channel is scaled by: f^2 dot / C.
    let channels: T = constant((cv + cs) as f64);
    let shared: Vec<T> = dot
        .iter()
        .zip(factors)
        .map(|(&dot, &f)| f * f * dot / channels)
        .collect();
    let out_v = par_rows(cv, 4 * cols, |out| {
        let c = out.index();
        let g = gain(gv, c);
        let (x, d) = (
            &v[c * 4 * cols..][..4 * cols],
            &dv[c * 4 * cols..][..4 * cols],
        );
        out.fill_groups::<4>(|t| {
            let x = [x[4 * t], x[4 * t + 1], x[4 * t + 2], x[4 * t + 3]];
            let k = shared[t] * sign_of(minkowski_square(&x));
            let f = factors[t];
            std::array::from_fn(|comp| {
                let metric = if comp == 0 { k } else { -k };
                f * d[4 * t + comp] * g - metric * x[comp]
            })
        })
    });
    let out_s = par_rows(cs, cols, |out| {
        let c = out.index();
        let g = gain(gs, c);
        let (x, d) = (&s[c * cols..][..cols], &ds[c * cols..][..cols]);
        out.fill(
            x.iter()
                .zip(d)
                .zip(factors.iter().zip(&shared))
                .map(|((&x, &d), (&f, &k))| f * d * g - k * x),
        )
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
/// argument, empty without `keep`), one pair of rows `[cols]` per vector channel and per
/// scalar channel: what the backward needs besides the linear outputs.
pub(super) struct Gates<T> {
    v: Vec<(Vec<T>, Vec<T>)>,
    s: Vec<(Vec<T>, Vec<T>)>,
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
    let vector: Vec<(Vec<T>, Vec<T>)> = (0..ov)
        .into_par_iter()
        .with_min_len(min_rows(width))
        .map(|c| {
            let mut gates = gate_arguments(v, ov, c, cols);
            let slopes = gate_row(act_v, &mut gates, keep);
            (gates, slopes)
        })
        .collect();
    let out_v = par_rows(ov, width, |out| {
        let c = out.index();
        let (pre, gates) = (&v[c * width..][..width], &vector[c].0);
        out.fill_groups::<4>(|t| std::array::from_fn(|k| gates[t] * pre[4 * t + k]))
    });
    let scalar: Vec<(Vec<T>, Vec<T>)> = (0..os)
        .into_par_iter()
        .with_min_len(min_rows(cols))
        .map(|c| {
            let mut gates = s[(os + c) * cols..][..cols].to_vec();
            let slopes = gate_row(act_s, &mut gates, keep);
            (gates, slopes)
        })
        .collect();
    let out_s = par_rows(os, cols, |out| {
        let c = out.index();
        let (first, gates) = (&s[c * cols..][..cols], &scalar[c].0);
        out.fill(gates.iter().zip(first).map(|(&g, &x)| g * x))
    });
    let gates = keep.then_some(Gates {
        v: vector,
        s: scalar,
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
    // Rows: the gated values' gradients, then those of the gate's two vectors a and b.
    let d_v = par_rows(3 * ov, width, |out| {
        let (part, c) = (out.index() / ov, out.index() % ov);
        let row = |block: usize| &v[(block * ov + c) * width..][..width];
        let d_out = &dv[c * width..][..width];
        let (g, slopes) = (&gates.v[c].0, &gates.v[c].1);
        if part == 0 {
            return out.fill_groups::<4>(|t| std::array::from_fn(|k| d_out[4 * t + k] * g[t]));
        }
        // d<a, b>/da = eta b (and the other way round), times the gate's argument's
        // gradient.
        let (pre, other) = (row(0), row(3 - part));
        out.fill_groups::<4>(|t| {
            let at = 4 * t;
            let d_gate = (0..4).fold(T::zero(), |acc, k| acc + d_out[at + k] * pre[at + k]);
            let d_arg = d_gate * slopes[t] * half;
            std::array::from_fn(|k| if k == 0 { d_arg } else { -d_arg } * other[at + k])
        })
    });
    let d_s = par_rows(2 * os, cols, |out| {
        let (part, c) = (out.index() / os, out.index() % os);
        let d = &ds[c * cols..][..cols];
        let (g, slopes) = (&gates.s[c].0, &gates.s[c].1);
        if part == 0 {
            out.fill(d.iter().zip(g).map(|(&d, &g)| d * g))
        } else {
            let first = &s[c * cols..][..cols];
            out.fill(
                d.iter()
                    .zip(first)
                    .zip(slopes)
                    .map(|((&d, &x), &slope)| d * x * slope),
            )
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
        // The exponentials are written where the slopes go, then replaced by them.
        Nonlinearity::Sigmoid => {
            let mut slopes = exp_of(values, |x| -x);
            for (x, s) in values.iter_mut().zip(&mut slopes) {
                *x = one / (one + *s);
                *s = *x * (one - *x);
            }
            slopes
        }
        Nonlinearity::Silu => {
            let mut slopes = exp_of(values, |x| -x);
            for (x, s) in values.iter_mut().zip(&mut slopes) {
                let e = *s;
                let sigma = one / (one + e);
                *s = sigma * (one + *x * (one - sigma));
                *x /= one + e;
            }
            slopes
        }
        Nonlinearity::Gelu => {
            let mut slopes = exp_of(values, gelu_exponent);
            let (c, k): (T, T) = (
                constant(2.0 * crate::fused::SQRT_TWO_OVER_PI),
                constant(3.0 * crate::fused::GELU_CUBIC),
            );
            for (x, s) in values.iter_mut().zip(&mut slopes) {
                // gelu = x sigma(2u), d/dx = sigma + x sigma (1 - sigma) 2u'.
                let e = *s;
                let sigma = one / (one + e);
                *s = sigma + *x * sigma * (one - sigma) * c * (one + k * *x * *x);
                *x /= one + e;
            }
            slopes
        }
    }
}

/// The softmax of each row of `width` values in place: one exponential pass over the
/// whole matrix (an attention head's rows are some fifty values, where a call per row
/// spent as much in the vector loop's head and tail as in its body).
pub(super) fn softmax_rows<T: Real>(values: &mut [T], width: usize) {
    for row in values.chunks_exact_mut(width.max(1)) {
        let max = row
            .iter()
            .copied()
            .fold(T::neg_infinity(), num_traits::Float::max);
        for x in row.iter_mut() {
            *x -= max;
        }
    }
    T::exp_in_place(values);
    for row in values.chunks_exact_mut(width.max(1)) {
        let inv = T::one() / crate::fused::vector_math::lane_sum(row.len(), |i| row[i]);
        for x in row.iter_mut() {
            *x *= inv;
        }
    }
}

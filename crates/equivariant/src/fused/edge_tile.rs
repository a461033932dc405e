//! One tile of LorentzNet's per-pair message stage, forward and backward: for the tile's
//! pair rows (whole nodes i, all their j),
//!
//! ```text
//! a1 = relu(z_ij)                      a2 = relu(W_out a1 + b_out)         (phi_e)
//! s  = sigmoid(w_att . a2 + b_att) e_ij   m = s a2                         (phi_m, edge mask e)
//! phi = w_x2 . relu(W_x1 m + b_x1)     t = clamp(phi (x_i - x_j)) e_ij     (phi_x)
//! ```
//!
//! and the sums over j of m and t. The buffers are `[rows, H]`: a tile of ~256 rows stays
//! in L2 at LorentzNet's widths.

use candle_core::WithDType;
use num_traits::Float;

use super::gemm::{matmul, MatRef};

/// The float types the kernels run in.
pub(super) trait Real: WithDType + Float + Send + Sync + 'static {}
impl Real for f32 {}
impl Real for f64 {}

/// max(x, 0) (NaN to 0), without the name clash of `Float::max` with candle's `VecOps`.
pub(super) fn relu<T: Real>(x: T) -> T {
    if x > T::zero() {
        x
    } else {
        T::zero()
    }
}

/// Columns of a pair row: psi(|x_i - x_j|^2), psi(x_i . x_j), x_i - x_j (4), edge mask.
pub const PAIR_COLUMNS: usize = 7;
/// First column of x_i - x_j in a pair row.
const X_DIFF: usize = 2;
/// The edge-mask column of a pair row.
const EDGE_MASK: usize = 6;

/// The message stage's shape and the offsets of its packed parameters: `W_out` `[H, H]`
/// (PyTorch `[out, in]`), `b_out` `[H]`, `w_att` `[H]`, `b_att` `[1]`, and in coordinate
/// blocks `W_x1` `[H, H]`, `b_x1` `[H]`, `w_x2` `[H]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stage {
    pub nodes: usize,
    pub coord: bool,
    pub clamp: f64,
    pub w_out: usize,
    pub b_out: usize,
    pub w_att: usize,
    pub b_att: usize,
    pub w_x1: usize,
    pub b_x1: usize,
    pub w_x2: usize,
    pub len: usize,
}

impl Stage {
    pub(super) fn new(nodes: usize, hidden: usize, coord: bool, clamp: f64) -> Self {
        let h = hidden;
        let b_out = h * h;
        let w_att = b_out + h;
        let b_att = w_att + h;
        let w_x1 = b_att + 1;
        let (b_x1, w_x2, len) = if coord {
            (w_x1 + h * h, w_x1 + h * h + h, w_x1 + h * h + 2 * h)
        } else {
            (w_x1, w_x1, w_x1)
        };
        Self {
            nodes,
            coord,
            clamp,
            w_out: 0,
            b_out,
            w_att,
            b_att,
            w_x1,
            b_x1,
            w_x2,
            len,
        }
    }
}

/// One tile's work buffers, `[rows, H]` each, and per-row scalars.
pub(super) struct Tile<'g, T> {
    rows: usize,
    h: usize,
    /// relu(z)
    a1: Vec<T>,
    /// relu(W_out a1 + b_out)
    a2: Vec<T>,
    /// s a2
    m: Vec<T>,
    /// relu(W_x1 m + b_x1) (coordinate blocks only)
    c1: Vec<T>,
    /// sigmoid gate g (before the mask)
    gate: Vec<T>,
    /// phi per row (coordinate blocks only)
    phi: Vec<T>,
    geometry: &'g [T],
}

impl<'g, T: Real> Tile<'g, T> {
    pub(super) fn new(rows: usize, h: usize) -> Self {
        Self {
            rows,
            h,
            a1: vec![T::zero(); rows * h],
            a2: vec![T::zero(); rows * h],
            m: vec![T::zero(); rows * h],
            c1: Vec::new(),
            gate: vec![T::zero(); rows],
            phi: Vec::new(),
            geometry: &[],
        }
    }

    fn edge_mask(&self, r: usize) -> T {
        self.geometry[r * PAIR_COLUMNS + EDGE_MASK]
    }

    pub(super) fn forward(&mut self, op: &Stage, z: &[T], geometry: &'g [T], p: &[T]) {
        let (rows, h) = (self.rows, self.h);
        let o = op;
        self.geometry = geometry;
        for (a, &x) in self.a1.iter_mut().zip(z) {
            *a = relu(x);
        }
        let w_out = MatRef::transposed(&p[o.w_out..o.b_out], h, h);
        matmul(
            &mut self.a2,
            MatRef::row_major(&self.a1, rows, h),
            w_out,
            false,
        );
        let (b_out, w_att, b_att) = (&p[o.b_out..o.w_att], &p[o.w_att..o.b_att], p[o.b_att]);
        for r in 0..rows {
            let a2 = &mut self.a2[r * h..(r + 1) * h];
            let mut logit = b_att;
            for ((a, &b), &w) in a2.iter_mut().zip(b_out).zip(w_att) {
                *a = relu(*a + b);
                logit += *a * w;
            }
            let g = T::one() / (T::one() + (-logit).exp());
            self.gate[r] = g;
            let s = g * geometry[r * PAIR_COLUMNS + EDGE_MASK];
            for (m, &a) in self.m[r * h..(r + 1) * h].iter_mut().zip(a2.iter()) {
                *m = a * s;
            }
        }
        if op.coord {
            self.c1 = vec![T::zero(); rows * h];
            self.phi = vec![T::zero(); rows];
            let w_x1 = MatRef::transposed(&p[o.w_x1..o.b_x1], h, h);
            matmul(
                &mut self.c1,
                MatRef::row_major(&self.m, rows, h),
                w_x1,
                false,
            );
            let (b_x1, w_x2) = (&p[o.b_x1..o.w_x2], &p[o.w_x2..o.len]);
            for r in 0..rows {
                let mut phi = T::zero();
                for ((c, &b), &w) in self.c1[r * h..(r + 1) * h].iter_mut().zip(b_x1).zip(w_x2) {
                    *c = relu(*c + b);
                    phi += *c * w;
                }
                self.phi[r] = phi;
            }
        }
    }

    /// The clamped coordinate term of row r, component k, and whether it passed the clamp.
    fn coord_term(&self, op: &Stage, r: usize, k: usize) -> (T, bool) {
        let t = self.phi[r] * self.geometry[r * PAIR_COLUMNS + X_DIFF + k];
        let clamp = T::from(op.clamp).unwrap_or_else(T::infinity);
        if t > clamp {
            (clamp, false)
        } else if t < -clamp {
            (-clamp, false)
        } else {
            (t, true)
        }
    }

    /// Writes `sum_j m_ij` and `sum_j t_ij` for every node i of the tile.
    pub(super) fn sums(&self, op: &Stage, out: &mut [T]) {
        let (n, h) = (op.nodes, self.h);
        for (i, out) in out.chunks_exact_mut(h + 4).enumerate() {
            let (agg, coord) = out.split_at_mut(h);
            for r in i * n..(i + 1) * n {
                for (a, &m) in agg.iter_mut().zip(&self.m[r * h..(r + 1) * h]) {
                    *a += m;
                }
                if op.coord {
                    let e = self.edge_mask(r);
                    for (k, c) in coord.iter_mut().enumerate() {
                        *c += self.coord_term(op, r, k).0 * e;
                    }
                }
            }
        }
    }

    /// Gradients of the tile's rows given the upstream gradient `grad` of its nodes
    /// (`[nodes, H + 4]`); parameter gradients are added to `dparams`.
    pub(super) fn backward(
        &mut self,
        op: &Stage,
        p: &[T],
        grad: &[T],
        dz: &mut [T],
        dgeometry: &mut [T],
        dparams: &mut [T],
    ) {
        let (rows, h, n) = (self.rows, self.h, op.nodes);
        let o = op;
        // dm: the aggregate's gradient broadcast over j, plus the coordinate path's.
        let mut dm = vec![T::zero(); rows * h];
        for r in 0..rows {
            let g = &grad[r / n * (h + 4)..r / n * (h + 4) + h];
            dm[r * h..(r + 1) * h].copy_from_slice(g);
        }
        if op.coord {
            let mut dc1 = vec![T::zero(); rows * h];
            let w_x2 = &p[o.w_x2..o.len];
            let (dw_x2_start, db_x1_start) = (o.w_x2, o.b_x1);
            for r in 0..rows {
                let e = self.edge_mask(r);
                let dcoord = &grad[r / n * (h + 4) + h..(r / n + 1) * (h + 4)];
                let mut dphi = T::zero();
                for (k, &dc) in dcoord.iter().enumerate() {
                    let (_, passed) = self.coord_term(op, r, k);
                    if passed {
                        let dt = dc * e;
                        dphi += dt * self.geometry[r * PAIR_COLUMNS + X_DIFF + k];
                        dgeometry[r * PAIR_COLUMNS + X_DIFF + k] = dt * self.phi[r];
                    }
                }
                let c1 = &self.c1[r * h..(r + 1) * h];
                for (c, ((d, &c1v), &w)) in dc1[r * h..(r + 1) * h]
                    .iter_mut()
                    .zip(c1)
                    .zip(w_x2)
                    .enumerate()
                {
                    dparams[dw_x2_start + c] += dphi * c1v;
                    if c1v > T::zero() {
                        *d = dphi * w;
                        dparams[db_x1_start + c] += *d;
                    }
                }
            }
            // dW_x1 += dc1^T m ; dm += dc1 W_x1
            matmul(
                &mut dparams[o.w_x1..o.b_x1],
                MatRef::transposed(&dc1, h, rows),
                MatRef::row_major(&self.m, rows, h),
                true,
            );
            matmul(
                &mut dm,
                MatRef::row_major(&dc1, rows, h),
                MatRef::row_major(&p[o.w_x1..o.b_x1], h, h),
                true,
            );
        }
        // m = s a2 with s = sigmoid(logit) e: da2 = s dm + dlogit w_att.
        let w_att = &p[o.w_att..o.b_att];
        let mut da2 = dm;
        for r in 0..rows {
            let (g, e) = (self.gate[r], self.edge_mask(r));
            let a2 = &self.a2[r * h..(r + 1) * h];
            let d = &mut da2[r * h..(r + 1) * h];
            let ds: T = d
                .iter()
                .zip(a2)
                .fold(T::zero(), |acc, (&x, &a)| acc + x * a);
            let dlogit = ds * e * g * (T::one() - g);
            dparams[o.b_att] += dlogit;
            let s = g * e;
            for (c, (x, &a)) in d.iter_mut().zip(a2).enumerate() {
                dparams[o.w_att + c] += dlogit * a;
                // relu: a2 > 0 exactly where its pre-activation was.
                *x = if a > T::zero() {
                    *x * s + dlogit * w_att[c]
                } else {
                    T::zero()
                };
                dparams[o.b_out + c] += *x;
            }
        }
        // dW_out += da2^T a1 ; da1 = da2 W_out ; dz = da1 [z > 0] (a1 > 0).
        matmul(
            &mut dparams[o.w_out..o.b_out],
            MatRef::transposed(&da2, h, rows),
            MatRef::row_major(&self.a1, rows, h),
            true,
        );
        matmul(
            dz,
            MatRef::row_major(&da2, rows, h),
            MatRef::row_major(&p[o.w_out..o.b_out], h, h),
            false,
        );
        for (d, &a) in dz.iter_mut().zip(&self.a1) {
            if a <= T::zero() {
                *d = T::zero();
            }
        }
    }
}

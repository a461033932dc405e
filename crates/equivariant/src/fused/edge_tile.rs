//! One tile of LorentzNet's per-pair message stage, forward and backward: for the tile's
//! pair rows (whole nodes i, all their j),
//!
//! ```text
//! a1 = relu(z_ij)                      a2 = relu(W_out a1 + b_out)         (phi_e)
//! s  = sigmoid(w_att . a2 + b_att) e_ij   m = s a2                         (phi_m, edge mask e)
//! phi = w_x2 . relu(W_x1 m + b_x1)     t = clamp(phi (x_i - x_j)) e_ij     (phi_x)
//! ```
//!
//! and the sums over j of m and t. The buffers are `[rows, H]`: a tile of ~384 rows stays
//! in L2 at LorentzNet's widths.

use candle_core::WithDType;
use std::borrow::Cow;

use num_traits::Float;

use super::gemm::{matmul, MatRef};
use super::vector_math::dot;

/// Per tile, the activations a forward keeps for its backward: `a2` and `c1`.
pub(super) type KeptTiles<T> = Vec<(Vec<T>, Vec<T>)>;

/// What a forward keeps for its backward: the pair rows it formed and [`KeptTiles`].
pub(super) struct KeptState<T> {
    /// The pair rows ([`PAIR_COLUMNS`] each).
    pub pairs: Vec<T>,
    /// Per tile, `a2` and `c1`.
    pub tiles: KeptTiles<T>,
}

/// A [`KeptState`] of either float type, as a custom op stores it.
pub(super) enum Kept {
    F32(KeptState<f32>),
    F64(KeptState<f64>),
}

/// The float types the kernels run in.
pub(super) trait Real: WithDType + Float + Send + Sync + 'static {
    /// Wraps a kept state of this type.
    fn keep(state: KeptState<Self>) -> Kept;
    /// The kept state, when it is of this type.
    fn kept(kept: &Kept) -> Option<&KeptState<Self>>;
}

impl Real for f32 {
    fn keep(state: KeptState<Self>) -> Kept {
        Kept::F32(state)
    }
    fn kept(kept: &Kept) -> Option<&KeptState<Self>> {
        match kept {
            Kept::F32(t) => Some(t),
            Kept::F64(_) => None,
        }
    }
}

impl Real for f64 {
    fn keep(state: KeptState<Self>) -> Kept {
        Kept::F64(state)
    }
    fn kept(kept: &Kept) -> Option<&KeptState<Self>> {
        match kept {
            Kept::F64(t) => Some(t),
            Kept::F32(_) => None,
        }
    }
}

/// max(x, 0) (NaN to 0), without the name clash of `Float::max` with candle's `VecOps`.
pub(super) fn relu<T: Real>(x: T) -> T {
    if x > T::zero() {
        x
    } else {
        T::zero()
    }
}

/// Columns of a pair row: psi(|x_i - x_j|^2), psi(x_i . x_j), x_i - x_j (4), edge mask.
pub(super) const PAIR_COLUMNS: usize = 7;
/// First column of x_i - x_j in a pair row.
pub(super) const X_DIFF: usize = 2;
/// The edge-mask column of a pair row.
pub(super) const EDGE_MASK: usize = 6;

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
pub(super) struct Tile<'g, T: Clone> {
    rows: usize,
    h: usize,
    /// The clamp in T (infinite: none).
    clamp: T,
    /// relu(z)
    a1: Vec<T>,
    /// relu(W_out a1 + b_out): computed, or borrowed from the forward's kept tiles
    a2: Cow<'g, [T]>,
    /// s a2
    m: Vec<T>,
    /// relu(W_x1 m + b_x1) (coordinate blocks only), like `a2`
    c1: Cow<'g, [T]>,
    /// sigmoid gate g (before the mask)
    gate: Vec<T>,
    /// phi per row (coordinate blocks only)
    phi: Vec<T>,
    /// The tile's pair rows ([`PAIR_COLUMNS`] each).
    geometry: &'g [T],
}

impl<'g, T: Real> Tile<'g, T> {
    pub(super) fn new(op: &Stage, rows: usize, h: usize, geometry: &'g [T]) -> Self {
        Self {
            rows,
            h,
            clamp: T::from(op.clamp).unwrap_or_else(T::infinity),
            a1: vec![T::zero(); rows * h],
            a2: Cow::Borrowed(&[]),
            m: vec![T::zero(); rows * h],
            c1: Cow::Borrowed(&[]),
            gate: vec![T::zero(); rows],
            phi: vec![T::zero(); if op.coord { rows } else { 0 }],
            geometry,
        }
    }

    fn edge_mask(&self, r: usize) -> T {
        self.geometry[r * PAIR_COLUMNS + EDGE_MASK]
    }

    /// The tile's forward from z: both products with their bias and ReLU, the gates, phi.
    pub(super) fn forward(&mut self, op: &Stage, z: &[T], p: &[T]) {
        let (rows, h) = (self.rows, self.h);
        self.relu_z(z);
        dense_relu(&mut self.a2, &self.a1, rows, h, &p[op.w_out..op.w_att]);
        self.gates(op, p);
        if op.coord {
            dense_relu(&mut self.c1, &self.m, rows, h, &p[op.w_x1..op.w_x2]);
            self.phis(op, p);
        }
    }

    /// The tile's state from z and the two products' activations kept by the forward
    /// (`a2`, and `c1` in coordinate blocks), borrowed: no matrix product, no copy.
    pub(super) fn restore(&mut self, op: &Stage, z: &[T], p: &[T], (a2, c1): &'g (Vec<T>, Vec<T>)) {
        self.relu_z(z);
        self.a2 = Cow::Borrowed(a2);
        self.gates(op, p);
        if op.coord {
            self.c1 = Cow::Borrowed(c1);
            self.phis(op, p);
        }
    }

    /// The activations the backward needs: `a2` and `c1`.
    pub(super) fn into_kept(self) -> (Vec<T>, Vec<T>) {
        (self.a2.into_owned(), self.c1.into_owned())
    }

    fn relu_z(&mut self, z: &[T]) {
        for (a, &x) in self.a1.iter_mut().zip(z) {
            *a = relu(x);
        }
    }

    /// Gates s = sigmoid(w_att . a2 + b_att) e and messages m = s a2.
    fn gates(&mut self, op: &Stage, p: &[T]) {
        let h = self.h;
        let (w_att, b_att) = (&p[op.w_att..op.b_att], p[op.b_att]);
        for r in 0..self.rows {
            let a2 = &self.a2[r * h..(r + 1) * h];
            let logit = dot(a2, w_att) + b_att;
            let g = T::one() / (T::one() + (-logit).exp());
            self.gate[r] = g;
            let s = g * self.geometry[r * PAIR_COLUMNS + EDGE_MASK];
            for (m, &a) in self.m[r * h..(r + 1) * h].iter_mut().zip(a2) {
                *m = a * s;
            }
        }
    }

    /// phi = w_x2 . c1 per row.
    fn phis(&mut self, op: &Stage, p: &[T]) {
        let w_x2 = &p[op.w_x2..op.len];
        for (phi, c1) in self.phi.iter_mut().zip(self.c1.chunks_exact(self.h)) {
            *phi = dot(c1, w_x2);
        }
    }

    /// The clamped coordinate term of row r, component k, and whether it passed the clamp.
    fn coord_term(&self, r: usize, k: usize) -> (T, bool) {
        let t = self.phi[r] * self.geometry[r * PAIR_COLUMNS + X_DIFF + k];
        if t > self.clamp {
            (self.clamp, false)
        } else if t < -self.clamp {
            (-self.clamp, false)
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
                        *c += self.coord_term(r, k).0 * e;
                    }
                }
            }
        }
    }

    /// Gradients of the tile's rows given the upstream gradient `grad` of its nodes
    /// (`[nodes, H + 4]`): `dz` is written, `d(x_i - x_j)` written into `dgeometry`'s
    /// columns, parameter gradients added to `dparams` (the stage's packed layout).
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
        let (dw_out, rest) = dparams.split_at_mut(op.b_out - op.w_out);
        let (db_out, rest) = rest.split_at_mut(op.w_att - op.b_out);
        let (dw_att, rest) = rest.split_at_mut(op.b_att - op.w_att);
        let (db_att, rest) = rest.split_at_mut(1);
        // dm: the aggregate's gradient broadcast over j, plus the coordinate path's.
        let mut dm = vec![T::zero(); rows * h];
        for (r, dm) in dm.chunks_exact_mut(h).enumerate() {
            dm.copy_from_slice(&grad[r / n * (h + 4)..r / n * (h + 4) + h]);
        }
        if op.coord {
            let (dw_x1, rest) = rest.split_at_mut(op.b_x1 - op.w_x1);
            let (db_x1, dw_x2) = rest.split_at_mut(op.w_x2 - op.b_x1);
            let mut dc1 = vec![T::zero(); rows * h];
            let w_x2 = &p[op.w_x2..op.len];
            for r in 0..rows {
                let e = self.edge_mask(r);
                let dcoord = &grad[r / n * (h + 4) + h..(r / n + 1) * (h + 4)];
                let mut dphi = T::zero();
                for (k, &dc) in dcoord.iter().enumerate() {
                    if self.coord_term(r, k).1 {
                        let dt = dc * e;
                        dphi += dt * self.geometry[r * PAIR_COLUMNS + X_DIFF + k];
                        dgeometry[r * PAIR_COLUMNS + X_DIFF + k] = dt * self.phi[r];
                    }
                }
                let c1 = &self.c1[r * h..(r + 1) * h];
                let d = &mut dc1[r * h..(r + 1) * h];
                for (((d, &c), &w), dw) in d.iter_mut().zip(c1).zip(w_x2).zip(dw_x2.iter_mut()) {
                    *dw += dphi * c;
                    // relu: c1 > 0 exactly where its pre-activation was. Both values formed
                    // and one selected: no branch on the sign (mispredicted on about half
                    // the edges), so that the loop vectorises.
                    let through = dphi * w;
                    *d = if c > T::zero() { through } else { T::zero() };
                }
            }
            column_sums(db_x1, &dc1);
            // dW_x1 += dc1^T m ; dm += dc1 W_x1
            matmul(
                dw_x1,
                MatRef::transposed(&dc1, h, rows),
                MatRef::row_major(&self.m, rows, h),
                true,
            );
            matmul(
                &mut dm,
                MatRef::row_major(&dc1, rows, h),
                MatRef::row_major(&p[op.w_x1..op.b_x1], h, h),
                true,
            );
        }
        // m = s a2 with s = sigmoid(logit) e: da2 = s dm + dlogit w_att.
        let w_att = &p[op.w_att..op.b_att];
        let mut da2 = dm;
        for r in 0..rows {
            let (g, e) = (self.gate[r], self.edge_mask(r));
            let a2 = &self.a2[r * h..(r + 1) * h];
            let d = &mut da2[r * h..(r + 1) * h];
            let ds = dot(d, a2);
            let dlogit = ds * e * g * (T::one() - g);
            db_att[0] += dlogit;
            let s = g * e;
            for (((x, &a), &w), dw) in d.iter_mut().zip(a2).zip(w_att).zip(dw_att.iter_mut()) {
                *dw += dlogit * a;
                // relu: a2 > 0 exactly where its pre-activation was (selected, as above).
                let through = *x * s + dlogit * w;
                *x = if a > T::zero() { through } else { T::zero() };
            }
        }
        column_sums(db_out, &da2);
        // dW_out += da2^T a1 ; da1 = da2 W_out ; dz = da1 [z > 0] (a1 > 0).
        matmul(
            dw_out,
            MatRef::transposed(&da2, h, rows),
            MatRef::row_major(&self.a1, rows, h),
            true,
        );
        matmul(
            dz,
            MatRef::row_major(&da2, rows, h),
            MatRef::row_major(&p[op.w_out..op.b_out], h, h),
            false,
        );
        for (d, &a) in dz.iter_mut().zip(&self.a1) {
            *d = if a <= T::zero() { T::zero() } else { *d };
        }
    }
}

/// `out = relu(x W^T + b)` for `x` `[rows, H]` and `weight_bias` holding `W` `[H, H]`
/// (PyTorch `[out, in]`) then `b` `[H]`; `out` becomes an owned `[rows, H]` buffer.
fn dense_relu<T: Real>(out: &mut Cow<'_, [T]>, x: &[T], rows: usize, h: usize, weight_bias: &[T]) {
    let (weight, bias) = weight_bias.split_at(h * h);
    let out = out.to_mut();
    out.resize(rows * h, T::zero());
    matmul(
        out,
        MatRef::row_major(x, rows, h),
        MatRef::transposed(weight, h, h),
        false,
    );
    for row in out.chunks_exact_mut(h) {
        for (a, &b) in row.iter_mut().zip(bias) {
            *a = relu(*a + b);
        }
    }
}

/// `acc[c] += sum over rows of x[r, c]`.
fn column_sums<T: Real>(acc: &mut [T], x: &[T]) {
    for row in x.chunks_exact(acc.len()) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v;
        }
    }
}

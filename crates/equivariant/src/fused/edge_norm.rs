//! LorentzNet's BatchNorm and first edge layer backward from sums over nodes (see
//! `lorentz_edges::Inputs::backward`): for a real edge (i, j),
//!
//! ```text
//! dpre  = kappa dz - kappa iota (s + sx x_hat)      (training; kappa dz with running statistics)
//! x_hat = rstd (P_i + Q_j + w0 a0 + w1 a1 - mean)
//! ```
//!
//! with kappa = weight x rstd, iota = 1 / (real edges), s = sum dz, sx = sum dz x_hat.
//! Both are linear in dz and in the factorised pre, so d P_i, d Q_j, d W3 and each pair's
//! d a follow from per-node row and column sums of dz, per-channel sums of dz against the
//! invariants and per-row `(kappa w_k) . dz`, all in f64.

use candle_core::WithDType;

use super::edge_tile::Real;

/// One graph's sums of the two invariants over its real edges: per row i and column j,
/// their products (a0 a0, a0 a1, a1 a1), totals, and per channel
/// `y_k = sum_i (P_i rows_ik + Q_i columns_ik)`.
pub(super) struct GraphInvariantSums {
    pub(super) rows: Vec<[f64; 2]>,
    pub(super) columns: Vec<[f64; 2]>,
    pub(super) products: [f64; 3],
    total: [f64; 2],
    y: [Vec<f64>; 2],
}

impl GraphInvariantSums {
    pub(super) fn new(nodes: usize) -> Self {
        Self {
            rows: vec![[0.0; 2]; nodes],
            columns: vec![[0.0; 2]; nodes],
            products: [0.0; 3],
            total: [0.0; 2],
            y: [Vec::new(), Vec::new()],
        }
    }

    /// The real edge (i, j) with invariants `a`.
    pub(super) fn push(&mut self, i: usize, j: usize, a: [f64; 2]) {
        for (k, &x) in a.iter().enumerate() {
            self.rows[i][k] += x;
            self.columns[j][k] += x;
            self.total[k] += x;
        }
        self.products[0] += a[0] * a[0];
        self.products[1] += a[0] * a[1];
        self.products[2] += a[1] * a[1];
    }

    /// Node i's part of `y` (after every edge was pushed).
    pub(super) fn add_node<T: Real>(&mut self, i: usize, p: &[T], q: &[T]) {
        for k in 0..2 {
            let y = &mut self.y[k];
            y.resize(p.len(), 0.0);
            let (r, c) = (self.rows[i][k], self.columns[i][k]);
            for ((y, &p), &q) in y.iter_mut().zip(p).zip(q) {
                *y += WithDType::to_f64(p) * r + WithDType::to_f64(q) * c;
            }
        }
    }
}

/// `acc += x` into f64.
pub(super) fn add_f64<T: Real>(acc: &mut [f64], x: &[T]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += WithDType::to_f64(v);
    }
}

/// BatchNorm's and the first layer's backward from the sums of pass A, in f64. For a
/// real edge, `dpre = kappa dz - kappa iota (s + sx x_hat)` (training; `kappa dz` with
/// running statistics), kappa = weight x rstd, iota = 1 / (real edges), s = sum dz,
/// sx = sum dz x_hat, and x_hat = rstd (P_i + Q_j + w0 a0 + w1 a1 - mean).
pub(super) struct BnBackward {
    train: bool,
    iota: f64,
    kappa: Vec<f64>,
    rstd: Vec<f64>,
    mean: Vec<f64>,
    /// W3's two columns.
    w: [Vec<f64>; 2],
    /// sum dz
    pub(super) s: Vec<f64>,
    /// sum dz x_hat
    pub(super) sx: Vec<f64>,
    /// theta_k = w_k kappa sx rstd: `sum_c w_kc dpre_c`'s x_hat part is
    /// `iota theta_k . (pre - mean)`.
    theta: [Vec<f64>; 2],
    /// Per k: w_k . (kappa s), theta_k . w0, theta_k . w1, theta_k . mean.
    row_terms: [[f64; 4]; 2],
}

impl BnBackward {
    /// s and sx from the row and column sums of dz and `D_k`:
    /// `sx = rstd (sum_i R_i P_i + sum_j C_j Q_j + w0 D_0 + w1 D_1 - mean s)`.
    pub(super) fn new<T: Real>(
        train: bool,
        (mean, rstd, count): (&[T], &[T], f64),
        (weight, w3): (&[T], &[Vec<T>; 2]),
        nodes: &[T],
        (row_sums, column_sums, d_inv): (&[T], &[T], &[Vec<T>; 2]),
    ) -> Self {
        let h = weight.len();
        let f64s = |v: &[T]| -> Vec<f64> { v.iter().map(|&x| WithDType::to_f64(x)).collect() };
        let (mean, rstd) = (f64s(mean), f64s(rstd));
        let weight = f64s(weight);
        let kappa: Vec<f64> = weight.iter().zip(&rstd).map(|(w, r)| w * r).collect();
        let w = [f64s(&w3[0]), f64s(&w3[1])];
        let (mut s, mut sx) = (vec![0.0; h], vec![0.0; h]);
        for ((node, r), c) in nodes
            .chunks_exact(2 * h)
            .zip(row_sums.chunks_exact(h))
            .zip(column_sums.chunks_exact(h))
        {
            let (p, q) = node.split_at(h);
            for ch in 0..h {
                let (r, c) = (WithDType::to_f64(r[ch]), WithDType::to_f64(c[ch]));
                s[ch] += r;
                sx[ch] += r * WithDType::to_f64(p[ch]) + c * WithDType::to_f64(q[ch]);
            }
        }
        let d = [f64s(&d_inv[0]), f64s(&d_inv[1])];
        for ch in 0..h {
            sx[ch] =
                rstd[ch] * (sx[ch] + w[0][ch] * d[0][ch] + w[1][ch] * d[1][ch] - mean[ch] * s[ch]);
        }
        let theta = [0, 1].map(|k| {
            (0..h)
                .map(|ch| w[k][ch] * kappa[ch] * sx[ch] * rstd[ch])
                .collect::<Vec<f64>>()
        });
        let dotf = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let kappa_s: Vec<f64> = kappa.iter().zip(&s).map(|(k, s)| k * s).collect();
        let row_terms = [0, 1].map(|k| {
            [
                dotf(&w[k], &kappa_s),
                dotf(&theta[k], &w[0]),
                dotf(&theta[k], &w[1]),
                dotf(&theta[k], &mean),
            ]
        });
        Self {
            train,
            iota: 1.0 / count.max(1.0),
            kappa,
            rstd,
            mean,
            w,
            s,
            sx,
            theta,
            row_terms,
        }
    }

    /// d P_i (or d Q_j) of a real node into `out`: `sums` its row (column) sums of dz,
    /// `own` its P (Q), `other` its Q (P), `other_sum` the graph's sum of Q (P) over
    /// real nodes, `inv` its row (column) sums of the invariants.
    pub(super) fn node_gradient<T: Real>(
        &self,
        out: &mut [T],
        sums: &[T],
        own: &[T],
        other: &[T],
        (other_sum, degree, inv): (&[f64], f64, [f64; 2]),
    ) {
        for (ch, o) in out.iter_mut().enumerate() {
            let mut g = self.kappa[ch] * WithDType::to_f64(sums[ch]);
            if self.train {
                // sum over the node's edges of x_hat.
                let x_hat = self.rstd[ch]
                    * (degree * (WithDType::to_f64(own[ch]) - self.mean[ch])
                        + (other_sum[ch] - WithDType::to_f64(other[ch]))
                        + self.w[0][ch] * inv[0]
                        + self.w[1][ch] * inv[1]);
                g -= self.kappa[ch] * self.iota * (self.s[ch] * degree + self.sx[ch] * x_hat);
            }
            *o = <T as WithDType>::from_f64(g);
        }
    }

    /// theta_0 . P, theta_1 . P, theta_0 . Q, theta_1 . Q of a node.
    pub(super) fn node_theta<T: Real>(&self, p: &[T], q: &[T]) -> [f64; 4] {
        let dotf = |t: &[f64], x: &[T]| {
            t.iter()
                .zip(x)
                .map(|(t, &x)| t * WithDType::to_f64(x))
                .sum::<f64>()
        };
        [
            dotf(&self.theta[0], p),
            dotf(&self.theta[1], p),
            dotf(&self.theta[0], q),
            dotf(&self.theta[1], q),
        ]
    }

    /// d a_k of the real edge (i, j) from `u_k = (kappa w_k) . dz` and the nodes'
    /// [`BnBackward::node_theta`].
    pub(super) fn invariant_gradient(
        &self,
        u: [f64; 2],
        ti: [f64; 4],
        tj: [f64; 4],
        a: [f64; 2],
    ) -> [f64; 2] {
        if !self.train {
            return u;
        }
        [0, 1].map(|k| {
            let t = &self.row_terms[k];
            u[k] - self.iota * (t[0] + ti[k] + tj[2 + k] + a[0] * t[1] + a[1] * t[2] - t[3])
        })
    }

    /// d W3's two columns from `D_k` and the graphs' invariant sums.
    pub(super) fn dw3<T: Real>(
        &self,
        d_inv: &[Vec<T>; 2],
        graphs: &[GraphInvariantSums],
    ) -> [Vec<f64>; 2] {
        let h = self.kappa.len();
        let mut total = [0.0; 2];
        let mut products = [0.0; 3];
        let mut y = [vec![0.0; h], vec![0.0; h]];
        for g in graphs {
            for k in 0..2 {
                total[k] += g.total[k];
                for (acc, v) in y[k].iter_mut().zip(&g.y[k]) {
                    *acc += v;
                }
            }
            for (acc, v) in products.iter_mut().zip(&g.products) {
                *acc += v;
            }
        }
        // sum_e a_0 a_k and sum_e a_1 a_k.
        let cross = [[products[0], products[1]], [products[1], products[2]]];
        [0, 1].map(|k| {
            (0..h)
                .map(|ch| {
                    let mut g = self.kappa[ch] * WithDType::to_f64(d_inv[k][ch]);
                    if self.train {
                        // sum_e (pre_e - mean) a_ke
                        let pre_a =
                            y[k][ch] + self.w[0][ch] * cross[0][k] + self.w[1][ch] * cross[1][k]
                                - self.mean[ch] * total[k];
                        g -= self.kappa[ch]
                            * self.iota
                            * (self.s[ch] * total[k] + self.sx[ch] * self.rstd[ch] * pre_a);
                    }
                    g
                })
                .collect()
        })
    }
}

//! Models with known learning coefficients and densities, for validating the
//! diagnostics: power potentials, reduced-rank regression (a two-layer linear network)
//! with Aoyagi and Watanabe's exact RLCT.

use nalgebra::{DMatrix, DVector};

use crate::objective::Objective;
use crate::rng::{normals, rng};

/// `L(w) = c sum_j w_j^(2k)`: with `n beta = 1` Langevin samples exp(-L), under which
/// `E[c w_j^(2k)] = 1 / (2k)` for each coordinate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerPotential {
    /// Coefficient c.
    pub c: f64,
    /// Half the power, k.
    pub k: i32,
    /// Dimension.
    pub dim: usize,
}

impl Objective for PowerPotential {
    fn dim(&self) -> usize {
        self.dim
    }

    fn n_samples(&self) -> usize {
        1
    }

    fn loss_grad(&self, w: &[f64], _batch: Option<&[usize]>, grad: &mut [f64]) -> f64 {
        let p = 2 * self.k;
        for (g, x) in grad.iter_mut().zip(w) {
            *g = self.c * f64::from(p) * x.powi(p - 1);
        }
        w.iter().map(|x| self.c * x.powi(p)).sum()
    }
}

/// Reduced-rank regression: `y = B A x + noise`, A `[H, M]`, B `[N, H]`, parameters laid
/// out as A then B (row-major), loss `(1/2n) sum_i |y_i - B A x_i|^2`.
#[derive(Debug, Clone)]
pub struct ReducedRankRegression {
    x: DMatrix<f64>,
    y: DMatrix<f64>,
    /// Hidden width H.
    pub hidden: usize,
    /// The true parameters (A then B) that generated `y`.
    pub truth: Vec<f64>,
    /// Sufficient statistics of the full-batch loss: `X^T X`, `X^T Y`, `tr(Y^T Y)`, so that
    /// a full-batch step costs O(M^2 N) whatever n (the LLC needs n in the 1e5 range
    /// before log corrections fade; see `examples/llc_rrr.rs`).
    xtx: DMatrix<f64>,
    xty: DMatrix<f64>,
    yty: f64,
}

impl ReducedRankRegression {
    /// n samples with standard normal inputs and unit noise from a true map of rank
    /// `rank` (A and B with `rank` non-zero rows/columns of standard normal entries).
    pub fn sample(m: usize, h: usize, n_out: usize, rank: usize, n: usize, seed: u64) -> Self {
        let mut r = rng(seed);
        let mut a = DMatrix::<f64>::zeros(h, m);
        let mut b = DMatrix::<f64>::zeros(n_out, h);
        for i in 0..rank.min(h) {
            for j in 0..m {
                a[(i, j)] = normals(&mut r, 1)[0];
            }
            for j in 0..n_out {
                b[(j, i)] = normals(&mut r, 1)[0];
            }
        }
        let x = DMatrix::from_vec(n, m, normals(&mut r, n * m));
        let noise = DMatrix::from_vec(n, n_out, normals(&mut r, n * n_out));
        let y = &x * a.transpose() * b.transpose() + noise;
        Self::new(x, y, h, pack(&a, &b))
    }

    /// A problem from data `x` `[n, M]`, `y` `[n, N]`, hidden width `hidden` and the
    /// parameters that generated it (A then B, row-major).
    ///
    /// # Panics
    /// When `x` and `y` have different row counts or `truth` has the wrong length.
    pub fn new(x: DMatrix<f64>, y: DMatrix<f64>, hidden: usize, truth: Vec<f64>) -> Self {
        assert_eq!(x.nrows(), y.nrows(), "x and y need the same number of rows");
        assert_eq!(
            truth.len(),
            hidden * (x.ncols() + y.ncols()),
            "truth length"
        );
        let xt = x.transpose();
        Self {
            xtx: &xt * &x,
            xty: &xt * &y,
            yty: y.norm_squared(),
            x,
            y,
            hidden,
            truth,
        }
    }

    /// The empirical minimiser (reduced-rank least squares, closed form): the ordinary
    /// least-squares map `C = (X^T X)^-1 X^T Y` projected on the top-H right singular
    /// vectors of the fitted values `X C`, factored balanced (`A^T = U S^1/2`,
    /// `B^T = S^1/2 V^T` from the SVD of the projected map). Parameters A then B.
    ///
    /// # Panics
    /// When `X^T X` is singular (fewer samples than inputs).
    pub fn fitted(&self) -> Vec<f64> {
        let (m, h, n_out) = (self.x.ncols(), self.hidden, self.y.ncols());
        let ols = self
            .xtx
            .clone()
            .cholesky()
            .expect("X^T X must be positive definite")
            .solve(&self.xty); // [M, N]
        let fitted = &self.x * &ols;
        let svd = fitted.svd(false, true);
        let v_t = svd.v_t.expect("right singular vectors");
        let order = descending(&svd.singular_values);
        let mut projector = DMatrix::<f64>::zeros(n_out, n_out);
        for &k in order.iter().take(h) {
            let v = v_t.row(k).transpose();
            projector += &v * v.transpose();
        }
        let c = ols * projector; // rank <= H
        let svd = c.svd(true, true);
        let (u, v_t) = (svd.u.expect("u"), svd.v_t.expect("v_t"));
        let order = descending(&svd.singular_values);
        let mut a = DMatrix::<f64>::zeros(h, m);
        let mut b = DMatrix::<f64>::zeros(n_out, h);
        for (slot, &k) in order.iter().take(h).enumerate() {
            let root = svd.singular_values[k].sqrt();
            a.set_row(slot, &(u.column(k).transpose() * root));
            b.set_column(slot, &(v_t.row(k).transpose() * root));
        }
        pack(&a, &b)
    }

    /// Inputs `[n, M]`.
    pub fn x(&self) -> &DMatrix<f64> {
        &self.x
    }

    /// Outputs `[n, N]`.
    pub fn y(&self) -> &DMatrix<f64> {
        &self.y
    }

    /// The full-batch loss and gradient from the sufficient statistics: with `C = A^T
    /// B^T`, `|X C - Y|^2 = tr(C^T X^T X C) - 2 tr(C^T X^T Y) + tr(Y^T Y)` and the
    /// gradient in C is `G = (X^T X C - X^T Y) / n`, so `dA = B^T G^T`, `dB = G^T A^T`.
    fn full_batch_loss_grad(&self, a: &DMatrix<f64>, b: &DMatrix<f64>, grad: &mut [f64]) -> f64 {
        let n = self.x.nrows().max(1) as f64;
        let c = a.transpose() * b.transpose(); // [M, N]
        let xtx_c = &self.xtx * &c;
        let quadratic = c.dot(&xtx_c);
        let cross = c.dot(&self.xty);
        let loss = 0.5 * (quadratic - 2.0 * cross + self.yty) / n;
        let g = (xtx_c - &self.xty) / n; // [M, N]
        let grad_a = b.transpose() * g.transpose(); // [H, M]
        let grad_b = g.transpose() * a.transpose(); // [N, H]
        grad.copy_from_slice(&pack(&grad_a, &grad_b));
        loss
    }

    fn unpack(&self, w: &[f64]) -> (DMatrix<f64>, DMatrix<f64>) {
        let (m, h, n_out) = (self.x.ncols(), self.hidden, self.y.ncols());
        let a = DMatrix::from_row_slice(h, m, &w[..h * m]);
        let b = DMatrix::from_row_slice(n_out, h, &w[h * m..]);
        (a, b)
    }
}

/// Flat parameters (A then B, row-major): the inverse of `ReducedRankRegression::unpack`.
fn pack(a: &DMatrix<f64>, b: &DMatrix<f64>) -> Vec<f64> {
    // nalgebra iterates column-major: the transposes' columns are the rows.
    a.transpose()
        .iter()
        .chain(b.transpose().iter())
        .copied()
        .collect()
}

/// Indices of `values` from the largest to the smallest (nalgebra's SVD does not sort).
fn descending(values: &DVector<f64>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[j].total_cmp(&values[i]));
    order
}

/// Aoyagi and Watanabe's (2005) learning coefficient of reduced-rank regression with M
/// inputs, H hidden units, N outputs and true rank r.
pub fn rrr_learning_coefficient(m: usize, h: usize, n: usize, r: usize) -> f64 {
    let (m, h, n, r) = (m as f64, h as f64, n as f64, r as f64);
    if m + h < n + r {
        f64::midpoint(h * m - h * r, n * r)
    } else if n + h < m + r {
        f64::midpoint(h * n - h * r, m * r)
    } else if m + n < h + r {
        m * n / 2.0
    } else {
        let base = 2.0 * (h + r) * (m + n) - (m - n).powi(2) - (h + r).powi(2);
        let odd = (m + h + n + r) as i64 % 2 == 1;
        (base + if odd { 1.0 } else { 0.0 }) / 8.0
    }
}

impl Objective for ReducedRankRegression {
    fn dim(&self) -> usize {
        self.hidden * (self.x.ncols() + self.y.ncols())
    }

    fn n_samples(&self) -> usize {
        self.x.nrows()
    }

    fn loss_grad(&self, w: &[f64], batch: Option<&[usize]>, grad: &mut [f64]) -> f64 {
        let (a, b) = self.unpack(w);
        if batch.is_none() {
            return self.full_batch_loss_grad(&a, &b, grad);
        }
        let selected = batch.map(|rows| (self.x.select_rows(rows), self.y.select_rows(rows)));
        let (x, y) = match &selected {
            Some((x, y)) => (x, y),
            None => (&self.x, &self.y),
        };
        let n = x.nrows().max(1) as f64;
        let hidden = x * a.transpose(); // [n, H]
        let residual = &hidden * b.transpose() - y; // [n, N]
        let loss = 0.5 * residual.norm_squared() / n;
        let grad_b = residual.transpose() * &hidden / n; // [N, H]
        let grad_a = (residual * &b).transpose() * x / n; // [H, M]
        grad.copy_from_slice(&pack(&grad_a, &grad_b));
        loss
    }
}

/// Convenience: the vector of a flat parameter slice.
pub fn as_vector(w: &[f64]) -> DVector<f64> {
    DVector::from_column_slice(w)
}

/// The entropic-confinement valley (arXiv:2512.06297): `L(x, y) = k(x) y^2 / 2` with
/// `k(x) = k0 (1 + 3 sin^2(pi x))`, x periodic on [0, 1). The loss is zero along the whole
/// valley y = 0, yet at temperature T the x-marginal of exp(-L / T) is proportional to
/// `k(x)^(-1/2)`: twice as dense at the ends (x = 0) as in the middle (x = 1/2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Valley {
    /// k0.
    pub k0: f64,
}

impl Valley {
    /// The curvature across the valley at x.
    pub fn k(&self, x: f64) -> f64 {
        self.k0 * (1.0 + 3.0 * (std::f64::consts::PI * x).sin().powi(2))
    }

    /// Wraps x into [0, 1).
    pub fn wrap(w: &mut [f64]) {
        w[0] = w[0].rem_euclid(1.0);
    }
}

impl Objective for Valley {
    fn dim(&self) -> usize {
        2
    }

    fn n_samples(&self) -> usize {
        1
    }

    fn loss_grad(&self, w: &[f64], _batch: Option<&[usize]>, grad: &mut [f64]) -> f64 {
        let (x, y) = (w[0], w[1]);
        let pi = std::f64::consts::PI;
        // d/dx [k0 (1 + 3 sin^2(pi x))] = 3 pi k0 sin(2 pi x).
        grad[0] = 1.5 * pi * self.k0 * (2.0 * pi * x).sin() * y * y;
        grad[1] = self.k(x) * y;
        0.5 * self.k(x) * y * y
    }
}

/// `L(w) = (|w|^2 - 1)^2`: a ring of minima. The straight path between opposite points
/// crosses the maximum at the origin (barrier 1); a curved path stays near the ring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ring {
    /// Dimension (at least 2).
    pub dim: usize,
}

impl Objective for Ring {
    fn dim(&self) -> usize {
        self.dim
    }

    fn n_samples(&self) -> usize {
        1
    }

    fn loss_grad(&self, w: &[f64], _batch: Option<&[usize]>, grad: &mut [f64]) -> f64 {
        let r2: f64 = w.iter().map(|x| x * x).sum();
        for (g, x) in grad.iter_mut().zip(w) {
            *g = 4.0 * (r2 - 1.0) * x;
        }
        (r2 - 1.0).powi(2)
    }
}

/// A tanh MLP `x -> tanh(W1 x + b1) -> tanh(W2 . + b2) -> W3 . + b3` with squared loss
/// `(1/2n) sum_i |f(x_i) - y_i|^2`, parameters laid out W1, b1, W2, b2, W3, b3 (weights
/// row-major `[out, in]`): the small network of the edge-of-stability experiments.
#[derive(Debug, Clone)]
pub struct TanhMlp {
    /// Inputs `[n, d]`.
    pub x: DMatrix<f64>,
    /// Targets `[n, k]`.
    pub y: DMatrix<f64>,
    /// Hidden widths (two layers).
    pub hidden: [usize; 2],
}

impl TanhMlp {
    fn shapes(&self) -> [(usize, usize); 3] {
        let [h1, h2] = self.hidden;
        [(h1, self.x.ncols()), (h2, h1), (self.y.ncols(), h2)]
    }

    /// PyTorch's default initialisation (weights and biases U(+-1/sqrt(fan_in))), seeded.
    pub fn init(&self, seed: u64) -> Vec<f64> {
        let mut r = rng(seed);
        let mut w = Vec::with_capacity(self.dim());
        for (out, input) in self.shapes() {
            let bound = 1.0 / (input as f64).sqrt();
            for _ in 0..out * input + out {
                w.push(bound * (2.0 * rand::RngExt::random_range(&mut r, 0.0..1.0) - 1.0));
            }
        }
        w
    }

    /// Unpacks (W, b) of each layer.
    fn layers(&self, w: &[f64]) -> Vec<(DMatrix<f64>, DVector<f64>)> {
        let mut offset = 0;
        self.shapes()
            .iter()
            .map(|&(out, input)| {
                let m = DMatrix::from_row_slice(out, input, &w[offset..offset + out * input]);
                offset += out * input;
                let b = DVector::from_column_slice(&w[offset..offset + out]);
                offset += out;
                (m, b)
            })
            .collect()
    }
}

fn add_bias(mut z: DMatrix<f64>, b: &DVector<f64>) -> DMatrix<f64> {
    for mut row in z.row_iter_mut() {
        row += b.transpose();
    }
    z
}

impl Objective for TanhMlp {
    fn dim(&self) -> usize {
        self.shapes().iter().map(|(o, i)| o * i + o).sum()
    }

    fn n_samples(&self) -> usize {
        self.x.nrows()
    }

    fn loss_grad(&self, w: &[f64], batch: Option<&[usize]>, grad: &mut [f64]) -> f64 {
        let layers = self.layers(w);
        let (x, y) = match batch {
            Some(rows) => (self.x.select_rows(rows), self.y.select_rows(rows)),
            None => (self.x.clone(), self.y.clone()),
        };
        let n = x.nrows().max(1) as f64;
        let a1 = add_bias(&x * layers[0].0.transpose(), &layers[0].1).map(f64::tanh);
        let a2 = add_bias(&a1 * layers[1].0.transpose(), &layers[1].1).map(f64::tanh);
        let out = add_bias(&a2 * layers[2].0.transpose(), &layers[2].1);
        let diff = &out - &y;
        let loss = 0.5 * diff.norm_squared() / n;
        let d_out = diff / n;
        let d_z2 = (&d_out * &layers[2].0).component_mul(&a2.map(|a| 1.0 - a * a));
        let d_z1 = (&d_z2 * &layers[1].0).component_mul(&a1.map(|a| 1.0 - a * a));
        let mut offset = 0;
        for (d, input) in [(&d_z1, &x), (&d_z2, &a1), (&d_out, &a2)] {
            let g_w = d.transpose() * input; // [out, in]
            for v in g_w.transpose().iter() {
                grad[offset] = *v;
                offset += 1;
            }
            for c in d.column_iter() {
                grad[offset] = c.sum();
                offset += 1;
            }
        }
        loss
    }
}

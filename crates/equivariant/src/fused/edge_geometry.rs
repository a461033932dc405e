//! The pairs' geometry of LorentzNet's edge stage, formed from the nodes' coordinate rows
//! (x, then the node mask): x_i - x_j, psi|x_i - x_j|^2, psi(x_i . x_j) and the edge mask
//! per pair row, and the derivatives the backward takes through them.

use rayon::prelude::*;

use super::edge_tile::{Real, EDGE_MASK, PAIR_COLUMNS, X_DIFF};

/// Columns of a node's row in the stage's `coords` input: x = (E, px, py, pz), then the
/// node mask (1 for real nodes, 0 for padding).
pub const COORD_COLUMNS: usize = 5;
/// The node-mask column of a coordinate row.
pub(super) const NODE_MASK: usize = 4;

/// x_i - x_j.
pub(super) fn difference<T: Real>(xi: &[T], xj: &[T]) -> [T; 4] {
    [xi[0] - xj[0], xi[1] - xj[1], xi[2] - xj[2], xi[3] - xj[3]]
}

/// p . q with the metric (+, -, -, -), summed as `minkowski::dot4` sums it on candle's CPU
/// backend: 2 p0 q0 - (((p0 q0 + p1 q1) + p2 q2) + p3 q3).
pub(super) fn minkowski<T: Real>(p: &[T], q: &[T]) -> T {
    let prod = [p[0] * q[0], p[1] * q[1], p[2] * q[2], p[3] * q[3]];
    let sum = ((prod[0] + prod[1]) + prod[2]) + prod[3];
    (prod[0] + prod[0]) - sum
}

/// psi(a) = sgn(a) ln(|a| + 1), LorentzNet's embedding of invariants (`minkowski::psi`);
/// NaN stays NaN, as in candle's composition.
fn psi<T: Real>(a: T) -> T {
    if a > T::zero() {
        (a + T::one()).ln()
    } else if a < T::zero() {
        -((-a + T::one()).ln())
    } else if a == T::zero() {
        T::zero()
    } else {
        a
    }
}

/// `g psi'(a)`: g / (|a| + 1), and 0 at a = 0 (where candle's sign, which psi is formed
/// with, has the gradient 0).
pub(super) fn psi_gradient<T: Real>(a: T, g: T) -> T {
    if a == T::zero() {
        T::zero()
    } else {
        g / (a.abs() + T::one())
    }
}

/// The pair rows ([`PAIR_COLUMNS`]: psi|x_i - x_j|^2, psi(x_i . x_j), x_i - x_j, the edge
/// mask, 1 for distinct real nodes) of every graph from its nodes' coordinate rows, in
/// parallel over graphs.
pub(super) fn pair_geometry<T: Real>(coords: &[T], nodes: usize) -> Vec<T> {
    let n = nodes;
    let mut pairs = vec![T::zero(); coords.len() / COORD_COLUMNS * n * PAIR_COLUMNS];
    pairs
        .par_chunks_mut(n * n * PAIR_COLUMNS)
        .zip(coords.par_chunks(n * COORD_COLUMNS))
        .for_each(|(rows, graph)| {
            let node = |i: usize| &graph[i * COORD_COLUMNS..(i + 1) * COORD_COLUMNS];
            for (e, row) in rows.chunks_exact_mut(PAIR_COLUMNS).enumerate() {
                let (xi, xj) = (node(e / n), node(e % n));
                let diff = difference(xi, xj);
                row[0] = psi(minkowski(&diff, &diff));
                row[1] = psi(minkowski(xi, xj));
                row[X_DIFF..X_DIFF + 4].copy_from_slice(&diff);
                let real =
                    e / n != e % n && xi[NODE_MASK] != T::zero() && xj[NODE_MASK] != T::zero();
                row[EDGE_MASK] = if real { T::one() } else { T::zero() };
            }
        });
    pairs
}

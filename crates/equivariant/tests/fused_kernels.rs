//! The fused LorentzNet edge stage against the same stage composed from candle operations
//! (candle's autograd as the independent ground truth for the gradients, the pairs'
//! geometry formed with `minkowski::{dot4, psi}` as the model's composed path forms it),
//! in f64 on padded graphs whose node counts are not multiples of the kernel's tile, with
//! BatchNorm's batch statistics (training) and running ones (evaluation); bit-identical
//! results with 1 and 2 threads; typed errors for inputs it does not support.

use candle_core::{DType, Device, Tensor, Var, D};
use noether_equivariant::fused::{EdgeSums, LorentzEdges, COORD_COLUMNS};
use noether_equivariant::minkowski::{dot4, psi};
use noether_equivariant::ModelError;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Case {
    op: LorentzEdges,
    graphs: usize,
    node_parts: Var,
    /// The nodes' x `[B N, 4]`.
    x: Var,
    /// The node mask `[B N, 1]`.
    node_mask: Tensor,
    /// The edge mask `[B N N, 1]`: distinct real nodes.
    mask: Tensor,
    params: Var,
    weights: Tensor,
}

fn random(rng: &mut ChaCha8Rng, len: usize, scale: f64) -> Vec<f64> {
    (0..len)
        .map(|_| rng.random_range(-1.0..1.0) * scale)
        .collect()
}

/// `graphs` padded graphs of `nodes` nodes; graph g has `nodes - g % 3` real nodes.
fn case(graphs: usize, nodes: usize, hidden: usize, coord: bool, clamp: f64, train: bool) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64((graphs * 1000 + nodes * 10 + hidden) as u64);
    let op = LorentzEdges {
        nodes,
        hidden,
        coord,
        clamp,
        train,
        eps: 1e-5,
    };
    let rows = graphs * nodes * nodes;
    let dev = &Device::Cpu;
    let mut mask = Vec::with_capacity(rows);
    let mut node_mask = Vec::with_capacity(graphs * nodes);
    for g in 0..graphs {
        let real = nodes - (g % 3).min(nodes - 1);
        node_mask.extend((0..nodes).map(|i| if i < real { 1.0 } else { 0.0 }));
        for i in 0..nodes {
            for j in 0..nodes {
                mask.push(if i != j && i < real && j < real {
                    1.0
                } else {
                    0.0
                });
            }
        }
    }
    let var = |v: Vec<f64>, shape: (usize, usize)| Var::from_vec(v, shape, dev).unwrap();
    let mut params = random(&mut rng, op.parameter_len(), 0.6);
    // Running variances must be positive.
    for v in &mut params[5 * hidden..6 * hidden] {
        *v = v.abs() + 0.5;
    }
    Case {
        op,
        graphs,
        node_parts: var(
            random(&mut rng, graphs * nodes * 2 * hidden, 1.0),
            (graphs * nodes, 2 * hidden),
        ),
        x: var(
            random(&mut rng, graphs * nodes * 4, 2.0),
            (graphs * nodes, 4),
        ),
        node_mask: Tensor::from_vec(node_mask, (graphs * nodes, 1), dev).unwrap(),
        mask: Tensor::from_vec(mask, (rows, 1), dev).unwrap(),
        params: Var::from_vec(params, op.parameter_len(), dev).unwrap(),
        weights: Tensor::from_vec(
            random(&mut rng, graphs * nodes * (hidden + 4), 1.0),
            (graphs * nodes, hidden + 4),
            dev,
        )
        .unwrap(),
    }
}

/// The kernel's coordinate input: x, then the node mask.
fn coords(c: &Case) -> Tensor {
    Tensor::cat(&[c.x.as_tensor(), &c.node_mask], 1).unwrap()
}

/// Batch statistics: mean, biased variance, count.
type Stats = (Vec<f64>, Vec<f64>, f64);

/// The stage's sums side by side `[B N, H + 4]` (zeros for absent coordinates) and the
/// batch statistics when training.
type Output = (Tensor, Option<Stats>);

fn side_by_side(c: &Case, messages: Tensor, coords: Option<Tensor>) -> Tensor {
    let coords = coords.unwrap_or_else(|| {
        Tensor::zeros((c.graphs * c.op.nodes, 4), DType::F64, &Device::Cpu).unwrap()
    });
    Tensor::cat(&[messages, coords], D::Minus1).unwrap()
}

fn fused(c: &Case) -> Output {
    let EdgeSums {
        messages,
        coords,
        batch_stats,
    } =
        c.op.apply(c.node_parts.as_tensor(), &coords(c), c.params.as_tensor())
            .unwrap();
    let stats = batch_stats.map(|(m, v, n)| (host(&m), host(&v), n));
    (side_by_side(c, messages, coords), stats)
}

/// x_i - x_j and the two invariants psi|x_i - x_j|^2, psi(x_i . x_j) of every pair row
/// (`first`, `second`: the rows' nodes), as LorentzNet's composed path forms them.
fn pair_geometry(c: &Case, first: &Tensor, second: &Tensor) -> (Tensor, Tensor) {
    let x_i = c.x.as_tensor().index_select(first, 0).unwrap();
    let x_j = c.x.as_tensor().index_select(second, 0).unwrap();
    let x_diff = (&x_i - &x_j).unwrap();
    let invariants = Tensor::stack(
        &[
            psi(&dot4(&x_diff, &x_diff).unwrap()).unwrap(),
            psi(&dot4(&x_i, &x_j).unwrap()).unwrap(),
        ],
        D::Minus1,
    )
    .unwrap();
    (x_diff, invariants)
}

/// The stage composed from candle operations, as LorentzNet's reference code writes it.
fn composed(c: &Case) -> Output {
    let (n, h, dev) = (c.op.nodes, c.op.hidden, &Device::Cpu);
    let p = c.params.as_tensor();
    let mut at = 0;
    let mut take = |len: usize| {
        let t = p.narrow(0, at, len).unwrap();
        at += len;
        t
    };
    let w3 = take(2 * h).reshape((h, 2)).unwrap();
    let (bn_w, bn_b, run_mean, run_var) = (take(h), take(h), take(h), take(h));
    let w_out = take(h * h).reshape((h, h)).unwrap();
    let b_out = take(h);
    let w_att = take(h).reshape((1, h)).unwrap();
    let b_att = take(1);
    let linear = |x: &Tensor, w: &Tensor, b: Option<&Tensor>| {
        let y = x.matmul(&w.t().unwrap()).unwrap();
        match b {
            Some(b) => y.broadcast_add(b).unwrap(),
            None => y,
        }
    };
    let rows = c.graphs * n * n;
    let index = |v: Vec<u32>| Tensor::from_vec(v, rows, dev).unwrap();
    let first = index((0..rows).map(|e| (e / n) as u32).collect());
    let second = index(
        (0..rows)
            .map(|e| (e / (n * n) * n + e % n) as u32)
            .collect(),
    );
    let parts = c.node_parts.as_tensor();
    let part = |start: usize, rows: &Tensor| {
        let t = parts.narrow(1, start, h).and_then(|t| t.contiguous());
        t.unwrap().index_select(rows, 0).unwrap()
    };
    let (p_i, q_j) = (part(0, &first), part(h, &second));
    let (x_diff, invariants) = pair_geometry(c, &first, &second);
    let pre = ((linear(&invariants, &w3, None) + p_i).unwrap() + q_j).unwrap();
    let (mean, var, stats) = if c.op.train {
        let count = c.mask.sum_all().unwrap().to_scalar::<f64>().unwrap();
        let mean = (pre.broadcast_mul(&c.mask).unwrap().sum(0).unwrap() / count).unwrap();
        let centred = pre.broadcast_sub(&mean).unwrap();
        let var = (centred
            .sqr()
            .unwrap()
            .broadcast_mul(&c.mask)
            .unwrap()
            .sum(0)
            .unwrap()
            / count)
            .unwrap();
        let stats = (host(&mean), host(&var), count);
        (mean, var, Some(stats))
    } else {
        (run_mean, run_var, None)
    };
    let z = pre
        .broadcast_sub(&mean)
        .unwrap()
        .broadcast_div(&(var + c.op.eps).unwrap().sqrt().unwrap())
        .unwrap()
        .broadcast_mul(&bn_w)
        .unwrap()
        .broadcast_add(&bn_b)
        .unwrap();
    let a2 = linear(&z.relu().unwrap(), &w_out, Some(&b_out))
        .relu()
        .unwrap();
    let gate = candle_nn::ops::sigmoid(&linear(&a2, &w_att, Some(&b_att))).unwrap();
    let m = a2.broadcast_mul(&(gate * &c.mask).unwrap()).unwrap();
    let per_node = |t: &Tensor| {
        let width = t.dim(1).unwrap();
        t.reshape((c.graphs * n, n, width)).unwrap().sum(1).unwrap()
    };
    let coords = c.op.coord.then(|| {
        let w_x1 = take(h * h).reshape((h, h)).unwrap();
        let b_x1 = take(h);
        let w_x2 = take(h).reshape((1, h)).unwrap();
        let phi = linear(&linear(&m, &w_x1, Some(&b_x1)).relu().unwrap(), &w_x2, None);
        let t = x_diff
            .broadcast_mul(&phi)
            .unwrap()
            .clamp(-c.op.clamp, c.op.clamp)
            .unwrap()
            .broadcast_mul(&c.mask)
            .unwrap();
        per_node(&t)
    });
    (side_by_side(c, per_node(&m), coords), stats)
}

fn host(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn worst(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-300_f64, |m, x| m.max(x.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / scale)
        .fold(0.0, f64::max)
}

/// The output, the gradients of a fixed weighted sum of it for the node parts, the nodes'
/// x and the parameters (running statistics left out: constants to the kernel), and the
/// batch statistics.
fn run(c: &Case, f: fn(&Case) -> Output) -> (Vec<Vec<f64>>, Option<Stats>) {
    let (out, stats) = f(c);
    let loss = (&out * &c.weights).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let grad = |v: &Var| grads.get(v).map_or_else(|| vec![0.0; v.elem_count()], host);
    let h = c.op.hidden;
    let mut dparams = grad(&c.params);
    dparams.drain(4 * h..6 * h);
    let values = vec![host(&out), grad(&c.node_parts), grad(&c.x), dparams];
    (values, stats)
}

#[test]
fn fused_stage_equals_the_composed_one_with_its_gradients() {
    // (graphs, nodes, hidden, coord, clamp, train): node counts off the 384-row tile (7
    // nodes: 54 per tile, 63 graph nodes = 1.17 tiles; 40: 9 per tile, 200 graph nodes =
    // 22.2 tiles over 3 chunks), the last block (no coordinates), an active clamp,
    // evaluation statistics.
    let cases = [
        (9, 7, 5, true, f64::INFINITY, true),
        (5, 40, 6, true, f64::INFINITY, true),
        (4, 9, 8, false, f64::INFINITY, true),
        (5, 6, 4, true, 0.4, true),
        (4, 11, 5, true, f64::INFINITY, false),
    ];
    let names = ["output", "d node_parts", "d x", "d params"];
    for (k, &(graphs, nodes, hidden, coord, clamp, train)) in cases.iter().enumerate() {
        let c = case(graphs, nodes, hidden, coord, clamp, train);
        let (got, got_stats) = run(&c, fused);
        let (want, want_stats) = run(&c, composed);
        for ((what, g), w) in names.iter().zip(&got).zip(&want) {
            let err = worst(g, w);
            assert!(err < 1e-12, "case {k} {what}: {err:.1e}");
            assert!(w.iter().any(|x| *x != 0.0), "case {k} {what} is all zero");
        }
        match (got_stats, want_stats) {
            (Some((gm, gv, gn)), Some((wm, wv, wn))) => {
                assert!(
                    worst(&gm, &wm) < 1e-12 && worst(&gv, &wv) < 1e-12,
                    "case {k} stats"
                );
                assert_eq!(gn, wn, "case {k} count");
            }
            (None, None) => assert!(!train),
            _ => panic!("case {k}: batch statistics in one and not the other"),
        }
    }
}

#[test]
fn fused_stage_is_bit_identical_with_one_and_two_threads() {
    let c = case(6, 33, 16, true, f64::INFINITY, true);
    let in_pool = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| run(&c, fused).0)
    };
    assert_eq!(in_pool(1), in_pool(2));
}

#[test]
fn the_forward_without_gradients_gives_the_same_bits() {
    // Untracked inputs: the kernel keeps no activations for a backward (inference).
    for train in [true, false] {
        let c = case(3, 13, 7, true, f64::INFINITY, train);
        let tracked = fused(&c);
        let sums =
            c.op.apply(
                &c.node_parts.as_tensor().detach(),
                &coords(&c).detach(),
                &c.params.as_tensor().detach(),
            )
            .unwrap();
        let detached = side_by_side(&c, sums.messages, sums.coords);
        assert_eq!(host(&tracked.0), host(&detached));
    }
}

fn bad_input(result: noether_equivariant::Result<EdgeSums>) -> (String, String) {
    match result {
        Err(ModelError::BadInput {
            input, expected, ..
        }) => (input.to_owned(), expected),
        other => panic!("expected BadInput, got {other:?}"),
    }
}

#[test]
fn unsupported_inputs_are_refused_naming_the_tensor() {
    let c = case(2, 5, 3, true, f64::INFINITY, true);
    let (nodes, g, p) = (c.node_parts.as_tensor(), coords(&c), c.params.as_tensor());
    let op = c.op;
    // Node parts not a whole number of graphs, or not 2H wide.
    let (input, _) = bad_input(op.apply(&nodes.narrow(0, 0, 9).unwrap(), &g, p));
    assert_eq!(input, "node_parts");
    let (input, _) = bad_input(op.apply(&nodes.narrow(1, 0, 5).unwrap(), &g, p));
    assert_eq!(input, "node_parts");
    // Coordinates without the mask column, or for fewer nodes than the node parts.
    let (input, _) = bad_input(op.apply(nodes, &g.narrow(1, 0, COORD_COLUMNS - 1).unwrap(), p));
    assert_eq!(input, "coords");
    let (input, _) = bad_input(op.apply(nodes, &g.narrow(0, 0, 9).unwrap(), p));
    assert_eq!(input, "coords");
    let (input, _) =
        bad_input(op.apply(nodes, &g, &p.narrow(0, 1, p.dim(0).unwrap() - 1).unwrap()));
    assert_eq!(input, "params");
    let half = |t: &Tensor| t.to_dtype(DType::BF16).unwrap();
    let (input, expected) = bad_input(op.apply(&half(nodes), &half(&g), &half(p)));
    assert_eq!(input, "node_parts");
    assert!(expected.contains("f32 or f64"), "{expected}");
    let (input, _) = bad_input(op.apply(nodes, &g.to_dtype(DType::F32).unwrap(), p));
    assert_eq!(input, "coords");
    // A soft node-mask value.
    let soft = Tensor::cat(&[c.x.as_tensor(), &(&c.node_mask * 0.5).unwrap()], 1).unwrap();
    let (input, expected) = bad_input(op.apply(nodes, &soft, p));
    assert_eq!(input, "coords");
    assert!(expected.contains("0 or 1"), "{expected}");
    let zero = LorentzEdges { nodes: 0, ..op };
    let (input, _) = bad_input(zero.apply(nodes, &g, p));
    assert_eq!(input, "fused edge stage");
}

#[test]
fn a_nan_coordinate_stays_nan_in_the_geometry() {
    // The op does not refuse non-finite coordinates (the models' inputs do, naming them);
    // its geometry must carry a NaN, not turn it into plausible numbers (ReLU then maps a
    // NaN message to 0 as candle's composed relu does).
    for train in [true, false] {
        let c = case(2, 5, 3, true, f64::INFINITY, train);
        let mut x = host(c.x.as_tensor());
        x[0] = f64::NAN;
        let x = Tensor::from_vec(x, (10, 4), &Device::Cpu).unwrap();
        let coords = Tensor::cat(&[&x, &c.node_mask], 1).unwrap();
        let sums =
            c.op.apply(c.node_parts.as_tensor(), &coords, c.params.as_tensor())
                .unwrap();
        // Graph 0's node 0 pairs with every real node of graph 0: its coordinate sum.
        let t = host(&sums.coords.unwrap());
        assert!(
            t[..4].iter().any(|v| v.is_nan()),
            "train {train}: {:?}",
            &t[..4]
        );
        // The pair invariants (psi of NaN) reach the batch statistics.
        if let Some((mean, _, _)) = sums.batch_stats {
            assert!(host(&mean).iter().all(|m| m.is_nan()), "{:?}", host(&mean));
        }
    }
}

//! Edge of stability (Cohen et al., arXiv:2103.00065) at CI size: full-batch gradient
//! descent on a small tanh MLP sharpens until the top Hessian eigenvalue reaches 2/eta
//! and stays there. (`cargo run --release -p noether-examples --example
//! edge_of_stability` runs the [200, 200], 1,000-sample version.)

use nalgebra::DMatrix;
use noether_dynamics::hessian::{top_eigenvalues, PowerConfig};
use noether_dynamics::rng::{normals, rng};
use noether_dynamics::toy::TanhMlp;
use noether_dynamics::Objective;

#[test]
fn gradient_descent_settles_at_the_edge_of_stability() {
    let (n, d, k) = (300, 20, 5);
    let mut r = rng(0);
    let x = DMatrix::from_vec(n, d, normals(&mut r, n * d));
    let u = DMatrix::from_vec(d, k, normals(&mut r, d * k)) / (d as f64).sqrt();
    let y = (&x * u).map(|v| (2.0 * v).tanh() + 0.5 * (3.0 * v).sin());
    let obj = TanhMlp {
        x,
        y,
        hidden: [64, 64],
    };
    let eta = 0.3;
    let mut w = obj.init(1);
    let mut g = vec![0.0; w.len()];
    let power = PowerConfig {
        k: 1,
        max_iters: 100,
        tol: 1e-4,
        seed: 0,
    };
    let sharpness = |w: &[f64]| top_eigenvalues(&obj, w, &power).unwrap()[0].value;
    let start = sharpness(&w);
    let mut late = Vec::new();
    for step in 1..=1200 {
        obj.loss_grad(&w, None, &mut g);
        w.iter_mut().zip(&g).for_each(|(wi, gi)| *wi -= eta * gi);
        if step >= 600 && step % 100 == 0 {
            late.push(sharpness(&w) * eta / 2.0);
        }
    }
    let mean = late.iter().sum::<f64>() / late.len() as f64;
    assert!(
        start * eta / 2.0 < 0.8,
        "started sharp already: {}",
        start * eta / 2.0
    );
    assert!(
        (0.9..=1.15).contains(&mean),
        "lambda_max eta / 2 = {mean} ({late:?})"
    );
}

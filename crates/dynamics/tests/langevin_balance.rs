//! Langevin toys with exact answers: entropic confinement in a flat valley (density
//! ratio 2), diffusion versus confinement in the mean-squared displacement, and layer
//! balance in a two-layer linear network (conserved by gradient flow, driven to balance
//! by SGD noise).

use noether_dynamics::balance::BalanceMonitor;
use noether_dynamics::langevin::{langevin, msd, msd_exponent, LangevinConfig};
use noether_dynamics::rng::{normals, rng};
use noether_dynamics::toy::{ReducedRankRegression, Valley};
use noether_dynamics::{Objective, Quadratic};
use rand::seq::SliceRandom;

#[test]
fn langevin_concentrates_where_the_valley_is_wide() {
    let valley = Valley { k0: 10.0 };
    let config = LangevinConfig {
        eta: 1e-3,
        temperature: 1.0,
        steps: 2_000_000,
        thin: 10,
        seed: 1,
    };
    let states = langevin(&valley, &[0.25, 0.0], &config, Some(&Valley::wrap)).unwrap();
    let window = 0.05;
    let near = |c: f64| {
        states
            .iter()
            .filter(|w| {
                let d = (w[0] - c).rem_euclid(1.0);
                d.min(1.0 - d) < window
            })
            .count() as f64
    };
    // Exact ratio of the windows' masses under k(x)^(-1/2).
    let mass = |c: f64| -> f64 {
        (0..1000)
            .map(|i| c - window + 2.0 * window * (f64::from(i) + 0.5) / 1000.0)
            .map(|x| valley.k(x).powf(-0.5))
            .sum()
    };
    let want = mass(0.0) / mass(0.5);
    let got = near(0.0) / near(0.5);
    assert!((want - 1.96).abs() < 0.05, "{want}");
    assert!(
        (got - want).abs() < 0.1 * want,
        "ends / middle = {got}, want {want}"
    );
    // The loss along the valley floor is zero everywhere: the preference is entropic.
    assert_eq!(
        valley.loss(&[0.0, 0.0], None),
        valley.loss(&[0.5, 0.0], None)
    );
}

#[test]
fn msd_exponent_separates_diffusion_from_confinement() {
    let lags: Vec<usize> = [10, 20, 50, 100, 200, 500].to_vec();
    let config = LangevinConfig {
        eta: 1e-2,
        temperature: 1.0,
        steps: 200_000,
        thin: 1,
        seed: 4,
    };
    let free = langevin(&Quadratic::diagonal(&[0.0; 3]), &[0.0; 3], &config, None).unwrap();
    let m = msd(&free, &lags);
    let slope = msd_exponent(&lags, &m);
    assert!((slope - 1.0).abs() < 0.1, "free diffusion: {slope}");
    // 2 d T eta lag for free diffusion.
    assert!(
        (m[3] / (2.0 * 3.0 * 1e-2 * 100.0) - 1.0).abs() < 0.1,
        "{}",
        m[3]
    );
    // An Ornstein-Uhlenbeck well (relaxation time 1 / (eta a) = 50 steps) plateaus.
    let well = langevin(&Quadratic::diagonal(&[2.0; 3]), &[0.0; 3], &config, None).unwrap();
    let late: Vec<usize> = [500, 1000, 2000, 5000].to_vec();
    let slope = msd_exponent(&late, &msd(&well, &late));
    assert!(slope.abs() < 0.1, "confined: {slope}");
}

/// Runs (S)GD on a two-layer linear network from an imbalanced start and returns the
/// imbalance |A|^2 - |B|^2 at the start and the end.
fn imbalance_under(batch: Option<usize>, eta: f64, steps: usize) -> (f64, f64) {
    let (m, h, n_out) = (4, 4, 4);
    let obj = ReducedRankRegression::sample(m, h, n_out, 2, 512, 3);
    let mut r = rng(8);
    let split = h * m;
    let mut w: Vec<f64> = normals(&mut r, obj.dim())
        .iter()
        .enumerate()
        .map(|(i, x)| if i < split { 1.0 * x } else { 0.1 * x })
        .collect();
    let mut monitor = BalanceMonitor::new(vec![0..split, split..obj.dim()]);
    let mut g = vec![0.0; obj.dim()];
    let mut order: Vec<usize> = (0..obj.n_samples()).collect();
    for step in 0..steps {
        let rows: Option<Vec<usize>> = batch.map(|b| {
            if step % (order.len() / b) == 0 {
                order.shuffle(&mut r);
            }
            let k = step % (order.len() / b);
            order[k * b..(k + 1) * b].to_vec()
        });
        obj.loss_grad(&w, rows.as_deref(), &mut g);
        if step == 0 || step + 1 == steps {
            monitor.record(step, &w, &g);
        }
        w.iter_mut().zip(&g).for_each(|(wi, gi)| *wi -= eta * gi);
    }
    let imbalance = monitor.imbalance();
    (imbalance[0], imbalance[1])
}

#[test]
fn gradient_flow_conserves_layer_imbalance_and_sgd_noise_removes_it() {
    let (start, end) = imbalance_under(None, 1e-3, 20_000);
    assert!(
        ((end - start) / start).abs() < 0.02,
        "full-batch GD with a small step: {start} -> {end}"
    );
    let (start, end) = imbalance_under(Some(1), 0.02, 200_000);
    assert!(end.abs() < 0.5 * start.abs(), "SGD: {start} -> {end}");
}

//! Edge of stability (Cohen et al., arXiv:2103.00065): full-batch gradient descent on a
//! tanh MLP ([200, 200], squared loss, 1,000 samples) sharpens until the top Hessian
//! eigenvalue reaches 2/eta, then hovers there while the loss keeps falling
//! non-monotonically. Prints the sharpness every `--every` steps and, last,
//! `lambda_max_eta_over_2=<mean over the final phase>`.
//!
//! ```sh
//! cargo run --release -p noether-examples --example edge_of_stability -- [--eta 0.3] [--steps 2000] [--every 200] [--seed 0]
//! ```

use clap::Parser;
use nalgebra::DMatrix;
use noether_dynamics::hessian::{top_eigenvalues, PowerConfig};
use noether_dynamics::rng::{normals, rng};
use noether_dynamics::toy::TanhMlp;
use noether_dynamics::Objective;

/// 1,000 samples of 20 standard-normal inputs; targets from a random tanh teacher
/// (5 outputs), so that the student has something non-trivial to fit.
fn problem(seed: u64) -> TanhMlp {
    let (n, d, k) = (1000, 20, 5);
    let mut r = rng(seed);
    let x = DMatrix::from_vec(n, d, normals(&mut r, n * d));
    let u = DMatrix::from_vec(d, k, normals(&mut r, d * k)) / (d as f64).sqrt();
    let y = (&x * u).map(|v| (2.0 * v).tanh() + 0.5 * (3.0 * v).sin());
    TanhMlp {
        x,
        y,
        hidden: [200, 200],
    }
}

/// Edge of stability (see the module documentation).
#[derive(Parser)]
struct Args {
    /// Gradient-descent step size
    #[arg(long, default_value_t = 0.3)]
    eta: f64,
    /// Full-batch steps
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    /// Steps between sharpness measurements
    #[arg(long, default_value_t = 200)]
    every: usize,
    /// Seed of the data, the initialisation and the power iteration
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Args {
        eta,
        steps,
        every,
        seed,
    } = Args::parse();
    if every == 0 {
        return Err("--every must be at least 1".into());
    }
    let obj = problem(seed);
    let mut w = obj.init(seed + 1);
    let mut g = vec![0.0; w.len()];
    let mut sharpness = Vec::new();
    let power = PowerConfig {
        k: 1,
        max_iters: 100,
        tol: 1e-4,
        seed,
    };
    println!(
        "eta={eta} threshold 2/eta={:.1} params={}",
        2.0 / eta,
        obj.dim()
    );
    for step in 0..=steps {
        if step % every == 0 {
            let lambda = top_eigenvalues(&obj, &w, &power)?[0].value;
            let loss = obj.loss(&w, None);
            println!(
                "step {step:>6} loss {loss:.5} lambda_max {lambda:8.2} lambda_max*eta/2 {:.3}",
                lambda * eta / 2.0
            );
            sharpness.push(lambda);
        }
        obj.loss_grad(&w, None, &mut g);
        w.iter_mut().zip(&g).for_each(|(wi, gi)| *wi -= eta * gi);
    }
    // The final phase: the last quarter of the measurements.
    let tail = &sharpness[sharpness.len() * 3 / 4..];
    let mean = tail.iter().sum::<f64>() / tail.len() as f64;
    println!("lambda_max_eta_over_2={:.3}", mean * eta / 2.0);
    Ok(())
}

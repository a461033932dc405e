//! The local learning coefficient of reduced-rank regression (a two-layer linear network
//! y = B A x with M inputs, H hidden units, N outputs and a true map of rank R), estimated
//! by SGLD at the true parameter and compared with Aoyagi and Watanabe's (2005) exact
//! value. Prints `lambda_hat=<mean> std=<spread over chains> true=<Aoyagi value>`.
//!
//! ```sh
//! cargo run --release -p noether-examples --example llc_rrr -- 5 3 5 0 [--n 5000] [--gamma 3] [--epsilon 1e-3] [--draws 8000] [--chains 4] [--seed 1]
//! ```

use noether_dynamics::llc::{estimate_llc, SgldConfig};
use noether_dynamics::toy::{rrr_learning_coefficient, ReducedRankRegression};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        return Err("usage: llc_rrr M H N R [--n 5000] [--gamma 3] [--epsilon 1e-3] [--draws 8000] [--chains 4] [--seed 1]".into());
    }
    let dims: Vec<usize> = args[..4]
        .iter()
        .map(|a| a.parse::<usize>())
        .collect::<Result<_, _>>()?;
    let (m, h, n_out, r) = (dims[0], dims[1], dims[2], dims[3]);
    let mut n = 5000;
    let mut config = SgldConfig {
        epsilon: 1e-3,
        gamma: 3.0,
        chains: 4,
        draws: 8000,
        burn_in: 2000,
        seed: 1,
        ..SgldConfig::default()
    };
    let mut rest = args[4..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--n" => n = value.parse()?,
            "--gamma" => config.gamma = value.parse()?,
            "--epsilon" => config.epsilon = value.parse()?,
            "--draws" => config.draws = value.parse()?,
            "--chains" => config.chains = value.parse()?,
            "--seed" => config.seed = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let obj = ReducedRankRegression::sample(m, h, n_out, r, n, config.seed);
    let est = estimate_llc(&obj, &obj.truth, &config)?;
    println!(
        "lambda_hat={:.3} std={:.3} true={}",
        est.lambda_hat,
        est.std,
        rrr_learning_coefficient(m, h, n_out, r)
    );
    Ok(())
}

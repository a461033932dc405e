//! The grokking benchmark: `(x + y) mod p` (or `x * y`) learned by a small MLP from a
//! fraction of all pairs, full-batch, with AdamW, SNR-gated AdamW and cautious AdamW.
//! Reports, per optimizer and seed, the step at which validation accuracy first reaches
//! 95%, a table per optimizer, and `median_speedup_snr_vs_adamw=<ratio>` (median over
//! seeds of steps(AdamW) / steps(SNR-gated)). Runs that never reach 95% count as
//! `--max-steps` (a lower bound on their time).
//!
//! ```sh
//! cargo run --release -p noether-examples --example grokking -- [--p 97] [--op add] [--train-fraction 0.4] \
//!     [--seeds 5] [--max-steps 20000] [--every 50] [--lr 1e-3] [--wd 1.0] [--width 128] \
//!     [--optimizers adamw,snr_adamw,cautious_adamw]
//! ```

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Module, VarMap};
use noether_equivariant::seeded_varbuilder;
use noether_train::{OptimConfig, Optimizer, OptimizerName, Param};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

// glibc's allocator mmaps and unmaps every multi-megabyte tensor; mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    p: usize,
    multiply: bool,
    train_fraction: f64,
    seeds: u64,
    max_steps: usize,
    every: usize,
    lr: f64,
    wd: f64,
    width: usize,
    optimizers: Vec<String>,
}

fn parse_args() -> Result<Args, Box<dyn std::error::Error>> {
    let mut a = Args {
        p: 97,
        multiply: false,
        train_fraction: 0.4,
        seeds: 5,
        max_steps: 20_000,
        every: 50,
        lr: 1e-3,
        wd: 1.0,
        width: 128,
        optimizers: ["adamw", "snr_adamw", "cautious_adamw"]
            .map(String::from)
            .to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--p" => a.p = v.parse()?,
            "--op" => a.multiply = v == "mul",
            "--train-fraction" => a.train_fraction = v.parse()?,
            "--seeds" => a.seeds = v.parse()?,
            "--max-steps" => a.max_steps = v.parse()?,
            "--every" => a.every = v.parse()?,
            "--lr" => a.lr = v.parse()?,
            "--wd" => a.wd = v.parse()?,
            "--width" => a.width = v.parse()?,
            "--optimizers" => a.optimizers = v.split(',').map(String::from).collect(),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(a)
}

/// One-hot inputs `[pairs, 2p]` and labels for the given pairs.
fn encode(pairs: &[(usize, usize)], args: &Args) -> candle_core::Result<(Tensor, Tensor)> {
    let p = args.p;
    let mut x = vec![0f32; pairs.len() * 2 * p];
    let mut y = Vec::with_capacity(pairs.len());
    for (k, &(a, b)) in pairs.iter().enumerate() {
        x[k * 2 * p + a] = 1.0;
        x[k * 2 * p + p + b] = 1.0;
        let label = if args.multiply {
            a * b % p
        } else {
            (a + b) % p
        };
        y.push(label as u32);
    }
    Ok((
        Tensor::from_vec(x, (pairs.len(), 2 * p), &Device::Cpu)?,
        Tensor::from_vec(y, pairs.len(), &Device::Cpu)?,
    ))
}

/// Steps until validation accuracy first reaches 95% (`None`: not within the budget).
fn run(
    args: &Args,
    optimizer: &str,
    seed: u64,
) -> Result<Option<usize>, Box<dyn std::error::Error>> {
    let p = args.p;
    let mut pairs: Vec<(usize, usize)> = (0..p).flat_map(|a| (0..p).map(move |b| (a, b))).collect();
    pairs.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n_train = (args.train_fraction * pairs.len() as f64).round() as usize;
    let (train_x, train_y) = encode(&pairs[..n_train], args)?;
    let (val_x, val_y) = encode(&pairs[n_train..], args)?;
    let varmap = VarMap::new();
    let vb = seeded_varbuilder(&varmap, seed, DType::F32, &Device::Cpu);
    let embed = candle_nn::linear_no_bias(2 * p, args.width, vb.pp("embed"))?;
    let hidden = candle_nn::linear(args.width, args.width, vb.pp("hidden"))?;
    let head = candle_nn::linear(args.width, p, vb.pp("head"))?;
    let forward = |x: &Tensor| -> candle_core::Result<Tensor> {
        head.forward(&hidden.forward(&embed.forward(x)?.relu()?)?.relu()?)
    };
    let name = match optimizer {
        "adamw" => OptimizerName::AdamW,
        "snr_adamw" => OptimizerName::SnrAdamW,
        "cautious_adamw" => OptimizerName::CautiousAdamW,
        other => return Err(format!("unknown optimizer {other}").into()),
    };
    let config = OptimConfig {
        name,
        lr: args.lr,
        weight_decay: args.wd,
        betas: [0.9, 0.98],
        ..OptimConfig::default()
    };
    let mut params: Vec<Param> = varmap
        .data()
        .lock()
        .expect("VarMap lock")
        .iter()
        .map(|(n, v)| Param {
            name: n.clone(),
            var: v.clone(),
            lr_mult: 1.0,
        })
        .collect();
    params.sort_by(|a, b| a.name.cmp(&b.name));
    let mut opt = Optimizer::new(params, &config);
    for step in 0..=args.max_steps {
        if step % args.every == 0 {
            let predicted = forward(&val_x)?.argmax(D::Minus1)?;
            let correct = predicted.eq(&val_y)?.to_dtype(DType::F32)?.mean_all()?;
            if correct.to_scalar::<f32>()? >= 0.95 {
                return Ok(Some(step));
            }
        }
        let logits = forward(&train_x)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &train_y)?;
        let grads = opt.gradients(&loss.backward()?);
        opt.step(&grads, args.lr)?;
    }
    Ok(None)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    noether_equivariant::set_threads(
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
    );
    let mut steps: Vec<Vec<f64>> = Vec::new();
    for optimizer in &args.optimizers {
        println!("| {optimizer} | seed | steps to 95% val acc |");
        let mut row = Vec::new();
        for seed in 0..args.seeds {
            let s = run(&args, optimizer, seed)?;
            let shown = s.map_or(format!(">{}", args.max_steps), |s| s.to_string());
            println!("| {optimizer} | {seed} | {shown} |");
            row.push(s.unwrap_or(args.max_steps) as f64);
        }
        println!("| {optimizer} | median | {} |", median(&mut row.clone()));
        steps.push(row);
    }
    let find = |name: &str| args.optimizers.iter().position(|o| o == name);
    if let (Some(a), Some(s)) = (find("adamw"), find("snr_adamw")) {
        let mut ratios: Vec<f64> = steps[a]
            .iter()
            .zip(&steps[s])
            .map(|(x, y)| x / y.max(1.0))
            .collect();
        println!("median_speedup_snr_vs_adamw={:.3}", median(&mut ratios));
    }
    Ok(())
}

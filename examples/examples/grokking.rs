//! The grokking benchmark: `(x + y) mod p` (or `x * y`) learned by a small MLP from a
//! fraction of all pairs, with AdamW, SNR-gated AdamW and cautious AdamW.
//!
//! The model: learned embeddings of `x` and `y` (summed, width `--width`), one ReLU
//! hidden layer, a linear head over the `p` residues; cross-entropy, AdamW betas (0.9,
//! 0.98) as in Nanda et al. (2023). Mini-batches of `--batch-size` pairs (0: full batch)
//! drawn by a seeded shuffle each epoch.
//!
//! For each optimizer, learning rate and weight decay are first tuned on a grid
//! (`--lrs` x `--wds`) with tuning seeds distinct from the evaluation seeds; the
//! setting with the lowest median steps wins. Then `--seeds` evaluation seeds (each
//! seed fixes the train/validation split and the initialisation, so optimizers are
//! compared on the same problems) report the step at which validation accuracy first
//! reaches 95%. Runs that never get there count as `--max-steps` (a lower bound on
//! their time). Output: a table per optimizer, then
//! `median_speedup_snr_vs_adamw=<ratio>` — the median over seeds of
//! steps(AdamW) / steps(SNR-gated) — with a bootstrap interval, and the same for
//! cautious AdamW.
//!
//! ```sh
//! cargo run --release -p noether-examples --example grokking -- [--p 97] [--op add] \
//!     [--train-fraction 0.4] [--seeds 5] [--tune-seeds 2] [--max-steps 10000] [--every 100] \
//!     [--lrs 3e-3,1e-2,3e-2,1e-1] [--wds 0.03,0.1,0.3,1] [--width 128] [--batch-size 512] \
//!     [--optimizers adamw,snr_adamw,cautious_adamw] [--verbose]
//! ```

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Embedding, Linear, Module, VarMap};
use clap::{Parser, ValueEnum};
use noether_equivariant::seeded_varbuilder;
use noether_train::{trainable, OptimConfig, Optimizer, OptimizerName};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

// candle allocates a buffer per operation; see `noether_equivariant::CachingAllocator`.
#[global_allocator]
static ALLOCATOR: noether_equivariant::CachingAllocator = noether_equivariant::CachingAllocator;

/// Evaluation seeds are 0.., tuning seeds start here so the two never share a split.
const TUNE_SEED_BASE: u64 = 1000;

/// The grokking benchmark (see the module documentation).
#[derive(Parser)]
struct Args {
    /// The modulus
    #[arg(long, default_value_t = 97)]
    p: usize,
    /// The operation learned
    #[arg(long, value_enum, default_value_t = Op::Add)]
    op: Op,
    /// Fraction of all p^2 pairs used for training
    #[arg(long, default_value_t = 0.4)]
    train_fraction: f64,
    /// Evaluation seeds
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// Tuning seeds per grid point
    #[arg(long, default_value_t = 2)]
    tune_seeds: u64,
    /// Step budget of every run
    #[arg(long, default_value_t = 10_000)]
    max_steps: usize,
    /// Steps between validation checks
    #[arg(long, default_value_t = 100)]
    every: usize,
    /// Learning-rate grid
    #[arg(
        long,
        alias = "lr",
        value_delimiter = ',',
        default_value = "3e-3,1e-2,3e-2,1e-1"
    )]
    lrs: Vec<f64>,
    /// Weight-decay grid
    #[arg(
        long,
        alias = "wd",
        value_delimiter = ',',
        default_value = "0.03,0.1,0.3,1"
    )]
    wds: Vec<f64>,
    /// Embedding and hidden width
    #[arg(long, default_value_t = 128)]
    width: usize,
    /// Pairs per mini-batch (0: full batch)
    #[arg(long, default_value_t = 512)]
    batch_size: usize,
    /// Optimizers compared (noether-train names)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "adamw,snr_adamw,cautious_adamw"
    )]
    optimizers: Vec<String>,
    /// Print every run's progress
    #[arg(long)]
    verbose: bool,
}

/// The group operation on residues mod p.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Op {
    /// x + y mod p
    Add,
    /// x * y mod p
    Mul,
}

impl Args {
    /// Rejects settings no run can use, naming the flag.
    fn validate(&self) -> Result<(), String> {
        if !(self.train_fraction > 0.0 && self.train_fraction < 1.0) {
            return Err(format!(
                "--train-fraction must be in (0, 1), got {}",
                self.train_fraction
            ));
        }
        if self.p < 2 || self.every == 0 || self.seeds == 0 {
            return Err("--p >= 2, --every >= 1 and --seeds >= 1 needed".into());
        }
        Ok(())
    }
}

/// Input indices `[pairs, 2]` (`x` and `p + y`, rows of one embedding table) and labels.
fn encode(pairs: &[(usize, usize)], args: &Args) -> candle_core::Result<(Tensor, Tensor)> {
    let p = args.p;
    let mut x = Vec::with_capacity(2 * pairs.len());
    let mut y = Vec::with_capacity(pairs.len());
    for &(a, b) in pairs {
        x.extend([a as u32, (p + b) as u32]);
        let label = if args.op == Op::Mul {
            a * b % p
        } else {
            (a + b) % p
        };
        y.push(label as u32);
    }
    Ok((
        Tensor::from_vec(x, (pairs.len(), 2), &Device::Cpu)?,
        Tensor::from_vec(y, pairs.len(), &Device::Cpu)?,
    ))
}

struct Mlp {
    embed: Embedding,
    hidden: Linear,
    head: Linear,
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // [n, 2, width] summed over the two operands.
        let h = self.embed.forward(x)?.sum(1)?;
        self.head.forward(&self.hidden.forward(&h)?.relu()?)
    }
}

/// One optimizer setting.
#[derive(Clone, Copy)]
struct Setting<'a> {
    optimizer: &'a str,
    lr: f64,
    wd: f64,
}

/// Fraction of rows whose argmax is the label.
fn accuracy(model: &Mlp, x: &Tensor, y: &Tensor) -> candle_core::Result<f32> {
    let predicted = model.forward(x)?.argmax(D::Minus1)?;
    predicted
        .eq(y)?
        .to_dtype(DType::F32)?
        .mean_all()?
        .to_scalar::<f32>()
}

/// When a run first reached 99% training and 95% validation accuracy (at the
/// `--every` grid; `None`: not within the budget).
#[derive(Clone, Copy, Default)]
struct Milestones {
    memorised: Option<usize>,
    generalised: Option<usize>,
}

/// Trains one model and records its milestones.
fn run(args: &Args, s: Setting, seed: u64) -> Result<Milestones, Box<dyn std::error::Error>> {
    let p = args.p;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pairs: Vec<(usize, usize)> = (0..p).flat_map(|a| (0..p).map(move |b| (a, b))).collect();
    pairs.shuffle(&mut rng);
    let n_train = (args.train_fraction * pairs.len() as f64).round() as usize;
    let (train_x, train_y) = encode(&pairs[..n_train], args)?;
    let (val_x, val_y) = encode(&pairs[n_train..], args)?;
    let varmap = VarMap::new();
    let vb = seeded_varbuilder(&varmap, seed, DType::F32, &Device::Cpu);
    let model = Mlp {
        embed: candle_nn::embedding(2 * p, args.width, vb.pp("embed"))?,
        hidden: candle_nn::linear(args.width, args.width, vb.pp("hidden"))?,
        head: candle_nn::linear(args.width, p, vb.pp("head"))?,
    };
    let name = match s.optimizer {
        "adamw" => OptimizerName::AdamW,
        "snr_adamw" => OptimizerName::SnrAdamW,
        "cautious_adamw" => OptimizerName::CautiousAdamW,
        other => return Err(format!("unknown optimizer {other}").into()),
    };
    let config = OptimConfig {
        name,
        lr: s.lr,
        weight_decay: s.wd,
        betas: Some([0.9, 0.98]),
        ..OptimConfig::default()
    };
    let mut opt = Optimizer::new(trainable(&varmap), &config);
    let batch = if args.batch_size == 0 {
        n_train
    } else {
        args.batch_size.min(n_train)
    };
    let mut order: Vec<u32> = (0..n_train as u32).collect();
    let mut cursor = n_train; // forces a shuffle before the first batch
    let mut out = Milestones::default();
    for step in 0..=args.max_steps {
        if step % args.every == 0 {
            let val = accuracy(&model, &val_x, &val_y)?;
            let train = accuracy(&model, &train_x, &train_y)?;
            if out.memorised.is_none() && train >= 0.99 {
                out.memorised = Some(step);
            }
            if args.verbose {
                eprintln!(
                    "{} lr {} wd {} seed {seed} step {step}: train acc {train:.3} val acc {val:.3}",
                    s.optimizer, s.lr, s.wd
                );
            }
            if val >= 0.95 {
                out.generalised = Some(step);
                return Ok(out);
            }
        }
        if cursor + batch > n_train {
            order.shuffle(&mut rng);
            cursor = 0;
        }
        let (x, y) = if batch == n_train {
            (train_x.clone(), train_y.clone())
        } else {
            let idx = Tensor::new(&order[cursor..cursor + batch], &Device::Cpu)?;
            (
                train_x.index_select(&idx, 0)?,
                train_y.index_select(&idx, 0)?,
            )
        };
        cursor += batch;
        let loss = candle_nn::loss::cross_entropy(&model.forward(&x)?, &y)?;
        let grads = opt.gradients(&loss.backward()?);
        opt.step(&grads, s.lr)?;
    }
    Ok(out)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

/// Steps for each seed (budget-capped) and a printed row per seed.
fn steps_over_seeds(
    args: &Args,
    s: Setting,
    seeds: impl Iterator<Item = u64>,
    label: &str,
) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for seed in seeds {
        let m = run(args, s, seed)?;
        let show = |x: Option<usize>| x.map_or(format!(">{}", args.max_steps), |s| s.to_string());
        println!(
            "| {label} | {} | {:e} | {} | {seed} | {} | {} |",
            s.optimizer,
            s.lr,
            s.wd,
            show(m.memorised),
            show(m.generalised)
        );
        out.push(m.generalised.unwrap_or(args.max_steps) as f64);
    }
    Ok(out)
}

/// Median of per-seed ratios `a / b` and a 90% bootstrap interval over seeds.
fn ratio_summary(a: &[f64], b: &[f64]) -> (f64, f64, f64) {
    let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y.max(1.0)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut medians: Vec<f64> = (0..2000)
        .map(|_| {
            let sample: Vec<f64> = (0..ratios.len())
                .map(|_| ratios[rng.random_range(0..ratios.len())])
                .collect();
            median(&sample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    let at = |q: f64| medians[((q * medians.len() as f64) as usize).min(medians.len() - 1)];
    (median(&ratios), at(0.05), at(0.95))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    args.validate()?;
    noether_equivariant::set_threads(0);
    println!(
        "| phase | optimizer | lr | wd | seed | steps to 99% train acc | steps to 95% val acc |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut steps: Vec<Vec<f64>> = Vec::new();
    for optimizer in &args.optimizers {
        // Tune lr and wd on the tuning seeds (skipped when the grid has one point).
        let mut best = Setting {
            optimizer,
            lr: args.lrs[0],
            wd: args.wds[0],
        };
        if args.lrs.len() * args.wds.len() > 1 && args.tune_seeds > 0 {
            let mut best_median = f64::INFINITY;
            for &lr in &args.lrs {
                for &wd in &args.wds {
                    let s = Setting { optimizer, lr, wd };
                    let seeds = TUNE_SEED_BASE..TUNE_SEED_BASE + args.tune_seeds;
                    let m = median(&steps_over_seeds(&args, s, seeds, "tune")?);
                    if m < best_median {
                        best_median = m;
                        best = s;
                    }
                }
            }
        }
        let row = steps_over_seeds(&args, best, 0..args.seeds, "eval")?;
        println!(
            "| eval | {optimizer} | {:e} | {} | median | | {} |",
            best.lr,
            best.wd,
            median(&row)
        );
        steps.push(row);
    }
    let find = |name: &str| args.optimizers.iter().position(|o| o == name);
    for (other, key) in [("snr_adamw", "snr"), ("cautious_adamw", "cautious")] {
        if let (Some(a), Some(s)) = (find("adamw"), find(other)) {
            let (m, lo, hi) = ratio_summary(&steps[a], &steps[s]);
            println!("median_speedup_{key}_vs_adamw={m:.3} interval_90=[{lo:.3}, {hi:.3}]");
        }
    }
    Ok(())
}

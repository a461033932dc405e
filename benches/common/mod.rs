//! Inputs shared by the model benchmarks: 32 jets of the bundled test set (50 leading
//! constituents + beams), one jet of exactly 50 constituents, paired timing rounds against
//! a reference in a child process, noether's AdamW as `noether train` steps it, and the
//! machine's sgemm peak.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use candle_nn::VarMap;
use noether::data::{batches, load, Batch, BatchConfig, Beams, JetSet};
use noether::train::{trainable, OptimConfig, Optimizer};

/// Jets per batch.
pub const BATCH: usize = 32;
/// Constituents per jet.
pub const N_MAX: usize = 50;

/// The count in environment variable `name` (`BENCH_THREADS`, `BENCH_PROFILE_STEPS`);
/// `None` when it is unset or not a count.
pub fn env_count(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The first 32 bundled test jets with `beams`, padded or truncated to `n_max`
/// constituents, and the test set they come from.
pub fn bundled_batch(beams: Beams, n_max: usize) -> (Batch, JetSet) {
    let jets = load(root().join("data/test.h5")).expect("bundled test set");
    let config = BatchConfig {
        beams,
        shuffle: false,
        ..BatchConfig::new(BATCH, n_max)
    };
    let indices: Vec<usize> = (0..BATCH).collect();
    let batch = batches(&jets, &indices, &config, 0)
        .expect("batch")
        .next()
        .expect("one batch");
    (batch, jets)
}

/// The first 32 bundled test jets with `beams`, and the first jet with at least 50
/// constituents, truncated to 50.
pub fn bundled_inputs(beams: Beams) -> (Batch, Vec<[f32; 4]>) {
    let (batch, jets) = bundled_batch(beams, N_MAX);
    let k = (0..jets.len())
        .find(|&i| jets.multiplicity(i) >= N_MAX)
        .expect("a 50-constituent jet");
    (batch, jets.constituents(k)[..N_MAX].to_vec())
}

/// Seconds per call of `f`, averaged over `reps` calls after one warm-up call.
pub fn per_rep(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    for _ in 0..reps {
        f();
    }
    start.elapsed().as_secs_f64() / reps as f64
}

/// The median seconds of `calls` single calls of `f` after `warmup` untimed ones: for
/// millisecond calls, where one stall of the VM would move a mean.
pub fn median_call(warmup: usize, calls: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut seconds: Vec<f64> = (0..calls)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

/// Mean seconds per call of `f` over `calls` calls, no warm-up (the training-step
/// figure of a paired round; `serve.py`'s `mean_call` is the reference's).
pub fn mean_call(calls: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..calls {
        f();
    }
    start.elapsed().as_secs_f64() / calls as f64
}

/// The largest `|ours - theirs| / max(|theirs|, floor)` between our logits and the
/// reference's JSON array of them.
///
/// # Panics
/// When `theirs` is not an array of numbers (a reference that answered wrongly).
pub fn worst_relative_difference(ours: &[f32], theirs: &serde_json::Value, floor: f64) -> f64 {
    ours.iter()
        .zip(theirs.as_array().expect("an array of logits"))
        .map(|(a, b)| {
            let b = b.as_f64().expect("logit");
            (f64::from(*a) - b).abs() / b.abs().max(floor)
        })
        .fold(0.0, f64::max)
}

/// A tensor's values as flat f32 on the host.
pub fn host(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .expect("host")
}

/// The median of `values` (the upper one of an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A Python reference kept running in a child process that answers one command per
/// line with one JSON line, so that a bench can interleave its own timings with the
/// reference's in paired rounds (`benches/compare/serve.py` is the other end).
pub struct Reference {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Reference {
    /// Starts `python3 SCRIPT ARGS...`; `None` when it cannot start or its first answer
    /// is not JSON. Also returns that first answer.
    pub fn start(script: &Path, args: &[&OsStr]) -> Option<(Self, serde_json::Value)> {
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let stdin = child.stdin.take()?;
        let stdout = BufReader::new(child.stdout.take()?);
        let mut reference = Self {
            child,
            stdin,
            stdout,
        };
        let first = reference.answer()?;
        Some((reference, first))
    }

    fn answer(&mut self) -> Option<serde_json::Value> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).ok()?;
        serde_json::from_str(&line).ok()
    }

    /// Sends `command` and returns the `seconds` of its answer.
    ///
    /// # Panics
    /// When the reference does not answer with `seconds` (it died or misread).
    pub fn ask(&mut self, command: &str) -> f64 {
        writeln!(self.stdin, "{command}").expect("command to the reference");
        self.answer()
            .and_then(|a| a["seconds"].as_f64())
            .unwrap_or_else(|| panic!("no answer from the reference to {command}"))
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Rounds of a paired-round bench: single jets first (a training burst slows the
/// single-jet calls that follow it on this VM, on either side), then training steps.
pub const ROUNDS: usize = 5;
/// Timed single-jet calls per round and side (the median is the round's figure).
pub const SINGLE_CALLS: usize = 21;
/// Training steps per round and side.
pub const TRAIN_STEPS: usize = 2;

/// One side of a paired-round bench.
pub trait Side {
    /// The median seconds of [`SINGLE_CALLS`] single-jet inferences.
    fn single(&mut self) -> f64;
    /// Seconds per training step over `steps` steps.
    fn train(&mut self, steps: usize) -> f64;
}

/// A steady state for `perf` (`BENCH_PROFILE_STEPS`): `warmup` training steps, then
/// `steps` more, whose mean is printed as `{who}: training step X ms over N steps`; with
/// `BENCH_PROFILE_SINGLE` set, `steps` rounds of [`SINGLE_CALLS`] single-jet inferences
/// instead (`{who}: single jet X ms, median of N rounds`).
pub fn profile_training(side: &mut impl Side, warmup: usize, steps: usize, who: &str) {
    if std::env::var_os("BENCH_PROFILE_SINGLE").is_some() {
        side.single();
        let mut rounds: Vec<f64> = (0..steps.max(1)).map(|_| side.single()).collect();
        rounds.sort_by(f64::total_cmp);
        println!(
            "{who}: single jet {:.3} ms, median of {} rounds",
            rounds[rounds.len() / 2] * 1e3,
            rounds.len()
        );
        return;
    }
    side.train(warmup);
    let step = side.train(steps);
    println!(
        "{who}: training step {:.1} ms over {steps} steps",
        step * 1e3
    );
}

/// One round's figures: single-jet seconds, seconds per training step.
pub type Round = (f64, f64);

/// Both sides' rounds: each round times our side, then the reference's, so that the
/// VM's drift (up to 50% within minutes) hits both sides of a round alike.
pub struct Rounds {
    /// Ours.
    pub ours: Vec<Round>,
    /// The reference's (empty without one).
    pub theirs: Vec<Round>,
}

impl Rounds {
    /// Runs [`ROUNDS`] rounds of single jets, one untimed training step per side, then
    /// [`ROUNDS`] rounds of [`TRAIN_STEPS`] training steps.
    pub fn run(ours: &mut impl Side, mut reference: Option<&mut Reference>) -> Self {
        let mut rounds = Self {
            ours: Vec::new(),
            theirs: Vec::new(),
        };
        for _ in 0..ROUNDS {
            rounds.ours.push((ours.single(), 0.0));
            if let Some(r) = reference.as_deref_mut() {
                rounds
                    .theirs
                    .push((r.ask(&format!("single {SINGLE_CALLS}")), 0.0));
            }
        }
        ours.train(1);
        if let Some(r) = reference.as_deref_mut() {
            r.ask("warmup 1");
        }
        for round in 0..ROUNDS {
            rounds.ours[round].1 = ours.train(TRAIN_STEPS);
            if let Some(r) = reference.as_deref_mut() {
                rounds.theirs[round].1 = r.ask(&format!("train {TRAIN_STEPS}"));
            }
        }
        rounds
    }

    /// The medians over rounds of a side's (single-jet seconds, training-step seconds).
    pub fn medians(side: &[Round]) -> Round {
        let single: Vec<f64> = side.iter().map(|r| r.0).collect();
        let train: Vec<f64> = side.iter().map(|r| r.1).collect();
        (median(&single), median(&train))
    }

    /// Per round, the reference's time over ours: (training, single jet).
    pub fn ratios(&self) -> (Vec<f64>, Vec<f64>) {
        let pick = |f: fn(&Round) -> f64| -> Vec<f64> {
            self.ours
                .iter()
                .zip(&self.theirs)
                .map(|(o, t)| f(t) / f(o))
                .collect()
        };
        (pick(|r| r.1), pick(|r| r.0))
    }

    /// Prints the per-round ratios and single-jet times; returns the median ratios
    /// (training, single jet), NaN without a reference.
    pub fn report_ratios(&self, reference: &str) -> (f64, f64) {
        if self.theirs.is_empty() {
            return (f64::NAN, f64::NAN);
        }
        let (train, single) = self.ratios();
        let show = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let ms = |side: &[Round]| show(&side.iter().map(|r| r.0 * 1e3).collect::<Vec<_>>());
        println!(
            "ratios per round: training {}; single jet {}",
            show(&train),
            show(&single)
        );
        println!(
            "single jet per round (ms): noether {}; {reference} {}",
            ms(&self.ours),
            ms(&self.theirs)
        );
        (median(&train), median(&single))
    }
}

/// GFLOP/s of a large single-precision matrix product on the configured threads (the
/// same GEMM candle and the fused kernels call): the peak the training figures are
/// measured against.
pub fn sgemm_peak_gflops() -> f64 {
    let n = 1024;
    let a = Tensor::ones((n, n), DType::F32, &Device::Cpu).expect("a");
    let b = Tensor::ones((n, n), DType::F32, &Device::Cpu).expect("b");
    let seconds = per_rep(5, || {
        a.matmul(&b).expect("sgemm");
    });
    2.0 * (n as f64).powi(3) / seconds / 1e9
}

/// noether-train's AdamW over every trainable variable of a model (BatchNorm's running
/// statistics excluded), as `noether train` steps them, with `torch.optim.AdamW`'s
/// defaults (lr 1e-3, weight decay 0.01), as the reference scripts use.
pub struct NoetherAdamW {
    opt: Optimizer,
}

impl NoetherAdamW {
    /// The optimizer over `varmap`'s variables in name order.
    pub fn new(varmap: &VarMap) -> Self {
        Self {
            opt: Optimizer::new(trainable(varmap), &OptimConfig::default()),
        }
    }

    /// The backward pass of `loss` and one step.
    pub fn backward_step(&mut self, loss: &Tensor) {
        let grads = self.opt.gradients(&loss.backward().expect("backward"));
        self.opt
            .step(&grads, OptimConfig::default().lr)
            .expect("step");
    }
}

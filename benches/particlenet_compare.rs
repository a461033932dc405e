//! ParticleNet (the JetClass checkpoint's architecture, 366k parameters) against
//! weaver-core's ParticleNet on PyTorch (`benches/compare/particlenet_torch.py`) in the
//! same invocation, on the same inputs (32 jets of the bundled test set with the
//! JetClass_kin inputs, 128 positions) and threads (`BENCH_THREADS`, default 1): seconds
//! per training step (forward + backward + AdamW) and per single-jet inference, the
//! logit agreement on the batch, and the ratios: five rounds of single jets, then five
//! of training steps, each timing our side and then PyTorch's (kept running in a child
//! process), and the median of the rounds' ratios, so that the VM's drift hits both
//! sides of a ratio alike. Ends with
//! `particlenet_train_speedup_vs_torch=X` and `particlenet_single_jet_speedup_vs_torch=X`.
//!
//! `cargo bench --bench particlenet_compare`. Needs ../shared (the checkpoint) and
//! python3 with torch and weaver-core for the comparison; without them only our figures
//! print.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use noether::equivariant::{
    inference_varbuilder, seeded_varbuilder, Mode, PaddedJets, ParticleNet, ParticleNetConfig,
    ParticleNetInput, Placement,
};
use noether::transfer::{load_checkpoint, LoadOptions};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

// candle allocates a buffer per operation; see `noether::equivariant::CachingAllocator`.
#[global_allocator]
static ALLOCATOR: noether::equivariant::CachingAllocator = noether::equivariant::CachingAllocator;

#[path = "common/mod.rs"]
mod common;
use common::{bundled_batch, host, median_call, root, BATCH};

fn write_inputs(path: &Path, input: &ParticleNetInput, labels: &[u8]) {
    let (b, length, features) = input.features.dims3().expect("features");
    let mut raw = Vec::new();
    for v in [b, length, features] {
        raw.extend((v as u32).to_le_bytes());
    }
    let labels: Vec<f32> = labels.iter().map(|&l| f32::from(l)).collect();
    for x in host(&input.points)
        .iter()
        .chain(&host(&input.features))
        .chain(&host(&input.mask))
        .chain(&labels)
    {
        raw.extend(x.to_le_bytes());
    }
    std::fs::write(path, raw).expect("write inputs");
}

/// Rounds of interleaved measurements (of single jets, then of training steps): each
/// round times our side, then PyTorch's, so that the VM's drift (up to 50% within
/// minutes) hits both sides of a round alike; the speedups printed are the medians of
/// the rounds' ratios.
const ROUNDS: usize = 5;
/// Timed single-jet calls per round and side (the median is the round's figure).
const SINGLE_CALLS: usize = 21;
/// Training steps per round and side.
const TRAIN_STEPS: usize = 2;

/// Our side: the training model with its optimizer and the inference model.
struct Ours<'a> {
    model: ParticleNet,
    inference: ParticleNet,
    opt: AdamW,
    rng: ChaCha8Rng,
    input: &'a ParticleNetInput,
    single: &'a ParticleNetInput,
    targets: Tensor,
}

impl<'a> Ours<'a> {
    fn new(
        config: &ParticleNetConfig,
        varmap: &VarMap,
        input: &'a ParticleNetInput,
        single: &'a ParticleNetInput,
        labels: &[u8],
    ) -> Self {
        let model = ParticleNet::new(
            config,
            &seeded_varbuilder(varmap, 0, DType::F32, &Device::Cpu),
        )
        .expect("model");
        let inference = ParticleNet::new(
            config,
            &inference_varbuilder(varmap, DType::F32, &Device::Cpu),
        )
        .expect("inference model");
        let targets: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
        let params = ParamsAdamW {
            lr: 1e-3,
            ..ParamsAdamW::default()
        };
        Self {
            model,
            inference,
            opt: AdamW::new(varmap.all_vars(), params).expect("AdamW"),
            rng: ChaCha8Rng::seed_from_u64(0),
            input,
            single,
            targets: Tensor::from_vec(targets, BATCH, &Device::Cpu).expect("labels"),
        }
    }

    /// Eval logits of the batch.
    fn logits(&self) -> Vec<f32> {
        host(
            &self
                .inference
                .forward(self.input, &mut Mode::Eval)
                .expect("forward"),
        )
    }

    /// The median seconds of a single-jet inference.
    fn single(&self) -> f64 {
        median_call(2, SINGLE_CALLS, || {
            self.inference
                .forward(self.single, &mut Mode::Eval)
                .expect("forward");
        })
    }

    /// Seconds per training step over `steps` steps.
    fn train(&mut self, steps: usize) -> f64 {
        let start = Instant::now();
        for _ in 0..steps {
            let out = self
                .model
                .forward(self.input, &mut Mode::Train(&mut self.rng))
                .expect("forward");
            let loss = candle_nn::loss::cross_entropy(&out, &self.targets).expect("loss");
            self.opt.backward_step(&loss).expect("step");
        }
        start.elapsed().as_secs_f64() / steps as f64
    }
}

/// weaver-core on PyTorch, running in a child process that answers one command per line
/// (`benches/compare/particlenet_torch.py`).
struct Torch {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Torch {
    /// Starts the reference on the batch; `None` when it cannot run. Also returns its
    /// first answer (eval logits and the torch version).
    fn start(
        checkpoint: &Path,
        input: &ParticleNetInput,
        labels: &[u8],
        threads: usize,
    ) -> Option<(Self, serde_json::Value)> {
        let inputs = std::env::temp_dir().join("noether_particlenet_compare.bin");
        write_inputs(&inputs, input, labels);
        let mut child = Command::new("python3")
            .arg(root().join("benches/compare/particlenet_torch.py"))
            .arg(checkpoint)
            .arg(&inputs)
            .arg(threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let stdin = child.stdin.take()?;
        let stdout = BufReader::new(child.stdout.take()?);
        let mut torch = Self {
            child,
            stdin,
            stdout,
        };
        let first = torch.answer()?;
        Some((torch, first))
    }

    fn answer(&mut self) -> Option<serde_json::Value> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).ok()?;
        serde_json::from_str(&line).ok()
    }

    /// Sends `command` and returns the `seconds` of its answer.
    fn ask(&mut self, command: &str) -> f64 {
        writeln!(self.stdin, "{command}").expect("command to the reference");
        self.answer()
            .and_then(|a| a["seconds"].as_f64())
            .unwrap_or_else(|| panic!("no answer from the reference to {command}"))
    }
}

impl Drop for Torch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The median of `values`.
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One round's figures: single-jet seconds, seconds per training step.
type Round = (f64, f64);

/// Ours and PyTorch's rounds (the latter empty without it).
fn interleaved_rounds(ours: &mut Ours, mut torch: Option<&mut Torch>) -> (Vec<Round>, Vec<Round>) {
    // Single jets first, then training: a training burst slows the single-jet calls
    // that follow it on this VM, on either side.
    let (mut our_rounds, mut their_rounds) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        our_rounds.push((ours.single(), 0.0));
        if let Some(t) = torch.as_deref_mut() {
            their_rounds.push((t.ask(&format!("single {SINGLE_CALLS}")), 0.0));
        }
    }
    ours.train(1);
    if let Some(t) = torch.as_deref_mut() {
        t.ask("warmup 1");
    }
    for round in 0..ROUNDS {
        our_rounds[round].1 = ours.train(TRAIN_STEPS);
        if let Some(t) = torch.as_deref_mut() {
            their_rounds[round].1 = t.ask(&format!("train {TRAIN_STEPS}"));
        }
    }
    (our_rounds, their_rounds)
}

fn main() {
    let threads: usize = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    noether::equivariant::set_threads(threads);
    // The first 32 bundled test jets with all their constituents (up to 128).
    let (batch, _) = bundled_batch(noether::data::Beams::None, 128);
    let (momenta, mask, labels, nodes) = (
        batch
            .momenta
            .iter()
            .map(|&x| f64::from(x))
            .collect::<Vec<f64>>(),
        batch.mask,
        batch.labels,
        batch.particles,
    );
    let config = ParticleNetConfig::default();
    let build = |jets: usize| {
        let padded = PaddedJets {
            momenta: &momenta[..jets * nodes * 4],
            mask: &mask[..jets * nodes],
            jets,
            nodes,
            beams: 0,
        };
        ParticleNetInput::build(&config.inputs, &padded, &Placement::cpu()).expect("inputs")
    };
    let (input, single) = (build(BATCH), build(1));
    let varmap = VarMap::new();
    // Built once so that the variables exist, then loaded.
    ParticleNet::new(
        &config,
        &seeded_varbuilder(&varmap, 0, DType::F32, &Device::Cpu),
    )
    .expect("model");
    let checkpoint = root().join("../shared/reference/particlenet/ParticleNet_kin.pt");
    let strict = LoadOptions {
        strict: true,
        ..LoadOptions::lenient()
    };
    let official = checkpoint.exists() && load_checkpoint(&checkpoint, &varmap, &strict).is_ok();
    let mut ours = Ours::new(&config, &varmap, &input, &single, &labels);
    let logits = ours.logits();
    let longest = mask
        .chunks(nodes)
        .map(|m| m.iter().filter(|&&v| v > 0.0).count())
        .max()
        .unwrap_or(0);
    println!("ParticleNet (JetClass size, 366k parameters), {BATCH} jets of up to {longest} constituents (128 positions), {threads} thread(s), {ROUNDS} interleaved rounds");
    let mut torch = if official {
        Torch::start(&checkpoint, &input, &labels, threads)
    } else {
        println!("the JetClass checkpoint is absent: weaver-core comparison skipped");
        None
    };
    if official && torch.is_none() {
        println!("weaver-core on PyTorch unavailable (python3 with torch and weaver-core needed)");
    }
    let (our_rounds, their_rounds) = interleaved_rounds(&mut ours, torch.as_mut().map(|(t, _)| t));
    report(
        &our_rounds,
        &their_rounds,
        torch.as_ref().map(|(_, first)| first),
        &logits,
    );
}

/// Prints both sides' medians, the logit agreement and the ratios.
fn report(
    our_rounds: &[Round],
    their_rounds: &[Round],
    first: Option<&serde_json::Value>,
    logits: &[f32],
) {
    let side = |rounds: &[(f64, f64)]| {
        let single: Vec<f64> = rounds.iter().map(|r| r.0).collect();
        let train: Vec<f64> = rounds.iter().map(|r| r.1).collect();
        (median(&single), median(&train))
    };
    let (our_single, our_train) = side(our_rounds);
    println!(
        "noether: training step {:.1} ms ({:.1} jets/s); single-jet {:.2} ms (medians over rounds)",
        our_train * 1e3,
        BATCH as f64 / our_train,
        our_single * 1e3
    );
    let Some(first) = first else {
        return;
    };
    let worst = logits
        .iter()
        .zip(first["logits"].as_array().expect("logits"))
        .map(|(a, b)| {
            let b = b.as_f64().expect("logit");
            (f64::from(*a) - b).abs() / b.abs().max(1e-2)
        })
        .fold(0.0, f64::max);
    let (their_single, their_train) = side(their_rounds);
    println!(
        "weaver-core ParticleNet (torch {}): training step {:.1} ms; single-jet {:.2} ms (medians over rounds)",
        first["torch"].as_str().unwrap_or("?"),
        their_train * 1e3,
        their_single * 1e3
    );
    println!("agreement on the batch (eval logits): worst relative difference {worst:.1e}");
    let ratios = |pick: fn(&(f64, f64)) -> f64| -> Vec<f64> {
        our_rounds
            .iter()
            .zip(their_rounds)
            .map(|(o, t)| pick(t) / pick(o))
            .collect()
    };
    let (train, single) = (ratios(|r| r.1), ratios(|r| r.0));
    let show = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "ratios per round: training {}; single jet {}",
        show(&train),
        show(&single)
    );
    let ms = |rounds: &[(f64, f64)]| show(&rounds.iter().map(|r| r.0 * 1e3).collect::<Vec<_>>());
    println!(
        "single jet per round (ms): noether {}; weaver-core {}",
        ms(our_rounds),
        ms(their_rounds)
    );
    println!("particlenet_train_speedup_vs_torch={:.2}", median(&train));
    println!(
        "particlenet_single_jet_speedup_vs_torch={:.2}",
        median(&single)
    );
}

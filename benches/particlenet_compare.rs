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

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
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
use common::{
    bundled_batch, env_count, host, mean_call, median_call, root, worst_relative_difference,
    NoetherAdamW, Reference, Rounds, Side, BATCH, ROUNDS, SINGLE_CALLS,
};

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

/// Our side: the training model with its optimizer and the inference model.
struct Ours<'a> {
    model: ParticleNet,
    inference: ParticleNet,
    opt: NoetherAdamW,
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
        Self {
            model,
            inference,
            opt: NoetherAdamW::new(varmap),
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
}

impl Side for Ours<'_> {
    fn single(&mut self) -> f64 {
        median_call(2, SINGLE_CALLS, || {
            self.inference
                .forward(self.single, &mut Mode::Eval)
                .expect("forward");
        })
    }

    fn train(&mut self, steps: usize) -> f64 {
        mean_call(steps, || {
            let out = self
                .model
                .forward(self.input, &mut Mode::Train(&mut self.rng))
                .expect("forward");
            let loss = candle_nn::loss::cross_entropy(&out, &self.targets).expect("loss");
            self.opt.backward_step(&loss);
        })
    }
}

/// weaver-core on PyTorch on the batch, started in a child process
/// (`benches/compare/particlenet_torch.py`); `None` when it cannot run. Also returns its
/// first answer (eval logits and the torch version).
fn start_torch(
    checkpoint: &Path,
    input: &ParticleNetInput,
    labels: &[u8],
    threads: usize,
) -> Option<(Reference, serde_json::Value)> {
    let inputs = std::env::temp_dir().join("noether_particlenet_compare.bin");
    write_inputs(&inputs, input, labels);
    Reference::start(
        &root().join("benches/compare/particlenet_torch.py"),
        &[
            checkpoint.as_os_str(),
            inputs.as_os_str(),
            threads.to_string().as_ref(),
        ],
    )
}

fn main() {
    let threads = env_count("BENCH_THREADS").unwrap_or(1);
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
        start_torch(&checkpoint, &input, &labels, threads)
    } else {
        println!("the JetClass checkpoint is absent: weaver-core comparison skipped");
        None
    };
    if official && torch.is_none() {
        println!("weaver-core on PyTorch unavailable (python3 with torch and weaver-core needed)");
    }
    let rounds = Rounds::run(&mut ours, torch.as_mut().map(|(t, _)| t));
    report(&rounds, torch.as_ref().map(|(_, first)| first), &logits);
}

/// Prints both sides' medians, the logit agreement and the ratios.
fn report(rounds: &Rounds, first: Option<&serde_json::Value>, logits: &[f32]) {
    let (our_single, our_train) = Rounds::medians(&rounds.ours);
    println!(
        "noether: training step {:.1} ms ({:.1} jets/s); single-jet {:.2} ms (medians over rounds)",
        our_train * 1e3,
        BATCH as f64 / our_train,
        our_single * 1e3
    );
    let Some(first) = first else {
        return;
    };
    let worst = worst_relative_difference(logits, &first["logits"], 1e-2);
    let (their_single, their_train) = Rounds::medians(&rounds.theirs);
    println!(
        "weaver-core ParticleNet (torch {}): training step {:.1} ms; single-jet {:.2} ms (medians over rounds)",
        first["torch"].as_str().unwrap_or("?"),
        their_train * 1e3,
        their_single * 1e3
    );
    println!("agreement on the batch (eval logits): worst relative difference {worst:.1e}");
    let (train, single) = rounds.report_ratios("weaver-core");
    println!("particlenet_train_speedup_vs_torch={train:.2}");
    println!("particlenet_single_jet_speedup_vs_torch={single:.2}");
}

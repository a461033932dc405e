//! ParticleNet (the JetClass checkpoint's architecture, 366k parameters) against
//! weaver-core's ParticleNet on PyTorch (`benches/compare/particlenet_torch.py`) in the
//! same invocation, on the same inputs (32 jets of the bundled test set with the
//! JetClass_kin inputs, 128 positions) and threads (`BENCH_THREADS`, default 1): seconds
//! per training step (forward + backward + AdamW) and per single-jet inference (the
//! median of 101 calls on each side), the ratios, and the logit agreement on the batch.
//! Ends with
//! `particlenet_train_speedup_vs_torch=X` and `particlenet_single_jet_speedup_vs_torch=X`.
//!
//! `cargo bench --bench particlenet_compare`. Needs ../shared (the checkpoint) and
//! python3 with torch and weaver-core for the comparison; without them only our figures
//! print.

use std::path::Path;
use std::process::Command;

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
use common::{bundled_batch, host, median_call, per_rep, root, BATCH};

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

/// Timed single-jet calls on each side (the median is reported).
const SINGLE_CALLS: usize = 101;

/// Our figures: eval logits of the batch, seconds per training step and per single jet.
struct Ours {
    logits: Vec<f32>,
    train_s: f64,
    single_s: f64,
}

fn measure(
    config: &ParticleNetConfig,
    varmap: &VarMap,
    input: &ParticleNetInput,
    single: &ParticleNetInput,
    labels: &[u8],
) -> Ours {
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
    let logits = host(&inference.forward(input, &mut Mode::Eval).expect("forward"));
    let single_s = median_call(5, SINGLE_CALLS, || {
        inference.forward(single, &mut Mode::Eval).expect("forward");
    });
    let targets: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
    let targets = Tensor::from_vec(targets, BATCH, &Device::Cpu).expect("labels");
    let params = ParamsAdamW {
        lr: 1e-3,
        ..ParamsAdamW::default()
    };
    let mut opt = AdamW::new(varmap.all_vars(), params).expect("AdamW");
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let train_s = per_rep(5, || {
        let out = model
            .forward(input, &mut Mode::Train(&mut rng))
            .expect("forward");
        let loss = candle_nn::loss::cross_entropy(&out, &targets).expect("loss");
        opt.backward_step(&loss).expect("step");
    });
    Ours {
        logits,
        train_s,
        single_s,
    }
}

/// weaver-core on PyTorch on the same batch; `None` when it cannot run.
fn run_torch(
    checkpoint: &Path,
    input: &ParticleNetInput,
    labels: &[u8],
    threads: usize,
) -> Option<serde_json::Value> {
    let inputs = std::env::temp_dir().join("noether_particlenet_compare.bin");
    write_inputs(&inputs, input, labels);
    Command::new("python3")
        .arg(root().join("benches/compare/particlenet_torch.py"))
        .arg(checkpoint)
        .arg(&inputs)
        .arg(threads.to_string())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice(&o.stdout).ok())
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
    let ours = measure(&config, &varmap, &input, &single, &labels);
    let longest = mask
        .chunks(nodes)
        .map(|m| m.iter().filter(|&&v| v > 0.0).count())
        .max()
        .unwrap_or(0);
    println!("ParticleNet (JetClass size, 366k parameters), {BATCH} jets of up to {longest} constituents (128 positions), {threads} thread(s)");
    println!(
        "noether: training step {:.1} ms ({:.1} jets/s); single-jet {:.2} ms",
        ours.train_s * 1e3,
        BATCH as f64 / ours.train_s,
        ours.single_s * 1e3
    );
    if !official {
        println!("the JetClass checkpoint is absent: weaver-core comparison skipped");
        return;
    }
    let Some(torch) = run_torch(&checkpoint, &input, &labels, threads) else {
        println!("weaver-core on PyTorch unavailable (python3 with torch and weaver-core needed)");
        return;
    };
    let get = |key: &str| torch[key].as_f64().expect(key);
    let worst = ours
        .logits
        .iter()
        .zip(torch["logits"].as_array().expect("logits"))
        .map(|(a, b)| {
            let b = b.as_f64().expect("logit");
            (f64::from(*a) - b).abs() / b.abs().max(1e-2)
        })
        .fold(0.0, f64::max);
    let (t_train, t_single) = (get("train_s"), get("single_s"));
    println!(
        "weaver-core ParticleNet (torch {}): training step {:.1} ms; single-jet {:.2} ms",
        torch["torch"].as_str().unwrap_or("?"),
        t_train * 1e3,
        t_single * 1e3
    );
    println!("agreement on the batch (eval logits): worst relative difference {worst:.1e}");
    println!(
        "particlenet_train_speedup_vs_torch={:.2}",
        t_train / ours.train_s
    );
    println!(
        "particlenet_single_jet_speedup_vs_torch={:.2}",
        t_single / ours.single_s
    );
}

//! L-GATr-slim at the paper's size 0 against the `lgatr` 2.0 package's `LGATrSlim` on
//! PyTorch (`benches/compare/lgatr_slim_torch.py`) in the same invocation, with the same
//! weights (noether's seeded ones, loaded by the package with its own state-dict keys),
//! the same tokens (32 jets of the bundled test set, 50 leading constituents, 3 spurions
//! and the class token) and the same threads (`BENCH_THREADS`, default 1): seconds per
//! training step (forward + backward + AdamW) and per single-jet inference, the logit
//! agreement on the batch and the ratios, measured in paired rounds with the package kept
//! running in a child process (`common::Rounds`: medians of the rounds' ratios). Ends
//! with `lgatr_slim_train_speedup_vs_torch=X` and `lgatr_slim_single_jet_speedup_vs_torch=X`.
//!
//! `cargo bench --bench lgatr_slim_compare`. Needs python3 with torch, lgatr==2.0.0 and
//! safetensors for the comparison; without them only our figures print.
//! `BENCH_PROFILE_STEPS=N` runs only N of our training steps (after one warm-up step) and
//! prints their mean, without the package: a steady state for `perf record`; with
//! `BENCH_PROFILE_SINGLE=1`, N rounds of single-jet inference instead.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use noether::data::Beams;
use noether::equivariant::{
    inference_varbuilder, seeded_varbuilder, LGatrSlim, LGatrSlimConfig, Mode, PaddedJets,
    Placement, TaggerModel, TokenInput, LGATR_SPURIONS,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

// candle allocates a buffer per operation; see `noether::equivariant::CachingAllocator`.
#[global_allocator]
static ALLOCATOR: noether::equivariant::CachingAllocator = noether::equivariant::CachingAllocator;

#[path = "common/mod.rs"]
mod common;
use common::{
    bundled_inputs, env_count, host, mean_call, median_call, profile_training, root,
    sgemm_peak_gflops, worst_relative_difference, NoetherAdamW, Reference, Rounds, Side, BATCH,
    N_MAX, ROUNDS, SINGLE_CALLS,
};

/// Appends the tokens (and labels, when given) in the layout the script reads.
fn write_tokens(raw: &mut Vec<u8>, input: &TokenInput, labels: Option<&[u8]>) {
    let (jets, tokens, scalars) = input.scalars.dims3().expect("scalars");
    for v in [jets, tokens, scalars] {
        raw.extend((v as u32).to_le_bytes());
    }
    let labels: Vec<f32> = labels
        .unwrap_or_default()
        .iter()
        .map(|&l| f32::from(l))
        .collect();
    for x in host(&input.vectors)
        .iter()
        .chain(&host(&input.scalars))
        .chain(&host(&input.mask))
        .chain(&labels)
    {
        raw.extend(x.to_le_bytes());
    }
}

fn tokens(model: &LGatrSlim, momenta: &[f32], mask: &[f32], jets: usize) -> TokenInput {
    let wide: Vec<f64> = momenta.iter().map(|&x| f64::from(x)).collect();
    let padded = PaddedJets {
        momenta: &wide,
        mask,
        jets,
        nodes: mask.len() / jets,
        beams: LGATR_SPURIONS.len(),
    };
    model.input(&padded, &Placement::cpu()).expect("tokens")
}

fn main() {
    let threads = env_count("BENCH_THREADS").unwrap_or(1);
    noether::equivariant::set_threads(threads);
    let config = LGatrSlimConfig::default();
    let varmap = VarMap::new();
    let model = LGatrSlim::new(
        &config,
        &seeded_varbuilder(&varmap, 0, DType::F32, &Device::Cpu),
    )
    .expect("model");
    let inference = LGatrSlim::new(
        &config,
        &inference_varbuilder(&varmap, DType::F32, &Device::Cpu),
    )
    .expect("inference model");
    let (batch, single_jet) = bundled_inputs(Beams::Prepend(&LGATR_SPURIONS));
    let input = tokens(&model, &batch.momenta, &batch.mask, BATCH);
    let mut one: Vec<f32> = LGATR_SPURIONS.iter().flatten().copied().collect();
    one.extend(single_jet.iter().flatten());
    let single = tokens(&model, &one, &vec![1.0; LGATR_SPURIONS.len() + N_MAX], 1);
    let step_flops = TrainingFlops::new(&config, &batch.mask);

    // The package gets the weights as initialised, before our training steps move them.
    let files = write_inputs(&varmap, &input, &single, &batch.labels);
    let logits = host(
        &inference
            .forward_t(&input, &mut Mode::Eval)
            .expect("forward"),
    );
    let targets: Vec<u32> = batch.labels.iter().map(|&l| u32::from(l)).collect();
    let mut ours = Ours {
        model,
        inference,
        opt: NoetherAdamW::new(&varmap),
        rng: ChaCha8Rng::seed_from_u64(0),
        input,
        single,
        targets: Tensor::from_vec(targets, BATCH, &Device::Cpu).expect("labels"),
    };
    if let Some(steps) = env_count("BENCH_PROFILE_STEPS") {
        profile_training(&mut ours, 1, steps, "noether");
        return;
    }
    let mut torch = start_torch(&files, threads);
    let rounds = Rounds::run(&mut ours, torch.as_mut().map(|(t, _)| t));
    let (single_s, train_s) = Rounds::medians(&rounds.ours);
    let peak = sgemm_peak_gflops();
    let params: usize = noether::equivariant::parameter_count(&varmap);
    println!(
        "L-GATr-slim size 0 ({params} parameters), {BATCH} jets x ({N_MAX} constituents + 3 spurions + class token), {threads} thread(s), {ROUNDS} interleaved rounds"
    );
    println!(
        "noether: training step {:.1} ms ({:.1} jets/s); single-jet {:.2} ms (medians over rounds)",
        train_s * 1e3,
        BATCH as f64 / train_s,
        single_s * 1e3
    );
    step_flops.report(train_s, peak);
    let Some((_, first)) = &torch else {
        println!("lgatr on PyTorch unavailable (python3 with torch, lgatr==2.0.0, safetensors)");
        println!(
            "lgatr_slim_train_gflops_fraction_of_peak={:.3}",
            step_flops.fraction_of_peak(train_s, peak)
        );
        return;
    };
    let worst = worst_relative_difference(&logits, &first["logits"], 1e-2);
    let (t_single, t_train) = Rounds::medians(&rounds.theirs);
    println!(
        "lgatr 2.0 LGATrSlim (torch {}): training step {:.1} ms; single-jet {:.2} ms (medians over rounds)",
        first["torch"].as_str().unwrap_or("?"),
        t_train * 1e3,
        t_single * 1e3
    );
    println!("agreement on the batch (eval logits): worst relative difference {worst:.1e}");
    let (train, single) = rounds.report_ratios("lgatr");
    println!(
        "products at the sgemm peak against half the package's step: {:.1} ms of {:.1} ms",
        step_flops.real / peak / 1e6,
        t_train * 1e3 / 2.0
    );
    println!("lgatr_slim_train_speedup_vs_torch={train:.2}");
    println!("lgatr_slim_single_jet_speedup_vs_torch={single:.2}");
    println!(
        "lgatr_slim_train_gflops_fraction_of_peak={:.3}",
        step_flops.fraction_of_peak(train_s, peak)
    );
}

/// The arithmetic of one training step (forward + backward ~ 3x the forward's matrix
/// products, as `forward_flops` counts them): on the batch's real tokens, which our kernel
/// computes, and on the padded batch, which the package computes.
struct TrainingFlops {
    real: f64,
    padded: f64,
}

impl TrainingFlops {
    fn new(config: &LGatrSlimConfig, mask: &[f32]) -> Self {
        let nodes = mask.len() / BATCH;
        let flops = |n: usize| 3.0 * LGatrSlim::forward_flops(config, n) as f64;
        let real = mask
            .chunks(nodes)
            .map(|jet| flops(jet.iter().filter(|&&m| m > 0.0).count()))
            .sum();
        Self {
            real,
            padded: BATCH as f64 * flops(nodes),
        }
    }

    fn fraction_of_peak(&self, step_s: f64, peak_gflops: f64) -> f64 {
        self.real / step_s / 1e9 / peak_gflops
    }

    fn report(&self, step_s: f64, peak_gflops: f64) {
        println!(
            "training step: {:.2} GFLOP of matrix products on the real tokens ({:.2} padded); {:.1} GFLOP/s against an sgemm peak of {peak_gflops:.1} GFLOP/s (1024^3, same threads)",
            self.real / 1e9,
            self.padded / 1e9,
            self.real / step_s / 1e9,
        );
    }
}

/// Our side: the training model with its optimizer, the inference model and the tokens.
struct Ours {
    model: LGatrSlim,
    inference: LGatrSlim,
    opt: NoetherAdamW,
    rng: ChaCha8Rng,
    input: TokenInput,
    single: TokenInput,
    targets: Tensor,
}

impl Side for Ours {
    fn single(&mut self) -> f64 {
        median_call(2, SINGLE_CALLS, || {
            self.inference
                .forward_t(&self.single, &mut Mode::Eval)
                .expect("forward");
        })
    }

    fn train(&mut self, steps: usize) -> f64 {
        mean_call(steps, || {
            let out = self
                .model
                .forward_t(&self.input, &mut Mode::Train(&mut self.rng))
                .expect("forward");
            let loss = candle_nn::loss::cross_entropy(&out, &self.targets).expect("loss");
            self.opt.backward_step(&loss);
        })
    }
}

/// Writes the weights and the tokens for the script: `(weights, inputs)` paths.
fn write_inputs(
    varmap: &VarMap,
    input: &TokenInput,
    single: &TokenInput,
    labels: &[u8],
) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir();
    let (weights, inputs) = (
        dir.join("noether_lgatr_slim_compare.safetensors"),
        dir.join("noether_lgatr_slim_compare.bin"),
    );
    varmap.save(&weights).expect("save weights");
    let mut raw = Vec::new();
    write_tokens(&mut raw, input, Some(labels));
    write_tokens(&mut raw, single, None);
    std::fs::write(&inputs, raw).expect("write inputs");
    (weights, inputs)
}

/// The package on PyTorch with our weights and tokens, started in a child process;
/// `None` when it cannot run. Also returns its first answer (eval logits of the batch).
fn start_torch(
    (weights, inputs): &(PathBuf, PathBuf),
    threads: usize,
) -> Option<(Reference, serde_json::Value)> {
    Reference::start(
        &root().join("benches/compare/lgatr_slim_torch.py"),
        &[
            weights.as_os_str(),
            inputs.as_os_str(),
            threads.to_string().as_ref(),
        ],
    )
}

//! LorentzNet and PELICAN speed against PyTorch references (`benches/compare/
//! lorentznet_torch.py`, written like the authors' code; `pelican_torch.py`, noether's
//! PELICAN in PyTorch checked against noether's logits) in the same invocation, on the same inputs (32 jets
//! of the bundled test set, 50 constituents + 2 beams) and the same thread count
//! (`BENCH_THREADS`, default 1). Prints training jets/s (forward + backward + AdamW step)
//! and single-jet inference ms/jet for both, the ratios, the logit agreement on the
//! batch, and achieved GFLOP/s against the machine's sgemm peak measured in the same run
//! (a 1024^3 product on the same threads). The references stay running in child
//! processes and each model is measured in paired rounds (`common::Rounds`: five of
//! single jets, then five of training steps, each timing our side, then PyTorch's); the
//! ratios are the medians of the rounds' ratios, each side's figures the medians of its
//! rounds. Ends with one `name=value` line per figure for scripts (`nan` where a figure
//! could not be measured).
//!
//! `cargo bench --bench model_compare` (`BENCH_THREADS=2 cargo bench --bench
//! model_compare` for both cores). Needs ../shared (official checkpoint) and python3 with
//! torch, safetensors and h5py for the comparison; without them only our figures print.
//! `BENCH_PROFILE_STEPS=N` runs only N of our PELICAN training steps (after three
//! warm-up steps; LorentzNet's with `BENCH_MODEL=lorentznet`) and prints their mean,
//! without PyTorch: a steady state for `perf`; with `BENCH_PROFILE_SINGLE=1`, N rounds of
//! single-jet inference instead.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use noether::data::{Batch, Beams};
use noether::equivariant::{
    inference_varbuilder, seeded_varbuilder, LorentzNet, LorentzNetConfig, LorentzNetInput, Mode,
};
use noether::transfer::{load_checkpoint, LoadOptions};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

// candle allocates a buffer per operation; see `noether::equivariant::CachingAllocator`.
#[global_allocator]
static ALLOCATOR: noether::equivariant::CachingAllocator = noether::equivariant::CachingAllocator;

#[path = "common/mod.rs"]
mod common;
#[path = "model_compare/pelican.rs"]
mod pelican;
use common::{
    bundled_inputs, env_count, host, mean_call, median_call, profile_training, root,
    sgemm_peak_gflops, worst_relative_difference, NoetherAdamW, Reference, Rounds, Side, BATCH,
    N_MAX, ROUNDS, SINGLE_CALLS,
};

/// Forward FLOPs per jet of `nodes` nodes (multiply-adds count 2), useful work only:
/// N(N-1) edges, the first edge layer factorised per node.
fn forward_flops(c: &LorentzNetConfig, nodes: usize) -> f64 {
    let (n, h) = (nodes as f64, c.n_hidden as f64);
    let edges = n * (n - 1.0);
    let layers = c.n_layers as f64;
    let coord_layers = layers - 1.0;
    let per_edge =
        layers * (2.0 * h * h + 2.0 * h + 4.0 * h) + coord_layers * (2.0 * h * h + 2.0 * h);
    let per_node = layers * (4.0 * h * h + 2.0 * (2.0 * h + 2.0) * h + 2.0 * h * h);
    edges * per_edge + n * per_node
}

fn input(batch: &Batch) -> LorentzNetInput {
    LorentzNetInput::from_flat(
        &batch.momenta,
        &batch.mask,
        batch.batch_size,
        batch.particles,
        2,
    )
    .expect("input")
}

/// Loads the official weights (all of them: strict), or says why not.
fn load_official(varmap: &VarMap, checkpoint: &Path) -> bool {
    let options = LoadOptions {
        strict: true,
        ..LoadOptions::lenient()
    };
    match load_checkpoint(checkpoint, varmap, &options) {
        Ok(_) => true,
        Err(e) => {
            println!("{e}");
            false
        }
    }
}

fn write_inputs(path: &Path, batch: &Batch, jet: &[f32]) {
    let mut raw = Vec::new();
    for v in [batch.batch_size, batch.particles, jet.len() / 4] {
        raw.extend((v as u32).to_le_bytes());
    }
    let labels: Vec<f32> = batch.labels.iter().map(|&l| f32::from(l)).collect();
    for x in batch
        .momenta
        .iter()
        .chain(&batch.mask)
        .chain(&labels)
        .chain(jet)
    {
        raw.extend(x.to_le_bytes());
    }
    std::fs::write(path, raw).expect("write inputs");
}

/// Our LorentzNet side: the training model with its optimizer, the inference model
/// (no autograd graph, as PyTorch's `no_grad`) and the inputs.
struct Ours<'a> {
    model: &'a LorentzNet,
    inference: &'a LorentzNet,
    opt: NoetherAdamW,
    rng: ChaCha8Rng,
    batch: LorentzNetInput,
    single: LorentzNetInput,
    labels: Tensor,
}

impl<'a> Ours<'a> {
    fn new(
        model: &'a LorentzNet,
        inference: &'a LorentzNet,
        varmap: &VarMap,
        batch: &Batch,
        single: &[[f32; 4]],
    ) -> Self {
        let labels: Vec<u32> = batch.labels.iter().map(|&l| u32::from(l)).collect();
        Self {
            model,
            inference,
            opt: NoetherAdamW::new(varmap),
            rng: ChaCha8Rng::seed_from_u64(0),
            batch: input(batch),
            single: LorentzNetInput::single_jet(single).expect("single"),
            labels: Tensor::from_vec(labels, BATCH, &Device::Cpu).expect("labels"),
        }
    }

    /// Eval logits of the batch.
    fn logits(&self) -> Vec<f32> {
        host(&self.inference.forward(&self.batch).expect("forward"))
    }

    /// The median seconds of a single jet through the trainable model, which records
    /// the autograd graph.
    fn single_graph(&self) -> f64 {
        median_call(2, SINGLE_CALLS, || {
            self.model.forward(&self.single).expect("forward");
        })
    }
}

impl Side for Ours<'_> {
    fn single(&mut self) -> f64 {
        median_call(2, SINGLE_CALLS, || {
            self.inference.forward(&self.single).expect("forward");
        })
    }

    fn train(&mut self, steps: usize) -> f64 {
        mean_call(steps, || {
            let logits = self
                .model
                .forward_t(&self.batch, &mut Mode::Train(&mut self.rng))
                .expect("forward");
            let loss = candle_nn::loss::cross_entropy(&logits, &self.labels).expect("loss");
            self.opt.backward_step(&loss);
        })
    }
}

/// Starts the PyTorch reference on the same inputs; `None` when it cannot run. Also
/// returns its first answer (parity error, eval logits of the batch).
fn start_torch(
    checkpoint: &Path,
    batch: &Batch,
    single: &[[f32; 4]],
    threads: usize,
) -> Option<(Reference, serde_json::Value)> {
    let inputs = std::env::temp_dir().join("noether_model_compare.bin");
    write_inputs(&inputs, batch, &single.concat());
    let parity = root().join("../shared/reference/lorentznet/parity_jets.h5");
    Reference::start(
        &root().join("benches/compare/lorentznet_torch.py"),
        &[
            checkpoint.as_os_str(),
            parity.as_os_str(),
            inputs.as_os_str(),
            threads.to_string().as_ref(),
        ],
    )
}

fn main() {
    let threads = env_count("BENCH_THREADS").unwrap_or(1);
    noether::equivariant::set_threads(threads);
    let profile_steps = env_count("BENCH_PROFILE_STEPS");
    let profile_lorentznet = std::env::var("BENCH_MODEL").is_ok_and(|m| m == "lorentznet");
    if profile_steps.is_some() && !profile_lorentznet {
        pelican::compare(threads);
        return;
    }
    let (batch, single) = bundled_inputs(Beams::LORENTZNET);
    let config = LorentzNetConfig::default();
    let varmap = VarMap::new();
    let vb = seeded_varbuilder(&varmap, 0, DType::F32, &Device::Cpu);
    let model = LorentzNet::new(&config, &vb).expect("model");
    let checkpoint =
        root().join("../shared/reference/lorentznet/lorentznet_top_pretrained.safetensors");
    let official = load_official(&varmap, &checkpoint);
    let detached = inference_varbuilder(&varmap, DType::F32, &Device::Cpu);
    let inference = LorentzNet::new(&config, &detached).expect("inference model");
    let mut ours = Ours::new(&model, &inference, &varmap, &batch, &single);
    if let Some(steps) = profile_steps {
        profile_training(&mut ours, 3, steps, "noether LorentzNet");
        return;
    }
    let logits = ours.logits();
    let single_graph_s = ours.single_graph();
    let mut torch = if official {
        start_torch(&checkpoint, &batch, &single, threads)
    } else {
        println!("official checkpoint absent: PyTorch comparison skipped");
        None
    };
    if official && torch.is_none() {
        println!("PyTorch reference unavailable (python3 with torch, safetensors, h5py needed)");
    }
    let rounds = Rounds::run(&mut ours, torch.as_mut().map(|(t, _)| t));
    let (single_s, train_s) = Rounds::medians(&rounds.ours);

    let flops = forward_flops(&config, N_MAX + 2);
    let peak = sgemm_peak_gflops();
    let train_gflops = 3.0 * flops * BATCH as f64 / train_s / 1e9;
    println!(
        "LorentzNet (hidden 72, 6 blocks), {N_MAX} constituents + 2 beams, {threads} thread(s), {ROUNDS} interleaved rounds"
    );
    println!(
        "forward cost: {:.3} GFLOP/jet (edge layers factorised; training ~3x: {:.2} GFLOP/jet)",
        flops / 1e9,
        3.0 * flops / 1e9
    );
    println!(
        "noether: single-jet {:.2} ms/jet ({:.1} GFLOP/s; {:.2} ms recording the autograd graph); training {:.1} jets/s ({train_gflops:.1} GFLOP/s); sgemm peak {peak:.1} GFLOP/s (1024^3, same threads); medians over rounds",
        single_s * 1e3,
        flops / single_s / 1e9,
        single_graph_s * 1e3,
        BATCH as f64 / train_s,
    );
    let (train_ratio, single_ratio) = compare_with_torch(torch.as_ref(), &rounds, &logits);
    drop(torch);
    let (pelican_train, pelican_single) = pelican::compare(threads);
    println!("lorentznet_train_speedup_vs_torch={train_ratio:.3}");
    println!("lorentznet_single_jet_speedup_vs_torch={single_ratio:.3}");
    println!("pelican_train_speedup_vs_torch={pelican_train:.3}");
    println!("pelican_single_jet_speedup_vs_torch={pelican_single:.3}");
    println!(
        "lorentznet_train_gflops_fraction_of_peak={:.3}",
        train_gflops / peak
    );
}

/// The PyTorch side and the median ratios of the rounds (training jets/s ours / theirs,
/// single-jet time theirs / ours); NaN when the reference could not run.
fn compare_with_torch(
    torch: Option<&(Reference, serde_json::Value)>,
    rounds: &Rounds,
    logits: &[f32],
) -> (f64, f64) {
    let Some((_, first)) = torch else {
        return (f64::NAN, f64::NAN);
    };
    let worst = worst_relative_difference(logits, &first["batch_logits"], 1e-3);
    let (t_single, t_train) = Rounds::medians(&rounds.theirs);
    println!(
        "pytorch: single-jet {:.2} ms/jet; training {:.1} jets/s; its parity error vs the official logits {:.1e}; medians over rounds",
        t_single * 1e3,
        BATCH as f64 / t_train,
        first["parity_max_rel_err"].as_f64().unwrap_or(f64::NAN)
    );
    println!("agreement on the padded batch (eval logits): worst relative difference {worst:.1e}");
    let (train_ratio, single_ratio) = rounds.report_ratios("pytorch");
    println!(
        "ratios (medians of the rounds'): training {train_ratio:.2}x PyTorch's jets/s; single-jet inference {single_ratio:.2}x faster"
    );
    (train_ratio, single_ratio)
}

//! L-GATr-slim at the paper's size 0 against the `lgatr` 2.0 package's `LGATrSlim` on
//! PyTorch (`benches/compare/lgatr_slim_torch.py`) in the same invocation, with the same
//! weights (noether's seeded ones, loaded by the package with its own state-dict keys),
//! the same tokens (32 jets of the bundled test set, 50 leading constituents, 3 spurions
//! and the class token) and the same threads (`BENCH_THREADS`, default 1): seconds per
//! training step (forward + backward + AdamW) and per single-jet inference, the ratios,
//! and the logit agreement on the batch. Ends with `lgatr_slim_train_speedup_vs_torch=X`
//! and `lgatr_slim_single_jet_speedup_vs_torch=X`.
//!
//! `cargo bench --bench lgatr_slim_compare`. Needs python3 with torch, lgatr==2.0.0 and
//! safetensors for the comparison; without them only our figures print.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
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
use common::{bundled_inputs, host, per_rep, root, BATCH, N_MAX};

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
    let threads: usize = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
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

    // The package gets the weights as initialised, before our training steps move them.
    let files = write_inputs(&varmap, &input, &single, &batch.labels);
    let logits = host(
        &inference
            .forward_t(&input, &mut Mode::Eval)
            .expect("forward"),
    );
    let single_s = per_rep(20, || {
        inference
            .forward_t(&single, &mut Mode::Eval)
            .expect("forward");
    });
    let targets: Vec<u32> = batch.labels.iter().map(|&l| u32::from(l)).collect();
    let targets = Tensor::from_vec(targets, BATCH, &Device::Cpu).expect("labels");
    let params = ParamsAdamW {
        lr: 1e-3,
        ..ParamsAdamW::default()
    };
    let mut opt = AdamW::new(varmap.all_vars(), params).expect("AdamW");
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let train_s = per_rep(5, || {
        let out = model
            .forward_t(&input, &mut Mode::Train(&mut rng))
            .expect("forward");
        let loss = candle_nn::loss::cross_entropy(&out, &targets).expect("loss");
        opt.backward_step(&loss).expect("step");
    });
    let params: usize = noether::equivariant::parameter_count(&varmap);
    println!(
        "L-GATr-slim size 0 ({params} parameters), {BATCH} jets x ({N_MAX} constituents + 3 spurions + class token), {threads} thread(s)"
    );
    println!(
        "noether: training step {:.1} ms ({:.1} jets/s); single-jet {:.2} ms",
        train_s * 1e3,
        BATCH as f64 / train_s,
        single_s * 1e3
    );
    let Some(torch) = run_torch(&files, threads) else {
        println!("lgatr on PyTorch unavailable (python3 with torch, lgatr==2.0.0, safetensors)");
        return;
    };
    let get = |key: &str| torch[key].as_f64().expect(key);
    let worst = logits
        .iter()
        .zip(torch["logits"].as_array().expect("logits"))
        .map(|(a, b)| {
            let b = b.as_f64().expect("logit");
            (f64::from(*a) - b).abs() / b.abs().max(1e-2)
        })
        .fold(0.0, f64::max);
    let (t_train, t_single) = (get("train_s"), get("single_s"));
    println!(
        "lgatr 2.0 LGATrSlim (torch {}): training step {:.1} ms; single-jet {:.2} ms",
        torch["torch"].as_str().unwrap_or("?"),
        t_train * 1e3,
        t_single * 1e3
    );
    println!("agreement on the batch (eval logits): worst relative difference {worst:.1e}");
    println!("lgatr_slim_train_speedup_vs_torch={:.2}", t_train / train_s);
    println!(
        "lgatr_slim_single_jet_speedup_vs_torch={:.2}",
        t_single / single_s
    );
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

/// The package on PyTorch with our weights and tokens; `None` when it cannot run.
fn run_torch((weights, inputs): &(PathBuf, PathBuf), threads: usize) -> Option<serde_json::Value> {
    let script: &Path = &root().join("benches/compare/lgatr_slim_torch.py");
    Command::new("python3")
        .arg(script)
        .arg(weights)
        .arg(inputs)
        .arg(threads.to_string())
        .output()
        .ok()
        .filter(|o| {
            if !o.status.success() {
                eprintln!("{}", String::from_utf8_lossy(&o.stderr));
            }
            o.status.success()
        })
        .and_then(|o| serde_json::from_slice(&o.stdout).ok())
}

//! PELICAN's side of `model_compare`: noether's default PELICAN (~190k parameters, the
//! paper's top-tagging size) against the same model in PyTorch
//! (`benches/compare/pelican_torch.py`), on the same 32 jets, weights and threads. The
//! PyTorch model loads noether's weights after noether's training steps (BatchNorm
//! running statistics included) and its eval logits are checked against noether's.

use std::collections::HashMap;
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use noether::data::Beams;
use noether::equivariant::{
    inference_varbuilder, seeded_varbuilder, Mode, Pelican, PelicanConfig, PelicanInput,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::common::{bundled_inputs, host, per_rep, root, BATCH, N_MAX};

/// noether's and PyTorch's figures side by side, printed; returns (training jets/s
/// ratio, single-jet speed ratio), NaN where PyTorch could not run.
pub fn compare(threads: usize) -> (f64, f64) {
    let (batch, jet) = bundled_inputs(Beams::PELICAN);
    let input = PelicanInput::from_flat(&batch.momenta, &batch.mask, BATCH, batch.particles, 2)
        .expect("input");
    let single = PelicanInput::single_jet(&jet).expect("single");
    let targets: Vec<u32> = batch.labels.iter().map(|&l| u32::from(l)).collect();
    let targets = Tensor::from_vec(targets, BATCH, &Device::Cpu).expect("targets");

    let config = PelicanConfig::default();
    let varmap = VarMap::new();
    let model = Pelican::new(
        &config,
        &seeded_varbuilder(&varmap, 0, DType::F32, &Device::Cpu),
    )
    .expect("model");
    let inference = Pelican::new(
        &config,
        &inference_varbuilder(&varmap, DType::F32, &Device::Cpu),
    )
    .expect("inference model");
    let mut opt = AdamW::new(
        varmap.all_vars(),
        ParamsAdamW {
            lr: 1e-3,
            ..ParamsAdamW::default()
        },
    )
    .expect("AdamW");
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let train_s = per_rep(4, || {
        let logits = model
            .forward(&input, &mut Mode::Train(&mut rng))
            .expect("forward");
        let loss = candle_nn::loss::cross_entropy(&logits, &targets).expect("loss");
        opt.backward_step(&loss).expect("step");
    });
    let single_s = per_rep(20, || {
        inference
            .forward(&single, &mut Mode::Eval)
            .expect("forward");
    });
    let logits = host(&inference.forward(&input, &mut Mode::Eval).expect("forward"));
    println!(
        "PELICAN (default, {} parameters), {N_MAX} constituents + 2 beams: noether single-jet {:.2} ms/jet; training {:.1} jets/s",
        varmap.all_vars().iter().map(|v| v.elem_count()).sum::<usize>(),
        single_s * 1e3,
        BATCH as f64 / train_s,
    );
    let Some(torch) = run_torch(&varmap, &input, &single, &targets, threads) else {
        println!("PyTorch PELICAN unavailable (python3 with torch and safetensors needed)");
        return (f64::NAN, f64::NAN);
    };
    let get = |key: &str| torch[key].as_f64().expect(key);
    let worst = logits
        .iter()
        .zip(torch["batch_logits"].as_array().expect("batch_logits"))
        .map(|(a, b)| {
            let b = b.as_f64().expect("logit");
            (f64::from(*a) - b).abs() / b.abs().max(1e-3)
        })
        .fold(0.0, f64::max);
    let (t_single, t_train) = (get("single_ms"), get("train_jets_per_s"));
    let train_ratio = BATCH as f64 / train_s / t_train;
    let single_ratio = t_single / (single_s * 1e3);
    println!(
        "pytorch PELICAN: single-jet {t_single:.2} ms/jet; training {t_train:.1} jets/s; \
         eval logits vs noether's after the same training steps: worst relative difference {worst:.1e}"
    );
    println!(
        "PELICAN ratios: training {train_ratio:.2}x PyTorch's jets/s; single-jet inference {single_ratio:.2}x faster"
    );
    (train_ratio, single_ratio)
}

/// Writes the weights and inputs, runs the PyTorch model; `None` when it cannot run.
fn run_torch(
    varmap: &VarMap,
    input: &PelicanInput,
    single: &PelicanInput,
    targets: &Tensor,
    threads: usize,
) -> Option<serde_json::Value> {
    let dir = std::env::temp_dir();
    let weights = dir.join("noether_model_compare_pelican.safetensors");
    let inputs = dir.join("noether_model_compare_pelican_inputs.safetensors");
    varmap.save(&weights).expect("save weights");
    let tensors: HashMap<String, Tensor> = [
        ("dots", &input.dots),
        ("mask", &input.mask),
        ("labels", &input.labels),
        ("single_dots", &single.dots),
        ("single_mask", &single.mask),
        ("single_labels", &single.labels),
    ]
    .into_iter()
    .map(|(name, t)| (name.to_owned(), t.to_dtype(DType::F32).expect("f32")))
    .chain([(
        "targets".to_owned(),
        targets.to_dtype(DType::F32).expect("f32"),
    )])
    .collect();
    candle_core::safetensors::save(&tensors, &inputs).expect("save inputs");
    let out = Command::new("python3")
        .arg(root().join("benches/compare/pelican_torch.py"))
        .arg(&weights)
        .arg(&inputs)
        .arg(threads.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        println!(
            "pelican_torch.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        );
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

//! PELICAN's side of `model_compare`: noether's default PELICAN (~190k parameters, the
//! paper's top-tagging size) against the same model in PyTorch
//! (`benches/compare/pelican_torch.py`), on the same 32 jets, weights and threads. The
//! PyTorch model loads noether's weights after three of noether's training steps
//! (BatchNorm running statistics included) and its eval logits are checked against
//! noether's; then both are timed in paired rounds (`common::Rounds`).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use noether::data::Beams;
use noether::equivariant::{
    inference_varbuilder, seeded_varbuilder, Mode, Pelican, PelicanConfig, PelicanInput,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::common::{
    bundled_inputs, env_count, host, mean_call, median_call, profile_training, root,
    worst_relative_difference, NoetherAdamW, Reference, Rounds, Side, BATCH, N_MAX, SINGLE_CALLS,
};

/// Our PELICAN side: the training model with its optimizer, the inference model and the
/// inputs.
struct Ours {
    model: Pelican,
    inference: Pelican,
    opt: NoetherAdamW,
    rng: ChaCha8Rng,
    input: PelicanInput,
    single: PelicanInput,
    targets: Tensor,
}

impl Side for Ours {
    fn single(&mut self) -> f64 {
        median_call(2, SINGLE_CALLS, || {
            self.inference
                .forward(&self.single, &mut Mode::Eval)
                .expect("forward");
        })
    }

    fn train(&mut self, steps: usize) -> f64 {
        mean_call(steps, || {
            let logits = self
                .model
                .forward(&self.input, &mut Mode::Train(&mut self.rng))
                .expect("forward");
            let loss = candle_nn::loss::cross_entropy(&logits, &self.targets).expect("loss");
            self.opt.backward_step(&loss);
        })
    }
}

/// noether's and PyTorch's figures side by side, printed; returns the median ratios of
/// the rounds (training jets/s, single-jet speed), NaN where PyTorch could not run.
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
    let mut ours = Ours {
        model,
        inference,
        opt: NoetherAdamW::new(&varmap),
        rng: ChaCha8Rng::seed_from_u64(0),
        input,
        single,
        targets,
    };
    // A few steps so that the weights and BatchNorm statistics the reference loads for
    // the logit cross-check are trained ones.
    if let Some(steps) = env_count("BENCH_PROFILE_STEPS") {
        profile_training(&mut ours, 3, steps, "noether PELICAN");
        return (f64::NAN, f64::NAN);
    }
    ours.train(3);
    let logits = host(
        &ours
            .inference
            .forward(&ours.input, &mut Mode::Eval)
            .expect("forward"),
    );
    let mut torch = start_torch(&varmap, &ours, threads);
    let rounds = Rounds::run(&mut ours, torch.as_mut().map(|(t, _)| t));
    let (single_s, train_s) = Rounds::medians(&rounds.ours);
    println!(
        "PELICAN (default, {} parameters), {N_MAX} constituents + 2 beams: noether single-jet {:.2} ms/jet; training {:.1} jets/s; medians over rounds",
        varmap.all_vars().iter().map(|v| v.elem_count()).sum::<usize>(),
        single_s * 1e3,
        BATCH as f64 / train_s,
    );
    let Some((_, first)) = &torch else {
        println!("PyTorch PELICAN unavailable (python3 with torch and safetensors needed)");
        return (f64::NAN, f64::NAN);
    };
    let worst = worst_relative_difference(&logits, &first["batch_logits"], 1e-3);
    let (t_single, t_train) = Rounds::medians(&rounds.theirs);
    println!(
        "pytorch PELICAN: single-jet {:.2} ms/jet; training {:.1} jets/s; medians over rounds; \
         eval logits vs noether's after the same training steps: worst relative difference {worst:.1e}",
        t_single * 1e3,
        BATCH as f64 / t_train,
    );
    let (train_ratio, single_ratio) = rounds.report_ratios("pytorch");
    println!(
        "PELICAN ratios (medians of the rounds'): training {train_ratio:.2}x PyTorch's jets/s; single-jet inference {single_ratio:.2}x faster"
    );
    (train_ratio, single_ratio)
}

/// Writes the weights and inputs and starts the PyTorch model; `None` when it cannot
/// run. Also returns its first answer (eval logits of the batch).
fn start_torch(
    varmap: &VarMap,
    ours: &Ours,
    threads: usize,
) -> Option<(Reference, serde_json::Value)> {
    let (input, single, targets) = (&ours.input, &ours.single, &ours.targets);
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
    Reference::start(
        &root().join("benches/compare/pelican_torch.py"),
        &[
            weights.as_os_str(),
            inputs.as_os_str(),
            threads.to_string().as_ref(),
        ],
    )
}

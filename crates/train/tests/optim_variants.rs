//! Cautious AdamW, SNR-gated AdamW and gradient agreement filtering against AdamW and
//! against their definitions.

use candle_core::{Device, Tensor, Var};
use noether_train::{AgreementFilter, OptimConfig, Optimizer, OptimizerName, Param, SnrGate};

fn var(values: &[f32]) -> Var {
    Var::from_tensor(&Tensor::new(values, &Device::Cpu).unwrap()).unwrap()
}

fn optimizer(name: OptimizerName, gate: SnrGate, init: &[f32]) -> (Optimizer, Var) {
    let v = var(init);
    let config = OptimConfig {
        name,
        snr_gate: gate,
        weight_decay: 0.01,
        ..OptimConfig::default()
    };
    let params = vec![Param {
        name: "w".into(),
        var: v.clone(),
        lr_mult: 1.0,
    }];
    (Optimizer::new(params, &config), v)
}

fn bits(v: &Var) -> Vec<u32> {
    v.as_tensor()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

/// Runs `steps` updates with gradients from `grad(step)` and returns the weights.
fn run(name: OptimizerName, gate: SnrGate, grad: impl Fn(usize) -> Vec<f32>, steps: usize) -> Var {
    let (mut opt, v) = optimizer(name, gate, &[0.5, -1.0, 2.0, 0.1]);
    for step in 0..steps {
        let g = Tensor::new(grad(step).as_slice(), &Device::Cpu).unwrap();
        opt.step(&[Some(g)], 1e-2).unwrap();
    }
    v
}

#[test]
fn zero_gradient_variance_makes_the_snr_gate_adamw() {
    let constant = |_| vec![0.3, -0.2, 1e-3, 5.0];
    let adamw = run(OptimizerName::AdamW, SnrGate::Smooth, constant, 30);
    for gate in [SnrGate::Smooth, SnrGate::Hard] {
        let snr = run(OptimizerName::SnrAdamW, gate, constant, 30);
        assert_eq!(bits(&snr), bits(&adamw), "{gate:?}");
    }
}

#[test]
fn agreeing_signs_make_cautious_adamw() {
    let constant = |_| vec![0.3, -0.2, 1e-3, 5.0];
    let adamw = run(OptimizerName::AdamW, SnrGate::Smooth, constant, 30);
    let cautious = run(OptimizerName::CautiousAdamW, SnrGate::Smooth, constant, 30);
    assert_eq!(bits(&cautious), bits(&adamw));
}

#[test]
fn cautious_adamw_skips_coordinates_whose_gradient_turned() {
    // Ten steps of a positive gradient, then one where coordinates 0 and 1 flip.
    let grad = |step: usize| {
        if step < 10 {
            vec![1.0f32, 1.0, 1.0, 1.0]
        } else {
            vec![-0.1f32, -0.1, 1.0, 1.0]
        }
    };
    let (mut opt, v) = optimizer(OptimizerName::CautiousAdamW, SnrGate::Smooth, &[0.0; 4]);
    let (mut adam, a) = optimizer(OptimizerName::AdamW, SnrGate::Smooth, &[0.0; 4]);
    for step in 0..11 {
        let g = Tensor::new(grad(step).as_slice(), &Device::Cpu).unwrap();
        if step == 10 {
            let (before, before_adam) = (
                v.as_tensor().to_vec1::<f32>().unwrap(),
                a.as_tensor().to_vec1::<f32>().unwrap(),
            );
            opt.step(&[Some(g.clone())], 1e-2).unwrap();
            adam.step(&[Some(g)], 1e-2).unwrap();
            let after = v.as_tensor().to_vec1::<f32>().unwrap();
            let after_adam = a.as_tensor().to_vec1::<f32>().unwrap();
            let wd = 1.0 - 1e-2 * 0.01;
            for i in 0..2 {
                // Masked: only weight decay acts.
                assert!((after[i] - before[i] * wd as f32).abs() < 1e-9, "{i}");
            }
            for i in 2..4 {
                // Kept, rescaled by 1 / mean(mask) = 2 relative to AdamW's step.
                let step_c = after[i] - before[i] * wd as f32;
                let step_a = after_adam[i] - before_adam[i] * wd as f32;
                assert!(
                    (step_c - 2.0 * step_a).abs() < 1e-6,
                    "{i}: {step_c} vs {step_a}"
                );
            }
        } else {
            opt.step(&[Some(g.clone())], 1e-2).unwrap();
            adam.step(&[Some(g)], 1e-2).unwrap();
        }
    }
}

#[test]
fn the_snr_gate_damps_noise() {
    // Pure noise (alternating signs): the first moment is small against the variance,
    // so after the first step (where the variance estimate is still 0) the gated steps
    // are much shorter than AdamW's.
    let noise = |step: usize| {
        let s = if step.is_multiple_of(2) { 1.0f32 } else { -1.0 };
        vec![s, -s, 0.5 * s, 2.0 * s]
    };
    let path = |name: OptimizerName, gate: SnrGate| -> f32 {
        let (mut opt, v) = optimizer(name, gate, &[0.5, -1.0, 2.0, 0.1]);
        let mut length = 0.0;
        for step in 0..40 {
            let before = v.as_tensor().to_vec1::<f32>().unwrap();
            let g = Tensor::new(noise(step).as_slice(), &Device::Cpu).unwrap();
            opt.step(&[Some(g)], 1e-2).unwrap();
            if step > 0 {
                let after = v.as_tensor().to_vec1::<f32>().unwrap();
                length += after
                    .iter()
                    .zip(&before)
                    .map(|(a, b)| (a - b).abs())
                    .sum::<f32>();
            }
        }
        length
    };
    let adamw = path(OptimizerName::AdamW, SnrGate::Smooth);
    let smooth = path(OptimizerName::SnrAdamW, SnrGate::Smooth);
    let hard = path(OptimizerName::SnrAdamW, SnrGate::Hard);
    assert!(smooth < 0.2 * adamw, "{smooth} vs {adamw}");
    assert!(hard < 0.2 * adamw, "{hard} vs {adamw}");
}

fn grads(values: &[f32]) -> Vec<Option<Tensor>> {
    vec![Some(Tensor::new(values, &Device::Cpu).unwrap())]
}

#[test]
fn agreement_filter_fuses_agreeing_and_skips_conflicting_micro_batches() {
    let mut f = AgreementFilter::new(0.97);
    assert!(f.offer(grads(&[1.0, 2.0])).unwrap());
    assert!(f.offer(grads(&[3.0, 6.0])).unwrap());
    let mean = f.take().unwrap().unwrap();
    assert_eq!(
        mean[0].as_ref().unwrap().to_vec1::<f32>().unwrap(),
        vec![2.0, 4.0]
    );
    // Orthogonal (distance 1) and opposite (distance 2): no agreement, the step is skipped.
    f.offer(grads(&[1.0, 0.0])).unwrap();
    assert!(!f.offer(grads(&[0.0, 1.0])).unwrap());
    assert!(!f.offer(grads(&[-1.0, 0.0])).unwrap());
    assert!(f.take().unwrap().is_none());
    // A looser threshold accepts the orthogonal one.
    let mut loose = AgreementFilter::new(1.5);
    loose.offer(grads(&[1.0, 0.0])).unwrap();
    assert!(loose.offer(grads(&[0.0, 1.0])).unwrap());
    assert_eq!(
        loose.take().unwrap().unwrap()[0]
            .as_ref()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        vec![0.5, 0.5]
    );
}

/// The three optimizers drive a whole (tiny) run: each config trains and the run's test
/// AUC beats chance.
#[test]
fn runs_with_each_optimizer_and_with_agreement_filtering() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for (name, extra) in [
        ("cautious_adamw", ""),
        ("snr_adamw", "snr_gate = \"hard\""),
        ("adamw", "accumulate = 2\ngaf_tau = 0.97"),
    ] {
        let text = format!(
            "model = \"pfn\"\n[pfn]\nphi_sizes = [16, 16]\nf_sizes = [16]\n[data]\ntrain_jets = 200\nval_jets = 100\nn_max = 20\nbatch_size = 20\n[optim]\nname = \"{name}\"\nlr = 3e-3\n{extra}\n[train]\nepochs = 3\nbootstrap = 0\n"
        );
        let mut config =
            noether_train::TrainConfig::from_toml(&text, std::path::Path::new("inline")).unwrap();
        config.data.train = root.join("data/train.h5");
        config.data.val = root.join("data/val.h5");
        config.data.test = root.join("data/val.h5");
        let data = noether_train::RunData::load(&config).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let options = noether_train::RunOptions {
            out: dir.path().to_owned(),
            ..noether_train::RunOptions::default()
        };
        let summary = noether_train::train(&config, &data, &options)
            .unwrap()
            .unwrap();
        assert!(summary.auc > 0.6, "{name} {extra}: AUC {}", summary.auc);
    }
    let bad = "model = \"pfn\"\n[optim]\ngaf_tau = 0.9\n";
    let err =
        noether_train::TrainConfig::from_toml(bad, std::path::Path::new("inline")).unwrap_err();
    assert!(err.to_string().contains("optim.gaf_tau"), "{err}");
}

//! Optimizers against PyTorch trajectories (fixture written by
//! `tests/fixtures/make_optim_fixtures.py`), gradient clipping and schedules against
//! closed forms.

use candle_core::{Device, Tensor, Var};
use noether_train::{
    lr_factor, OptimConfig, Optimizer, OptimizerName, Param, ScheduleConfig, ScheduleKind,
};

fn fixture() -> serde_json::Value {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/optim_reference.json"),
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn optimizers_follow_pytorch_trajectories() {
    let f = fixture();
    let grads: Vec<Vec<f64>> = f["grads"].as_array().unwrap().iter().map(floats).collect();
    for case in f["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let config = match name {
            "adamw" => OptimConfig {
                name: OptimizerName::AdamW,
                weight_decay: 0.05,
                betas: Some([0.9, 0.999]),
                eps: 1e-8,
                ..OptimConfig::default()
            },
            // lion-pytorch's default betas (0.9, 0.99): `betas` left unset.
            "lion" => OptimConfig {
                name: OptimizerName::Lion,
                weight_decay: 0.05,
                ..OptimConfig::default()
            },
            _ => OptimConfig {
                name: OptimizerName::Sgd,
                weight_decay: 0.0,
                momentum: 0.9,
                nesterov: name == "sgd_nesterov",
                ..OptimConfig::default()
            },
        };
        let lr = case["lr"].as_f64().unwrap();
        let var = Var::from_vec(floats(&f["w0"]), 6, &Device::Cpu).unwrap();
        let mut opt = Optimizer::new(
            vec![Param {
                name: "w".into(),
                var: var.clone(),
                lr_mult: 1.0,
            }],
            &config,
        );
        for (step, (g, expected)) in grads
            .iter()
            .zip(case["trajectory"].as_array().unwrap())
            .enumerate()
        {
            let g = Tensor::from_vec(g.clone(), 6, &Device::Cpu).unwrap();
            opt.step(&[Some(g)], lr).unwrap();
            let got = var.as_tensor().to_vec1::<f64>().unwrap();
            for (a, b) in got.iter().zip(floats(expected)) {
                assert!((a - b).abs() < 1e-12, "{name} step {step}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn learning_rate_multipliers_scale_the_step() {
    let config = OptimConfig {
        name: OptimizerName::Sgd,
        momentum: 0.0,
        weight_decay: 0.0,
        ..OptimConfig::default()
    };
    let make = |mult: f64| Param {
        name: format!("p{mult}"),
        var: Var::from_vec(vec![1.0f64], 1, &Device::Cpu).unwrap(),
        lr_mult: mult,
    };
    let (a, b) = (make(1.0), make(10.0));
    let mut opt = Optimizer::new(vec![a.clone(), b.clone()], &config);
    let g = Tensor::new(&[1.0f64], &Device::Cpu).unwrap();
    opt.step(&[Some(g.clone()), Some(g)], 0.01).unwrap();
    assert!((a.var.as_tensor().to_vec1::<f64>().unwrap()[0] - 0.99).abs() < 1e-15);
    assert!((b.var.as_tensor().to_vec1::<f64>().unwrap()[0] - 0.9).abs() < 1e-15);
}

#[test]
fn clipping_rescales_to_the_global_norm() {
    let mut grads = vec![
        Some(Tensor::new(&[3.0f64, 0.0], &Device::Cpu).unwrap()),
        None,
        Some(Tensor::new(&[4.0f64], &Device::Cpu).unwrap()),
    ];
    let norm = Optimizer::clip(&mut grads, 1.0).unwrap();
    assert!((norm - 5.0).abs() < 1e-12);
    let a = grads[0].as_ref().unwrap().to_vec1::<f64>().unwrap();
    let b = grads[2].as_ref().unwrap().to_vec1::<f64>().unwrap();
    assert!((a[0] - 0.6).abs() < 1e-6 && (b[0] - 0.8).abs() < 1e-6);
    // Below the threshold nothing changes.
    let mut small = vec![Some(Tensor::new(&[0.1f64], &Device::Cpu).unwrap())];
    Optimizer::clip(&mut small, 1.0).unwrap();
    assert_eq!(
        small[0].as_ref().unwrap().to_vec1::<f64>().unwrap(),
        vec![0.1]
    );
}

#[test]
fn schedules_match_their_closed_forms() {
    let base = ScheduleConfig {
        min_lr_ratio: 0.0,
        ..ScheduleConfig::default()
    };
    let cosine = ScheduleConfig {
        kind: ScheduleKind::WarmupCosine,
        warmup_epochs: 2.0,
        ..base.clone()
    };
    assert!((lr_factor(&cosine, 1.0, 10) - 1.001 * 0.5).abs() < 1e-12);
    assert!((lr_factor(&cosine, 2.0, 10) - 1.0).abs() < 1e-12);
    assert!((lr_factor(&cosine, 6.0, 10) - 0.5).abs() < 1e-12);
    assert!(lr_factor(&cosine, 10.0, 10).abs() < 1e-12);
    let sgdr = ScheduleConfig {
        kind: ScheduleKind::CosineRestarts,
        restart_epochs: 4.0,
        restart_mult: 2.0,
        ..base.clone()
    };
    // Cycles [0, 4), [4, 12), [12, 28): restarts at 4 and 12, half-way points at 2 and 8.
    for (epoch, expected) in [(0.0, 1.0), (2.0, 0.5), (4.0, 1.0), (8.0, 0.5), (12.0, 1.0)] {
        assert!(
            (lr_factor(&sgdr, epoch, 35) - expected).abs() < 1e-12,
            "epoch {epoch}"
        );
    }
    // T_mult = 1: equal cycles [0, 4), [4, 8), ...; a tiny T_0 ends at once (walking the
    // cycles one by one took 10^300 steps) and stays a factor of the cosine.
    let equal = ScheduleConfig {
        restart_mult: 1.0,
        ..sgdr.clone()
    };
    for (epoch, expected) in [(0.0, 1.0), (2.0, 0.5), (4.0, 1.0), (6.0, 0.5), (8.0, 1.0)] {
        assert!(
            (lr_factor(&equal, epoch, 35) - expected).abs() < 1e-12,
            "epoch {epoch}"
        );
    }
    for mult in [1.0, 2.0] {
        let tiny = ScheduleConfig {
            restart_epochs: 1e-300,
            restart_mult: mult,
            ..sgdr.clone()
        };
        let f = lr_factor(&tiny, 7.5, 10);
        assert!((0.0..=1.0).contains(&f), "T_mult {mult}: {f}");
    }
    let step = ScheduleConfig {
        kind: ScheduleKind::Step,
        step_epochs: 3.0,
        gamma: 0.1,
        ..base
    };
    assert_eq!(lr_factor(&step, 2.9, 10), 1.0);
    assert!((lr_factor(&step, 3.0, 10) - 0.1).abs() < 1e-15);
    assert!((lr_factor(&step, 7.0, 10) - 0.01).abs() < 1e-15);
}

/// AdamW runs as one pass over contiguous f32/f64 CPU values and as candle operations
/// otherwise (here: a strided gradient); the two agree over several steps in f32.
#[test]
fn one_pass_adamw_agrees_with_the_tensor_formulation() {
    let config = OptimConfig {
        name: OptimizerName::AdamW,
        weight_decay: 0.05,
        ..OptimConfig::default()
    };
    let w0: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
    let run = |strided: bool| {
        let var = Var::from_vec(w0.clone(), (3, 4), &Device::Cpu).unwrap();
        let param = Param {
            name: "w".into(),
            var: var.clone(),
            lr_mult: 1.0,
        };
        let mut opt = Optimizer::new(vec![param], &config);
        for step in 0..4 {
            let g: Vec<f32> = (0..12)
                .map(|i| ((i * 7 + step * 3) as f32 * 0.11).cos() * 0.3)
                .collect();
            let g = if strided {
                // The same values as a transposed view: not contiguous.
                let t: Vec<f32> = (0..12).map(|k| g[(k % 3) * 4 + k / 3]).collect();
                let g = Tensor::from_vec(t, (4, 3), &Device::Cpu)
                    .unwrap()
                    .t()
                    .unwrap();
                assert!(!g.is_contiguous());
                g
            } else {
                Tensor::from_vec(g, (3, 4), &Device::Cpu).unwrap()
            };
            opt.step(&[Some(g)], 0.01).unwrap();
        }
        var.as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let (fused, tensors) = (run(false), run(true));
    assert_ne!(fused, w0, "the steps moved the weights");
    for (a, b) in fused.iter().zip(&tensors) {
        assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-3), "{a} vs {b}");
    }
}

/// A gradient of the wrong shape is refused naming the parameter, before anything moves:
/// the weights, the moments and the step count stay as they were.
#[test]
fn a_misshapen_gradient_is_refused_before_any_update() {
    let run = |bad_first: bool| {
        let var = Var::from_vec(vec![0.5f32; 6], 6, &Device::Cpu).unwrap();
        let param = Param {
            name: "blocks.0.w".into(),
            var: var.clone(),
            lr_mult: 1.0,
        };
        let mut opt = Optimizer::new(vec![param], &OptimConfig::default());
        if bad_first {
            let bad = Tensor::from_vec(vec![1f32; 4], 4, &Device::Cpu).unwrap();
            let err = opt.step(&[Some(bad)], 0.01).unwrap_err().to_string();
            assert!(
                err.contains("blocks.0.w") && err.contains("[4]") && err.contains("[6]"),
                "{err}"
            );
            assert_eq!(opt.steps(), 0);
        }
        let g = Tensor::from_vec(vec![0.2f32, -0.1, 0.3, 0.0, 1.0, -2.0], 6, &Device::Cpu).unwrap();
        opt.step(&[Some(g)], 0.01).unwrap();
        var.as_tensor().to_vec1::<f32>().unwrap()
    };
    assert_eq!(run(true), run(false));
}

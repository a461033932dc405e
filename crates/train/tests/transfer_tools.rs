//! Fine-tuning tools on a tiny LorentzNet and the bundled jets: LoRA adapters start as
//! the base model, train alone with the head and merge exactly; frozen weights get no
//! gradient; layer-wise learning-rate decay; the distillation loss against a hand
//! computation; magnitude pruning keeps the smallest weights at zero through training;
//! `eval_on_start` keeps a pretrained model that fine-tuning only makes worse.

mod common;

use common::{bits, first_val_batch, options, tiny_lorentznet};

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::Tensor;
use noether_equivariant::Mode;
use noether_train::{
    build_model, checkpoint, cross_entropy, distillation_loss, forward_batch, load_weights,
    magnitude_prune, parameters, train, Freeze, InitHook, RunData, RunOptions, Tagger, TrainConfig,
    TrainError,
};
use rand::{RngExt, SeedableRng};

fn logits(model: &Tagger, batch: &noether_data::Batch) -> Tensor {
    forward_batch(model, batch, &mut Mode::Eval).unwrap()
}

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    a.iter()
        .zip(&b)
        .map(|(x, y)| f64::from((x - y).abs() / x.abs().max(y.abs()).max(1.0)))
        .fold(0.0, f64::max)
}

const LORA: &str = "[lora]\nr = 2\nalpha = 4.0";

#[test]
fn fresh_lora_adapters_change_nothing_and_merge_exactly() {
    let plain = tiny_lorentznet("");
    let lora = tiny_lorentznet(LORA);
    let (base, _) = build_model(&plain, 5).unwrap();
    let (mut adapted, varmap) = build_model(&lora, 5).unwrap();
    let batch = first_val_batch(&base, &plain);
    // B = 0: the adapted model is the base model, bit for bit.
    assert_eq!(
        bits(&logits(&base, &batch)),
        bits(&logits(&adapted, &batch))
    );
    let names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    let adapters = names.iter().filter(|n| n.contains(".lora_")).count();
    // 2 blocks x 5 layers + 2 coordinate layers in the first block (the last block has
    // none) + embedding + graph_dec.0 = 14 adapted layers (the head is not adapted).
    assert_eq!(adapters, 2 * 14, "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("graph_dec.3.lora")));
    // A is PEFT's Kaiming-uniform (a = sqrt 5): U(+-1/sqrt(in)), not all zero.
    for (name, var) in varmap.data().lock().unwrap().iter() {
        if name.ends_with("lora_A.weight") {
            let fan_in = var.dims()[1] as f32;
            let a: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            assert!(
                a.iter().all(|v| v.abs() <= 1.0 / fan_in.sqrt()) && a.iter().any(|v| *v != 0.0),
                "{name}"
            );
        }
    }
    // Give B seeded random values (candle's own randn cannot be seeded).
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for (name, var) in varmap.data().lock().unwrap().iter() {
        if name.ends_with("lora_B.weight") {
            let noise: Vec<f32> = (0..var.elem_count())
                .map(|_| rng.random_range(-0.5f32..0.5))
                .collect();
            var.set(&Tensor::from_vec(noise, var.shape(), var.device()).unwrap())
                .unwrap();
        }
    }
    let unmerged = logits(&adapted, &batch);
    assert!(
        max_rel_diff(&unmerged, &logits(&base, &batch)) > 1e-3,
        "non-zero adapters must change the output"
    );
    adapted.merge_adapters().unwrap();
    let merged = logits(&adapted, &batch);
    // Per layer the two agree to 1e-6 (linear.rs). Through two f32 LGEB blocks the
    // rounding of W + sBA versus Wx + sB(Ax) is amplified by the Minkowski products'
    // cancellations: over 40 noise seeds the logits differed by 3e-7 to 2.6e-5 (median
    // 2e-6), about what a 1-ulp perturbation of every weight does to the same model.
    // A wrong scaling or transposed product differs by O(0.1).
    let diff = max_rel_diff(&merged, &unmerged);
    assert!(diff < 1e-4, "merged differs by {diff}");
    adapted.unmerge_adapters().unwrap();
    assert_eq!(bits(&logits(&adapted, &batch)), bits(&unmerged));
}

#[test]
fn lora_training_moves_only_adapters_and_head() {
    let config = tiny_lorentznet(LORA);
    let data = RunData::load(&config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let summary = train(&config, &data, &options(dir.path()))
        .unwrap()
        .unwrap();
    let (_, init) = build_model(&config, config.train.seed).unwrap();
    let init = init.data().lock().unwrap();
    let after = checkpoint::load(&dir.path().join("last.safetensors"))
        .unwrap()
        .tensors;
    let mut trainable = 0;
    for (name, var) in init
        .iter()
        .filter(|(n, _)| !noether_equivariant::is_buffer(n))
    {
        let moved = bits(var.as_tensor()) != bits(&after[name]);
        let expected = name.contains(".lora_B.") || name.starts_with("graph_dec.3.");
        if name.contains(".lora_") || name.starts_with("graph_dec.3.") {
            trainable += var.elem_count();
        }
        // A moves too once B is non-zero; everything else must stay bit-identical.
        if !name.contains(".lora_A.") {
            assert_eq!(moved, expected, "{name}: moved = {moved}");
        }
    }
    assert_eq!(summary.trainable_params, trainable);
    assert!(summary.params > summary.trainable_params);
}

#[test]
fn frozen_parameters_get_no_gradient() {
    let mut config = tiny_lorentznet("");
    config.optim.freeze = vec![r"^LGEBs\.0\.".into()];
    let (model, varmap) = build_model(&config, 1).unwrap();
    let batch = first_val_batch(&model, &config);
    let out = forward_batch(
        &model,
        &batch,
        &mut Mode::Train(&mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0)),
    )
    .unwrap();
    let loss = cross_entropy(&out, &batch.labels, &batch.weights).unwrap();
    let grads = loss.backward().unwrap();
    let data = varmap.data().lock().unwrap();
    let grad = |name: &str| grads.get(data[name].as_tensor()).is_some();
    assert!(
        !grad("LGEBs.0.phi_e.0.weight"),
        "frozen weight got a gradient"
    );
    assert!(!grad("LGEBs.0.phi_h.3.bias"));
    assert!(grad("LGEBs.1.phi_e.0.weight"));
    assert!(grad("embedding.weight"));
    drop(data);
    let names: Vec<String> = parameters(&varmap, &config)
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert!(!names.iter().any(|n| n.starts_with("LGEBs.0.")));
    assert!(names.iter().any(|n| n.starts_with("LGEBs.1.")));
}

#[test]
fn layer_decay_scales_learning_rates_by_depth() {
    let mut config = tiny_lorentznet("");
    config.optim.layer_decay = 0.5;
    config.optim.groups = vec![noether_train::ParamGroup {
        pattern: r"^graph_dec\.0\.".into(),
        lr_mult: 3.0,
    }];
    let (_, varmap) = build_model(&config, 0).unwrap();
    let mults: HashMap<String, f64> = parameters(&varmap, &config)
        .unwrap()
        .into_iter()
        .map(|p| (p.name, p.lr_mult))
        .collect();
    // Depths: embedding 0, LGEBs.0 1, LGEBs.1 2, decoder 3 = D.
    assert_eq!(mults["embedding.weight"], 0.125);
    assert_eq!(mults["LGEBs.0.phi_e.0.weight"], 0.25);
    assert_eq!(mults["LGEBs.1.phi_h.1.weight"], 0.5);
    assert_eq!(mults["graph_dec.3.weight"], 1.0);
    assert_eq!(
        mults["graph_dec.0.bias"], 3.0,
        "group multiplier times decay^0"
    );
}

/// Independent f64 evaluation of the distillation loss.
fn reference_kd(s: &[[f64; 2]], t: &[[f64; 2]], y: &[u8], w: &[f64], temp: f64, alpha: f64) -> f64 {
    let log_softmax = |z: [f64; 2]| {
        let m = z[0].max(z[1]);
        let lse = m + ((z[0] - m).exp() + (z[1] - m).exp()).ln();
        [z[0] - lse, z[1] - lse]
    };
    let total: f64 = w.iter().sum();
    let (mut hard, mut soft) = (0.0, 0.0);
    for i in 0..s.len() {
        hard -= w[i] * log_softmax(s[i])[usize::from(y[i])];
        let ls = log_softmax([s[i][0] / temp, s[i][1] / temp]);
        let lt = log_softmax([t[i][0] / temp, t[i][1] / temp]);
        soft += w[i] * (0..2).map(|c| lt[c].exp() * (lt[c] - ls[c])).sum::<f64>();
    }
    (1.0 - alpha) * hard / total + alpha * temp * temp * soft / total
}

#[test]
fn distillation_loss_matches_a_hand_computation() {
    let s = [[0.3, -1.2], [2.0, 0.5], [-0.7, 0.9]];
    let t = [[1.5, -2.0], [0.1, 0.4], [-3.0, 2.5]];
    let y = [0u8, 1, 1];
    let w = [1.0f32, 2.0, 0.5];
    let dev = candle_core::Device::Cpu;
    let tensor = |v: &[[f64; 2]]| {
        let flat: Vec<f32> = v.iter().flatten().map(|x| *x as f32).collect();
        Tensor::from_vec(flat, (3, 2), &dev).unwrap()
    };
    let wf: Vec<f64> = w.iter().map(|x| f64::from(*x)).collect();
    for (temp, alpha) in [(4.0, 0.5), (1.0, 1.0), (2.5, 0.0), (0.5, 0.3)] {
        let got = distillation_loss(&tensor(&s), &tensor(&t), &y, &w, temp, alpha)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let want = reference_kd(&s, &t, &y, &wf, temp, alpha);
        assert!(
            (f64::from(got) - want).abs() < 1e-5 * want.abs().max(1.0),
            "T={temp} alpha={alpha}: {got} vs {want}"
        );
    }
    // A teacher equal to the student leaves only the hard term.
    let same = distillation_loss(&tensor(&s), &tensor(&s), &y, &w, 3.0, 0.6)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let want = 0.4 * reference_kd(&s, &s, &y, &wf, 3.0, 0.0);
    assert!((f64::from(same) - want).abs() < 1e-6, "{same} vs {want}");
    // Softmax of the logits is what the term compares: shifting the teacher changes
    // nothing.
    let shifted = (tensor(&t) + 5.0).unwrap();
    let a = distillation_loss(&tensor(&s), &shifted, &y, &w, 2.0, 0.5).unwrap();
    let b = distillation_loss(&tensor(&s), &tensor(&t), &y, &w, 2.0, 0.5).unwrap();
    let d = (a - b).unwrap().abs().unwrap().to_scalar::<f32>().unwrap();
    assert!(d < 1e-5, "{d}");
}

/// A PFN with two 16-wide Phi layers and one 16-wide F layer.
fn small_pfn() -> noether_train::ModelConfig {
    let text = "model = \"pfn\"\n[pfn]\nphi_sizes = [16, 16]\nf_sizes = [16]";
    TrainConfig::from_toml(text, Path::new("inline"))
        .unwrap()
        .model
}

#[test]
fn distilled_student_trains_and_alpha_zero_is_plain_training() {
    let dir = tempfile::tempdir().unwrap();
    let teacher_config = tiny_lorentznet("");
    let data = RunData::load(&teacher_config).unwrap();
    train(
        &teacher_config,
        &data,
        &options(&dir.path().join("teacher")),
    )
    .unwrap();
    let teacher = dir.path().join("teacher/best.safetensors");
    let student = |alpha: f64, out: &str| {
        let mut c = tiny_lorentznet("");
        c.model = small_pfn();
        c.distill = Some(noether_train::DistillConfig {
            teacher: teacher.clone(),
            temperature: 2.0,
            alpha,
        });
        let s = train(&c, &data, &options(&dir.path().join(out)))
            .unwrap()
            .unwrap();
        let w = checkpoint::load(&dir.path().join(out).join("last.safetensors"))
            .unwrap()
            .tensors;
        (s, bits(&w["head.weight"]))
    };
    let mut plain = tiny_lorentznet("");
    plain.model = small_pfn();
    train(&plain, &data, &options(&dir.path().join("plain"))).unwrap();
    let plain_head = bits(
        &checkpoint::load(&dir.path().join("plain/last.safetensors"))
            .unwrap()
            .tensors["head.weight"],
    );
    let (_, zero) = student(0.0, "alpha0");
    assert_eq!(
        zero, plain_head,
        "alpha = 0 must be plain cross-entropy training"
    );
    let (summary, half) = student(0.5, "alpha05");
    assert_ne!(half, plain_head, "the teacher term must change training");
    assert!(summary.auc > 0.5, "{}", summary.auc);
}

#[test]
fn pruning_removes_the_smallest_weights_and_keeps_them_removed() {
    let config = tiny_lorentznet("[prune]\nsparsity = 0.5");
    let (_, varmap) = build_model(&config, 2).unwrap();
    let freeze = Freeze::new(&config).unwrap();
    let masks = magnitude_prune(&varmap, config.prune.as_ref().unwrap(), &freeze).unwrap();
    assert_eq!(masks.pruned(), masks.targeted() / 2);
    let (mut zero_max, mut kept_min, mut zeros) = (0f32, f32::MAX, 0);
    let weights: Vec<(String, Vec<f32>)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, v)| n.ends_with(".weight") && v.rank() == 2)
        .map(|(n, v)| {
            (
                n.clone(),
                v.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
            )
        })
        .collect();
    // The pruned weights were the smallest: compare with a fresh, unpruned build.
    let (_, fresh) = build_model(&config, 2).unwrap();
    let fresh = fresh.data().lock().unwrap();
    for (name, values) in &weights {
        let original: Vec<f32> = fresh[name]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (v, o) in values.iter().zip(&original) {
            if *v == 0.0 {
                zeros += 1;
                zero_max = zero_max.max(o.abs());
            } else {
                assert_eq!(v, o, "{name}: kept weights are unchanged");
                kept_min = kept_min.min(o.abs());
            }
        }
    }
    assert_eq!(zeros, masks.pruned());
    assert!(zero_max <= kept_min, "{zero_max} > {kept_min}");

    // Through training, pruned weights stay zero; biases stay dense.
    let data = RunData::load(&config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let summary = train(&config, &data, &options(dir.path()))
        .unwrap()
        .unwrap();
    let after = checkpoint::load(&dir.path().join("last.safetensors"))
        .unwrap()
        .tensors;
    let (_, seeded) = build_model(&config, config.train.seed).unwrap();
    let pruned_run = magnitude_prune(
        &seeded,
        config.prune.as_ref().unwrap(),
        &Freeze::new(&config).unwrap(),
    )
    .unwrap();
    let seeded = seeded.data().lock().unwrap();
    for (name, var) in seeded.iter() {
        if name.ends_with(".weight") && var.rank() == 2 {
            let before: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            let now: Vec<f32> = after[name].flatten_all().unwrap().to_vec1().unwrap();
            for (b, a) in before.iter().zip(&now) {
                if *b == 0.0 {
                    assert_eq!(*a, 0.0, "{name}: a pruned weight came back");
                }
            }
        }
    }
    assert!(summary.nonzero_params <= summary.params - pruned_run.pruned());
    assert!(summary.nonzero_params > summary.params / 3);
}

#[test]
fn bad_transfer_settings_name_the_key() {
    for (extra, key) in [
        ("[lora]\nr = 0", "lora.r"),
        ("[lora]\nalpha = -1.0", "lora.alpha"),
        ("[lora]\ntargets = 'nothing-matches'", "lora.targets"),
        ("[prune]\nsparsity = 1.0", "prune.sparsity"),
        ("[distill]\nteacher = 'x'\nalpha = 2.0", "distill.alpha"),
        (
            "[distill]\nteacher = 'x'\ntemperature = 0.0",
            "distill.temperature",
        ),
    ] {
        let text = format!("model = \"pfn\"\n{extra}");
        let err = TrainConfig::from_toml(&text, Path::new("inline"))
            .and_then(|c| build_model(&c, 0).map(|_| ()));
        match err {
            Err(TrainError::InvalidConfig { key: k, .. }) => assert_eq!(k, key, "{extra}"),
            other => panic!("{extra}: expected an error naming {key}, got {other:?}"),
        }
    }
    let mut config = tiny_lorentznet("");
    config.optim.layer_decay = 0.0;
    assert!(matches!(
        config.validate(),
        Err(TrainError::InvalidConfig { key, .. }) if key == "optim.layer_decay"
    ));
}

/// The model weights of a checkpoint (optimizer state left out), as bit patterns.
fn weight_bits(path: &Path) -> Vec<(String, Vec<u32>)> {
    let tensors = checkpoint::load(path).unwrap().tensors;
    let mut out: Vec<_> = tensors
        .iter()
        .filter(|(k, _)| !k.starts_with("optimizer."))
        .map(|(k, t)| (k.clone(), bits(t)))
        .collect();
    out.sort();
    out
}

/// The validation AUC of `epoch` in a run directory's `history.csv`.
fn history_val_auc(dir: &Path, epoch: usize) -> f64 {
    let text = std::fs::read_to_string(dir.join("history.csv")).unwrap();
    let row = text.lines().nth(epoch).unwrap();
    row.split(',').nth(4).unwrap().parse().unwrap()
}

#[test]
fn eval_on_start_keeps_a_pretrained_model_that_fine_tuning_only_worsens() {
    let dir = tempfile::tempdir().unwrap();
    let mut pre = tiny_lorentznet("");
    pre.train.epochs = 3;
    let data = RunData::load(&pre).unwrap();
    let pre_dir = dir.path().join("pretrained");
    let pretrained = train(&pre, &data, &options(&pre_dir)).unwrap().unwrap();
    let best = pre_dir.join("best.safetensors");
    let tensors = checkpoint::load(&best).unwrap().tensors;
    let init: InitHook = Arc::new(move |varmap| {
        load_weights(varmap, &tensors, Path::new("pretrained")).map_err(|e| e.to_string())
    });
    // A learning rate that wrecks the model: every trained epoch is worse than the start.
    let mut ft = pre.clone();
    ft.optim.lr = 1.0;
    ft.train.epochs = 2;
    ft.train.eval_on_start = true;
    let run = |config: &TrainConfig, name: &str, stop_after, resume| {
        let opts = RunOptions {
            init: Some(Arc::clone(&init)),
            stop_after,
            resume,
            ..options(&dir.path().join(name))
        };
        train(config, &data, &opts).unwrap()
    };
    let kept = run(&ft, "kept", None, false).unwrap();
    let start = history_val_auc(&pre_dir, pretrained.best_epoch);
    assert_eq!(kept.start_val_auc, Some(start));
    assert_eq!(kept.best_epoch, 0);
    // An interrupted run remembers the start through its checkpoint.
    assert!(run(&ft, "resumed", Some(1), false).is_none());
    let resumed = run(&ft, "resumed", None, true).unwrap();
    assert_eq!(
        (resumed.start_val_auc, resumed.best_epoch),
        (Some(start), 0)
    );
    assert_eq!(kept.auc.to_bits(), pretrained.auc.to_bits());
    assert_eq!(
        weight_bits(&dir.path().join("kept/best.safetensors")),
        weight_bits(&best)
    );
    // Without it the same run tests its best trained epoch.
    ft.train.eval_on_start = false;
    let trained = run(&ft, "trained", None, false).unwrap();
    assert_eq!(trained.start_val_auc, None);
    assert!(trained.best_epoch >= 1);
    assert!(
        trained.auc < pretrained.auc,
        "{} {}",
        trained.auc,
        pretrained.auc
    );
}

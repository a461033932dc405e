//! Whole runs on the bundled jets: resume after an interruption gives bit-identical
//! weights, a diverging run stops with a message and keeps the last good checkpoint,
//! gradient accumulation equals the larger batch, the run directory is complete, and bad
//! configs are rejected naming the key.

mod common;

use common::{bits, options, root};

use std::path::Path;

use noether_train::{checkpoint, train, RunData, RunOptions, TrainConfig, TrainError};

/// A tiny LorentzNet (BatchNorm running statistics and dropout both in play).
fn tiny(extra: &str) -> TrainConfig {
    let text = format!(
        r#"
model = "lorentznet"
[lorentznet]
n_hidden = 8
n_layers = 2
dropout = 0.3
[data]
train_jets = 120
val_jets = 60
n_max = 10
batch_size = 16
[optim]
lr = 3e-3
grad_clip = 1.0
[train]
epochs = 3
seed = 7
bootstrap = 20
{extra}
"#
    );
    common::bundled(&text)
}

fn tensors(path: &Path) -> Vec<(String, Vec<u32>)> {
    let ckpt = checkpoint::load(path).unwrap();
    let mut out: Vec<(String, Vec<u32>)> = ckpt
        .tensors
        .iter()
        .map(|(k, t)| {
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            (k.clone(), v.iter().map(|x| x.to_bits()).collect())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn resumed_run_is_bit_identical_to_an_uninterrupted_one() {
    let config = tiny("");
    let data = RunData::load(&config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (full, parts) = (dir.path().join("full"), dir.path().join("parts"));
    let summary = train(&config, &data, &options(&full)).unwrap().unwrap();
    let stopped = train(
        &config,
        &data,
        &RunOptions {
            stop_after: Some(1),
            ..options(&parts)
        },
    )
    .unwrap();
    assert!(stopped.is_none());
    let resumed = train(
        &config,
        &data,
        &RunOptions {
            resume: true,
            ..options(&parts)
        },
    )
    .unwrap()
    .unwrap();
    let (a, b) = (
        tensors(&full.join("last.safetensors")),
        tensors(&parts.join("last.safetensors")),
    );
    assert_eq!(a.len(), b.len());
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(va == vb, "tensor {na} differs after resuming");
    }
    assert_eq!(summary.auc, resumed.auc);
    // The run directory is complete and metrics.json has the agreed keys.
    for file in [
        "config.toml",
        "metrics.json",
        "history.csv",
        "roc.svg",
        "training.svg",
        "best.safetensors",
        "last.safetensors",
    ] {
        assert!(full.join(file).exists(), "{file} missing");
    }
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(full.join("metrics.json")).unwrap()).unwrap();
    for key in [
        "acc",
        "auc",
        "rejection_at_0.3",
        "rejection_at_0.5",
        "train_jets",
        "params",
        "seconds",
    ] {
        assert!(metrics.get(key).is_some(), "metrics.json lacks {key}");
    }
    assert_eq!(metrics["train_jets"], 120);
    // Training FLOPs: 3 x the model's forward count per jet, jets and epochs (3 here).
    let forward = config.model.forward_flops(config.data.n_max) as f64;
    assert!(forward > 0.0);
    assert_eq!(metrics["forward_flops_per_jet"].as_f64(), Some(forward));
    assert_eq!(
        metrics["train_flops"].as_f64(),
        Some(3.0 * forward * 120.0 * 3.0)
    );
    let history = std::fs::read_to_string(full.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 4, "{history}");
    // The resolved config round-trips.
    let text = std::fs::read_to_string(full.join("config.toml")).unwrap();
    let reread = TrainConfig::from_toml(&text, &full.join("config.toml")).unwrap();
    assert_eq!(reread.model, config.model);
}

#[test]
fn a_diverging_run_stops_and_keeps_the_last_good_checkpoint() {
    let config = tiny("");
    let data = RunData::load(&config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    train(
        &config,
        &data,
        &RunOptions {
            stop_after: Some(1),
            ..options(dir.path())
        },
    )
    .unwrap();
    let before = std::fs::read(dir.path().join("last.safetensors")).unwrap();
    let mut diverging = config.clone();
    diverging.optim.lr = 1e30;
    diverging.optim.grad_clip = 0.0;
    diverging.optim.name = noether_train::OptimizerName::Sgd;
    // A changed learning rate on --resume needs --force (it would misdescribe the run).
    let err = train(
        &diverging,
        &data,
        &RunOptions {
            resume: true,
            force: true,
            ..options(dir.path())
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, TrainError::NonFiniteLoss { epoch: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("last good checkpoint"));
    assert_eq!(
        std::fs::read(dir.path().join("last.safetensors")).unwrap(),
        before
    );
}

#[test]
fn bad_configs_name_the_key() {
    let parse = |text: &str| {
        TrainConfig::from_toml(text, Path::new("bad.toml"))
            .unwrap_err()
            .to_string()
    };
    let unknown = parse("model = \"pfn\"\n[optim]\nlrr = 0.1\n");
    assert!(
        unknown.contains("lrr") && unknown.contains("bad.toml"),
        "{unknown}"
    );
    let negative = parse("model = \"pfn\"\n[optim]\nlr = -0.1\n");
    assert!(negative.contains("optim.lr"), "{negative}");
    let zero = parse("model = \"pfn\"\n[data]\nn_max = 0\n");
    assert!(zero.contains("data.n_max"), "{zero}");
    let model = parse("model = \"gatr\"\n");
    assert!(model.contains("gatr"), "{model}");
    let regex = parse("model = \"pfn\"\n[[optim.groups]]\npattern = \"(\"\nlr_mult = 2.0\n");
    assert!(regex.contains("optim.groups[0].pattern"), "{regex}");
    let dropout = parse("model = \"pelican\"\n[pelican]\ndropout = 1.5\n");
    assert!(dropout.contains("pelican.dropout"), "{dropout}");

    let mut config = tiny("");
    config.data.train_jets = 1_000_000;
    let err = RunData::load(&config).unwrap_err().to_string();
    assert!(
        err.contains("data.train_jets") && err.contains("train.h5"),
        "{err}"
    );
}

/// Every config in `configs/` parses and builds its model (in fixed point where it has a
/// `[quant]` section, whose graph checks then run).
#[test]
fn shipped_configs_parse_and_build() {
    let mut names: Vec<std::path::PathBuf> = std::fs::read_dir(root().join("configs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 18, "{} configs", names.len());
    for path in &names {
        let config = TrainConfig::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (model, _) = noether_train::build_model(&config, 0)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if config.quant.is_some() {
            model
                .quant_graph()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}

#[test]
fn gradient_accumulation_equals_the_larger_batch() {
    // PFN without dropout or BatchNorm: two accumulated half-batches of 16 give the
    // mean gradient of the batch of 32.
    let text = |batch: usize, accumulate: usize| {
        format!(
            "model = \"pfn\"\n[pfn]\nphi_sizes = [8, 8]\nf_sizes = [8]\n[data]\ntrain_jets = 64\nval_jets = 40\nn_max = 10\nbatch_size = {batch}\n[optim]\naccumulate = {accumulate}\n[schedule]\nkind = \"constant\"\n[train]\nepochs = 1\nbootstrap = 0\n"
        )
    };
    let run = |batch: usize, accumulate: usize| {
        let mut config =
            TrainConfig::from_toml(&text(batch, accumulate), Path::new("inline")).unwrap();
        config.data.train = root().join("data/train.h5");
        config.data.val = root().join("data/val.h5");
        config.data.test = root().join("data/val.h5");
        let data = RunData::load(&config).unwrap();
        let dir = tempfile::tempdir().unwrap();
        train(&config, &data, &options(dir.path())).unwrap();
        tensors(&dir.path().join("last.safetensors"))
    };
    let (big, accumulated) = (run(32, 1), run(16, 2));
    for ((name, a), (_, b)) in big.iter().zip(&accumulated) {
        for (x, y) in a.iter().zip(b) {
            let (x, y) = (f32::from_bits(*x), f32::from_bits(*y));
            assert!(
                (x - y).abs() <= 1e-5 * x.abs().max(1e-3),
                "{name}: {x} vs {y}"
            );
        }
    }
}

#[test]
fn linear_probing_moves_only_the_head_first() {
    let config = tiny("");
    let mut lp = config.clone();
    lp.optim.linear_probe_epochs = 1;
    let data = RunData::load(&lp).unwrap();
    let dir = tempfile::tempdir().unwrap();
    train(
        &lp,
        &data,
        &RunOptions {
            stop_after: Some(1),
            ..options(dir.path())
        },
    )
    .unwrap();
    let after = checkpoint::load(&dir.path().join("last.safetensors"))
        .unwrap()
        .tensors;
    let (_, init) = noether_train::seeded_model(&lp.model, lp.train.seed).unwrap();
    let init = init.data().lock().unwrap();
    let (mut moved, mut kept) = (0, 0);
    for (name, var) in init
        .iter()
        .filter(|(n, _)| !noether_equivariant::is_buffer(n))
    {
        let same = bits(var.as_tensor()) == bits(&after[name]);
        if name.starts_with("graph_dec.3.") {
            assert!(!same, "head {name} did not move during linear probing");
            moved += 1;
        } else {
            assert!(same, "{name} moved during linear probing");
            kept += 1;
        }
    }
    assert!(moved == 2 && kept > 10, "{moved} {kept}");
}

/// `data.extra_tests`: the best checkpoint is also scored on each named file. Scoring the
/// test file itself again must give exactly the test metrics; another file (the bundled
/// test jets, 5,000 of them) its own; a name that cannot be a column is refused by key.
#[test]
fn extra_test_sets_are_scored_with_the_best_checkpoint() {
    let mut config = tiny("");
    config.train.epochs = 1;
    let test_file = config.data.test.clone();
    config.data.extra_tests.insert("same".into(), test_file);
    config
        .data
        .extra_tests
        .insert("bundled_test".into(), root().join("data/test.h5"));
    let data = RunData::load(&config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let summary = train(&config, &data, &options(dir.path()))
        .unwrap()
        .expect("the run finishes");
    let same = &summary.extra_tests["same"];
    assert_eq!(same.test_jets, summary.test_jets);
    assert_eq!(same.auc.to_bits(), summary.auc.to_bits());
    assert_eq!(same.test_loss.to_bits(), summary.test_loss.to_bits());
    assert_eq!(same.intervals, summary.intervals);
    let other = &summary.extra_tests["bundled_test"];
    assert_eq!(other.test_jets, 5000);
    assert!(other.auc > 0.5 && other.auc != summary.auc, "{other:?}");
    let written = std::fs::read_to_string(dir.path().join("metrics.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&written).unwrap();
    assert_eq!(json["extra_tests"]["bundled_test"]["test_jets"], 5000);

    let bad = TrainConfig::from_toml(
        "model = \"pfn\"\n[data.extra_tests]\n\"a.b\" = \"data/test.h5\"\n",
        Path::new("bad.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(bad.contains("data.extra_tests.a.b"), "{bad}");
}

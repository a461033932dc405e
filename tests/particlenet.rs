//! ParticleNet from the command line, against weaver-core's own outputs
//! (`../shared/reference/particlenet/`, skipped with a message when absent): the JetClass
//! `.pt` read directly reproduces weaver-core's logits (all ten classes, one line per jet
//! named by its file row), `convert-checkpoint` writes a safetensors file that evaluates
//! identically, multi-class scoring for a binary task, fine-tuning from the JetClass
//! head's QCD and top rows, and bad class indices or data configs refused by name.

mod common;

use std::path::{Path, PathBuf};

use common::{noether, s};
use noether::data::open_reader;

fn reference() -> Option<PathBuf> {
    let dir = Path::new("../shared/reference/particlenet");
    if dir.join("parity_jets.h5").exists() {
        Some(dir.to_owned())
    } else {
        eprintln!("SKIPPED: ../shared/reference/particlenet is absent");
        None
    }
}

fn eval_logits(checkpoint: &Path, dir: &Path) -> Vec<Vec<f64>> {
    let (ok, text) = noether(&[
        "eval",
        "--checkpoint",
        s(checkpoint),
        "--model",
        "particlenet",
        "--data-config",
        s(&dir.join("JetClass_kin.yaml")),
        "--data",
        s(&dir.join("parity_jets.h5")),
        "--print-logits",
    ]);
    assert!(ok, "{text}");
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(&words[..3], &["jet", &i.to_string(), "logits"], "{line}");
            words[3..].iter().map(|w| w.parse().unwrap()).collect()
        })
        .collect()
}

#[test]
fn the_jetclass_pt_checkpoint_reproduces_weaver_core_from_the_command_line() {
    let Some(dir) = reference() else { return };
    let got = eval_logits(&dir.join("ParticleNet_kin.pt"), &dir);
    let want = open_reader(&dir.join("parity_jets.h5"))
        .unwrap()
        .read_f32_rows("logits", 0, 16)
        .unwrap();
    assert_eq!(got.len(), 16);
    let mut worst = 0.0_f64;
    for (i, row) in got.iter().enumerate() {
        assert_eq!(row.len(), 10);
        for (c, g) in row.iter().enumerate() {
            let w = f64::from(want[i * 10 + c]);
            worst = worst.max((g - w).abs() / w.abs().max(1e-2));
        }
    }
    assert!(worst < 1e-4, "worst relative logit error {worst:.2e}");

    // The converted file evaluates to the same logits, bit for bit.
    let out = std::env::temp_dir().join(format!("noether-pn-{}.safetensors", std::process::id()));
    let (ok, text) = noether(&[
        "convert-checkpoint",
        s(&dir.join("ParticleNet_kin.pt")),
        s(&out),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("wrote 81 tensors"), "{text}");
    assert_eq!(eval_logits(&out, &dir), got);
    let _ = std::fs::remove_file(&out);
}

#[test]
fn a_multiclass_model_scores_a_binary_task_by_named_classes() {
    let Some(dir) = reference() else { return };
    let base = [
        "eval",
        "--model",
        "particlenet",
        "--checkpoint",
        "../shared/reference/particlenet/ParticleNet_kin.pt",
        "--data-config",
        "../shared/reference/particlenet/JetClass_kin.yaml",
        "--data",
        "../shared/reference/particlenet/parity_jets.h5",
    ];
    let _ = dir;
    let run = |extra: &[&str]| noether(&[&base[..], extra].concat());
    let (ok, text) = run(&["--signal-classes", "8", "--background-classes", "0"]);
    assert!(ok, "{text}");
    assert!(text.starts_with("jets=16 acc="), "{text}");
    let (ok, text) = run(&[]);
    assert!(!ok && text.contains("--signal-classes"), "{text}");
    let (ok, text) = run(&["--signal-classes", "12", "--background-classes", "0"]);
    assert!(
        !ok && text.contains("class index 12 is out of range for a 10-class model"),
        "{text}"
    );
    let (ok, text) = run(&["--signal-classes", "8", "--background-classes", "8"]);
    assert!(!ok && text.contains("class 8 is in both"), "{text}");
}

#[test]
fn a_data_config_with_an_unknown_variable_is_refused_by_name() {
    let Some(dir) = reference() else { return };
    let yaml = std::fs::read_to_string(dir.join("JetClass_kin.yaml"))
        .unwrap()
        .replace("np.log(part_pt/jet_pt)", "np.log(part_pt/jet_ptd)");
    let bad = std::env::temp_dir().join(format!("noether-bad-{}.yaml", std::process::id()));
    std::fs::write(&bad, yaml).unwrap();
    let (ok, text) = noether(&[
        "eval",
        "--model",
        "particlenet",
        "--checkpoint",
        s(&dir.join("ParticleNet_kin.pt")),
        "--data-config",
        s(&bad),
        "--data",
        s(&dir.join("parity_jets.h5")),
        "--print-logits",
    ]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("jet_ptd") && text.contains("new_variables.part_logptrel"),
        "{text}"
    );
    assert!(text.contains(s(&bad)), "{text}");
    let _ = std::fs::remove_file(&bad);
}

/// A paper-size ParticleNet config that fine-tunes in seconds (64 validation jets).
fn small_finetune_config(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string("configs/particlenet.toml")
        .unwrap()
        .replace("batch_size = 64", "batch_size = 32\nval_jets = 64");
    let path = dir.join("particlenet-small.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `noether finetune` from the JetClass `.pt` with weaver's `top_kin.yaml`: 64 bundled
/// training jets, one epoch, tested on the parity jets, then `extra` arguments.
fn finetune_pt(dir: &Path, config: &Path, out: &Path, extra: &[&str]) -> (bool, String) {
    let (pt, yaml, parity) = (
        dir.join("ParticleNet_kin.pt"),
        dir.join("top_kin.yaml"),
        dir.join("parity_jets.h5"),
    );
    let mut args = vec![
        "finetune",
        "--from",
        s(&pt),
        "--config",
        s(config),
        "--data-config",
        s(&yaml),
        "--data",
        "data/train.h5",
        "--test-data",
        s(&parity),
        "--train-jets",
        "64",
        "--epochs",
        "1",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    noether(&args)
}

#[test]
fn finetuning_the_pt_checkpoint_replaces_the_head_and_says_so() {
    let Some(dir) = reference() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let config = small_finetune_config(work);
    let out = work.join("run");
    let (ok, text) = finetune_pt(&dir, &config, &out, &["--seed", "1", "--quiet"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("66 applied") && text.contains("13 ignored"),
        "{text}"
    );
    assert!(
        text.contains("replaced    fc.1.weight: a new head [2, 256]"),
        "{text}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("load_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["replaced"].as_array().unwrap().len(), 2);
    assert!(report["missing"].as_array().unwrap().is_empty());
    assert!(out.join("metrics.json").exists() && out.join("best.safetensors").exists());
    let resolved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        resolved.contains("n_max = 128") && resolved.contains("part_logptrel"),
        "{resolved}"
    );

    // A checkpoint of another architecture is refused naming a tensor; a data config
    // whose classes differ from the model's is refused before any run directory exists.
    let (ok, text) = noether(&[
        "finetune",
        "--from",
        s(&dir.join("ParticleNet_kin.pt")),
        "--config",
        "configs/particlenet-cpu.toml",
        "--train-jets",
        "64",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        s(&work.join("lite")),
    ]);
    assert!(
        !ok && text.contains("tensor 'edge_convs.0.bns.0.bias' has shape [64]"),
        "{text}"
    );
    assert!(!work.join("lite/load_report.json").exists());
    let (ok, text) = noether(&[
        "finetune",
        "--from",
        s(&dir.join("ParticleNet_kin.pt")),
        "--config",
        s(&config),
        "--data-config",
        s(&dir.join("JetClass_kin.yaml")),
        "--quiet",
        "--out",
        s(&work.join("classes")),
    ]);
    assert!(
        !ok && text.contains("names 10 classes, the model's n_class is 2"),
        "{text}"
    );
    assert!(!work.join("classes").exists());
}

/// The cross-entropy of weaver-core's logits of classes 0 (QCD) and 8 (top) on the
/// parity jets, and those jets' AUC under the zero-shot score: what a 2-class head taken
/// from these rows of the JetClass head must give before any step.
fn zero_shot_two_class_loss(dir: &Path) -> f64 {
    let file = open_reader(&dir.join("parity_jets.h5")).unwrap();
    let logits = file.read_f32_rows("logits", 0, 16).unwrap();
    let labels = file.read_f64_rows("is_signal", 0, 16).unwrap();
    let losses = labels.iter().enumerate().map(|(i, &y)| {
        let (qcd, top) = (f64::from(logits[i * 10]), f64::from(logits[i * 10 + 8]));
        let log_norm =
            qcd.max(top) + ((qcd - qcd.max(top)).exp() + (top - qcd.max(top)).exp()).ln();
        log_norm - if y > 0.5 { top } else { qcd }
    });
    losses.sum::<f64>() / 16.0
}

/// The number after `key` in `text` (up to a comma or space).
fn number_after(text: &str, key: &str) -> f64 {
    let at = text
        .find(key)
        .unwrap_or_else(|| panic!("no '{key}' in {text}"))
        + key.len();
    let word = text[at..].split([',', ' ', '\n']).next().unwrap();
    word.parse()
        .unwrap_or_else(|_| panic!("'{word}' after '{key}' in {text}"))
}

#[test]
fn a_head_started_from_jetclass_classes_is_the_zero_shot_tagger() {
    let Some(dir) = reference() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let config = work.join("particlenet-rows.toml");
    let text = std::fs::read_to_string(small_finetune_config(work))
        .unwrap()
        .replace("val_jets = 64", "val_jets = 0");
    std::fs::write(&config, text).unwrap();
    let parity = dir.join("parity_jets.h5");
    let finetune = |classes: &str, out: &str| {
        finetune_pt(
            &dir,
            &config,
            &work.join(out),
            &[
                "--val-data",
                s(&parity),
                "--head-classes",
                classes,
                "--eval-on-start",
            ],
        )
    };
    let (ok, text) = finetune("0,8", "run");
    assert!(ok, "{text}");
    assert!(
        text.contains("selected    fc.1.weight: [2, 256] from rows of the checkpoint's [10, 256]"),
        "{text}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("run/load_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["selected"].as_array().unwrap().len(), 2);
    assert!(report["replaced"].as_array().unwrap().is_empty());
    // Epoch 0 (printed to 4 decimals) is weaver-core's tagger restricted to QCD vs top.
    let start_loss = number_after(&text, "epoch   0: val loss ");
    let want = zero_shot_two_class_loss(&dir);
    assert!(
        (start_loss - want).abs() < 2e-4,
        "epoch-0 loss {start_loss}, want {want:.5}"
    );
    let (ok, zero_shot) = noether(&[
        "eval",
        "--model",
        "particlenet",
        "--checkpoint",
        s(&dir.join("ParticleNet_kin.pt")),
        "--data-config",
        s(&dir.join("JetClass_kin.yaml")),
        "--data",
        s(&dir.join("parity_jets.h5")),
        "--signal-classes",
        "8",
        "--background-classes",
        "0",
    ]);
    assert!(ok, "{zero_shot}");
    assert_eq!(
        number_after(&text, "val AUC "),
        number_after(&zero_shot, "auc="),
        "{text}\n{zero_shot}"
    );

    // A class the checkpoint lacks is refused naming the tensor, before the load report
    // is written; a count other than the model's classes, before a run directory exists.
    let (ok, text) = finetune("0,10", "range");
    assert!(
        !ok && text
            .contains("tensor 'mod.fc.1.bias': head classes [0, 10]: class 10 is out of range"),
        "{text}"
    );
    assert!(!work.join("range/load_report.json").exists());
    let (ok, text) = finetune("8", "count");
    assert!(
        !ok && text.contains("init.head_classes")
            && text.contains("names 1 class(es), the model has 2"),
        "{text}"
    );
    assert!(!work.join("count").exists());
}

#[test]
fn a_data_config_for_a_model_that_takes_none_is_refused() {
    let Some(dir) = reference() else { return };
    let (ok, text) = noether(&[
        "train",
        "--config",
        "configs/pfn-cpu.toml",
        "--data-config",
        s(&dir.join("top_kin.yaml")),
        "--quiet",
        "--out",
        s(&std::env::temp_dir().join(format!("noether-pfn-yaml-{}", std::process::id()))),
    ]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("data.config") && text.contains("model = \"pfn\" takes none"),
        "{text}"
    );
}

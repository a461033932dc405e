//! ParticleNet from the command line, against weaver-core's own outputs
//! (`../shared/reference/particlenet/`, skipped with a message when absent): the JetClass
//! `.pt` read directly reproduces weaver-core's logits (all ten classes, one line per jet
//! named by its file row), `convert-checkpoint` writes a safetensors file that evaluates
//! identically, multi-class scoring for a binary task, and bad class indices or data
//! configs refused by name.

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

//! Regression tests of the reliability rules (issue 21), one per instance found by
//! hostile use of the release binary: no panic on any input, sizes checked against what
//! is there, loops that end on bad numbers, no silently used non-finite or inconsistent
//! numbers, per-jet outputs that keep their rows, errors that name the culprit early.

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{noether, root, s};
use safetensors::tensor::{Dtype, TensorView};

/// Runs `noether args`, killing it after `limit`: (finished in time, success, output).
fn noether_within(args: &[&str], limit: Duration) -> (bool, bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_noether"))
        .args(args)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(out).unwrap() + &std::fs::read_to_string(err).unwrap();
    (status.is_some(), status.is_some_and(|s| s.success()), text)
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

fn assert_no_panic(text: &str) {
    assert!(
        !text.contains("panicked") && !text.contains("memory allocation"),
        "{text}"
    );
}

/// A PFN trained for one epoch on 100 bundled jets, once per test process.
fn trained_checkpoint() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let out = std::env::temp_dir().join(format!("noether-reliability-{}", std::process::id()));
        let (ok, text) = noether(&[
            "train",
            "--config",
            "configs/pfn-cpu.toml",
            "--train-jets",
            "100",
            "--epochs",
            "1",
            "--quiet",
            "--force",
            "--out",
            s(&out),
        ]);
        assert!(ok, "{text}");
        out.join("best.safetensors")
    })
}

/// A tensor as stored: dtype, shape and bytes.
type Stored = (Dtype, Vec<usize>, Vec<u8>);

/// A copy of `source` at `dest` with each tensor passed through `tensor` (name, dtype,
/// shape, bytes) and the metadata through `meta`.
fn rewrite(
    source: &Path,
    dest: &Path,
    tensor: impl Fn(&str, Dtype, Vec<usize>, Vec<u8>) -> Stored,
    meta: impl Fn(&mut HashMap<String, String>),
) {
    let bytes = std::fs::read(source).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut metadata = header.metadata().clone().unwrap_or_default();
    meta(&mut metadata);
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, Stored)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let out = tensor(
                &name,
                view.dtype(),
                view.shape().to_vec(),
                view.data().to_vec(),
            );
            (name, out)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, (dtype, shape, data))| {
            (
                name.clone(),
                TensorView::new(*dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, Some(metadata), dest).unwrap();
}

/// The first float weight tensor (not an optimizer slot) of a checkpoint.
fn first_weight(source: &Path) -> String {
    let bytes = std::fs::read(source).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = file
        .names()
        .into_iter()
        .filter(|n| n.ends_with(".weight") && !n.starts_with("optimizer."))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.remove(0)
}

#[test]
fn printing_to_a_closed_pipe_ends_quietly_and_to_a_full_disk_is_an_error() {
    let data = root().join("data/test.h5");
    // The reader goes away before noether writes.
    let mut child = Command::new(env!("CARGO_BIN_EXE_noether"))
        .args(["inspect", s(&data)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_no_panic(&err);
    if Path::new("/dev/full").exists() {
        let out = Command::new(env!("CARGO_BIN_EXE_noether"))
            .args(["inspect", s(&data)])
            .stdout(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            )
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("writing to standard output") && err.contains("No space left"),
            "{err}"
        );
        assert_no_panic(&err);
    }
}

#[test]
fn scaling_fits_end_on_bad_scales_and_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs.csv");
    let mut csv = String::from("n,d,loss\n");
    for k in 0..8 {
        let n = 1e6 * 2f64.powi(k);
        let d = 20.0 * n;
        let loss = 1.7 + 400.0 / n.powf(0.34) + 410.0 / d.powf(0.28);
        writeln!(csv, "{n},{d},{loss}").unwrap();
    }
    std::fs::write(&runs, csv).unwrap();
    for (flag, key) in [
        ("--scale=0", "scale"),
        ("--scale=nan", "scale"),
        ("--scale=-1", "scale"),
        ("--scale=inf", "scale"),
        ("--delta=nan", "delta"),
        ("--delta=-1", "delta"),
    ] {
        let args = [
            "scaling",
            "fit",
            s(&runs),
            "--form",
            "chinchilla",
            "--n-col",
            "n",
            "--d-col",
            "d",
            flag,
        ];
        let (done, ok, text) = noether_within(&args, Duration::from_secs(60));
        assert!(done, "{flag}: still running after 60 s");
        assert!(
            !ok && text.contains(&format!("invalid {key}")),
            "{flag}: {text}"
        );
    }
}

#[test]
fn headers_declaring_more_jets_than_the_file_holds_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "hostile_extent_lorentznet.h5",
        "hostile_extent_lorentznet_gzip.h5",
    ] {
        let file = fixture(name);
        let out = dir.path().join("converted.h5");
        for args in [
            vec!["inspect", s(&file)],
            vec!["convert", s(&file), s(&out)],
            vec![
                "eval",
                "--model",
                "lorentznet",
                "--checkpoint",
                "none.pt",
                "--data",
                s(&file),
            ],
        ] {
            let (done, ok, text) = noether_within(&args, Duration::from_secs(20));
            assert!(done && !ok, "{args:?}: {text}");
            assert!(
                text.contains("dataset 'Pmu' declares shape [100000000, 8, 4]")
                    && text.contains("more than the file's"),
                "{args:?}: {text}"
            );
        }
        let (done, ok, text) = noether_within(
            &[
                "train",
                "--config",
                "configs/pfn-cpu.toml",
                "--data",
                s(&file),
                "--out",
                s(&dir.path().join("run")),
            ],
            Duration::from_secs(20),
        );
        assert!(done && !ok && text.contains("'Pmu' declares"), "{text}");
        assert!(!dir.path().join("run/config.toml").exists());
    }
    let (ok, text) = noether(&["inspect", s(&fixture("hostile_version_ragged.h5"))]);
    assert!(
        !ok && text.contains("'noether_layout_version' = 2") && text.contains("reads version 1"),
        "{text}"
    );
}

#[test]
fn absurd_config_sizes_and_numbers_are_named_before_anything_is_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let cases: [(&[&str], &str); 4] = [
        (&["--batch-size", "100000000"], "data.batch_size"),
        (&["--n-max", "1000000"], "data.n_max"),
        (&["--epochs", "100000000000"], "train.epochs"),
        // Within the bounds, beyond the machine: LorentzNet pair tensors of 2,000 jets of
        // 4,096 constituents (8 TB).
        (
            &["--batch-size", "2000", "--n-max", "4096"],
            "data.batch_size",
        ),
    ];
    for (extra, key) in cases {
        let mut args = vec![
            "train",
            "--config",
            "configs/lorentznet-cpu.toml",
            "--out",
            s(&out),
        ];
        args.extend_from_slice(extra);
        let (done, ok, text) = noether_within(&args, Duration::from_secs(60));
        assert!(done && !ok, "{extra:?}: {text}");
        assert!(text.contains(&format!("'{key}'")), "{extra:?}: {text}");
        assert_no_panic(&text);
    }
    let base = std::fs::read_to_string(root().join("configs/lorentznet-cpu.toml")).unwrap();
    for (from, to, key) in [
        ("n_hidden = 32", "n_hidden = 720000", "lorentznet.n_hidden"),
        ("n_hidden = 32", "n_hidden = 0", "lorentznet.n_hidden"),
        ("n_layers = 4", "n_layers = 100000", "lorentznet.n_layers"),
        ("c_weight = 0.005", "c_weight = nan", "lorentznet.c_weight"),
        (
            "n_hidden = 32",
            "n_hidden = 32\nn_class = 3",
            "lorentznet.n_class",
        ),
        ("n_max = 30", "n_max = 0", "data.n_max"),
    ] {
        assert!(base.contains(from));
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, base.replacen(from, to, 1)).unwrap();
        let (done, ok, text) = noether_within(
            &["train", "--config", s(&config), "--out", s(&out)],
            Duration::from_secs(30),
        );
        assert!(
            done && !ok && text.contains(&format!("'{key}'")),
            "{to}: {text}"
        );
        assert_no_panic(&text);
    }
}

#[test]
fn one_class_evaluation_files_are_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // The JetNet fixture holds only background jets (JetNet has no labels).
    let one_class = fixture("jetnet_t30.h5");
    let (done, ok, text) = noether_within(
        &[
            "train",
            "--config",
            "configs/pfn-cpu.toml",
            "--train-jets",
            "100",
            "--test-data",
            s(&one_class),
            "--out",
            s(&out),
        ],
        Duration::from_secs(60),
    );
    assert!(done && !ok, "{text}");
    assert!(
        text.contains(&format!("test file {}", one_class.display()))
            && text.contains("jets are background"),
        "{text}"
    );
    assert!(!text.contains("epoch"), "trained before refusing: {text}");
    assert!(!out.join("config.toml").exists());
}

#[test]
fn print_logits_names_jets_by_their_row_in_the_file() {
    let checkpoint = trained_checkpoint();
    // Row 3 of the JetNet fixture has no constituents.
    let data = fixture("jetnet_t30.h5");
    let out = Command::new(env!("CARGO_BIN_EXE_noether"))
        .args([
            "eval",
            "--checkpoint",
            s(checkpoint),
            "--data",
            s(&data),
            "--print-logits",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    let rows: Vec<usize> = stdout
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(rows, vec![0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11], "{stdout}");
    assert!(
        stderr.contains("skipped 1 jets without constituents (rows 3)"),
        "{stderr}"
    );
}

#[test]
fn non_finite_integer_and_unloadable_checkpoints_are_refused_naming_the_tensor() {
    let checkpoint = trained_checkpoint();
    let dir = tempfile::tempdir().unwrap();
    let weight = first_weight(checkpoint);
    let nan = dir.path().join("nan.safetensors");
    rewrite(
        checkpoint,
        &nan,
        |name, dtype, shape, mut data| {
            if name == weight {
                data[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
            }
            (dtype, shape, data)
        },
        |_| {},
    );
    let data = root().join("data/test.h5");
    for args in [
        vec!["eval", "--checkpoint", s(&nan), "--data", s(&data)],
        vec![
            "diagnose",
            "hessian",
            "--checkpoint",
            s(&nan),
            "--data",
            s(&data),
            "--jets",
            "50",
            "--out",
            s(dir.path()),
        ],
    ] {
        let (done, ok, text) = noether_within(&args, Duration::from_secs(60));
        assert!(done && !ok, "{args:?}: {text}");
        assert!(
            text.contains(&format!("tensor '{weight}' holds 1 non-finite value")),
            "{args:?}: {text}"
        );
    }
    let int = dir.path().join("int.safetensors");
    rewrite(
        checkpoint,
        &int,
        |name, dtype, shape, data| {
            if name == weight {
                (Dtype::I32, shape, data)
            } else {
                (dtype, shape, data)
            }
        },
        |_| {},
    );
    let (ok, text) = noether(&["eval", "--checkpoint", s(&int), "--data", s(&data)]);
    assert!(
        !ok && text.contains(&format!("tensor '{weight}' has dtype")),
        "{text}"
    );
    // A zero-width layer in the checkpoint's own config.
    let zero = dir.path().join("zero.safetensors");
    rewrite(
        checkpoint,
        &zero,
        |_, dtype, shape, data| (dtype, shape, data),
        |meta| {
            let config = meta["config"].clone();
            let start = config.find("phi_sizes = [").unwrap();
            let end = start + config[start..].find(']').unwrap() + 1;
            meta.insert(
                "config".into(),
                format!("{}phi_sizes = [0]{}", &config[..start], &config[end..]),
            );
        },
    );
    let (ok, text) = noether(&["eval", "--checkpoint", s(&zero), "--data", s(&data)]);
    assert!(!ok && text.contains("phi_sizes[0]"), "{text}");
    assert_no_panic(&text);
}

#[test]
fn a_finetune_that_loads_no_tensor_fails() {
    let checkpoint = trained_checkpoint();
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("renamed.safetensors");
    rewrite(
        checkpoint,
        &renamed,
        |_, dtype, shape, data| (dtype, shape, data),
        |_| {},
    );
    let out = dir.path().join("run");
    let (ok, text) = noether(&[
        "finetune",
        "--from",
        s(&renamed),
        "--config",
        "configs/pfn-cpu.toml",
        "--train-jets",
        "100",
        "--epochs",
        "1",
        "--quiet",
        "--remap",
        "^=elsewhere.",
        "--out",
        s(&out),
    ]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("no tensor of the checkpoint matches a model parameter"),
        "{text}"
    );
    assert!(text.contains("--remap"), "{text}");
    assert!(!out.join("best.safetensors").exists());
}

#[test]
fn more_threads_than_cores_are_bounded_and_said() {
    let checkpoint = trained_checkpoint();
    let (ok, text) = noether(&[
        "eval",
        "--checkpoint",
        s(checkpoint),
        "--data",
        "data/val.h5",
        "--threads",
        "100000",
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("threads = 100000 exceeds the") && text.contains("cores of this machine"),
        "{text}"
    );
}

#[test]
fn a_sweep_of_ten_billion_trials_is_named_before_it_is_expanded() {
    let dir = tempfile::tempdir().unwrap();
    let axes: String = [
        "train.seed",
        "optim.lr",
        "optim.weight_decay",
        "data.batch_size",
        "train.epochs",
        "data.n_max",
        "optim.grad_clip",
        "data.train_jets",
        "train.patience",
        "optim.eps",
    ]
    .iter()
    .fold(String::new(), |mut text, k| {
        writeln!(text, "\"{k}\" = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]").unwrap();
        text
    });
    let sweep = common::sweep_file(dir.path(), "huge.toml", &format!("[axes]\n{axes}"));
    let (done, ok, text) = noether_within(
        &[
            "sweep",
            "plan",
            s(&sweep),
            "--out",
            s(&dir.path().join("plan")),
        ],
        Duration::from_secs(30),
    );
    assert!(done && !ok, "{text}");
    assert!(
        text.contains("10000000000 trials, more than 100000"),
        "{text}"
    );
}

#[test]
fn a_path_needs_both_of_its_ends() {
    let (ok, text) = noether(&[
        "diagnose",
        "path",
        "--checkpoint",
        "a",
        "--to",
        "b",
        "--data",
        "c",
        "--points",
        "1",
    ]);
    assert!(
        !ok && text.contains("--points") && text.contains("2..="),
        "{text}"
    );
}

//! The `noether` binary's command-line contract.

mod common;

use common::noether;

use std::process::Command;

#[test]
fn help_lists_subcommands() {
    let (ok, text) = noether(&["--help"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("Usage: noether") && text.contains("version"),
        "{text}"
    );
}

#[test]
fn version_prints_package_version() {
    let (ok, text) = noether(&["version"]);
    assert!(ok, "{text}");
    assert_eq!(
        text.trim(),
        format!("noether {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn unknown_subcommand_fails_with_usage() {
    let (ok, text) = noether(&["frobnicate"]);
    assert!(!ok);
    assert!(text.contains("unrecognized subcommand"), "{text}");
}

#[test]
fn inspect_prints_layout_datasets_and_counts() {
    let (ok, text) = noether(&["inspect", "data/train.h5"]);
    assert!(ok, "{text}");
    assert!(text.contains("layout: ragged"), "{text}");
    assert!(
        text.contains("constituents: shape [406412, 4] dtype f32 filters shuffle+gzip"),
        "{text}"
    );
    assert!(text.lines().any(|l| l == "jets=6000 signal=2988"), "{text}");
}

#[test]
fn inspect_of_a_non_hdf5_file_fails_with_its_name() {
    let (ok, text) = noether(&["inspect", "README.md"]);
    assert!(!ok);
    assert!(
        text.contains("README.md") && text.contains("not a readable HDF5 file"),
        "{text}"
    );
}

#[test]
fn convert_writes_a_ragged_file_that_inspects_the_same() {
    let out = std::env::temp_dir().join(format!("noether-cli-convert-{}.h5", std::process::id()));
    let out_str = out.to_str().unwrap();
    let (ok, text) = noether(&["convert", "data/val.h5", out_str, "--max-jets", "300"]);
    assert!(ok, "{text}");
    assert!(text.contains("wrote 300 jets"), "{text}");
    let (ok, text) = noether(&["inspect", out_str]);
    assert!(ok && text.contains("jets=300 signal="), "{text}");
    let (ok, text) = noether(&["convert", "data/val.h5", out_str, "--layout", "nonsense"]);
    assert!(!ok && text.contains("'nonsense' is not one of"), "{text}");
    std::fs::remove_file(out).ok();
}

fn synthetic_runs_csv() -> std::path::PathBuf {
    use std::fmt::Write;
    // L = 1.69 + 406.4 / N^0.339 + 410.7 / D^0.285 on a 6 x 6 grid.
    let mut text = String::from("N,D,loss\n");
    for i in 0..6 {
        for j in 0..6 {
            let (n, d) = (1e7 * 4f64.powi(i), 1e9 * 4f64.powi(j));
            let loss = 1.69 + 406.4 / n.powf(0.339) + 410.7 / d.powf(0.285);
            writeln!(text, "{n},{d},{loss}").unwrap();
        }
    }
    let path = std::env::temp_dir().join(format!("noether-cli-runs-{}.csv", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn scaling_fit_prints_json_with_the_contract_keys() {
    let csv = synthetic_runs_csv();
    let svg = csv.with_extension("svg");
    let (ok, text) = noether(&[
        "scaling",
        "fit",
        csv.to_str().unwrap(),
        "--form",
        "chinchilla",
        "--bootstrap",
        "50",
        "--seed",
        "3",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    for key in ["E", "A", "B", "alpha", "beta", "objective"] {
        assert!(json[key].is_number(), "key {key} missing in {text}");
    }
    assert!(
        (json["alpha"].as_f64().unwrap() - 0.339).abs() < 1e-3,
        "{text}"
    );
    assert!(json["bootstrap"]["alpha"]["se"].is_number());
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));

    let fit_json = csv.with_extension("json");
    std::fs::write(&fit_json, &text).unwrap();
    let (ok, text) = noether(&[
        "scaling",
        "allocate",
        "--fit",
        fit_json.to_str().unwrap(),
        "--compute",
        "1e21",
    ]);
    assert!(ok, "{text}");
    let a: serde_json::Value = serde_json::from_str(&text).unwrap();
    let (n, d) = (a["N"].as_f64().unwrap(), a["D"].as_f64().unwrap());
    assert!((6.0 * n * d / 1e21 - 1.0).abs() < 1e-9, "{text}");
}

#[test]
fn scaling_fit_names_missing_columns_and_bad_rows() {
    let csv = std::env::temp_dir().join(format!("noether-cli-bad-{}.csv", std::process::id()));
    std::fs::write(&csv, "N,D,loss\n1e9,2e10,3.0\n1e9,-5,2.9\n").unwrap();
    let (ok, text) = noether(&["scaling", "fit", csv.to_str().unwrap()]);
    assert!(
        !ok && text.contains("row 2") && text.contains("'D'"),
        "{text}"
    );
    let (ok, text) = noether(&[
        "scaling",
        "fit",
        csv.to_str().unwrap(),
        "--loss-col",
        "val_loss",
    ]);
    assert!(!ok && text.contains("no column 'val_loss'"), "{text}");
}

/// `noether scaling fit CSV --form power --group-col model EXTRA...`.
fn grouped_power_fit(csv: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec![
        "scaling",
        "fit",
        csv,
        "--form",
        "power",
        "--group-col",
        "model",
    ];
    args.extend(extra);
    noether(&args)
}

/// One JSON object per line of `text`.
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn scaling_fit_per_group_prints_one_json_line_per_group_with_bounds() {
    let csv = "crates/scaling/tests/fixtures/synthetic_bounded.csv";
    let jets_and_loss = ["--x-col", "train_jets", "--loss-col", "test_loss"];
    let svg = std::env::temp_dir().join(format!("noether-cli-groups-{}.svg", std::process::id()));
    let mut bounded = jets_and_loss.to_vec();
    bounded.extend([
        "--bound",
        "E=0.01:1",
        "--bound",
        "A=:1000",
        "--bound",
        "alpha=0.01:2",
        "--bootstrap",
        "20",
        "--ci",
        "0.8",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let (ok, text) = grouped_power_fit(csv, &bounded);
    assert!(ok, "{text}");
    let lines = json_lines(&text);
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["group"], "floor_below_bound");
    assert_eq!(lines[0]["at_bound"], serde_json::json!(["E"]));
    assert!((lines[0]["E"].as_f64().unwrap() - 0.01).abs() < 1e-12);
    assert_eq!(lines[1]["group"], "steep");
    assert_eq!(lines[1]["at_bound"], serde_json::json!(["A"]));
    assert!(lines[1]["bootstrap"]["alpha"]["ci80"].is_array(), "{text}");
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(
        plot.starts_with("<svg") && plot.contains("steep"),
        "the legend names the groups"
    );
    // --n-col keeps naming the power form's variable.
    let (ok, text) = grouped_power_fit(csv, &["--n-col", "train_jets", "--loss-col", "test_loss"]);
    assert!(ok && text.lines().count() == 2, "{text}");
    // Exchange rates against one group: itself at the identity, the other with an
    // interval, an unknown group refused by name.
    let exchange = |reference: &str| {
        let mut args = jets_and_loss.to_vec();
        args.extend([
            "--bootstrap",
            "20",
            "--ci",
            "0.8",
            "--exchange-reference",
            reference,
        ]);
        args.extend(["--exchange-at", "3000,30000"]);
        grouped_power_fit(csv, &args)
    };
    let (ok, text) = exchange("floor_below_bound");
    assert!(ok, "{text}");
    let lines = json_lines(&text);
    let rates = lines[0]["exchange"].as_array().unwrap();
    assert_eq!(rates.len(), 2);
    let x = rates[1]["reference_x"].as_f64().unwrap();
    assert!((x / 30000.0 - 1.0).abs() < 1e-9, "{text}");
    assert!(lines[1]["exchange"][0]["ci80"].is_array(), "{text}");
    assert_eq!(lines[1]["exchange_reference"], "floor_below_bound");
    let (ok, text) = exchange("pfn");
    assert!(
        !ok && text.contains("\"pfn\" is not a group") && text.contains("steep"),
        "{text}"
    );
}

#[test]
fn scaling_fit_per_group_names_the_group_and_row_of_bad_input() {
    let dir = std::env::temp_dir();
    let write = |name: &str, body: &str| {
        let p = dir.join(format!("noether-cli-{}-{name}", std::process::id()));
        std::fs::write(&p, body).unwrap();
        p
    };
    let power = |csv: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["--x-col", "D"];
        args.extend(extra);
        grouped_power_fit(csv.to_str().unwrap(), &args)
    };
    let few = write(
        "few.csv",
        "model,D,loss\na,1000,0.5\na,2000,0.4\na,4000,0.35\nb,1000,0.6\nb,2000,0.5\n",
    );
    let (ok, text) = power(&few, &[]);
    assert!(
        !ok && text.contains("group 'b'") && text.contains("2 runs"),
        "{text}"
    );
    let nan = write("nan.csv", "model,D,loss\na,1000,0.5\nb,2000,NaN\n");
    let (ok, text) = power(&nan, &[]);
    assert!(
        !ok && text.contains("group 'b'") && text.contains("row 2") && text.contains("'loss'"),
        "{text}"
    );
    let zero = write("zero.csv", "model,D,loss\na,0,0.5\n");
    let (ok, text) = power(&zero, &[]);
    assert!(
        !ok && text.contains("group 'a'") && text.contains("row 1") && text.contains("'D'"),
        "{text}"
    );
    let (ok, text) = power(&few, &["--bound", "L_inf=0.01:1"]);
    assert!(
        !ok && text.contains("no parameter 'L_inf'") && text.contains("E, A, alpha"),
        "{text}"
    );
    let (ok, text) = power(&few, &["--bound", "E=1:0.5"]);
    assert!(!ok && text.contains("lower bound exceeds"), "{text}");
    let (ok, text) = noether(&["scaling", "fit", few.to_str().unwrap(), "--x-col", "D"]);
    assert!(
        !ok && text.contains("--x-col names the variable of a single-variable form"),
        "{text}"
    );
    let (ok, text) = power(&few, &["--ci", "1.5"]);
    assert!(!ok && text.contains("--ci 1.5"), "{text}");
}

#[test]
fn eval_prints_the_official_lorentznet_logits() {
    let dir = std::path::Path::new("../shared/reference/lorentznet");
    if !dir.join("parity_jets.h5").exists() {
        eprintln!("SKIPPED: ../shared/reference/lorentznet is absent");
        return;
    }
    let ckpt = dir.join("lorentznet_top_pretrained.safetensors");
    let data = dir.join("parity_jets.h5");
    let (ok, text) = noether(&[
        "eval",
        "--model",
        "lorentznet",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--print-logits",
    ]);
    assert!(ok, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 16, "{text}");
    let first: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(&first[..3], &["jet", "0", "logits"]);
    let l0: f64 = first[3].parse().unwrap();
    assert!((l0 + 5.653857231140137).abs() < 1e-4, "{}", lines[0]);
}

/// `noether train` on a few bundled jets writes a run directory whose best checkpoint
/// `noether eval` reads back with no other file (the config rides in its metadata).
#[test]
fn train_then_eval_a_noether_checkpoint() {
    let out = std::env::temp_dir().join(format!("noether-cli-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let (ok, text) = noether(&[
        "train",
        "--config",
        "configs/pfn-cpu.toml",
        "--train-jets",
        "200",
        "--epochs",
        "5",
        "--batch-size",
        "20",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("model=pfn train_jets=200") && text.contains(" auc="),
        "{text}"
    );
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let auc = metrics["auc"].as_f64().unwrap();
    assert!(
        auc > 0.7,
        "200 jets should already separate top from QCD: {auc}"
    );
    let (ok, text) = noether(&[
        "eval",
        "--checkpoint",
        out.join("best.safetensors").to_str().unwrap(),
        "--data",
        "data/test.h5",
    ]);
    assert!(ok, "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("jets=5000 "))
        .unwrap_or_else(|| panic!("{text}"));
    let eval_auc: f64 = line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("auc="))
        .unwrap()
        .parse()
        .unwrap();
    assert!((eval_auc - auc).abs() < 1e-4, "{eval_auc} vs {auc}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn train_rejects_bad_values_naming_the_key() {
    let (ok, text) = noether(&[
        "train",
        "--config",
        "configs/pfn-cpu.toml",
        "--lr=-1",
        "--quiet",
    ]);
    assert!(!ok);
    assert!(text.contains("optim.lr"), "{text}");
    let (ok, text) = noether(&[
        "train",
        "--config",
        "configs/pfn-cpu.toml",
        "--train-jets",
        "100000",
        "--quiet",
    ]);
    assert!(!ok);
    assert!(
        text.contains("data.train_jets") && text.contains("train.h5"),
        "{text}"
    );
}

/// A GPU device in a build without its cargo feature fails at once, naming the feature;
/// a malformed device or dtype is refused by the argument parser.
#[test]
fn train_on_a_gpu_without_the_feature_names_the_feature() {
    let out = std::env::temp_dir().join(format!("noether-cli-cuda-{}", std::process::id()));
    let (ok, text) = noether(&[
        "train",
        "--config",
        "configs/pfn-cpu.toml",
        "--device",
        "cuda:0",
        "--train-jets",
        "100",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok, "{text}");
    assert!(text.contains("cuda") && text.contains("feature"), "{text}");
    assert!(
        !out.exists(),
        "nothing may be written before the device check"
    );
    let (ok, text) = noether(&[
        "train",
        "--config",
        "configs/pfn-cpu.toml",
        "--device",
        "tpu",
    ]);
    assert!(!ok);
    assert!(text.contains("'tpu'") && text.contains("cuda:N"), "{text}");
    let (ok, text) = noether(&[
        "train",
        "--config",
        "configs/pfn-cpu.toml",
        "--dtype",
        "f16",
    ]);
    assert!(!ok);
    assert!(text.contains("f16"), "{text}");
}

/// `--device cpu --dtype f64` trains through the same code path and writes an f64
/// checkpoint that `eval` reproduces.
#[test]
fn train_in_f64_then_eval_reproduces_the_auc() {
    let out = std::env::temp_dir().join(format!("noether-cli-f64-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let (ok, text) = noether(&[
        "train",
        "--config",
        "configs/pfn-cpu.toml",
        "--device",
        "cpu",
        "--dtype",
        "f64",
        "--train-jets",
        "200",
        "--epochs",
        "2",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("dtype = \"f64\""), "{config}");
    let bytes = std::fs::read(out.join("best.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let head = tensors.tensor("head.weight").unwrap();
    assert_eq!(head.dtype(), safetensors::Dtype::F64);
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let (ok, text) = noether(&[
        "eval",
        "--checkpoint",
        out.join("best.safetensors").to_str().unwrap(),
        "--data",
        "data/test.h5",
    ]);
    assert!(ok, "{text}");
    let auc = metrics["auc"].as_f64().unwrap();
    assert!(text.contains(&format!("auc={auc:.4}")), "{auc}: {text}");
    let _ = std::fs::remove_dir_all(&out);
}

/// `noether finetune` starts from a checkpoint, writes the load report, and leaves
/// frozen parameters bit-identical.
#[test]
fn finetune_loads_reports_and_freezes() {
    use noether::train::checkpoint;
    let base = std::env::temp_dir().join(format!("noether-cli-ft-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (pre, post) = (base.join("pre"), base.join("post"));
    let common = [
        "--config",
        "configs/pfn-cpu.toml",
        "--train-jets",
        "100",
        "--epochs",
        "2",
        "--batch-size",
        "20",
        "--quiet",
        "--test-data",
        "data/val.h5",
    ];
    let mut args = vec!["train"];
    args.extend(common);
    args.extend(["--out", pre.to_str().unwrap()]);
    let (ok, text) = noether(&args);
    assert!(ok, "{text}");
    let from = pre.join("best.safetensors");
    let mut args = vec![
        "finetune",
        "--from",
        from.to_str().unwrap(),
        "--freeze",
        r"^phi\.",
        "--eval-on-start",
    ];
    args.extend(common);
    args.extend(["--seed", "3", "--out", post.to_str().unwrap()]);
    let (ok, text) = noether(&args);
    assert!(ok, "{text}");
    assert!(text.contains("model=pfn train_jets=100"), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(post.join("load_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["missing"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["applied"].as_array().unwrap().len(), 12, "{report}");
    // --eval-on-start evaluated the loaded weights; a plain `train` run does not.
    let metrics = |dir: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()
    };
    assert!(metrics(&post)["start_val_auc"].as_f64().unwrap() > 0.5);
    assert!(metrics(&pre).get("start_val_auc").is_none());
    let (a, b) = (
        checkpoint::load(&from).unwrap().tensors,
        checkpoint::load(&post.join("last.safetensors"))
            .unwrap()
            .tensors,
    );
    let bits = |t: &candle_core::Tensor| -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect()
    };
    assert_eq!(
        bits(&a["phi.0.weight"]),
        bits(&b["phi.0.weight"]),
        "frozen weight moved"
    );
    assert_ne!(
        bits(&a["head.weight"]),
        bits(&b["head.weight"]),
        "trainable weight did not move"
    );
    let _ = std::fs::remove_dir_all(&base);
}

const SMALL_RUN: [&str; 11] = [
    "--config",
    "configs/pfn-cpu.toml",
    "--train-jets",
    "100",
    "--epochs",
    "1",
    "--batch-size",
    "20",
    "--quiet",
    "--test-data",
    "data/val.h5",
];

/// A one-epoch PFN checkpoint under `base` to fine-tune from.
fn pretrained(base: &std::path::Path) -> std::path::PathBuf {
    let _ = std::fs::remove_dir_all(base);
    let pre = base.join("pre");
    let mut args = vec!["train"];
    args.extend(SMALL_RUN);
    args.extend(["--out", pre.to_str().unwrap()]);
    let (ok, text) = noether(&args);
    assert!(ok, "{text}");
    pre.join("best.safetensors")
}

/// `noether finetune --lora` writes PEFT-layout adapters and reports the fresh adapters
/// as new (not missing); only the adapters and the head move.
#[test]
fn finetune_with_lora_writes_peft_adapters() {
    use noether::train::checkpoint;
    let base = std::env::temp_dir().join(format!("noether-cli-lora-{}", std::process::id()));
    let from = pretrained(&base);
    let common = SMALL_RUN;
    let lora = base.join("lora");
    let mut args = vec!["finetune", "--from", from.to_str().unwrap(), "--strict"];
    args.extend(common);
    args.extend(["--lora", "r=4,alpha=8", "--out", lora.to_str().unwrap()]);
    let (ok, text) = noether(&args);
    assert!(ok, "{text}");
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(lora.join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["r"], 4);
    assert_eq!(config["lora_alpha"], 8.0);
    assert_eq!(config["peft_type"], "LORA");
    let targets: Vec<&str> = config["target_modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // pfn-cpu: phi.0-2 and f.0-1 adapted, the head trains in full.
    assert_eq!(targets, ["f.0", "f.1", "phi.0", "phi.1", "phi.2"]);
    let adapters = candle_core::safetensors::load(
        lora.join("adapter/adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert_eq!(adapters.len(), 10);
    assert_eq!(
        adapters["base_model.model.phi.1.lora_A.weight"].dims(),
        &[4, 64]
    );
    assert_eq!(
        adapters["base_model.model.phi.1.lora_B.weight"].dims(),
        &[64, 4]
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lora.join("load_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["missing"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["new"].as_array().unwrap().len(), 10, "{report}");
    let (a, b) = (
        checkpoint::load(&from).unwrap().tensors,
        checkpoint::load(&lora.join("last.safetensors"))
            .unwrap()
            .tensors,
    );
    let same = |k: &str| {
        let v = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v(&a[k]) == v(&b[k])
    };
    assert!(
        same("phi.0.weight") && same("f.1.bias"),
        "base weights moved"
    );
    assert!(!same("head.weight"), "the head must train");
    let _ = std::fs::remove_dir_all(&base);
}

/// `noether finetune --prune` writes the before/after compression report.
#[test]
fn finetune_with_pruning_reports_before_and_after() {
    let base = std::env::temp_dir().join(format!("noether-cli-prune-{}", std::process::id()));
    let from = pretrained(&base);
    let common = SMALL_RUN;
    let pruned = base.join("pruned");
    let mut args = vec!["finetune", "--from", from.to_str().unwrap()];
    args.extend(common);
    args.extend(["--prune", "0.6", "--out", pruned.to_str().unwrap()]);
    let (ok, text) = noether(&args);
    assert!(ok, "{text}");
    assert!(
        text.contains("before: params=") && text.contains("after: params="),
        "{text}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pruned.join("compression.json")).unwrap())
            .unwrap();
    let sparsity = |k: &str| report[k]["sparsity"].as_f64().unwrap();
    assert!(sparsity("before") < 0.01, "{report}");
    // 60% of the weight matrices, biases dense: a bit under 0.6 of all parameters.
    assert!((0.5..0.6).contains(&sparsity("after")), "{report}");
    for key in [
        "params",
        "nonzero_params",
        "auc",
        "rejection_at_0.3",
        "latency_ms",
    ] {
        assert!(report["after"][key].is_number(), "{key}: {report}");
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// `noether diagnose` on two small PFN checkpoints writes its JSON and plots: Hessian
/// eigenvalues in decreasing magnitude, a zero barrier and a constant curvature from a
/// checkpoint to itself (loss and curvature plots), one
/// balance entry per parameter tensor, a finite LLC estimate.
#[test]
fn diagnose_writes_hessian_path_balance_and_llc() {
    let base = std::env::temp_dir().join(format!("noether-cli-diag-{}", std::process::id()));
    let ckpt = pretrained(&base);
    let ckpt = ckpt.to_str().unwrap();
    let run = |kind: &str, extra: &[&str]| -> (serde_json::Value, String) {
        let out = base.join(kind);
        let mut args = vec![
            "diagnose",
            kind,
            "--checkpoint",
            ckpt,
            "--data",
            "data/val.h5",
            "--jets",
            "100",
            // Small models: one thread avoids spinning workers on a busy 2-core CI box.
            "--threads",
            "1",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        let (ok, text) = noether(&args);
        assert!(ok, "{text}");
        let json = std::fs::read_to_string(out.join(format!("{kind}.json"))).unwrap();
        (serde_json::from_str(&json).unwrap(), text)
    };
    let (h, _) = run(
        "hessian",
        &[
            "--k",
            "2",
            "--trace-samples",
            "3",
            "--lanczos-steps",
            "4",
            "--probes",
            "1",
        ],
    );
    let top: Vec<f64> = h["top_eigenvalues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(top.len(), 2);
    assert!(top[0].abs() >= top[1].abs() && top[0].is_finite(), "{h}");
    assert!(base.join("hessian/eigen_density.svg").exists());
    let (p, text) = run("path", &["--to", ckpt, "--points", "3", "--curvature"]);
    assert_eq!(p["linear_barrier"].as_f64().unwrap(), 0.0, "{text}");
    // From a checkpoint to itself every point is the same: one curvature value.
    let curv: Vec<f64> = p["linear"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["lambda_max"].as_f64().unwrap())
        .collect();
    assert!(
        curv.iter()
            .all(|c| c.is_finite() && (c - curv[0]).abs() < 1e-6 * (1.0 + c.abs())),
        "{p}"
    );
    assert!(base.join("path/path.svg").exists() && base.join("path/curvature.svg").exists());
    let (b, _) = run("balance", &[]);
    assert_eq!(b["layers"].as_array().unwrap().len(), 12, "{b}");
    let (l, text) = run("llc", &["--draws", "5", "--burn-in", "2", "--chains", "1"]);
    assert!(l["lambda_hat"].as_f64().unwrap().is_finite(), "{text}");
    let (ok, text) = noether(&[
        "diagnose",
        "path",
        "--checkpoint",
        ckpt,
        "--to",
        "/no/such.safetensors",
        "--data",
        "data/val.h5",
    ]);
    assert!(!ok && text.contains("/no/such.safetensors"), "{text}");
    let _ = std::fs::remove_dir_all(&base);
}

/// `noether train` into `out` with `extra` flags (PFN, 200 jets, quiet).
fn train_into(out: &std::path::Path, epochs: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec![
        "train",
        "--config",
        "configs/pfn-cpu.toml",
        "--train-jets",
        "200",
        "--epochs",
        epochs,
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    noether(&args)
}

/// A run directory is never silently clobbered: a second run into it is refused unless
/// `--force`; `--resume` with another learning rate is refused naming the key and leaves
/// `config.toml` as it was; temporary files a killed writer left are removed.
#[test]
fn a_run_directory_is_not_clobbered() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let (ok, text) = train_into(&out, "1", &[]);
    assert!(ok, "{text}");
    let (ok, text) = train_into(&out, "1", &["--lr", "0.01"]);
    assert!(
        !ok && text.contains("holds a run") && text.contains("--force"),
        "{text}"
    );
    let config = std::fs::read(out.join("config.toml")).unwrap();
    let (ok, text) = train_into(&out, "2", &["--resume", "--lr", "0.01"]);
    assert!(!ok && text.contains("optim.lr 0.002 -> 0.01"), "{text}");
    assert_eq!(
        std::fs::read(out.join("config.toml")).unwrap(),
        config,
        "a refused --resume rewrote config.toml"
    );
    // More epochs and other threads are fine on --resume.
    let stale = out.join(".metrics.json.tmp-999999");
    std::fs::write(&stale, b"partial").unwrap();
    let (ok, text) = train_into(&out, "2", &["--resume", "--threads", "1"]);
    assert!(ok, "{text}");
    assert!(
        !stale.exists(),
        "the stale temporary file survived the next start"
    );
    let (ok, text) = train_into(&out, "1", &["--lr", "0.01", "--force"]);
    assert!(ok, "{text}");
    assert!(
        String::from_utf8(std::fs::read(out.join("config.toml")).unwrap())
            .unwrap()
            .contains("lr = 0.01")
    );
}

/// Two processes on the same `--out`: the second refuses, naming the lock.
#[test]
fn a_second_process_on_the_same_run_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut first = Command::new(env!("CARGO_BIN_EXE_noether"))
        .args([
            "train",
            "--config",
            "configs/pfn-cpu.toml",
            "--train-jets",
            "200",
            "--epochs",
            "200",
            "--quiet",
            "--threads",
            "1",
            "--out",
        ])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !out.join("config.toml").exists() {
        assert!(
            start.elapsed().as_secs() < 120,
            "the first run never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (ok, text) = train_into(&out, "1", &["--force"]);
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        !ok && text.contains("another process is running") && text.contains(".lock"),
        "{text}"
    );
}

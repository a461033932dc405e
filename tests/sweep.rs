//! `noether sweep` with the local backend on the bundled jets: planning is stable, bad
//! input is refused at `plan` naming the trial and key, trials run in parallel
//! processes, a killed trial resumes to the same checkpoint bytes as an uninterrupted
//! one, a second worker on a running trial is refused, and `collect` writes one row per
//! trial.

mod common;

use common::{noether, root, s, sweep_file};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GRID: &str = "[set]\n\"train.epochs\" = 1\n\"data.val_jets\" = 200\n\"train.bootstrap\" = 0\n[axes]\n\"data.train_jets\" = [200, 400]\n\"train.seed\" = [0, 1]\n";

fn ids(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn planning_is_stable_and_adding_an_axis_value_keeps_the_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = sweep_file(tmp.path(), "a.toml", GRID);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (ok, text) = noether(&["sweep", "plan", s(&sweep), "--out", s(&a)]);
    assert!(ok, "{text}");
    assert!(text.contains("trials=4"), "{text}");
    noether(&["sweep", "plan", s(&sweep), "--out", s(&b)]);
    assert_eq!(ids(&a), ids(&b));
    let wider = sweep_file(
        tmp.path(),
        "c.toml",
        &GRID.replace("[200, 400]", "[200, 300, 400]"),
    );
    let c = tmp.path().join("c");
    let (ok, text) = noether(&["sweep", "plan", s(&wider), "--out", s(&c)]);
    assert!(ok && text.contains("trials=6"), "{text}");
    let wide = ids(&c);
    assert!(
        ids(&a).iter().all(|id| wide.contains(id)),
        "{:?} vs {wide:?}",
        ids(&a)
    );
}

#[test]
fn bad_sweeps_fail_at_plan_naming_the_trial_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let cases = [
        (
            "[axes]\n\"optim.lr\" = [1e-3, -1.0]\n",
            "trial 1 (optim.lr=-1.0)",
            "optim.lr",
        ),
        ("[axes]\n\"train.epoch\" = [1]\n", "trial 0", "epoch"),
        (
            "[axes]\n\"train.seed\" = []\n",
            "axes.\"train.seed\"",
            "non-empty",
        ),
        ("bogus = 1\n", "bogus", "unknown field"),
        (
            "[zip]\n\"train.seed\" = [0, 1]\n\"optim.lr\" = [1e-3]\n",
            "zip.",
            "values",
        ),
        (
            "[set]\n\"data.test\" = \"missing.h5\"\n",
            "data.test",
            "no such file",
        ),
    ];
    for (k, (body, who, what)) in cases.iter().enumerate() {
        let sweep = sweep_file(tmp.path(), &format!("bad{k}.toml"), body);
        let (ok, text) = noether(&["sweep", "plan", s(&sweep), "--out", s(&out)]);
        assert!(!ok, "{body}: {text}");
        assert!(text.contains(who) && text.contains(what), "{body}: {text}");
    }
    assert!(
        !out.join("manifest.jsonl").exists(),
        "nothing planned from a bad sweep"
    );
}

/// `data.config` (a weaver data config) is read at `plan`: a YAML with an unknown key,
/// and one given to a model that takes none, fail there naming the trial and the file.
#[test]
fn a_bad_weaver_data_config_fails_at_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let yaml = tmp.path().join("inputs.yaml");
    std::fs::write(&yaml, "bogus_key: 1\n").unwrap();
    let body = format!(
        "[set]\n\"data.config\" = \"{}\"\n[axes]\n\"train.seed\" = [0]\n",
        yaml.display()
    );
    let sweep = sweep_file(tmp.path(), "a.toml", &body);
    let out = tmp.path().join("out");
    let (ok, text) = noether(&["sweep", "plan", s(&sweep), "--out", s(&out)]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("trial 0") && text.contains("inputs.yaml") && text.contains("bogus_key"),
        "{text}"
    );
    let reference = root().join("../shared/reference/particlenet/top_kin.yaml");
    if !reference.exists() {
        eprintln!("SKIPPED (second half): {} is absent", reference.display());
        return;
    }
    let body = body.replace(
        &yaml.display().to_string(),
        &reference.display().to_string(),
    );
    let sweep = sweep_file(tmp.path(), "b.toml", &body);
    let (ok, text) = noether(&["sweep", "plan", s(&sweep), "--out", s(&out)]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("trial 0") && text.contains("data.config") && text.contains("pfn"),
        "{text}"
    );
}

#[test]
fn an_edited_manifest_a_missing_trial_and_a_missing_sbatch_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = sweep_file(tmp.path(), "a.toml", GRID);
    let out = tmp.path().join("out");
    assert!(noether(&["sweep", "plan", s(&sweep), "--out", s(&out)]).0);
    let (ok, text) = noether(&["sweep", "run", s(&out), "--trial", "9"]);
    assert!(
        !ok && text.contains("trial 9 does not exist") && text.contains("4 trials"),
        "{text}"
    );
    // sbatch is looked up on the PATH; an empty PATH has none.
    let empty = tmp.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_noether"))
        .args(["sweep", "submit", s(&out), "--scheduler", "slurm"])
        .env("PATH", &empty)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && text.contains("sbatch") && text.contains("PATH"),
        "{text}"
    );
    let manifest = out.join("manifest.jsonl");
    let edited = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("train_jets = 200", "train_jets = 201");
    std::fs::write(&manifest, edited).unwrap();
    let (ok, text) = noether(&["sweep", "run", s(&out), "--trial", "0"]);
    assert!(!ok && text.contains("edited after planning"), "{text}");
}

#[test]
fn local_sweep_runs_in_parallel_and_collects_one_row_per_trial() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = sweep_file(tmp.path(), "a.toml", GRID);
    let out = tmp.path().join("out");
    assert!(noether(&["sweep", "plan", s(&sweep), "--out", s(&out)]).0);
    let (ok, text) = noether(&[
        "sweep",
        "submit",
        s(&out),
        "--scheduler",
        "local",
        "--parallel",
        "2",
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("finished=4 failed=0"), "{text}");
    let (ok, text) = noether(&["sweep", "status", s(&out)]);
    assert!(ok && text.contains("done=4 running=0"), "{text}");
    let (ok, text) = noether(&["sweep", "collect", s(&out)]);
    assert!(ok && text.contains("rows=4"), "{text}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for column in [
        "trial",
        "data.train_jets",
        "train.seed",
        "auc",
        "rejection_at_0.3",
        "test_loss",
        "train_seconds",
    ] {
        assert!(header.contains(&column), "{column} missing: {header:?}");
    }
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 4);
    let jets = header.iter().position(|h| *h == "data.train_jets").unwrap();
    let train_jets = header.iter().position(|h| *h == "train_jets").unwrap();
    for row in &rows {
        assert_eq!(row[jets], row[train_jets], "{row:?}");
    }
    // A second submission finds nothing to do.
    let (ok, text) = noether(&["sweep", "submit", s(&out), "--scheduler", "local"]);
    assert!(ok && text.contains("finished=0 failed=0"), "{text}");
}

/// Waits until `path` exists (bounded).
fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_trial_resumes_to_the_bytes_of_an_uninterrupted_one_and_is_locked_while_running() {
    let tmp = tempfile::tempdir().unwrap();
    let body = "[set]\n\"train.epochs\" = 30\n\"data.val_jets\" = 100\n\"data.train_jets\" = 200\n\"train.bootstrap\" = 0\n[axes]\n\"train.seed\" = [3]\n";
    let sweep = sweep_file(tmp.path(), "long.toml", body);
    let (killed, clean) = (tmp.path().join("killed"), tmp.path().join("clean"));
    for dir in [&killed, &clean] {
        assert!(noether(&["sweep", "plan", s(&sweep), "--out", s(dir)]).0);
    }
    let id = ids(&killed)[0].clone();
    let run = killed.join("runs").join(&id);
    let mut worker = Command::new(env!("CARGO_BIN_EXE_noether"))
        .args([
            "sweep",
            "run",
            s(&killed),
            "--trial",
            "0",
            "--threads",
            "1",
            "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&run.join("last.safetensors"));
    let (ok, text) = noether(&["sweep", "run", s(&killed), "--trial", "0"]);
    assert!(
        !ok && text.contains("already running") && text.contains(".lock"),
        "{text}"
    );
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert!(
        !run.join("metrics.json").exists(),
        "the trial finished before it was killed"
    );
    let (ok, text) = noether(&["sweep", "status", s(&killed)]);
    assert!(ok && text.contains("interrupted=1"), "{text}");
    let (ok, text) = noether(&[
        "sweep",
        "run",
        s(&killed),
        "--trial",
        "0",
        "--threads",
        "1",
        "--quiet",
    ]);
    assert!(ok && text.contains("finished (resumed)"), "{text}");
    let (ok, text) = noether(&[
        "sweep",
        "run",
        s(&clean),
        "--trial",
        "0",
        "--threads",
        "1",
        "--quiet",
    ]);
    assert!(ok && text.contains("trial 0: finished"), "{text}");
    let best =
        |dir: &Path| std::fs::read(dir.join("runs").join(&id).join("best.safetensors")).unwrap();
    assert!(
        best(&killed) == best(&clean),
        "resumed and uninterrupted best checkpoints differ"
    );
    let (ok, text) = noether(&["sweep", "run", s(&killed), "--trial", "0"]);
    assert!(ok && text.contains("skipped"), "{text}");
}

#[test]
fn the_shipped_sweep_files_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, text) = noether(&[
        "sweep",
        "plan",
        s(&root().join("sweeps/smoke.toml")),
        "--out",
        s(&tmp.path().join("smoke")),
    ]);
    assert!(ok && text.contains("trials=4"), "{text}");
    if !root()
        .join("../shared/data/toptag-pythia/train.h5")
        .exists()
    {
        eprintln!("SKIPPED: ../shared/data/toptag-pythia is absent (sweeps/data_limited.toml)");
        return;
    }

    for (file, trials) in [
        ("data_limited", 48),
        ("data_scaling", 126),
        ("finetune_study", 24),
        ("finetune_study_masses", 6),
        ("finetune_particlenet", 24),
    ] {
        if file == "finetune_particlenet"
            && !root().join("../shared/reference/particlenet").exists()
        {
            eprintln!("SKIPPED: ../shared/reference/particlenet is absent (sweeps/{file}.toml)");
            continue;
        }
        let (ok, text) = noether(&[
            "sweep",
            "plan",
            s(&root().join(format!("sweeps/{file}.toml"))),
            "--out",
            s(&tmp.path().join(file)),
        ]);
        assert!(
            ok && text.contains(&format!("trials={trials}")),
            "{file}: {text}"
        );
    }
}

/// A fine-tuning trial: `[init]` loads a checkpoint before the first epoch and writes
/// the load report; a missing checkpoint fails at `plan`, naming `init.from`.
#[test]
fn a_sweep_fine_tunes_from_a_checkpoint_through_init() {
    let tmp = tempfile::tempdir().unwrap();
    let pretrain = sweep_file(
        tmp.path(),
        "pre.toml",
        &GRID.replace("[200, 400]", "[200]").replace("[0, 1]", "[0]"),
    );
    let pre = tmp.path().join("pre");
    assert!(noether(&["sweep", "plan", s(&pretrain), "--out", s(&pre)]).0);
    let (ok, text) = noether(&["sweep", "run", s(&pre), "--trial", "0", "--quiet"]);
    assert!(ok, "{text}");
    let checkpoint = pre
        .join("runs")
        .join(&ids(&pre)[0])
        .join("best.safetensors");
    let body = format!(
        "[set]\n\"train.epochs\" = 1\n\"data.val_jets\" = 200\n\"init.from\" = \"{}\"\n[axes]\n\"train.seed\" = [5]\n",
        checkpoint.display()
    );
    let finetune = sweep_file(tmp.path(), "ft.toml", &body);
    let ft = tmp.path().join("ft");
    assert!(noether(&["sweep", "plan", s(&finetune), "--out", s(&ft)]).0);
    let (ok, text) = noether(&["sweep", "run", s(&ft), "--trial", "0", "--quiet"]);
    assert!(ok && text.contains("load report: "), "{text}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ft.join("runs").join(&ids(&ft)[0]).join("load_report.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(report["applied"].as_array().unwrap().len() >= 6, "{report}");
    assert!(report["missing"].as_array().unwrap().is_empty(), "{report}");
    let missing = sweep_file(
        tmp.path(),
        "bad.toml",
        &body.replace("best.safetensors", "nope.safetensors"),
    );
    let (ok, text) = noether(&[
        "sweep",
        "plan",
        s(&missing),
        "--out",
        s(&tmp.path().join("bad")),
    ]);
    assert!(
        !ok && text.contains("init.from") && text.contains("no such file"),
        "{text}"
    );
}

/// `scripts/archive-sweep.sh` keeps a finished trial without its checkpoints and an
/// unfinished one with them; restored into another directory (another machine), the
/// finished trial is skipped and the unfinished one resumes from its last checkpoint to
/// the metrics of the uninterrupted run.
#[test]
fn an_archived_sweep_resumes_its_unfinished_trial_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = GRID
        .replace("[200, 400]", "[200]")
        .replace("\"train.epochs\" = 1", "\"train.epochs\" = 2");
    let sweep = sweep_file(tmp.path(), "a.toml", &grid);
    let (first, archive, second) = (
        tmp.path().join("first"),
        tmp.path().join("archive"),
        tmp.path().join("second"),
    );
    assert!(noether(&["sweep", "plan", s(&sweep), "--out", s(&first)]).0);
    for trial in ["0", "1"] {
        let (ok, text) = noether(&["sweep", "run", s(&first), "--trial", trial, "--quiet"]);
        assert!(ok, "{text}");
    }
    let id = ids(&first);
    // Trial 1 as a killed worker leaves it after its last epoch: checkpoints, no metrics.
    let metrics_path = first.join("runs").join(&id[1]).join("metrics.json");
    let uninterrupted: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metrics_path).unwrap()).unwrap();
    std::fs::remove_file(&metrics_path).unwrap();
    let archive_sweep = |from: &Path, to: &Path| {
        let out = Command::new("bash")
            .arg(root().join("scripts/archive-sweep.sh"))
            .args([from, to])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}");
        text
    };
    let text = archive_sweep(&first, &archive);
    assert!(text.contains("1 finished and 1 unfinished"), "{text}");
    let (done, open) = (
        archive.join("runs").join(&id[0]),
        archive.join("runs").join(&id[1]),
    );
    assert!(done.join("metrics.json").is_file() && !done.join("last.safetensors").exists());
    assert!(open.join("last.safetensors").is_file() && !open.join("metrics.json").exists());
    archive_sweep(&archive, &second);
    let (ok, text) = noether(&["sweep", "run", s(&second), "--trial", "0", "--quiet"]);
    assert!(ok && text.contains("skipped"), "{text}");
    let (ok, text) = noether(&["sweep", "run", s(&second), "--trial", "1", "--quiet"]);
    assert!(ok && text.contains("(resumed)"), "{text}");
    let resumed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(second.join("runs").join(&id[1]).join("metrics.json")).unwrap(),
    )
    .unwrap();
    for key in ["auc", "test_loss", "best_epoch", "rejection_at_0.3"] {
        assert!(!uninterrupted[key].is_null(), "{key} in metrics.json");
        assert_eq!(resumed[key], uninterrupted[key], "{key}");
    }
}

//! `noether sweep submit --scheduler slurm` against a real Slurm: a 6-trial PFN sweep
//! through `sbatch` as a job array, and a trial cancelled with `scancel` mid-run (which
//! `sweep status` reports as failed, with Slurm's word for it), resubmitted, resumed to
//! the bytes of an uninterrupted run.
//!
//! Needs a running cluster: `scripts/slurm-local.sh start` (as root, with Debian's
//! `slurm-wlm` and `munge`) and `NOETHER_SLURM_TESTS=1`, which `.ci/run` sets after
//! starting it. Without the variable the tests say so and pass.

mod common;

use common::{noether, s, sweep_file};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn enabled() -> bool {
    let on = std::env::var("NOETHER_SLURM_TESTS").is_ok_and(|v| v == "1");
    if !on {
        eprintln!(
            "SKIPPED: Slurm tests need a cluster (scripts/slurm-local.sh start) and NOETHER_SLURM_TESTS=1"
        );
    }
    on
}

/// Plans a PFN sweep over the bundled jets with `body` into `dir/out`.
fn plan(dir: &Path, body: &str) -> PathBuf {
    let sweep = sweep_file(dir, "sweep.toml", body);
    let out = dir.join("out");
    let (ok, text) = noether(&["sweep", "plan", s(&sweep), "--out", s(&out)]);
    assert!(ok, "{text}");
    out
}

/// `sweep status` until `done` trials are done (bounded), returning the last output.
fn wait_done(dir: &Path, done: usize, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let (ok, text) = noether(&["sweep", "status", s(dir)]);
        assert!(ok, "{text}");
        if text.contains(&format!("done={done} ")) {
            return text;
        }
        assert!(text.contains("failed=0"), "a trial failed: {text}");
        assert!(start.elapsed() < limit, "not finished in {limit:?}: {text}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits (bounded) until `squeue` no longer lists `job`.
fn wait_gone(job: &str) {
    let start = Instant::now();
    loop {
        let q = Command::new("squeue")
            .args(["-h", "-j", job])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&q.stdout).trim().is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "job {job} did not end"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn job_id(submit_output: &str) -> String {
    submit_output
        .split_whitespace()
        .find_map(|w| w.strip_prefix("job="))
        .unwrap_or_else(|| panic!("no job id in {submit_output}"))
        .to_owned()
}

#[test]
fn a_job_array_runs_every_trial_and_collects_six_rows() {
    if !enabled() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = plan(
        tmp.path(),
        "[set]\n\"train.epochs\" = 1\n\"data.val_jets\" = 200\n\"train.bootstrap\" = 0\n[axes]\n\"data.train_jets\" = [200, 300, 400]\n\"train.seed\" = [0, 1]\n",
    );
    let (ok, text) = noether(&[
        "sweep",
        "submit",
        s(&out),
        "--scheduler",
        "slurm",
        "--parallel",
        "2",
        "--threads",
        "1",
        "--time",
        "00:10:00",
    ]);
    assert!(ok && text.contains("tasks=6"), "{text}");
    let script = std::fs::read_to_string(out.join("sweep.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0,1,2,3,4,5%2"), "{script}");
    wait_done(&out, 6, Duration::from_secs(600));
    let (ok, text) = noether(&["sweep", "collect", s(&out)]);
    assert!(ok && text.contains("rows=6"), "{text}");
    assert_eq!(
        std::fs::read_to_string(out.join("results.csv"))
            .unwrap()
            .lines()
            .count(),
        7
    );
    let logs = std::fs::read_dir(out.join("logs")).unwrap().count();
    assert_eq!(logs, 6, "one log per array task");
}

#[test]
fn a_cancelled_task_resumes_after_resubmission_to_an_uninterrupted_runs_bytes() {
    if !enabled() {
        return;
    }
    let body = "[set]\n\"train.epochs\" = 30\n\"data.val_jets\" = 100\n\"data.train_jets\" = 200\n\"train.bootstrap\" = 0\n[axes]\n\"train.seed\" = [4]\n";
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (cancelled, clean) = (plan(a.path(), body), plan(b.path(), body));
    let (ok, text) = noether(&[
        "sweep",
        "submit",
        s(&cancelled),
        "--scheduler",
        "slurm",
        "--threads",
        "1",
    ]);
    assert!(ok, "{text}");
    let job = job_id(&text);
    let manifest = std::fs::read_to_string(cancelled.join("manifest.jsonl")).unwrap();
    let id = serde_json::from_str::<serde_json::Value>(manifest.lines().next().unwrap()).unwrap()
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = cancelled.join("runs").join(&id);
    let start = Instant::now();
    while !run.join("last.safetensors").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the task never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(Command::new("scancel")
        .arg(&job)
        .status()
        .unwrap()
        .success());
    wait_gone(&job);
    assert!(
        !run.join("metrics.json").exists(),
        "the trial finished before it was cancelled"
    );
    // Slurm still holds the cancelled task (for MinJobAge): status names its state.
    let (ok, text) = noether(&["sweep", "status", s(&cancelled)]);
    assert!(
        ok && text.contains("done=0")
            && text.contains("failed=1")
            && text.contains(&format!("trial 0 {id} failed slurm=CANCELLED ")),
        "{text}"
    );
    let (ok, text) = noether(&[
        "sweep",
        "submit",
        s(&cancelled),
        "--scheduler",
        "slurm",
        "--threads",
        "1",
    ]);
    assert!(ok, "{text}");
    wait_done(&cancelled, 1, Duration::from_secs(600));
    // The worker prints its last line after metrics.json exists: wait for the task to end.
    wait_gone(&job_id(&text));
    let log = std::fs::read_dir(cancelled.join("logs"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect::<String>();
    assert!(log.contains("finished (resumed)"), "{log}");
    let (ok, text) = noether(&[
        "sweep",
        "submit",
        s(&clean),
        "--scheduler",
        "local",
        "--threads",
        "1",
    ]);
    assert!(ok, "{text}");
    let best =
        |dir: &Path| std::fs::read(dir.join("runs").join(&id).join("best.safetensors")).unwrap();
    assert!(
        best(&cancelled) == best(&clean),
        "resumed and uninterrupted checkpoints differ"
    );
}

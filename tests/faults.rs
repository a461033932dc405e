//! Fault tests of training runs: killed at random moments, or out of disk space while
//! writing a checkpoint, a run loses nothing and resumes to the same result.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{noether, s};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The arguments of the run these tests interrupt: PFN, 100 jets, one thread (bit-exact).
fn run_args(out: &Path, epochs: &str) -> Vec<String> {
    [
        "train",
        "--config",
        "configs/pfn-cpu.toml",
        "--train-jets",
        "100",
        "--batch-size",
        "20",
        "--epochs",
        epochs,
        "--threads",
        "1",
        "--quiet",
        "--out",
        s(out),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Starts the run into `out`, resuming when it has a checkpoint to resume from.
fn start(out: &Path, epochs: &str) -> std::process::Child {
    let mut args = run_args(out, epochs);
    if out.join("last.safetensors").exists() {
        args.push("--resume".into());
    }
    Command::new(env!("CARGO_BIN_EXE_noether"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn temporaries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().contains(".tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILL at 20 seeded random moments, each time resumed: the final checkpoints equal
/// an uninterrupted run's byte for byte, and no temporary file a kill left survives.
#[test]
fn a_run_killed_at_20_moments_resumes_to_the_uninterrupted_result() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    let epochs = "4";
    let started = std::time::Instant::now();
    let args = run_args(&reference, epochs);
    let (ok, text) = noether(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{text}");
    let full = started.elapsed();

    let out = tmp.path().join("killed");
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut kills = 0;
    let mut finished_early = 0;
    let mut resumed = 0;
    // The span the kill moments are drawn from: the reference run's duration, shrunk
    // whenever a run finishes first (the reference was timed on a busier machine).
    let mut span = full;
    while kills < 20 {
        resumed += usize::from(out.join("last.safetensors").exists());
        let mut child = start(&out, epochs);
        // Moments spread over the whole run, start-up and checkpoint writes included.
        let delay = span.mul_f64(rng.random_range(0.05..0.9));
        std::thread::sleep(delay);
        if let Some(status) = child.try_wait().unwrap() {
            // It finished before the kill, and must have finished well: start over
            // from scratch for the next moment, aiming earlier.
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut stderr).unwrap();
            }
            assert!(status.success(), "a run failed: {stderr}");
            finished_early += 1;
            span = span.mul_f64(0.8);
            assert!(
                finished_early < 60,
                "the run always finished before the kill"
            );
            std::fs::remove_dir_all(&out).unwrap();
            continue;
        }
        child.kill().unwrap();
        let _ = child.wait();
        kills += 1;
    }
    assert!(
        resumed >= 5,
        "only {resumed} of the 20 killed starts resumed a checkpoint"
    );
    let child = start(&out, epochs);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for file in ["best.safetensors", "last.safetensors"] {
        assert!(
            std::fs::read(out.join(file)).unwrap() == std::fs::read(reference.join(file)).unwrap(),
            "{file} differs from the uninterrupted run's after {kills} kills"
        );
    }
    // The history too, but for its wall-clock column.
    let without_seconds = |dir: &Path| -> Vec<String> {
        std::fs::read_to_string(dir.join("history.csv"))
            .unwrap()
            .lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_owned())
            .collect()
    };
    assert_eq!(without_seconds(&out), without_seconds(&reference));
    assert_eq!(temporaries(&out), Vec::<PathBuf>::new());
}

/// Mounts a tmpfs of `bytes` at `dir`; false where the machine does not allow it.
fn mount_tmpfs(dir: &Path, bytes: u64) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
        .arg(dir)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn resize_tmpfs(dir: &Path, bytes: u64) {
    let status = Command::new("mount")
        .args(["-o", &format!("remount,size={bytes}")])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A disk that fills up during a checkpoint write: the run fails naming the file, the
/// previous checkpoint is intact, nothing temporary is left, and once there is room the
/// run resumes to the uninterrupted result. (The write error itself is also injected in
/// a unit test of `write_atomically`, for machines that cannot mount a tmpfs.)
#[test]
fn a_full_disk_during_a_checkpoint_write_keeps_the_previous_one() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    let args = run_args(&reference, "3");
    let (ok, text) = noether(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{text}");
    let last = std::fs::metadata(reference.join("last.safetensors"))
        .unwrap()
        .len();
    let best = std::fs::metadata(reference.join("best.safetensors"))
        .unwrap()
        .len();

    let disk = tmp.path().join("disk");
    // Room for the first epoch's files and a little more, not for a second copy of
    // last.safetensors while the first still exists.
    let size = (best + last + 64 * 1024).next_multiple_of(4096);
    if !mount_tmpfs(&disk, size) {
        eprintln!("skipped: this machine does not allow mounting a tmpfs (needs root)");
        return;
    }
    let _unmount = Unmount(disk.clone());
    let out = disk.join("run");
    let args = run_args(&out, "3");
    let (ok, text) = noether(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok, "the run fit on a {size}-byte disk: {text}");
    assert!(
        text.contains("No space left on device") && text.contains(".safetensors"),
        "{text}"
    );
    assert_eq!(temporaries(&out), Vec::<PathBuf>::new());
    // The checkpoint it had is whole: the run resumes from it once there is room.
    resize_tmpfs(&disk, 64 << 20);
    let mut args = run_args(&out, "3");
    args.push("--resume".into());
    let (ok, text) = noether(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{text}");
    for file in ["best.safetensors", "last.safetensors"] {
        assert!(
            std::fs::read(out.join(file)).unwrap() == std::fs::read(reference.join(file)).unwrap(),
            "{file} differs from the uninterrupted run's"
        );
    }
}

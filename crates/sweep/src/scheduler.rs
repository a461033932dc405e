//! Running the unfinished trials of a sweep somewhere: as processes on this machine
//! ([`run_local`], K at a time) or as a Slurm job array ([`write_sbatch`] +
//! [`submit_slurm`]). Both start the same worker, `noether sweep run DIR --trial I`; we
//! schedule nothing ourselves beyond the local process pool.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::error::{io, Result, SweepError};
use crate::manifest;
use crate::trial::run_dir;

/// The trials that still have to run (not finished), in manifest order.
///
/// # Errors
/// The manifest's errors.
pub fn unfinished(dir: &Path) -> Result<Vec<usize>> {
    Ok(manifest::read(dir)?
        .iter()
        .filter(|t| !run_dir(dir, t).is_finished())
        .map(|t| t.trial)
        .collect())
}

/// `DIR/logs`, created.
fn logs(dir: &Path) -> Result<PathBuf> {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(io(&logs))?;
    Ok(logs)
}

/// What a local submission did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReport {
    /// Trials whose worker exited successfully.
    pub finished: Vec<usize>,
    /// Trials whose worker failed (its log is `DIR/logs/trial-I.log`).
    pub failed: Vec<usize>,
}

/// Runs every unfinished trial as a process of `worker` (the `noether` binary: `sweep
/// run DIR --trial I --threads T`), `parallel` at a time, each logging to
/// `DIR/logs/trial-I.log`; returns when all have exited.
///
/// # Errors
/// The manifest's errors; a worker that cannot be started.
pub fn run_local(
    dir: &Path,
    worker: &Path,
    parallel: usize,
    threads: usize,
) -> Result<LocalReport> {
    let logs = logs(dir)?;
    let mut queue = unfinished(dir)?.into_iter();
    let mut running: Vec<(usize, Child)> = Vec::new();
    let mut report = LocalReport {
        finished: Vec::new(),
        failed: Vec::new(),
    };
    loop {
        while running.len() < parallel.max(1) {
            let Some(trial) = queue.next() else { break };
            let log_path = logs.join(format!("trial-{trial}.log"));
            let log = std::fs::File::create(&log_path).map_err(io(&log_path))?;
            let err = log.try_clone().map_err(io(&log_path))?;
            let child = Command::new(worker)
                .args(["sweep", "run"])
                .arg(dir)
                .args([
                    "--trial",
                    &trial.to_string(),
                    "--threads",
                    &threads.to_string(),
                ])
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .map_err(|e| SweepError::Scheduler {
                    command: worker.display().to_string(),
                    message: format!("cannot start the worker for trial {trial}: {e}"),
                })?;
            running.push((trial, child));
        }
        if running.is_empty() {
            return Ok(report);
        }
        let mut still = Vec::with_capacity(running.len());
        for (trial, mut child) in running {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => report.finished.push(trial),
                Ok(Some(_)) | Err(_) => report.failed.push(trial),
                Ok(None) => still.push((trial, child)),
            }
        }
        running = still;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Resources of a Slurm submission.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlurmOptions {
    /// Array tasks running at once (`%K`; 0: no throttle).
    pub parallel: usize,
    /// CPU threads per trial (`--cpus-per-task`, and the worker's `--threads`).
    pub threads: usize,
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` (HH:MM:SS).
    pub time: Option<String>,
    /// `--mem` (e.g. `4G`).
    pub mem: Option<String>,
    /// GPUs per trial (`--gres=gpu:G`).
    pub gpus: Option<usize>,
}

/// Writes `DIR/sweep.sbatch`: a job array with one task per trial of `trials`, the
/// resources of `options`, logs per task in `DIR/logs/`, each task running `worker sweep
/// run DIR --trial $SLURM_ARRAY_TASK_ID`. Returns its path.
///
/// # Errors
/// [`SweepError::Io`]; [`SweepError::Scheduler`] when there is nothing to run.
pub fn write_sbatch(
    dir: &Path,
    worker: &Path,
    trials: &[usize],
    options: &SlurmOptions,
) -> Result<PathBuf> {
    if trials.is_empty() {
        return Err(SweepError::Scheduler {
            command: "sbatch".into(),
            message: "every trial has finished; nothing to submit".into(),
        });
    }
    let logs = logs(dir)?;
    let dir = std::path::absolute(dir).map_err(io(dir))?;
    let array: Vec<String> = trials.iter().map(ToString::to_string).collect();
    let throttle = if options.parallel > 0 {
        format!("%{}", options.parallel)
    } else {
        String::new()
    };
    let threads = options.threads.max(1);
    let mut script = format!(
        "#!/bin/bash\n# Written by `noether sweep submit --scheduler slurm`: one array task per unfinished trial.\n#SBATCH --job-name=noether-sweep\n#SBATCH --array={}{throttle}\n#SBATCH --cpus-per-task={threads}\n#SBATCH --output={}/slurm-%A_%a.out\n",
        array.join(","),
        std::path::absolute(&logs).map_err(io(&logs))?.display(),
    );
    for (flag, value) in [
        ("partition", &options.partition),
        ("time", &options.time),
        ("mem", &options.mem),
    ] {
        if let Some(v) = value {
            let _ = writeln!(script, "#SBATCH --{flag}={v}");
        }
    }
    if let Some(g) = options.gpus {
        let _ = writeln!(script, "#SBATCH --gres=gpu:{g}");
    }
    let _ = writeln!(
        script,
        "exec '{}' sweep run '{}' --trial \"$SLURM_ARRAY_TASK_ID\" --threads {threads}",
        worker.display(),
        dir.display()
    );
    let path = dir.join("sweep.sbatch");
    noether_train::checkpoint::write_atomically(&path, script.as_bytes())?;
    Ok(path)
}

/// Runs a scheduler command, returning its standard output.
fn scheduler(command: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(command)
        .args(args)
        .output()
        .map_err(|e| SweepError::Scheduler {
            command: command.into(),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                format!("not found on the PATH (is Slurm installed here?): {e}")
            } else {
                e.to_string()
            },
        })?;
    if !out.status.success() {
        return Err(SweepError::Scheduler {
            command: format!("{command} {}", args.join(" ")),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `DIR/jobs.txt`: the Slurm job ids submitted for this sweep, one per line.
fn jobs_path(dir: &Path) -> PathBuf {
    dir.join("jobs.txt")
}

/// Submits `script` with `sbatch --parsable`, records the job id in `DIR/jobs.txt` and
/// returns it.
///
/// # Errors
/// [`SweepError::Scheduler`]: `sbatch` missing or refusing the job.
pub fn submit_slurm(dir: &Path, script: &Path) -> Result<String> {
    let out = scheduler("sbatch", &["--parsable", &script.to_string_lossy()])?;
    let job = out.trim().split(';').next().unwrap_or("").to_owned();
    if job.is_empty() {
        return Err(SweepError::Scheduler {
            command: "sbatch".into(),
            message: "printed no job id".into(),
        });
    }
    let path = jobs_path(dir);
    let mut jobs = std::fs::read_to_string(&path).unwrap_or_default();
    jobs.push_str(&job);
    jobs.push('\n');
    noether_train::checkpoint::write_atomically(&path, jobs.as_bytes())?;
    Ok(job)
}

/// What Slurm last said about each array task of this sweep, by trial: the state of the
/// task in the newest of the sweep's jobs (`DIR/jobs.txt`, in submission order) that
/// lists it (`PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `TIMEOUT`, `CANCELLED`, ...).
/// `sacct` answers for finished jobs where Slurm keeps accounting; `squeue -t all` for
/// the jobs the controller still holds (finished ones for `MinJobAge`, 300 s by default)
/// and overrides it, being newer. Empty when nothing was submitted or neither command
/// answers; a job either has forgotten is left out (each job is asked on its own, so one
/// purged job does not hide the others).
pub fn slurm_states(dir: &Path) -> BTreeMap<usize, String> {
    let Ok(jobs) = std::fs::read_to_string(jobs_path(dir)) else {
        return BTreeMap::new();
    };
    let mut states = BTreeMap::new();
    for job in jobs.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Ok(out) = scheduler("sacct", &["-n", "-P", "-X", "-j", job, "-o", "JobID,State"]) {
            states.extend(parse_sacct(&out));
        }
        if let Ok(out) = scheduler(
            "squeue",
            &["-h", "-r", "-t", "all", "-j", job, "-o", "%K %T"],
        ) {
            states.extend(parse_squeue(&out));
        }
    }
    states
}

/// `sacct -P -o JobID,State` lines of array tasks (`123_4|CANCELLED by 0`) as (task,
/// state word); lines of pending ranges (`123_[5-7%2]`) and of jobs that are not arrays
/// are left out (`squeue` lists pending tasks one by one).
fn parse_sacct(out: &str) -> Vec<(usize, String)> {
    out.lines()
        .filter_map(|line| {
            let (id, state) = line.trim().split_once('|')?;
            let task = id.split_once('_')?.1.parse().ok()?;
            Some((task, state.split_whitespace().next()?.to_owned()))
        })
        .collect()
}

/// `squeue -r -o "%K %T"` lines (`4 PENDING`) as (task, state).
fn parse_squeue(out: &str) -> Vec<(usize, String)> {
    out.lines()
        .filter_map(|line| {
            let (task, state) = line.trim().split_once(' ')?;
            Some((task.parse().ok()?, state.trim().to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sbatch_script_names_the_array_resources_and_worker() {
        let dir = tempfile::tempdir().unwrap();
        let options = SlurmOptions {
            parallel: 2,
            threads: 3,
            partition: Some("short".into()),
            time: Some("01:00:00".into()),
            mem: Some("4G".into()),
            gpus: Some(1),
        };
        let path =
            write_sbatch(dir.path(), Path::new("/opt/noether"), &[0, 2, 5], &options).unwrap();
        let script = std::fs::read_to_string(path).unwrap();
        for line in [
            "#SBATCH --array=0,2,5%2",
            "#SBATCH --cpus-per-task=3",
            "#SBATCH --partition=short",
            "#SBATCH --time=01:00:00",
            "#SBATCH --mem=4G",
            "#SBATCH --gres=gpu:1",
        ] {
            assert!(
                script.lines().any(|l| l == line),
                "{line} missing:\n{script}"
            );
        }
        assert!(
            script.contains("exec '/opt/noether' sweep run '"),
            "{script}"
        );
        assert!(
            script.contains("--trial \"$SLURM_ARRAY_TASK_ID\" --threads 3"),
            "{script}"
        );
        assert!(write_sbatch(dir.path(), Path::new("x"), &[], &options).is_err());
    }

    #[test]
    fn slurm_answers_are_read_per_array_task() {
        let sacct = "120_0|COMPLETED\n120_3|CANCELLED by 0\n120_[4-7%2]|PENDING\n121|FAILED\n120_5|TIMEOUT\n";
        assert_eq!(
            parse_sacct(sacct),
            vec![
                (0, "COMPLETED".to_owned()),
                (3, "CANCELLED".to_owned()),
                (5, "TIMEOUT".to_owned())
            ]
        );
        assert_eq!(
            parse_squeue("4 PENDING\n2 RUNNING\nN/A FAILED\n"),
            vec![(4, "PENDING".to_owned()), (2, "RUNNING".to_owned())]
        );
    }
}

//! The fuzzing loop, a worker process that runs it under limits, and the supervisor that
//! restarts workers and keeps what killed them.
//!
//! A worker runs inputs `from..to` of a campaign: input `i` is a mutant of a corpus entry
//! drawn by a generator seeded with `(seed, i)`, so a campaign is reproducible. Before
//! running the reader the input is written to the worker's scratch directory (the readers
//! take paths), which is therefore, when the worker dies, the input that killed it. A
//! panic is caught in the worker and saved as a finding; an abort (a failed allocation
//! under the memory limit), a crash or a hang (the watchdog aborts an input that runs
//! past the time limit) ends the worker, and the supervisor saves the scratch input as a
//! finding and starts a new worker after it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Outcome, Target};

/// The most inputs a corpus holds (seeds and inputs that found a new error).
const MAX_CORPUS: usize = 1024;

/// Inputs between two progress reports of a worker.
const REPORT_EVERY: u64 = 1000;

/// What a campaign (or one worker) did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Inputs run.
    pub executions: u64,
    /// Inputs the reader accepted.
    pub accepted: u64,
    /// Inputs the reader rejected with an error.
    pub rejected: u64,
    /// Panics, aborts, crashes and hangs.
    pub findings: u64,
    /// The distinct kinds of error seen ([`crate::error_kind`]).
    pub error_kinds: BTreeSet<String>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// The slowest input, in milliseconds.
    pub slowest_ms: f64,
}

impl Stats {
    fn add(&mut self, other: &Self) {
        self.executions += other.executions;
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.findings += other.findings;
        self.error_kinds.extend(other.error_kinds.iter().cloned());
        self.slowest_ms = self.slowest_ms.max(other.slowest_ms);
    }

    /// Executions per second.
    pub fn rate(&self) -> f64 {
        self.executions as f64 / self.seconds.max(1e-9)
    }
}

/// The limits a worker runs under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The longest one input may run.
    pub time: Duration,
    /// The address space of a worker (bytes); 0 for no limit.
    pub memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            time: Duration::from_secs(10),
            memory: 4 << 30,
        }
    }
}

/// The generator of input `index` of a campaign.
fn input_rng(seed: u64, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// What the fuzzing loop runs: a target, the campaign's seed, a scratch directory, and
/// the clock the watchdog reads (milliseconds since the loop began, plus one, while an
/// input runs; 0 between inputs).
struct Loop<'a> {
    target: &'a dyn Target,
    seed: u64,
    scratch: &'a Path,
    started: &'a AtomicU64,
}

/// The fuzzing loop over inputs `range`, growing `corpus`; `on_finding` is told of each
/// panic (its message and the input) and `report` of progress.
fn fuzz_loop(
    run: &Loop<'_>,
    range: std::ops::Range<u64>,
    corpus: &mut Vec<Vec<u8>>,
    mut on_finding: impl FnMut(u64, &str, &[u8]),
    mut report: impl FnMut(u64, &Stats),
) -> Stats {
    let Loop {
        target,
        seed,
        scratch,
        started,
    } = *run;
    let clock = Instant::now();
    let mut stats = Stats::default();
    for index in range {
        let mut rng = input_rng(seed, index);
        let parent = corpus[rng.random_range(0..corpus.len())].clone();
        let input = target.mutate(&parent, corpus, &mut rng);
        let begin = Instant::now();
        started.store(clock.elapsed().as_millis() as u64 + 1, Ordering::SeqCst);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            target.execute(&input, scratch)
        }));
        started.store(0, Ordering::SeqCst);
        stats.slowest_ms = stats.slowest_ms.max(begin.elapsed().as_secs_f64() * 1e3);
        stats.executions += 1;
        match outcome {
            Ok(Outcome::Accepted) => stats.accepted += 1,
            Ok(Outcome::Rejected(kind)) => {
                stats.rejected += 1;
                if stats.error_kinds.insert(kind) && corpus.len() < MAX_CORPUS {
                    corpus.push(input);
                }
            }
            Err(payload) => {
                stats.findings += 1;
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panic".into());
                on_finding(index, &format!("panic: {message}"), &input);
            }
        }
        if (index + 1) % REPORT_EVERY == 0 {
            stats.seconds = clock.elapsed().as_secs_f64();
            report(index + 1, &stats);
        }
    }
    stats.seconds = clock.elapsed().as_secs_f64();
    stats
}

/// Runs `inputs` inputs of `target` in this process (panics caught, no time or memory
/// limit): for tests and quick checks. Findings are counted, not saved.
///
/// # Errors
/// The seeds cannot be read.
pub fn run_in_process(
    target: &dyn Target,
    inputs: u64,
    seed: u64,
    scratch: &Path,
) -> std::io::Result<Stats> {
    let mut corpus = target.seeds()?;
    let started = AtomicU64::new(0);
    let run = Loop {
        target,
        seed,
        scratch,
        started: &started,
    };
    Ok(fuzz_loop(
        &run,
        0..inputs,
        &mut corpus,
        |_, _, _| {},
        |_, _| {},
    ))
}

/// The files of a campaign directory.
struct Campaign {
    dir: PathBuf,
}

impl Campaign {
    fn scratch(&self) -> PathBuf {
        self.dir.join("scratch")
    }
    fn findings(&self) -> PathBuf {
        self.dir.join("findings")
    }
    fn corpus(&self) -> PathBuf {
        self.dir.join("corpus")
    }
    fn progress(&self) -> PathBuf {
        self.dir.join("progress.json")
    }
    fn hang(&self) -> PathBuf {
        self.dir.join("hang")
    }

    /// Saves a finding: its input and why (`<target>-<index>.bin` and `.txt`).
    fn save_finding(
        &self,
        target: &str,
        index: u64,
        why: &str,
        input: &[u8],
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(self.findings())?;
        let stem = self.findings().join(format!("{target}-{index}"));
        std::fs::write(stem.with_extension("bin"), input)?;
        std::fs::write(stem.with_extension("txt"), why)
    }
}

/// Progress a worker leaves behind: where it got to and what it saw.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Progress {
    /// The next input to run.
    next: u64,
    stats: Stats,
}

/// The worker's side: runs inputs `from..to` of `target` under `limits`, writing
/// progress and findings into the campaign directory `dir`. Called by the `worker`
/// subcommand of the fuzzer binary.
///
/// # Errors
/// The campaign directory or the seeds cannot be read or written.
pub fn worker(
    target: &dyn Target,
    from: u64,
    to: u64,
    seed: u64,
    dir: &Path,
    limits: Limits,
) -> std::io::Result<()> {
    let campaign = Campaign {
        dir: dir.to_owned(),
    };
    if limits.memory > 0 {
        let limit = rustix::process::Rlimit {
            current: Some(limits.memory),
            maximum: Some(limits.memory),
        };
        rustix::process::setrlimit(rustix::process::Resource::As, limit)
            .map_err(std::io::Error::from)?;
    }
    std::fs::create_dir_all(campaign.scratch())?;
    std::fs::create_dir_all(campaign.corpus())?;
    let mut corpus = target.seeds()?;
    let mut grown: Vec<_> = std::fs::read_dir(campaign.corpus())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    grown.sort();
    for path in grown {
        corpus.push(std::fs::read(path)?);
    }
    let seeds = corpus.len();
    // Panic messages are findings, not noise on stderr.
    std::panic::set_hook(Box::new(|_| {}));
    let started = Arc::new(AtomicU64::new(0));
    watchdog(Arc::clone(&started), limits.time, campaign.hang());
    let saved = Mutex::new(Ok(()));
    let scratch = campaign.scratch();
    let run = Loop {
        target,
        seed,
        scratch: &scratch,
        started: &started,
    };
    let stats = fuzz_loop(
        &run,
        from..to,
        &mut corpus,
        |index, why, input| {
            if let Err(e) = campaign.save_finding(target.name(), index, why, input) {
                *saved.lock().expect("not poisoned") = Err(e);
            }
        },
        |next, stats| {
            let _ = write_progress(
                &campaign.progress(),
                &Progress {
                    next,
                    stats: stats.clone(),
                },
            );
        },
    );
    saved.into_inner().expect("not poisoned")?;
    for (k, input) in corpus.iter().enumerate().skip(seeds) {
        std::fs::write(campaign.corpus().join(format!("{from:012}-{k:04}")), input)?;
    }
    write_progress(&campaign.progress(), &Progress { next: to, stats })
}

/// Limits this process's address space to `bytes` (0: no limit), so that an allocation
/// a hostile input provokes fails (and aborts the process) instead of taking the machine.
///
/// # Errors
/// The limit cannot be set.
pub fn limit_memory(bytes: u64) -> std::io::Result<()> {
    if bytes == 0 {
        return Ok(());
    }
    let limit = rustix::process::Rlimit {
        current: Some(bytes),
        maximum: Some(bytes),
    };
    rustix::process::setrlimit(rustix::process::Resource::As, limit).map_err(std::io::Error::from)
}

fn write_progress(path: &Path, progress: &Progress) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(progress).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

/// Aborts the process when an input has run longer than `limit`, leaving `marker`.
fn watchdog(started: Arc<AtomicU64>, limit: Duration, marker: PathBuf) {
    let clock = Instant::now();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(100));
        let since = started.load(Ordering::SeqCst);
        if since > 0 && clock.elapsed().as_millis() as u64 > since - 1 + limit.as_millis() as u64 {
            let _ = std::fs::write(&marker, format!("an input ran longer than {limit:?}"));
            std::process::abort();
        }
    });
}

/// Runs a campaign of `inputs` inputs of `target` in worker processes (the fuzzer binary
/// at `exe`, subcommand `worker`), restarting a worker that dies after its last report
/// and saving the input that killed it. Returns the campaign's stats.
///
/// # Errors
/// The campaign directory cannot be written, or a worker cannot be started.
pub fn supervise(
    exe: &Path,
    target: &dyn Target,
    inputs: u64,
    seed: u64,
    dir: &Path,
    limits: Limits,
    mut log: impl FnMut(&str),
) -> std::io::Result<Stats> {
    let campaign = Campaign {
        dir: dir.to_owned(),
    };
    std::fs::create_dir_all(dir)?;
    let clock = Instant::now();
    let mut total = Stats::default();
    let mut next = 0;
    while next < inputs {
        let _ = std::fs::remove_file(campaign.progress());
        let _ = std::fs::remove_file(campaign.hang());
        let status = Command::new(exe)
            .args([
                "worker",
                target.name(),
                "--from",
                &next.to_string(),
                "--to",
                &inputs.to_string(),
            ])
            .args(["--seed", &seed.to_string(), "--dir"])
            .arg(dir)
            .args(["--time-limit-ms", &limits.time.as_millis().to_string()])
            .args(["--memory-limit", &limits.memory.to_string()])
            .env("RUST_BACKTRACE", "0")
            .env("CANDLE_NUM_THREADS", "1")
            .env("RAYON_NUM_THREADS", "1")
            .status()?;
        let progress: Progress = std::fs::read(campaign.progress())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Progress {
                next,
                stats: Stats::default(),
            });
        total.add(&progress.stats);
        if status.success() {
            next = progress.next.max(next + 1);
            continue;
        }
        // The worker died at an input after its last report: keep that input.
        let why = std::fs::read_to_string(campaign.hang())
            .unwrap_or_else(|_| format!("the worker died: {status}"));
        let input = latest_input(&campaign.scratch()).unwrap_or_default();
        let at = progress.next.max(next);
        campaign.save_finding(target.name(), at, &why, &input)?;
        total.findings += 1;
        log(&format!("finding at input ~{at}: {why}"));
        next = (at + REPORT_EVERY).min(inputs).max(next + 1);
    }
    total.seconds = clock.elapsed().as_secs_f64();
    let summary = serde_json::to_vec_pretty(&total).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("stats.json"), summary)?;
    Ok(total)
}

/// The most recently written file of the scratch directory (the input being read).
fn latest_input(scratch: &Path) -> Option<Vec<u8>> {
    let newest = std::fs::read_dir(scratch)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())?;
    std::fs::read(newest.path()).ok()
}

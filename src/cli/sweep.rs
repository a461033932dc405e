//! `noether sweep plan|run|submit|status|collect`: sweeps of training runs, planned once
//! and run as local processes or as a Slurm job array (see `noether-sweep`).

use std::path::PathBuf;

use crate::cli::output::say;
use clap::{Args, Subcommand, ValueEnum};
use noether::sweep::scheduler::{self, SlurmOptions};
use noether::sweep::{self as sweeps, trial, Status};

/// Where `submit` runs the trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scheduler {
    /// Processes on this machine, `--parallel` at a time.
    Local,
    /// A Slurm job array submitted with `sbatch`.
    Slurm,
}

/// Arguments of `sweep submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The sweep directory.
    dir: PathBuf,
    /// local or slurm.
    #[arg(long, value_enum)]
    scheduler: Scheduler,
    /// Trials at once (local processes, or Slurm's array throttle %K).
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// CPU threads per trial.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Slurm partition.
    #[arg(long)]
    partition: Option<String>,
    /// Slurm time limit, HH:MM:SS.
    #[arg(long)]
    time: Option<String>,
    /// Slurm memory per task (e.g. 4G).
    #[arg(long)]
    mem: Option<String>,
    /// GPUs per task.
    #[arg(long)]
    gpus: Option<usize>,
}

/// `sweep` subcommands.
#[derive(Debug, Subcommand)]
pub enum SweepCommand {
    /// Resolve and validate every trial of a sweep file into DIR/manifest.jsonl.
    Plan {
        /// The sweep file (TOML; paths in it are relative to it).
        sweep: PathBuf,
        /// The sweep directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run one trial (skipped when finished, resumed when interrupted).
    Run {
        /// The sweep directory.
        dir: PathBuf,
        /// The trial's number in the manifest (default: $SLURM_ARRAY_TASK_ID).
        #[arg(long)]
        trial: Option<usize>,
        /// CPU threads (0: all cores; default: the config's).
        #[arg(long)]
        threads: Option<usize>,
        /// No progress bar or per-epoch lines.
        #[arg(long)]
        quiet: bool,
    },
    /// Run every unfinished trial locally, or submit them as a Slurm job array.
    Submit(SubmitArgs),
    /// Done / running / queued / failed / interrupted / pending per trial.
    Status {
        /// The sweep directory.
        dir: PathBuf,
    },
    /// Write DIR/results.csv: one row per finished trial.
    Collect {
        /// The sweep directory.
        dir: PathBuf,
    },
}

type Error = Box<dyn std::error::Error>;

/// The trial a worker runs: `--trial`, or Slurm's array index.
fn trial_number(trial: Option<usize>) -> Result<usize, Error> {
    if let Some(t) = trial {
        return Ok(t);
    }
    let task = std::env::var("SLURM_ARRAY_TASK_ID").map_err(|_| {
        "give --trial I (or run inside a Slurm array task, which sets SLURM_ARRAY_TASK_ID)"
    })?;
    task.trim()
        .parse()
        .map_err(|_| format!("SLURM_ARRAY_TASK_ID = '{task}' is not a trial number").into())
}

/// `HH:MM:SS` (hours may exceed 24; Slurm also takes `D-HH:MM:SS`, not checked here).
fn check_time(time: &str) -> Result<(), Error> {
    let parts: Vec<&str> = time.split(':').collect();
    let ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && parts[1].parse::<u32>().is_ok_and(|m| m < 60)
        && parts[2].parse::<u32>().is_ok_and(|s| s < 60);
    if ok {
        Ok(())
    } else {
        Err(format!("--time '{time}' is not HH:MM:SS").into())
    }
}

/// Runs a `sweep` subcommand.
///
/// # Errors
/// Sweep, manifest, training and scheduler errors naming the file, trial or command.
pub fn run(command: &SweepCommand) -> Result<(), Error> {
    match command {
        SweepCommand::Plan { sweep, out } => {
            let trials = sweeps::plan(sweep)?;
            sweeps::manifest::write(out, sweep, &trials)?;
            say!(
                "trials={} manifest={}",
                trials.len(),
                sweeps::manifest::manifest_path(out).display()
            )?;
        }
        SweepCommand::Run {
            dir,
            trial,
            threads,
            quiet,
        } => {
            let index = trial_number(*trial)?;
            match trial::run(dir, index, *threads, !quiet)? {
                trial::Outcome::Skipped => say!("trial {index}: finished before, skipped")?,
                trial::Outcome::Finished { resumed } => say!(
                    "trial {index}: finished{}",
                    if resumed { " (resumed)" } else { "" }
                )?,
            }
        }
        SweepCommand::Submit(args) => submit(args)?,
        SweepCommand::Status { dir } => print_status(dir)?,
        SweepCommand::Collect { dir } => {
            let (path, rows) = sweeps::collect(dir)?;
            say!("rows={rows} results={}", path.display())?;
        }
    }
    Ok(())
}

/// `sweep submit`.
fn submit(args: &SubmitArgs) -> Result<(), Error> {
    let worker = std::env::current_exe()?;
    let dir = &args.dir;
    match args.scheduler {
        Scheduler::Local => {
            let report = scheduler::run_local(dir, &worker, args.parallel, args.threads)?;
            say!(
                "finished={} failed={}",
                report.finished.len(),
                report.failed.len()
            )?;
            if !report.failed.is_empty() {
                return Err(format!(
                    "trials {:?} failed; their logs are in {}",
                    report.failed,
                    dir.join("logs").display()
                )
                .into());
            }
        }
        Scheduler::Slurm => {
            if let Some(t) = &args.time {
                check_time(t)?;
            }
            let options = SlurmOptions {
                parallel: args.parallel,
                threads: args.threads,
                partition: args.partition.clone(),
                time: args.time.clone(),
                mem: args.mem.clone(),
                gpus: args.gpus,
            };
            let trials = scheduler::unfinished(dir)?;
            let script = scheduler::write_sbatch(dir, &worker, &trials, &options)?;
            let job = scheduler::submit_slurm(dir, &script)?;
            say!(
                "job={job} tasks={} script={}",
                trials.len(),
                script.display()
            )?;
        }
    }
    Ok(())
}

/// `sweep status`: one line per trial, then the counts.
fn print_status(dir: &std::path::Path) -> Result<(), Error> {
    let slurm = scheduler::slurm_states(dir);
    let states = sweeps::status(dir, &slurm)?;
    let mut counts = std::collections::BTreeMap::new();
    for (t, state) in &states {
        // What Slurm said, where it explains the state (a cancelled or timed-out task).
        let said = slurm
            .get(&t.trial)
            .filter(|_| *state == Status::Failed)
            .map_or_else(String::new, |s| format!(" slurm={s}"));
        say!(
            "trial {} {} {}{said} {}",
            t.trial,
            t.id,
            state.name(),
            sweeps::plan::describe(&t.settings)
        )?;
        *counts.entry(*state).or_insert(0) += 1;
    }
    let summary: Vec<String> = [
        Status::Done,
        Status::Running,
        Status::Queued,
        Status::Failed,
        Status::Interrupted,
        Status::Pending,
    ]
    .iter()
    .map(|s| format!("{}={}", s.name(), counts.get(s).unwrap_or(&0)))
    .collect();
    say!("{}", summary.join(" "))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_times_are_checked() {
        assert!(check_time("01:30:00").is_ok());
        assert!(check_time("100:00:59").is_ok());
        for bad in ["1:60:00", "01:00", "aa:00:00", "", "01:00:60"] {
            assert!(check_time(bad).is_err(), "{bad}");
        }
    }
}

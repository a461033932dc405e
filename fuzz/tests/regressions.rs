//! Every input a fuzzing campaign ever found a failure with (`fuzz/regressions/<target>/`)
//! is read again and must give a result (accepted or a typed error) quickly, and a short
//! seeded campaign of each target must find nothing.

use std::time::{Duration, Instant};

use noether_fuzz::{engine, repository_root, targets, Outcome};

/// Each past finding, replayed in its own process under the workers' 4 GiB memory
/// limit: a panic, an abort (a failed allocation), a stack overflow or a hang would end
/// that process without its one line of result.
#[test]
fn every_past_finding_now_gives_a_result() {
    let mut replayed = 0;
    for target in targets::all() {
        let dir = repository_root()
            .join("fuzz/regressions")
            .join(target.name());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let start = Instant::now();
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_noether-fuzz"))
                .args(["replay", target.name()])
                .arg(&path)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && (text.contains("Rejected") || text.contains("Accepted")),
                "{}: {} {text} {}",
                path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{}: took {:?}",
                path.display(),
                start.elapsed()
            );
            replayed += 1;
        }
    }
    assert!(replayed >= 1, "no regression inputs found");
}

#[test]
fn the_seeds_of_every_target_are_accepted() {
    let scratch = tempfile::tempdir().unwrap();
    for target in targets::all() {
        let seeds = target.seeds().unwrap();
        assert!(!seeds.is_empty(), "{}: no seeds", target.name());
        for (k, seed) in seeds.iter().enumerate() {
            assert_eq!(
                target.execute(seed, scratch.path()),
                Outcome::Accepted,
                "{} seed {k}",
                target.name()
            );
        }
    }
}

#[test]
fn a_short_campaign_of_every_target_finds_nothing() {
    for target in targets::all() {
        let scratch = tempfile::tempdir().unwrap();
        let stats = engine::run_in_process(target.as_ref(), 400, 2026, scratch.path()).unwrap();
        assert_eq!(stats.executions, 400);
        assert_eq!(stats.findings, 0, "{}: {stats:?}", target.name());
        assert!(
            stats.rejected > 0,
            "{}: no mutant was rejected",
            target.name()
        );
    }
}

//! Every input a fuzzing campaign ever found a failure with (`fuzz/regressions/<target>/`)
//! is read again and must give a result (accepted or a typed error) quickly, and a short
//! seeded campaign of each target must find nothing.

use std::time::{Duration, Instant};

use noether_fuzz::{engine, repository_root, targets, Outcome};

#[test]
fn every_past_finding_now_gives_a_result() {
    let scratch = tempfile::tempdir().unwrap();
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
            let input = std::fs::read(&path).unwrap();
            let start = Instant::now();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                target.execute(&input, scratch.path())
            }));
            assert!(outcome.is_ok(), "{}: panicked", path.display());
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

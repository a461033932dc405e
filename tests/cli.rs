//! The `noether` binary's command-line contract.

use std::process::Command;

fn noether(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_noether"))
        .args(args)
        .output()
        .expect("the noether binary runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

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

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

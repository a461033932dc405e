//! Helpers shared by the command-line tests: run the `noether` binary, find the
//! repository root.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the `noether` binary with `args`: (success, stdout + stderr).
pub fn noether(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_noether"))
        .args(args)
        .output()
        .expect("the noether binary runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path as the `&str` an argument list takes.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A sweep file over the bundled jets (PFN, 200 validation jets) with `body` appended.
pub fn sweep_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    let data = root().join("data");
    let text = format!(
        "base = \"{}\"\ndata = \"{}\"\nval_data = \"{}\"\ntest_data = \"{}\"\n{body}",
        root().join("configs/pfn-cpu.toml").display(),
        data.join("train.h5").display(),
        data.join("val.h5").display(),
        data.join("test.h5").display(),
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

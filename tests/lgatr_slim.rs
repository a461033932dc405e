//! L-GATr-slim from the command line with a state dict written by the `lgatr` 2.0 package
//! itself (`crates/equivariant/tests/fixtures/lgatr_slim.safetensors`, by
//! `tests/fixtures/make_lgatr_slim_fixtures.py`): it loads with no remaps into the
//! matching configuration, and a state dict of another configuration is refused with
//! every mismatched tensor and both shapes named.

mod common;

use std::path::Path;

use common::{noether, root, s};

fn config(dir: &Path, hidden_v: usize, blocks: usize) -> std::path::PathBuf {
    let path = dir.join(format!("slim-{hidden_v}-{blocks}.toml"));
    let data = root().join("data");
    std::fs::write(
        &path,
        format!(
            "model = \"lgatr_slim\"\n[lgatr_slim]\nhidden_v_channels = {hidden_v}\n\
             hidden_s_channels = 32\nnum_blocks = {blocks}\nnum_heads = 4\n\
             [data]\ntrain = \"{}\"\nval = \"{}\"\ntest = \"{}\"\ntrain_jets = 100\n\
             val_jets = 50\nn_max = 20\nbatch_size = 25\n[train]\nepochs = 1\nthreads = 1\n",
            data.join("train.h5").display(),
            data.join("val.h5").display(),
            data.join("test.h5").display(),
        ),
    )
    .unwrap();
    path
}

fn package_state_dict() -> std::path::PathBuf {
    root().join("crates/equivariant/tests/fixtures/lgatr_slim.safetensors")
}

#[test]
fn a_state_dict_written_by_the_package_loads_without_remaps() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = noether(&[
        "finetune",
        "--from",
        s(&package_state_dict()),
        "--config",
        s(&config(dir.path(), 8, 2)),
        "--strict",
        "--out",
        s(&dir.path().join("run")),
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("36 applied (0 converted), 0 missing, 0 unexpected, 0 shape-mismatched"),
        "{text}"
    );
}

#[test]
fn a_state_dict_of_another_configuration_names_each_mismatched_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = noether(&[
        "finetune",
        "--from",
        s(&package_state_dict()),
        "--config",
        s(&config(dir.path(), 16, 2)),
        "--out",
        s(&dir.path().join("run")),
    ]);
    assert!(!ok, "{text}");
    for line in [
        "mismatched  blocks.0.norm1.weight_v: model [16], checkpoint [8]",
        "mismatched  blocks.1.attention.linear_in.weight_v: model [48, 16], checkpoint [24, 8]",
        "mismatched  linear_out.weight_v: model [0, 16], checkpoint [0, 8]",
    ] {
        assert!(text.contains(line), "missing '{line}' in:\n{text}");
    }
    assert!(!text.contains("replaced"), "{text}");
}

//! PyTorch `.pt` checkpoints read without Python: files written by `torch.save`
//! (`tests/fixtures/make_pt_fixtures.py`) must give exactly the tensors PyTorch reads
//! back (`expected.json`), and hostile files (a pickle calling `os.system`, unknown
//! classes, not a state dict, legacy, truncated, wrong magic, a view past its storage)
//! are refused with typed errors naming the file and the object or tensor.

use std::path::{Path, PathBuf};

use candle_core::DType;
use noether_transfer::{load_checkpoint, read_torch, LoadOptions, TransferError};

mod common;
use common::pfn;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pt")
        .join(name)
}

fn expected(file: &str) -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(fixture("expected.json")).unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    all[file].as_object().unwrap().clone()
}

/// The candle dtype noether reads a PyTorch dtype as.
fn dtype_of(torch: &str) -> DType {
    match torch {
        "float16" => DType::F16,
        "bfloat16" => DType::BF16,
        "float32" => DType::F32,
        "float64" => DType::F64,
        "int64" => DType::I64,
        other => panic!("fixture dtype {other}"),
    }
}

fn check_against_pytorch(file: &str) {
    let checkpoint = read_torch(&fixture(file)).unwrap();
    let want = expected(file);
    let mut names: Vec<&str> = checkpoint.tensors.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let want_names: Vec<&str> = want.keys().map(String::as_str).collect();
    assert_eq!(
        names, want_names,
        "{file}: keys (sorted: serde_json's map sorts)"
    );
    for (name, tensor) in &checkpoint.tensors {
        let row = &want[name];
        assert_eq!(
            tensor.dtype(),
            dtype_of(row["dtype"].as_str().unwrap()),
            "{file}: {name}"
        );
        let shape: Vec<usize> = row["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(tensor.dims(), &shape[..], "{file}: {name}");
        let got: Vec<f64> = tensor
            .to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let values: Vec<f64> = row["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        // Every dtype here widens to f64 exactly: the values must be bit-identical.
        assert_eq!(got, values, "{file}: {name}");
    }
}

#[test]
fn state_dicts_of_every_dtype_read_as_pytorch_reads_them() {
    check_against_pytorch("mixed.pt");
    let checkpoint = read_torch(&fixture("mixed.pt")).unwrap();
    let order: Vec<&str> = checkpoint.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(order[0], "module.conv.weight", "the file's order is kept");
    assert_eq!(order[8], "module.second_half");
}

#[test]
fn pickle_protocol_4_reads_the_same() {
    check_against_pytorch("protocol4.pt");
}

#[test]
fn nested_training_checkpoints_flatten_with_dotted_keys() {
    check_against_pytorch("nested.pt");
    let checkpoint = read_torch(&fixture("nested.pt")).unwrap();
    assert!(
        checkpoint.skipped.contains(&"epoch".to_owned()),
        "{:?}",
        checkpoint.skipped
    );
    assert!(checkpoint
        .skipped
        .contains(&"optimizer.param_groups".to_owned()));
    let names = checkpoint.by_name();
    assert!(names.contains_key("model.mod.0.weight"));
    assert!(names.contains_key("optimizer.state.0.exp_avg"));
}

#[test]
fn a_pt_state_dict_loads_into_a_model_with_the_wrapper_prefix_stripped() {
    let varmap = pfn();
    let report =
        load_checkpoint(&fixture("pfn_module.pt"), &varmap, &LoadOptions::lenient()).unwrap();
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.applied.len(), 8);
    let want = expected("pfn_module.pt");
    let vars = varmap.data().lock().unwrap();
    let got: Vec<f32> = vars["phi.1.weight"]
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let values: Vec<f32> = want["module.phi.1.weight"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(got, values);
}

fn refusal(file: &str) -> (TransferError, String) {
    let err = read_torch(&fixture(file)).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(file),
        "{file}: the error names the file: {message}"
    );
    (err, message)
}

#[test]
fn a_pickle_that_calls_os_system_is_refused_naming_the_object() {
    let (err, message) = refusal("evil_system.pt");
    assert!(
        matches!(&err, TransferError::ForbiddenObject { object, .. } if object == "posix.system"),
        "{message}"
    );
    assert!(message.contains("weights_only"), "{message}");
}

#[test]
fn unknown_classes_are_refused_naming_them() {
    let (err, message) = refusal("evil_global.pt");
    assert!(
        matches!(&err, TransferError::ForbiddenObject { object, .. } if object == "__main__.RunConfig"),
        "{message}"
    );
}

#[test]
fn files_that_are_not_state_dicts_are_refused() {
    let (err, message) = refusal("not_state_dict.pt");
    assert!(
        matches!(err, TransferError::NotStateDict { .. }),
        "{message}"
    );
    assert!(message.contains("a tensor at its top level"), "{message}");
    let (err, message) = refusal("list.pt");
    assert!(
        matches!(err, TransferError::NotStateDict { .. }),
        "{message}"
    );
    assert!(message.contains("a list"), "{message}");
}

#[test]
fn legacy_truncated_and_foreign_files_are_refused() {
    let (err, message) = refusal("legacy.pt");
    assert!(matches!(err, TransferError::NotTorch { .. }), "{message}");
    assert!(message.contains("legacy"), "{message}");
    let (err, message) = refusal("truncated.pt");
    assert!(matches!(err, TransferError::NotTorch { .. }), "{message}");
    let (err, message) = refusal("wrong_magic.pt");
    assert!(matches!(err, TransferError::NotTorch { .. }), "{message}");
}

#[test]
fn a_view_past_its_storage_is_refused_naming_the_tensor() {
    let (err, message) = refusal("bad_stride.pt");
    assert!(
        matches!(&err, TransferError::BadTensor { tensor, .. } if tensor == "w"),
        "{message}"
    );
}

#[test]
fn the_jetclass_particlenet_checkpoint_reads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/particlenet/ParticleNet_kin.pt");
    if !path.exists() {
        eprintln!(
            "skipping: {} is absent (the shared reference material)",
            path.display()
        );
        return;
    }
    let checkpoint = read_torch(&path).unwrap();
    assert_eq!(checkpoint.tensors.len(), 81);
    assert!(checkpoint
        .tensors
        .iter()
        .all(|(n, _)| n.starts_with("mod.")));
    let counters = checkpoint
        .tensors
        .iter()
        .filter(|(_, t)| t.dtype() == DType::I64)
        .count();
    let by_name = checkpoint.by_name();
    assert_eq!(
        by_name["mod.edge_convs.0.convs.0.weight"].dims(),
        &[64, 14, 1, 1]
    );
    assert_eq!(
        counters,
        checkpoint
            .tensors
            .iter()
            .filter(|(n, _)| n.ends_with("num_batches_tracked"))
            .count()
    );
}

//! Loading foreign checkpoints: a file written by PyTorch (`safetensors.torch.save_file`,
//! mixed F16/BF16/F64/F32, `module.` prefix, extra, missing and mis-shaped keys; fixture
//! by `tests/fixtures/make_transfer_fixtures.py`), remapping, strict mode, and malformed
//! files rejected with typed errors naming the file or tensor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_nn::VarMap;
use noether_transfer::{apply_tensors, load_checkpoint, LoadOptions, Remap, TransferError};

mod common;
use common::pfn;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn values(varmap: &VarMap, name: &str) -> Vec<f32> {
    varmap.data().lock().unwrap()[name]
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn a_pytorch_checkpoint_loads_with_a_complete_report() {
    let varmap = pfn();
    let before_head_bias = values(&varmap, "head.bias");
    let before_f0 = values(&varmap, "f.0.weight");
    let report = load_checkpoint(
        &fixture("torch_pfn_mixed.safetensors"),
        &varmap,
        &LoadOptions::lenient(),
    )
    .unwrap();
    eprintln!("{report}");
    assert_eq!(report.missing, vec!["head.bias"]);
    assert!(report.unexpected.is_empty(), "{:?}", report.unexpected);
    assert_eq!(report.ignored, vec!["norm.num_batches_tracked"]);
    assert_eq!(report.mismatched.len(), 1);
    assert_eq!(report.mismatched[0].name, "f.0.weight");
    assert_eq!(report.mismatched[0].expected, vec![5, 3]);
    assert_eq!(report.mismatched[0].found, vec![5, 4]);
    assert_eq!(report.applied.len(), 6);
    // F16, BF16 and F64 tensors were converted; values equal PyTorch's float32 casts.
    let converted: Vec<&str> = report.converted.iter().map(|(_, d)| d.as_str()).collect();
    assert!(
        converted.contains(&"F16") && converted.contains(&"BF16") && converted.contains(&"F64")
    );
    let expected: HashMap<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture("torch_pfn_expected.json")).unwrap())
            .unwrap();
    for name in &report.applied {
        let want: Vec<f32> = serde_json::from_value(expected[name]["values"].clone()).unwrap();
        assert_eq!(values(&varmap, name), want, "{name}");
    }
    // What was not applied is left exactly as initialised.
    assert_eq!(values(&varmap, "head.bias"), before_head_bias);
    assert_eq!(values(&varmap, "f.0.weight"), before_f0);
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    for key in [
        "applied",
        "converted",
        "missing",
        "unexpected",
        "mismatched",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
}

/// The PFN's own tensors, with a 4-class head in place of its 2-class one (row r of the
/// weight filled with 10 r + column, bias r with -r).
fn checkpoint_with_a_four_class_head(varmap: &VarMap) -> HashMap<String, candle_core::Tensor> {
    let mut tensors: HashMap<String, candle_core::Tensor> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
        .collect();
    let width = tensors["head.weight"].dims()[1];
    let weight: Vec<f32> = (0..4 * width)
        .map(|k| (10 * (k / width) + k % width) as f32)
        .collect();
    let device = &candle_core::Device::Cpu;
    tensors.insert(
        "head.weight".into(),
        candle_core::Tensor::from_vec(weight, (4, width), device).unwrap(),
    );
    tensors.insert(
        "head.bias".into(),
        candle_core::Tensor::new(&[0.0_f32, -1.0, -2.0, -3.0], device).unwrap(),
    );
    tensors
}

#[test]
fn a_head_of_other_classes_is_replaced_or_started_from_chosen_rows() {
    let varmap = pfn();
    let tensors = checkpoint_with_a_four_class_head(&varmap);
    let source = Path::new("four-class.safetensors");
    let head = LoadOptions {
        replace: Some(regex::Regex::new(r"^head\.").unwrap()),
        ..LoadOptions::default()
    };
    let before = values(&varmap, "head.weight");
    let report = apply_tensors(&tensors, source, &varmap, &head).unwrap();
    assert_eq!(report.replaced.len(), 2);
    assert!(report.selected.is_empty() && report.mismatched.is_empty());
    assert_eq!(values(&varmap, "head.weight"), before);

    let rows = LoadOptions {
        head_classes: Some(vec![3, 1]),
        ..head.clone()
    };
    let report = apply_tensors(&tensors, source, &varmap, &rows).unwrap();
    assert_eq!(report.selected.len(), 2);
    assert!(report.replaced.is_empty() && report.missing.is_empty());
    assert!(report.applied.contains(&"head.weight".to_owned()));
    assert!(format!("{report}")
        .contains("selected    head.weight: [2, 5] from rows of the checkpoint's [4, 5]"));
    let width = 5;
    let want: Vec<f32> = [3, 1]
        .iter()
        .flat_map(|r| (0..width).map(move |c| (10 * r + c) as f32))
        .collect();
    assert_eq!(values(&varmap, "head.weight"), want);
    assert_eq!(values(&varmap, "head.bias"), vec![-3.0, -1.0]);

    for (classes, reason) in [
        (vec![1], "1 class(es) given for a head of 2 rows"),
        (
            vec![0, 4],
            "class 4 is out of range: the checkpoint's head has 4 classes",
        ),
    ] {
        let options = LoadOptions {
            head_classes: Some(classes),
            ..head.clone()
        };
        let err = apply_tensors(&tensors, source, &varmap, &options).unwrap_err();
        assert!(matches!(err, TransferError::BadHeadClasses { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("four-class.safetensors: tensor 'head.bias'") && text.contains(reason),
            "{text}"
        );
    }
}

#[test]
fn strict_mode_and_remapping() {
    let varmap = pfn();
    let strict = LoadOptions {
        strict: true,
        ..LoadOptions::lenient()
    };
    let err =
        load_checkpoint(&fixture("torch_pfn_mixed.safetensors"), &varmap, &strict).unwrap_err();
    assert!(
        matches!(&err, TransferError::Missing { missing, .. } if missing == &["head.bias".to_owned()]),
        "{err}"
    );
    assert!(
        err.to_string().contains("torch_pfn_mixed.safetensors"),
        "{err}"
    );
    // Without prefix stripping nothing matches; an explicit rule does the same job.
    let none = load_checkpoint(
        &fixture("torch_pfn_mixed.safetensors"),
        &varmap,
        &LoadOptions::default(),
    )
    .unwrap();
    assert!(none.applied.is_empty() && none.unexpected.len() == 7 && none.ignored.len() == 1);
    let rule = LoadOptions {
        remaps: vec![Remap::parse(r"^module\.=").unwrap()],
        ..LoadOptions::default()
    };
    let report = load_checkpoint(&fixture("torch_pfn_mixed.safetensors"), &varmap, &rule).unwrap();
    assert_eq!(report.applied.len(), 6);
    for bad in ["no-equals", "=x", "(=y"] {
        assert!(
            matches!(Remap::parse(bad), Err(TransferError::BadRemap { .. })),
            "{bad}"
        );
    }
}

#[test]
fn malformed_files_are_rejected_naming_the_file_or_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixture("torch_pfn_mixed.safetensors")).unwrap();
    let varmap = pfn();
    let load = |bytes: &[u8], name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        load_checkpoint(&path, &varmap, &LoadOptions::lenient()).unwrap_err()
    };
    // Truncated: the data section is cut short.
    let err = load(&good[..good.len() - 10], "truncated.safetensors");
    assert!(matches!(err, TransferError::Safetensors { .. }), "{err}");
    assert!(err.to_string().contains("truncated.safetensors"), "{err}");
    // A header length beyond the end of the file.
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let err = load(&huge, "header.safetensors");
    assert!(matches!(err, TransferError::Safetensors { .. }), "{err}");
    // A tensor offset beyond the data.
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(good[8..8 + header_len].to_vec()).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&header).unwrap();
    json["module.phi.0.bias"]["data_offsets"][1] = serde_json::json!(1_000_000);
    let text = json.to_string();
    let mut bad = (text.len() as u64).to_le_bytes().to_vec();
    bad.extend(text.as_bytes());
    bad.extend(&good[8 + header_len..]);
    let err = load(&bad, "offsets.safetensors");
    assert!(matches!(err, TransferError::Safetensors { .. }), "{err}");
    // An integer tensor where a float parameter is expected.
    let data = [1u8; 12];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![4, 3], &data).unwrap();
    let bytes = safetensors::serialize([("phi.0.weight", view)], None).unwrap();
    let err = load(&bytes, "dtype.safetensors");
    assert!(
        matches!(&err, TransferError::UnsupportedDtype { tensor, .. } if tensor == "phi.0.weight"),
        "{err}"
    );
    // A missing file names its path.
    let err = load_checkpoint(
        &dir.path().join("absent.safetensors"),
        &varmap,
        &LoadOptions::lenient(),
    )
    .unwrap_err();
    assert!(
        matches!(err, TransferError::Io { .. }) && err.to_string().contains("absent.safetensors")
    );
}

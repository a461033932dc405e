//! LoRA against an adapter written by HuggingFace PEFT (fixture by
//! `tests/fixtures/make_lora_fixtures.py`): same outputs, same merged outputs, same file
//! layout; merge/unmerge round trips; a fresh adapter changes nothing.

use std::path::{Path, PathBuf};

use candle_core::{Device, Module, Tensor};
use noether_equivariant::Linear;
use noether_transfer::{load_adapters, save_adapters, LoraConfig, TransferError};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn expected() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("peft_lora_expected.json")).unwrap(),
    )
    .unwrap()
}

fn matrix(v: &serde_json::Value) -> Tensor {
    let rows: Vec<Vec<f32>> = serde_json::from_value(v.clone()).unwrap();
    let (r, c) = (rows.len(), rows[0].len());
    Tensor::from_vec(rows.concat(), (r, c), &Device::Cpu).unwrap()
}

fn close(a: &Tensor, b: &Tensor, tol: f32) {
    let (a, b): (Vec<f32>, Vec<f32>) = (
        a.flatten_all().unwrap().to_vec1().unwrap(),
        b.flatten_all().unwrap().to_vec1().unwrap(),
    );
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= tol * y.abs().max(1.0), "{x} vs {y}");
    }
}

/// PEFT's layer as noether runs it: the models' `Linear` with PEFT's adapter attached.
fn peft_layer() -> (Linear, LoraConfig, serde_json::Value) {
    let e = expected();
    let weight = matrix(&e["weight"]);
    let bias: Vec<f32> = serde_json::from_value(e["bias"].clone()).unwrap();
    let bias = Tensor::from_vec(bias, 5, &Device::Cpu).unwrap();
    let (config, adapters) = load_adapters(&fixtures().join("peft_lora")).unwrap();
    let mut layer = Linear::from(candle_nn::Linear::new(weight, Some(bias)));
    let (a, b) = &adapters["proj"];
    layer.attach(config.low_rank(a, b)).unwrap();
    (layer, config, e)
}

#[test]
fn peft_adapter_reproduces_peft_outputs_merged_and_unmerged() {
    let (mut layer, config, e) = peft_layer();
    assert_eq!((config.r, config.lora_alpha), (4, 8.0));
    let x = matrix(&e["x"]);
    close(&layer.forward(&x).unwrap(), &matrix(&e["y"]), 1e-6);
    // The row-wise form LorentzNet's edge layers use computes the same.
    close(&layer.forward_rows(&x).unwrap(), &matrix(&e["y"]), 1e-6);
    layer.merge().unwrap();
    close(&layer.forward(&x).unwrap(), &matrix(&e["y_merged"]), 1e-6);
    layer.unmerge().unwrap();
    close(&layer.forward(&x).unwrap(), &matrix(&e["y"]), 1e-6);
}

#[test]
fn adapters_round_trip_in_peft_layout() {
    let (layer, config, e) = peft_layer();
    let dir = tempfile::tempdir().unwrap();
    save_adapters(dir.path(), &config, &[("proj", &layer)]).unwrap();
    let ours =
        candle_core::safetensors::load(dir.path().join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap();
    let theirs = candle_core::safetensors::load(
        fixtures().join("peft_lora/adapter_model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let (mut a, mut b): (Vec<&String>, Vec<&String>) =
        (ours.keys().collect(), theirs.keys().collect());
    a.sort();
    b.sort();
    assert_eq!(a, b);
    for (k, t) in &theirs {
        close(&ours[k], t, 0.0);
    }
    let (config2, adapters) = load_adapters(dir.path()).unwrap();
    assert_eq!(config2.target_modules, vec!["proj"]);
    let mut fresh = Linear::from(candle_nn::Linear::new(matrix(&e["weight"]), None));
    let (a, b) = &adapters["proj"];
    fresh.attach(config2.low_rank(a, b)).unwrap();
    close(
        &fresh.adapter().unwrap().a,
        &layer.adapter().unwrap().a,
        0.0,
    );
}

#[test]
fn a_zero_adapter_changes_nothing_and_specs_are_checked() {
    let e = expected();
    let weight = matrix(&e["weight"]);
    let config = LoraConfig::parse("r=8,alpha=16").unwrap();
    assert_eq!((config.r, config.scaling()), (8, 2.0));
    let mut layer = Linear::from(candle_nn::Linear::new(weight.clone(), None));
    let a = Tensor::ones((8, 6), candle_core::DType::F32, &Device::Cpu).unwrap();
    let b = Tensor::zeros((5, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    layer.attach(config.low_rank(&a, &b)).unwrap();
    let x = matrix(&e["x"]);
    let plain = x.matmul(&weight.t().unwrap()).unwrap();
    close(&layer.forward(&x).unwrap(), &plain, 0.0);
    for bad in ["r=0", "alpha=-1", "r=2.5", "rank=4", "r"] {
        assert!(
            matches!(LoraConfig::parse(bad), Err(TransferError::BadLora { .. })),
            "{bad}"
        );
    }
}

/// Adapters on 1x1 convolutions (ParticleNet's edge convolutions, base weight
/// `[out, in, 1, 1]`) are written in PEFT's Conv2d layout (A `[r, in, 1, 1]`, B
/// `[out, r, 1, 1]`) and read back as the matrices the layer holds; a kernel larger than
/// 1x1 is refused naming the tensor.
#[test]
fn convolution_adapters_take_peft_conv_shapes() {
    use noether_transfer::{adapters_in, save_adapter_tensors};
    use std::collections::HashMap;
    let cpu = Device::Cpu;
    let t = |shape: &[usize], seed: f32| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| seed + i as f32 * 0.25).collect();
        Tensor::from_vec(v, shape, &cpu).unwrap()
    };
    let tensors = HashMap::from([
        ("edge.weight".to_owned(), t(&[4, 3, 1, 1], 0.0)),
        ("edge.lora_A.weight".to_owned(), t(&[2, 3], 1.0)),
        ("edge.lora_B.weight".to_owned(), t(&[4, 2], 2.0)),
        ("fc.weight".to_owned(), t(&[4, 4], 0.0)),
        ("fc.lora_A.weight".to_owned(), t(&[2, 4], 3.0)),
        ("fc.lora_B.weight".to_owned(), t(&[4, 2], 4.0)),
    ]);
    let adapters = adapters_in(&tensors).unwrap();
    assert_eq!(adapters["edge"].0.dims(), [2, 3, 1, 1]);
    assert_eq!(adapters["edge"].1.dims(), [4, 2, 1, 1]);
    assert_eq!(adapters["fc"].0.dims(), [2, 4]);
    let dir = tempfile::tempdir().unwrap();
    let config = LoraConfig::parse("r=2,alpha=4").unwrap();
    save_adapter_tensors(dir.path(), &config, &adapters).unwrap();
    let (_, read) = load_adapters(dir.path()).unwrap();
    for (path, (a, b)) in &read {
        let want_a = &tensors[&format!("{path}.lora_A.weight")];
        let want_b = &tensors[&format!("{path}.lora_B.weight")];
        assert_eq!(a.dims(), want_a.dims(), "{path}");
        let same = |x: &Tensor, y: &Tensor| {
            x.flatten_all().unwrap().to_vec1::<f32>().unwrap()
                == y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        assert!(same(a, want_a) && same(b, want_b), "{path}");
    }
    let mut wide = adapters.clone();
    wide.insert(
        "edge".into(),
        (t(&[2, 3, 3, 3], 0.0), t(&[4, 2, 1, 1], 0.0)),
    );
    save_adapter_tensors(dir.path(), &config, &wide).unwrap();
    let err = load_adapters(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("base_model.model.edge.lora_A.weight") && err.contains("1x1"),
        "{err}"
    );
}

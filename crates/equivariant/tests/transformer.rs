//! The Transformer baseline against the tagging-guide's "tr" model (`lloca` 2.0's
//! `Transformer` with identity frames; fixture by
//! `tests/fixtures/make_lgatr_slim_fixtures.py`), and its permutation invariance.

#[path = "common/parity.rs"]
mod parity;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use noether_equivariant::{
    seeded_varbuilder, Mode, ModelError, Placement, TaggerModel, TaggingFeatures, Transformer,
    TransformerConfig,
};
use parity::{as_padded, flat, json, padded_jets, weights, worst_relative};

fn to_vec(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn fixture_config() -> TransformerConfig {
    TransformerConfig {
        hidden_channels: 32,
        num_heads: 4,
        num_blocks: 2,
        mlp_factor: 4,
        ..TransformerConfig::default()
    }
}

#[test]
fn the_transformer_reproduces_the_lloca_baseline_on_bundled_jets() {
    let fixture = json("transformer.json");
    let model = Transformer::new(
        &fixture_config(),
        &weights("transformer.safetensors", DType::F32),
    )
    .unwrap();
    let (momenta, mask, nodes) = padded_jets(&fixture, &[]);
    let input = model
        .input(&as_padded(&momenta, &mask, nodes, 0), &Placement::cpu())
        .unwrap();
    let logits = model.forward_t(&input, &mut Mode::Eval).unwrap();
    let want = flat(&fixture["logits"]);
    let scale = want.iter().map(|x| x.abs()).fold(0.0, f64::max);
    let err = worst_relative(&to_vec(&logits), &want, scale);
    println!("Transformer: worst logit error {err:.2e} of the largest logit {scale:.3}");
    assert!(err < 1e-5, "logits differ from lloca by {err:.2e}");
}

#[test]
fn the_transformer_is_permutation_invariant_and_ignores_padding() {
    let fixture = json("transformer.json");
    let varmap = VarMap::new();
    let vb = seeded_varbuilder(&varmap, 1, DType::F64, &Device::Cpu);
    let model = Transformer::new(&fixture_config(), &vb).unwrap();
    let place = Placement {
        device: Device::Cpu,
        dtype: DType::F64,
    };
    let (momenta, mask, nodes) = padded_jets(&fixture, &[]);
    let logits = |m: &[f64], k: &[f32], n: usize| {
        let input = model.input(&as_padded(m, k, n, 0), &place).unwrap();
        to_vec(&model.forward_t(&input, &mut Mode::Eval).unwrap())
    };
    let before = logits(&momenta, &mask, nodes);
    // Reverse every jet's node order (padding moves to the front).
    let jets = mask.len() / nodes;
    let (mut m2, mut k2) = (vec![0.0; momenta.len()], vec![0.0; mask.len()]);
    for b in 0..jets {
        for i in 0..nodes {
            let j = nodes - 1 - i;
            k2[b * nodes + j] = mask[b * nodes + i];
            m2[(b * nodes + j) * 4..(b * nodes + j + 1) * 4]
                .copy_from_slice(&momenta[(b * nodes + i) * 4..(b * nodes + i + 1) * 4]);
        }
    }
    assert!(worst_relative(&logits(&m2, &k2, nodes), &before, 1.0) < 1e-12);
    // Five more padded nodes per jet change nothing.
    let wider = nodes + 5;
    let (mut m3, mut k3) = (vec![0.0; jets * wider * 4], vec![0.0; jets * wider]);
    for b in 0..jets {
        m3[b * wider * 4..(b * wider + nodes) * 4]
            .copy_from_slice(&momenta[b * nodes * 4..(b + 1) * nodes * 4]);
        k3[b * wider..b * wider + nodes].copy_from_slice(&mask[b * nodes..(b + 1) * nodes]);
    }
    assert!(worst_relative(&logits(&m3, &k3, wider), &before, 1.0) < 1e-12);
}

/// Asserts that `config` is refused with a config error naming `key`.
fn assert_refused_by_key(config: &TransformerConfig, key: &str) {
    match Transformer::check_config(config) {
        Err(ModelError::BadConfig { key: got, .. }) => assert_eq!(got, key),
        other => panic!("{other:?}"),
    }
}

#[test]
fn heads_that_do_not_divide_the_channels_are_refused() {
    let config = TransformerConfig {
        hidden_channels: 30,
        num_heads: 4,
        ..fixture_config()
    };
    assert_refused_by_key(&config, "num_heads");
}

#[test]
fn a_transformer_without_tagging_features_is_refused_by_key() {
    let config = TransformerConfig {
        tagging_features: TaggingFeatures::None,
        ..fixture_config()
    };
    assert_refused_by_key(&config, "tagging_features");
}

#[test]
fn a_transformer_on_a_feature_subset_reads_only_those_features() {
    // Built on the five z-invariant features, the model takes [B, N, 5] scalars (the
    // default recipe's columns 0, 2, 4, 5, 6) and refuses the seven-feature tokens.
    let subset = TransformerConfig {
        tagging_features: TaggingFeatures::Zinvariant,
        ..fixture_config()
    };
    let varmap = VarMap::new();
    let vb = seeded_varbuilder(&varmap, 3, DType::F64, &Device::Cpu);
    let model = Transformer::new(&subset, &vb).unwrap();
    let (momenta, mask, nodes) = padded_jets(&json("transformer.json"), &[]);
    let place = Placement {
        device: Device::Cpu,
        dtype: DType::F64,
    };
    let jets = as_padded(&momenta, &mask, nodes, 0);
    let input = model.input(&jets, &place).unwrap();
    assert_eq!(input.scalars.dims()[2], 5);
    let full = fixture_config().recipe().compute(&jets, &place).unwrap();
    match model.forward_t(&full, &mut Mode::Eval) {
        Err(ModelError::BadInput { input, .. }) => assert_eq!(input, "token scalars"),
        other => panic!("{other:?}"),
    }
    let picked = full
        .scalars
        .index_select(&Tensor::new(&[0u32, 2, 4, 5, 6], &Device::Cpu).unwrap(), 2)
        .unwrap();
    let diff = (picked - &input.scalars).unwrap().abs().unwrap();
    assert_eq!(diff.max_all().unwrap().to_scalar::<f64>().unwrap(), 0.0);
    let logits = model.forward_t(&input, &mut Mode::Eval).unwrap();
    assert!(to_vec(&logits).iter().all(|x| x.is_finite()));
}

#[test]
fn forward_flops_equal_flop_counter_mode_on_lloca() {
    let fixture = json("transformer.json");
    let nodes = fixture["tokens"].as_u64().unwrap() as usize;
    assert_eq!(
        Transformer::forward_flops(&fixture_config(), nodes),
        u128::from(fixture["flops_per_jet"].as_u64().unwrap())
    );
}

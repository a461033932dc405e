//! Every registered model through the registry: built on the CPU from the `train.device`
//! setting (in f32 and in f64), one optimizer step on bundled jets, saved, reloaded from
//! the checkpoint alone, and the reloaded model's logits identical bit for bit. Also:
//! every parameter of every model has a layer depth and the head matches parameters.

mod common;

use common::{bundled, first_val_batch};

use noether_equivariant::{is_buffer, DeviceSetting, Mode, ModelConfig, ModelKind, Precision};
use noether_train::checkpoint::{self, weights, CheckpointMeta};
use noether_train::{
    build_model, cross_entropy, forward_batch, load_model, parameters, Optimizer, TrainConfig,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A small config of `kind` (the match is exhaustive: a new model must be added here).
fn small(kind: ModelKind) -> TrainConfig {
    let section = match kind {
        ModelKind::LorentzNet => "n_hidden = 8\nn_layers = 2\ndropout = 0.0",
        ModelKind::Pelican => {
            "n_embed = 4\nn_msg = 6\nn_hidden = 6\nn_layers = 2\nn_readout = 6\ndropout = 0.0"
        }
        ModelKind::Pfn | ModelKind::Efn => "phi_sizes = [8, 8]\nf_sizes = [8]",
        ModelKind::Mlp => "sizes = [8, 8]",
        ModelKind::ParticleNet => {
            "n_class = 2\nconv_params = [[3, [8, 8]], [3, [8]]]\nfc_params = [[8, 0.0]]"
        }
        ModelKind::LGatrSlim => {
            "hidden_v_channels = 2\nhidden_s_channels = 8\nnum_blocks = 2\nnum_heads = 2\ndropout_prob = 0.1"
        }
        ModelKind::Transformer => {
            "hidden_channels = 8\nnum_heads = 2\nnum_blocks = 2\nmlp_factor = 2\ndropout_prob = 0.1"
        }
    };
    let name = kind.name();
    bundled(&format!(
        "model = \"{name}\"\n[{name}]\n{section}\n[data]\ntrain_jets = 64\nval_jets = 32\nn_max = 12\nbatch_size = 16\n[train]\ndevice = \"cpu\"\n"
    ))
}

fn logits_bits(t: &candle_core::Tensor) -> Vec<u64> {
    t.to_dtype(candle_core::DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

fn train_step_save_reload(kind: ModelKind, precision: Precision) {
    let mut config = small(kind);
    config.train.dtype = precision;
    assert_eq!(config.train.device, DeviceSetting::Cpu);
    let (model, varmap) = build_model(&config, 7).unwrap();
    assert_eq!(model.kind(), kind);
    assert_eq!(model.placement().dtype, precision.dtype());
    let batch = first_val_batch(&model, &config);

    let mut optimizer = Optimizer::new(parameters(&varmap, &config).unwrap(), &config.optim);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let before = forward_batch(&model, &batch, &mut Mode::Eval).unwrap();
    let logits = forward_batch(&model, &batch, &mut Mode::Train(&mut rng)).unwrap();
    assert_eq!(logits.dtype(), precision.dtype(), "{kind} logits dtype");
    let loss = cross_entropy(&logits, &batch.labels, &batch.weights).unwrap();
    let grads = optimizer.gradients(&loss.backward().unwrap());
    assert!(
        grads.iter().any(Option::is_some),
        "{kind}: no parameter got a gradient"
    );
    optimizer.step(&grads, 1e-2).unwrap();
    let after = forward_batch(&model, &batch, &mut Mode::Eval).unwrap();
    assert_ne!(
        logits_bits(&before),
        logits_bits(&after),
        "{kind}: the step changed nothing"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let meta = CheckpointMeta {
        config: config.to_toml(),
        epoch: 1,
        step: 1,
        best: None,
        start_val_auc: None,
        rng: CheckpointMeta::rng_state(&rng),
    };
    checkpoint::save(&path, &weights(&varmap), &meta).unwrap();
    let (reloaded, _, reread) = load_model(&path).unwrap();
    assert_eq!(reread, config, "{kind}: config round trip");
    let again = forward_batch(&reloaded, &batch, &mut Mode::Eval).unwrap();
    assert_eq!(
        logits_bits(&after),
        logits_bits(&again),
        "{kind} ({precision:?}): reloaded logits differ"
    );
}

#[test]
fn every_registered_model_trains_saves_and_reloads_identically_in_f32() {
    for &kind in ModelKind::ALL {
        train_step_save_reload(kind, Precision::F32);
    }
}

#[test]
fn every_registered_model_trains_saves_and_reloads_identically_in_f64() {
    for &kind in ModelKind::ALL {
        train_step_save_reload(kind, Precision::F64);
    }
}

#[test]
fn every_parameter_of_every_model_has_a_depth_and_the_head_is_found() {
    for &kind in ModelKind::ALL {
        let mut config = small(kind);
        config.optim.layer_decay = 0.5;
        let (model, varmap) = build_model(&config, 0).unwrap();
        // parameters() fails naming any parameter without a depth.
        let params = parameters(&varmap, &config).unwrap();
        let head = regex::Regex::new(model.head()).unwrap();
        let heads = params.iter().filter(|p| head.is_match(&p.name)).count();
        assert!(
            heads > 0,
            "{kind}: head pattern {} matches nothing",
            model.head()
        );
        assert!(heads < params.len(), "{kind}: everything is head");
        assert!(params.iter().all(|p| !is_buffer(&p.name)));
        let top = params
            .iter()
            .filter(|p| head.is_match(&p.name))
            .map(|p| model.depth(&p.name).unwrap())
            .all(|(d, top)| d == top);
        assert!(top, "{kind}: the head is not at the top depth");
    }
}

#[test]
fn model_names_round_trip_through_the_registry() {
    for &kind in ModelKind::ALL {
        assert_eq!(ModelKind::from_name(kind.name()), Some(kind));
        assert_eq!(ModelConfig::default_for(kind).kind(), kind);
    }
    let e = TrainConfig::from_toml("model = \"gatr\"", std::path::Path::new("x.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("gatr") && e.contains("lorentznet"), "{e}");
    let e = TrainConfig::from_toml(
        "model = \"pfn\"\n[lorentznet]\nn_hidden = 8",
        std::path::Path::new("x.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("[lorentznet]"), "{e}");
}

#[test]
fn a_zero_width_layer_is_a_config_error_naming_the_key() {
    let text = "model = \"pfn\"\n[pfn]\nphi_sizes = [0]";
    let e = TrainConfig::from_toml(text, std::path::Path::new("x.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("pfn.phi_sizes[0]"), "{e}");
}

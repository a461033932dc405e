//! A run's model as its config describes it: the registered architecture
//! ([`noether_equivariant::Tagger`]) on the configured device and dtype, seeded weights,
//! frozen parameters detached from autograd, LoRA adapters; and the same model for
//! inference or loaded from a checkpoint.

use std::path::Path;

use candle_nn::{VarBuilder, VarMap};
use noether_equivariant::{
    inference_varbuilder, seeded_varbuilder, seeded_varbuilder_frozen, DeviceSetting, ModelConfig,
    Placement, Tagger,
};

use crate::adapt::{attach_lora, Freeze};
use crate::checkpoint::{self, load_weights};
use crate::config::TrainConfig;
use crate::error::{invalid, Result};

/// A freshly initialised model of `config` on the CPU in f32, its variables in a new
/// [`VarMap`] (weights from our seeded RNG).
///
/// # Errors
/// Bad model settings; tensor errors.
pub fn seeded_model(config: &ModelConfig, seed: u64) -> Result<(Tagger, VarMap)> {
    let varmap = VarMap::new();
    let place = Placement::cpu();
    let vb = seeded_varbuilder(&varmap, seed, place.dtype, &place.device);
    Ok((Tagger::new(config, &vb)?, varmap))
}

/// The model of a run, as `config` describes it: on `train.device` in `train.dtype`,
/// seeded weights, frozen parameters detached from the autograd graph (no gradient
/// work for them), and LoRA adapters when `config.lora` is set. Built the same way for
/// training, resuming and evaluating a checkpoint, so every variable a checkpoint holds
/// exists.
///
/// # Errors
/// A device this build cannot use (naming the cargo feature); invalid freeze, head or
/// LoRA patterns; tensor errors.
pub fn build_model(config: &TrainConfig, seed: u64) -> Result<(Tagger, VarMap)> {
    let place = config.placement()?;
    let varmap = VarMap::new();
    let freeze = Freeze::new(config)?;
    let vb = seeded_varbuilder_frozen(&varmap, seed, place.dtype, &place.device, move |n| {
        freeze.is_frozen(n)
    });
    Ok((assemble(config, &vb)?, varmap))
}

/// The model of `config` over the variables of `varmap` (as [`build_model`] made them),
/// for inference: every weight is detached, so a forward pass records no autograd graph
/// and frees each intermediate as soon as it is used (PyTorch's `torch.no_grad()`). It
/// shares storage with `varmap`, so later optimizer steps and checkpoint loads reach it.
/// For the official LorentzNet the peak memory of a 64-jet batch drops from 5.8 to
/// 0.43 GB; a single jet takes 11 instead of 18 ms and a 32-jet batch 0.63 instead of
/// 0.68 s (`cargo bench --bench model_compare`, `--bench models`).
///
/// # Errors
/// As [`build_model`].
pub fn inference_model(config: &TrainConfig, varmap: &VarMap) -> Result<Tagger> {
    let place = config.placement()?;
    assemble(
        config,
        &inference_varbuilder(varmap, place.dtype, &place.device),
    )
}

/// The architecture of `config` under `vb`, with LoRA adapters when configured, in
/// fixed point when `[quant]` is set.
fn assemble(config: &TrainConfig, vb: &VarBuilder) -> Result<Tagger> {
    let mut model = Tagger::new(&config.model, vb)?;
    if let Some(section) = &config.lora {
        let head = regex::Regex::new(&config.head_pattern())
            .map_err(|e| invalid("optim.head", config.head_pattern(), &e.to_string()))?;
        attach_lora(&mut model, section, &head, vb)?;
    }
    if let Some(quant) = &config.quant {
        model.quantize(quant)?;
    }
    Ok(model)
}

/// The model saved in a noether checkpoint: its config read from the file's metadata,
/// the model built as [`build_model`] does, the weights loaded.
///
/// # Errors
/// Checkpoint, config and shape errors naming the file.
pub fn load_model(path: &Path) -> Result<(Tagger, VarMap, TrainConfig)> {
    load_model_on(path, None)
}

/// [`load_model`] on `device` instead of the one the run was trained on (a checkpoint
/// written on a GPU evaluated on the CPU, say); the returned config says `device`.
///
/// # Errors
/// As [`load_model`].
pub fn load_model_on(
    path: &Path,
    device: Option<DeviceSetting>,
) -> Result<(Tagger, VarMap, TrainConfig)> {
    let ckpt = checkpoint::load(path)?;
    let mut config = TrainConfig::from_toml(&ckpt.meta.config, path)?;
    if let Some(device) = device {
        config.train.device = device;
    }
    let (model, varmap) = build_model(&config, 0)?;
    load_weights(&varmap, &ckpt.tensors, path)?;
    Ok((model, varmap, config))
}

/// [`load_model`] with the model built for inference ([`inference_model`]: no autograd
/// graph, a fraction of the memory).
///
/// # Errors
/// As [`load_model`].
pub fn load_inference_model(path: &Path) -> Result<(Tagger, VarMap, TrainConfig)> {
    load_inference_model_on(path, None)
}

/// [`load_inference_model`] on `device` (see [`load_model_on`]).
///
/// # Errors
/// As [`load_model`].
pub fn load_inference_model_on(
    path: &Path,
    device: Option<DeviceSetting>,
) -> Result<(Tagger, VarMap, TrainConfig)> {
    let (_, varmap, config) = load_model_on(path, device)?;
    Ok((inference_model(&config, &varmap)?, varmap, config))
}

//! Which parameters of a run train, and how fast: frozen names (`optim.freeze`, or
//! everything but the adapters and the head under LoRA), LoRA adapters attached to the
//! model's linear layers, and the depth of each parameter for layer-wise learning-rate
//! decay.

use candle_nn::{Init, VarBuilder};
use noether_equivariant::{is_buffer, LinearLayers, LowRank, ModelConfig};
use regex::Regex;

use crate::config::{LoraSection, TrainConfig};
use crate::error::{invalid, Context, Result};

/// The rule that says which parameters are frozen.
#[derive(Debug, Clone)]
pub struct Freeze {
    patterns: Vec<Regex>,
    /// Under LoRA: the head, which trains with the adapters.
    lora_head: Option<Regex>,
}

impl Freeze {
    /// The rule of `config` (`optim.freeze`, plus LoRA's).
    ///
    /// # Errors
    /// [`crate::TrainError::InvalidConfig`] naming a pattern that is not a regex.
    pub fn new(config: &TrainConfig) -> Result<Self> {
        let patterns = config
            .optim
            .freeze
            .iter()
            .enumerate()
            .map(|(k, f)| {
                Regex::new(f).map_err(|e| invalid(&format!("optim.freeze[{k}]"), f, &e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let lora_head = match config.lora {
            Some(_) => Some(
                Regex::new(&config.head_pattern())
                    .map_err(|e| invalid("optim.head", config.head_pattern(), &e.to_string()))?,
            ),
            None => None,
        };
        Ok(Self {
            patterns,
            lora_head,
        })
    }

    /// Whether `name` gets no updates. BatchNorm running statistics are buffers, never
    /// parameters, and are not frozen here (the model updates them in training mode).
    pub fn is_frozen(&self, name: &str) -> bool {
        if is_buffer(name) {
            return false;
        }
        if self.patterns.iter().any(|r| r.is_match(name)) {
            return true;
        }
        match &self.lora_head {
            Some(head) => !is_adapter(name) && !head.is_match(name),
            None => false,
        }
    }
}

/// Whether `name` is a LoRA adapter matrix (`<path>.lora_A.weight`, `.lora_B.weight`).
pub fn is_adapter(name: &str) -> bool {
    name.ends_with(".lora_A.weight") || name.ends_with(".lora_B.weight")
}

/// Attaches a LoRA adapter to every linear layer of `model` whose path matches
/// `section.targets` (default: all but the head), creating `<path>.lora_A.weight`
/// (`[r, in]`, U(+-1/sqrt(in)) as PEFT's Kaiming-uniform with a = sqrt 5) and
/// `<path>.lora_B.weight` (`[out, r]`, zeros) under `vb`. Returns the adapted paths.
///
/// # Errors
/// [`crate::TrainError::InvalidConfig`] when no layer matches; tensor errors.
pub fn attach_lora(
    model: &mut impl LinearLayers,
    section: &LoraSection,
    head: &Regex,
    vb: &VarBuilder,
) -> Result<Vec<String>> {
    let targets = Regex::new(&section.targets)
        .map_err(|e| invalid("lora.targets", &section.targets, &e.to_string()))?;
    let scaling = section.alpha / section.r as f64;
    let mut adapted = Vec::new();
    for (path, layer) in model.linear_layers_mut() {
        let weight_name = format!("{path}.weight");
        let wanted = if section.targets.is_empty() {
            !head.is_match(&weight_name)
        } else {
            targets.is_match(&path)
        };
        if !wanted {
            continue;
        }
        let (input, out) = layer.dims();
        let bound = 1.0 / (input as f64).sqrt();
        let vb = vb.pp(&path);
        let a = vb
            .get_with_hints(
                (section.r, input),
                "lora_A.weight",
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )
            .context(&format!("{path}.lora_A.weight"))?;
        let b = vb
            .get_with_hints((out, section.r), "lora_B.weight", Init::Const(0.0))
            .context(&format!("{path}.lora_B.weight"))?;
        layer
            .attach(LowRank { a, b, scaling })
            .context(&format!("attaching LoRA to {path}"))?;
        adapted.push(path);
    }
    if adapted.is_empty() {
        return Err(invalid(
            "lora.targets",
            &section.targets,
            "matches no linear layer of the model",
        ));
    }
    Ok(adapted)
}

/// The layer-decay multiplier `decay^(D - d)` of `name` (1 when `decay` is 1), from the
/// model's [`noether_equivariant::TaggerModel::depth`].
///
/// # Errors
/// [`crate::TrainError::InvalidConfig`] for a parameter the model gives no depth: with
/// `optim.layer_decay` on, every trained parameter must have one (a model whose `depth`
/// forgets a layer would otherwise train it undecayed without a word).
pub fn layer_decay_mult(model: &ModelConfig, name: &str, decay: f64) -> Result<f64> {
    if decay == 1.0 {
        return Ok(1.0);
    }
    match model.depth(name) {
        Some((d, top)) => Ok(decay.powi(i32::try_from(top - d).unwrap_or(i32::MAX))),
        None => Err(invalid(
            "optim.layer_decay",
            decay,
            &format!(
                "model '{}' gives parameter '{name}' no depth",
                model.kind().name()
            ),
        )),
    }
}

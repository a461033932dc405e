//! LoRA (Hu et al., arXiv:2106.09685) with HuggingFace PEFT's file layout. The adapted
//! layer is the models' own [`noether_equivariant::Linear`] with a [`LowRank`] attached
//! (`y = W x + b + (alpha / r) B A x`; [`LoraConfig::low_rank`] builds one from PEFT's
//! matrices), so the layer tested against PEFT is the layer that trains. Adapters are saved as `adapter_model.safetensors`
//! with keys `base_model.model.<path>.lora_A.weight` / `.lora_B.weight` plus
//! `adapter_config.json`, as `peft` writes them.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use noether_equivariant::{Linear, LowRank};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TransferError};

/// LoRA hyper-parameters (PEFT's `LoraConfig` names in the JSON file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank r.
    pub r: usize,
    /// Scale numerator: the update is scaled by `lora_alpha / r`.
    pub lora_alpha: f64,
    /// Dropout on the adapter's input (training only).
    #[serde(default)]
    pub lora_dropout: f64,
    /// Module paths the adapters sit on.
    #[serde(default)]
    pub target_modules: Vec<String>,
    /// Always "LORA".
    #[serde(default = "lora_type")]
    pub peft_type: String,
    /// Always "none" (biases are not adapted).
    #[serde(default = "no_bias")]
    pub bias: String,
}

fn lora_type() -> String {
    "LORA".into()
}

fn no_bias() -> String {
    "none".into()
}

impl LoraConfig {
    /// Parses `r=8,alpha=16[,dropout=0.1]` (the `--lora` flag).
    ///
    /// # Errors
    /// [`TransferError::BadLora`] naming the bad entry.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |reason: String| TransferError::BadLora {
            spec: spec.to_owned(),
            reason,
        };
        let mut config = Self {
            r: 8,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            target_modules: Vec::new(),
            peft_type: lora_type(),
            bias: no_bias(),
        };
        for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("'{part}' is not key=value")))?;
            let number: f64 = value
                .trim()
                .parse()
                .map_err(|_| bad(format!("'{value}' is not a number")))?;
            match key.trim() {
                "r" if number >= 1.0 && number.fract() == 0.0 => config.r = number as usize,
                "alpha" if number > 0.0 => config.lora_alpha = number,
                "dropout" if (0.0..1.0).contains(&number) => config.lora_dropout = number,
                other => {
                    return Err(bad(format!(
                        "'{other}={value}' is not a valid r, alpha or dropout"
                    )))
                }
            }
        }
        Ok(config)
    }

    /// alpha / r.
    pub fn scaling(&self) -> f64 {
        self.lora_alpha / self.r as f64
    }

    /// The adapter `(A, B)` as the low-rank update the models' layers run
    /// ([`noether_equivariant::Linear::attach`]): one LoRA layer for fine-tuning and for
    /// adapters read from PEFT files.
    pub fn low_rank(&self, a: &Tensor, b: &Tensor) -> LowRank {
        LowRank {
            a: a.clone(),
            b: b.clone(),
            scaling: self.scaling(),
        }
    }
}

fn candle(what: &'static str) -> impl Fn(candle_core::Error) -> TransferError {
    move |source| TransferError::Candle {
        context: what.to_owned(),
        source,
    }
}

/// PEFT's key of an adapter matrix: `base_model.model.<path>.lora_{A,B}.weight`.
pub fn peft_key(path: &str, matrix: char) -> String {
    format!("base_model.model.{path}.lora_{matrix}.weight")
}

/// Writes `adapter_model.safetensors` and `adapter_config.json` into `dir` for adapters
/// keyed by module path.
///
/// # Errors
/// I/O and tensor errors naming the file.
pub fn save_adapters(dir: &Path, config: &LoraConfig, layers: &[(&str, &Linear)]) -> Result<()> {
    let adapters: Adapters = layers
        .iter()
        .filter_map(|(path, layer)| {
            let adapter = layer.adapter()?;
            Some(((*path).to_owned(), (adapter.a.clone(), adapter.b.clone())))
        })
        .collect();
    save_adapter_tensors(dir, config, &adapters)
}

/// The adapters held in a noether checkpoint's tensors (`<path>.lora_A.weight`,
/// `<path>.lora_B.weight`), by module path. An adapter on a 1x1 convolution (its base
/// `<path>.weight` is `[out, in, 1, ...]`, as ParticleNet's are) gets PEFT's layout for
/// convolutions: A `[r, in, 1, ...]`, B `[out, r, 1, ...]`.
///
/// # Errors
/// [`TransferError::Candle`] when an adapter does not fit its base weight.
pub fn adapters_in(tensors: &HashMap<String, Tensor>) -> Result<Adapters> {
    let mut out = Adapters::new();
    for (name, a) in tensors {
        let Some(path) = name.strip_suffix(".lora_A.weight") else {
            continue;
        };
        let Some(b) = tensors.get(&format!("{path}.lora_B.weight")) else {
            continue;
        };
        let kernel: Vec<usize> = tensors
            .get(&format!("{path}.weight"))
            .map_or(&[][..], |w| w.dims().get(2..).unwrap_or(&[]))
            .to_vec();
        let conv = |t: &Tensor, what: &'static str| -> Result<Tensor> {
            let shape: Vec<usize> = t.dims().iter().chain(&kernel).copied().collect();
            t.reshape(shape).map_err(candle(what))
        };
        out.insert(path.to_owned(), (conv(a, "lora_A")?, conv(b, "lora_B")?));
    }
    Ok(out)
}

/// A PEFT adapter matrix as noether's layers hold it: `[rows, cols]`; a 1x1
/// convolution's `[rows, cols, 1, ...]` flattened.
fn as_matrix(t: Tensor, key: &str, file: &Path) -> Result<Tensor> {
    let dims = t.dims().to_vec();
    if dims.len() == 2 {
        return Ok(t);
    }
    if dims.len() < 2 || dims[2..].iter().any(|&d| d != 1) {
        return Err(TransferError::Safetensors {
            path: file.to_owned(),
            message: format!(
                "tensor '{key}' has shape {dims:?}: adapters of linear layers or 1x1 convolutions only"
            ),
        });
    }
    t.reshape((dims[0], dims[1]))
        .map_err(candle("flattening a convolution adapter"))
}

/// Writes `adapter_model.safetensors` (F32, PEFT's keys) and `adapter_config.json` (its
/// `target_modules` set to the adapted paths, sorted) into `dir`.
///
/// # Errors
/// I/O and tensor errors naming the file.
pub fn save_adapter_tensors(dir: &Path, config: &LoraConfig, adapters: &Adapters) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TransferError::Io {
            path: path.clone(),
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (path, (a, b)) in adapters {
        tensors.insert(
            peft_key(path, 'A'),
            a.to_dtype(DType::F32).map_err(candle("lora_A"))?,
        );
        tensors.insert(
            peft_key(path, 'B'),
            b.to_dtype(DType::F32).map_err(candle("lora_B"))?,
        );
    }
    let file = dir.join("adapter_model.safetensors");
    candle_core::safetensors::save(&tensors, &file).map_err(candle("saving adapters"))?;
    let mut config = config.clone();
    config.target_modules = adapters.keys().cloned().collect();
    config.target_modules.sort();
    let json = serde_json::to_string_pretty(&config).expect("config serialises");
    let config_path = dir.join("adapter_config.json");
    std::fs::write(&config_path, json).map_err(io(&config_path))
}

/// The (A, B) matrices of each adapted module, by module path.
pub type Adapters = HashMap<String, (Tensor, Tensor)>;

/// Reads `adapter_config.json` and the (A, B) pair of every target module from `dir`.
///
/// # Errors
/// I/O errors, malformed files, or a target module without its two tensors.
pub fn load_adapters(dir: &Path) -> Result<(LoraConfig, Adapters)> {
    let config_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|source| TransferError::Io {
        path: config_path.clone(),
        source,
    })?;
    let config: LoraConfig =
        serde_json::from_str(&text).map_err(|e| TransferError::Safetensors {
            path: config_path.clone(),
            message: e.to_string(),
        })?;
    let file = dir.join("adapter_model.safetensors");
    let tensors = candle_core::safetensors::load(&file, &Device::Cpu).map_err(|e| {
        TransferError::Safetensors {
            path: file.clone(),
            message: e.to_string(),
        }
    })?;
    let mut out = HashMap::new();
    for module in &config.target_modules {
        let get = |m: char| {
            let key = peft_key(module, m);
            let t = tensors
                .get(&key)
                .cloned()
                .ok_or_else(|| TransferError::Safetensors {
                    path: file.clone(),
                    message: format!("tensor '{key}' is missing"),
                })?;
            as_matrix(t, &key, &file)
        };
        out.insert(module.clone(), (get('A')?, get('B')?));
    }
    Ok((config, out))
}

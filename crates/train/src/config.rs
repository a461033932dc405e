//! Run configuration, read from TOML (`configs/*.toml`). Every table denies unknown keys,
//! so a typo is an error naming the key; [`TrainConfig::validate`] rejects impossible
//! values naming the dotted key.
//!
//! ```toml
//! model = "lorentznet"           # lorentznet | pelican | pfn | efn | mlp
//! [lorentznet]                   # the model's own config (its defaults when absent)
//! n_hidden = 32
//! [data]
//! train_jets = 2000              # 0: all jets of the training file
//! n_max = 30                     # constituents kept per jet
//! [optim]
//! name = "adamw"                 # adamw | sgd | lion | cautious_adamw | snr_adamw
//! lr = 1e-3
//! [schedule]
//! kind = "warmup_cosine"         # constant | warmup_cosine | cosine_restarts | step
//! [train]
//! epochs = 10
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use noether_equivariant::{DeviceSetting, ModelConfig, ModelKind, Precision};
use noether_quant::QuantConfig;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result, TrainError};

/// Data options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Training file (any layout the data crate reads; default: the bundled set).
    pub train: PathBuf,
    /// Validation file (early stopping, best checkpoint).
    pub val: PathBuf,
    /// Test file (final metrics).
    pub test: PathBuf,
    /// Training jets used (a class-balanced seeded subset); 0 = all.
    pub train_jets: usize,
    /// Validation jets used; 0 = all.
    pub val_jets: usize,
    /// Constituents kept per jet (the leading ones).
    pub n_max: usize,
    /// Jets per batch.
    pub batch_size: usize,
    /// Set E = |p| for every constituent.
    pub massless: bool,
    /// A weaver-core data config (YAML) defining ParticleNet's inputs (`--data-config`);
    /// applied by [`TrainConfig::apply_data_config`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
    /// More test files, by name (`[data.extra_tests] boosted = "data/boosted_test.h5"`):
    /// the best checkpoint is also scored on each, and `metrics.json` reports them under
    /// `extra_tests.<name>` (e.g. jets of another pT range, to measure generalisation).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_tests: BTreeMap<String, PathBuf>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            train: PathBuf::from("data/train.h5"),
            val: PathBuf::from("data/val.h5"),
            test: PathBuf::from("data/test.h5"),
            train_jets: 0,
            val_jets: 0,
            n_max: 50,
            batch_size: 32,
            massless: false,
            config: None,
            extra_tests: BTreeMap::new(),
        }
    }
}

impl DataConfig {
    /// Joins the relative file paths onto `root` (configs name the bundled files
    /// relative to the repository root; the command line takes them relative to the
    /// working directory).
    pub fn relative_to(&mut self, root: &Path) {
        for path in [&mut self.train, &mut self.val, &mut self.test] {
            rebase(path, root);
        }
        for path in self.extra_tests.values_mut() {
            rebase(path, root);
        }
        if let Some(path) = &mut self.config {
            rebase(path, root);
        }
    }

    /// Every data file with its config key (`data.extra_tests.<name>` for the extras).
    pub fn files(&self) -> Vec<(String, &Path)> {
        let mut files = vec![
            ("data.train".to_owned(), self.train.as_path()),
            ("data.val".to_owned(), self.val.as_path()),
            ("data.test".to_owned(), self.test.as_path()),
        ];
        files.extend(
            self.extra_tests
                .iter()
                .map(|(name, path)| (format!("data.extra_tests.{name}"), path.as_path())),
        );
        files
    }

    /// Checks the names of the extra test sets: they become column names
    /// (`extra_tests.<name>.auc`), so only letters, digits, `_` and `-`.
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`] naming the key.
    pub fn validate_extra_tests(&self) -> Result<()> {
        for name in self.extra_tests.keys() {
            let usable = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !usable {
                return Err(invalid(
                    &format!("data.extra_tests.{name}"),
                    name,
                    "a test set's name is a column name: letters, digits, '_' and '-' only",
                ));
            }
        }
        Ok(())
    }
}

/// `root.join(path)` for a relative `path`.
fn rebase(path: &mut PathBuf, root: &Path) {
    if path.is_relative() {
        *path = root.join(&*path);
    }
}

/// Optimizer name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// AdamW (decoupled weight decay).
    AdamW,
    /// SGD with momentum (optionally Nesterov) and decoupled weight decay.
    Sgd,
    /// Cautious AdamW (Liang et al., arXiv:2411.16085): the AdamW update is zeroed where
    /// its sign disagrees with the current gradient's, and the rest rescaled by
    /// `1 / max(mean(mask), 1e-3)`.
    #[serde(rename = "cautious_adamw")]
    CautiousAdamW,
    /// SNR-gated AdamW (population-risk Adam, Litman & Guo, arXiv:2605.01172): AdamW plus
    /// an EMA `s` (rate `snr_rho`, bias-corrected like Adam's moments: `s_hat = s / (1 -
    /// rho^t)`) of the centred gradient variance `(g - m_hat)^2`; each coordinate's AdamW
    /// update is multiplied by the gate `m_hat^2 / (m_hat^2 + s_hat)` (smooth) or
    /// `1[m_hat^2 > snr_alpha s_hat]` (hard). Decoupled weight decay is not gated.
    #[serde(rename = "snr_adamw")]
    SnrAdamW,
    /// Lion (Chen et al., arXiv:2302.06675; the optimizer of the L-GATr top-tagging
    /// trainings): the update is the sign of `b1 m + (1 - b1) g`, then
    /// `m = b2 m + (1 - b2) g`, with decoupled weight decay; betas default to (0.9, 0.99),
    /// the paper's and `lion-pytorch`'s. Its steps have unit size per coordinate, so it
    /// wants a learning rate 3-10x below AdamW's and a weight decay as much larger.
    Lion,
}

/// The gate of [`OptimizerName::SnrAdamW`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnrGate {
    /// `m_hat^2 / (m_hat^2 + s)`.
    Smooth,
    /// `1[m_hat^2 > alpha s]`.
    Hard,
}

/// A parameter group: parameters whose name matches `pattern` (a regex) get their
/// learning rate multiplied by `lr_mult`. The first matching group wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamGroup {
    /// Regex on parameter names (e.g. `^graph_dec\.`).
    pub pattern: String,
    /// Learning-rate multiplier.
    pub lr_mult: f64,
}

/// Optimizer options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// AdamW or SGD.
    pub name: OptimizerName,
    /// Base learning rate.
    pub lr: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Decay rates of the first and second moments (Adam; Lion's interpolation and
    /// momentum rates). Absent: (0.9, 0.999), or Lion's (0.9, 0.99); see
    /// [`OptimConfig::betas`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub betas: Option<[f64; 2]>,
    /// Adam epsilon.
    pub eps: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Nesterov momentum (SGD).
    pub nesterov: bool,
    /// Clip the global gradient norm to this value (0: off).
    pub grad_clip: f64,
    /// Batches whose gradients are averaged per optimizer step.
    pub accumulate: usize,
    /// Learning-rate multipliers by parameter name.
    pub groups: Vec<ParamGroup>,
    /// Regexes of parameter names to freeze: they get no optimizer updates (weight decay
    /// included) and stay bit-identical.
    pub freeze: Vec<String>,
    /// Linear probing before fine-tuning (LP-FT, Kumar et al. 2022): during the first
    /// this-many epochs only the head (`head`) is updated; then everything not frozen.
    pub linear_probe_epochs: usize,
    /// Regex of the classification head's parameters (empty: the model's own head,
    /// `^graph_dec\.3\.` for LorentzNet, `^head\.` otherwise).
    pub head: String,
    /// SNR gate kind (`snr_adamw`).
    pub snr_gate: SnrGate,
    /// Hard-gate threshold alpha (`snr_adamw`).
    pub snr_alpha: f64,
    /// EMA rate of the gradient variance (`snr_adamw`).
    pub snr_rho: f64,
    /// Gradient agreement filtering (Chaubard & Kochenderfer, arXiv:2412.18052), with
    /// `accumulate` micro-batches per step: a micro-batch gradient joins the step only
    /// when its cosine distance `1 - cos` to the running sum is below this; a step where
    /// no second micro-batch agreed is skipped. 0: off.
    pub gaf_tau: f64,
    /// Layer-wise learning-rate decay (Clark et al. 2020, BEiT): a parameter at depth d
    /// of D (embedding 0, block i at i + 1, the readout D) gets its learning rate
    /// multiplied by `layer_decay^(D - d)` on top of its group multiplier. 1: off.
    pub layer_decay: f64,
}

impl OptimConfig {
    /// The betas in effect: the configured ones, or the optimizer's defaults ((0.9,
    /// 0.99) for Lion, as in its paper; (0.9, 0.999) otherwise, as in `torch.optim`).
    pub fn betas(&self) -> [f64; 2] {
        self.betas.unwrap_or(match self.name {
            OptimizerName::Lion => [0.9, 0.99],
            _ => [0.9, 0.999],
        })
    }
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            name: OptimizerName::AdamW,
            lr: 1e-3,
            weight_decay: 0.01,
            betas: None,
            eps: 1e-8,
            momentum: 0.9,
            nesterov: false,
            grad_clip: 0.0,
            accumulate: 1,
            groups: Vec::new(),
            freeze: Vec::new(),
            linear_probe_epochs: 0,
            head: String::new(),
            snr_gate: SnrGate::Smooth,
            snr_alpha: 1.0,
            snr_rho: 0.99,
            gaf_tau: 0.0,
            layer_decay: 1.0,
        }
    }
}

/// Learning-rate schedule options (epochs may be fractional; the schedule is evaluated
/// at every optimizer step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// `constant`, `warmup_cosine`, `cosine_restarts` or `step`.
    pub kind: ScheduleKind,
    /// Linear warm-up length (warmup_cosine).
    pub warmup_epochs: f64,
    /// Final learning rate as a fraction of the base (cosine schedules).
    pub min_lr_ratio: f64,
    /// First cycle length (cosine_restarts, SGDR's T_0).
    pub restart_epochs: f64,
    /// Cycle length multiplier (cosine_restarts, T_mult).
    pub restart_mult: f64,
    /// Decay interval (step).
    pub step_epochs: f64,
    /// Decay factor (step).
    pub gamma: f64,
}

/// Schedule kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Constant learning rate.
    Constant,
    /// Linear warm-up, then cosine decay to `min_lr_ratio`.
    WarmupCosine,
    /// Cosine with warm restarts (SGDR; LorentzNet's recipe).
    CosineRestarts,
    /// Multiply by `gamma` every `step_epochs`.
    Step,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            kind: ScheduleKind::WarmupCosine,
            warmup_epochs: 1.0,
            min_lr_ratio: 0.01,
            restart_epochs: 4.0,
            restart_mult: 2.0,
            step_epochs: 10.0,
            gamma: 0.5,
        }
    }
}

/// Loop options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    /// Epochs.
    pub epochs: usize,
    /// Seed of weights, subsets, shuffles and dropout.
    pub seed: u64,
    /// Stop after this many epochs without a better validation AUC (0: never).
    pub patience: usize,
    /// CPU threads for candle (0: all cores).
    pub threads: usize,
    /// Where the model runs: `cpu`, `cuda:N` or `metal` (the GPUs need the cargo feature
    /// of the same name).
    pub device: DeviceSetting,
    /// Float type of weights, inputs and activations: `f32` or `f64`.
    pub dtype: Precision,
    /// Bootstrap resamples for the test-metric intervals (0: none).
    pub bootstrap: usize,
    /// Jets per batch at evaluation.
    pub eval_batch_size: usize,
    /// Evaluate the starting weights on the validation set before the first epoch, so
    /// that the best checkpoint can be the starting model (epoch 0), like Hugging Face
    /// Trainer's `eval_on_start`. For fine-tuning: a few epochs on a small sample can
    /// leave a pretrained model worse than it started.
    pub eval_on_start: bool,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            seed: 0,
            patience: 0,
            threads: 0,
            device: DeviceSetting::Cpu,
            dtype: Precision::F32,
            bootstrap: 100,
            eval_batch_size: 128,
            eval_on_start: false,
        }
    }
}

/// LoRA adapters on the model's linear layers (PEFT's maths: `y += (alpha / r) B A x`,
/// A Kaiming-uniform, B zeros). With adapters, only the adapters and the head train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraSection {
    /// Rank r.
    pub r: usize,
    /// Scale numerator alpha (the update is scaled by alpha / r).
    pub alpha: f64,
    /// Regex of the layer paths that get an adapter (empty: every linear layer except
    /// the head).
    pub targets: String,
}

impl Default for LoraSection {
    fn default() -> Self {
        Self {
            r: 8,
            alpha: 16.0,
            targets: String::new(),
        }
    }
}

/// Knowledge distillation (Hinton et al. 2015): the loss is
/// `(1 - alpha) CE(student, y) + alpha T^2 KL(softmax(teacher / T) || softmax(student / T))`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// The teacher: a noether checkpoint (its config is read from the file).
    pub teacher: PathBuf,
    /// Temperature T.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Weight of the distillation term.
    #[serde(default = "default_distill_alpha")]
    pub alpha: f64,
}

fn default_temperature() -> f64 {
    4.0
}

fn default_distill_alpha() -> f64 {
    0.5
}

/// Global magnitude pruning before training: the smallest `sparsity` fraction of the
/// weights of the targeted layers (by |w|, over all of them together) is set to zero and
/// kept at zero through training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneConfig {
    /// Fraction of the targeted weights set to zero, in [0, 1).
    pub sparsity: f64,
    /// Regex of the prunable tensors (default: every weight matrix of a linear layer,
    /// `\.weight$` on 2-D tensors; biases and normalisation stay dense).
    #[serde(default = "default_prune_targets")]
    pub targets: String,
}

fn default_prune_targets() -> String {
    r"\.weight$".into()
}

/// Initial weights from a pretrained checkpoint (`noether finetune --from`): any
/// safetensors file, loaded through `noether-transfer`'s loader before the first epoch
/// (not when resuming), its report written to `load_report.json`. New LoRA adapters are
/// never expected in it; a `module.` prefix is recognised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitConfig {
    /// The checkpoint.
    pub from: PathBuf,
    /// Key renames `FROM=TO` (FROM a regex), applied in order.
    #[serde(default)]
    pub remaps: Vec<String>,
    /// Fail when a model parameter is missing from the checkpoint.
    #[serde(default)]
    pub strict: bool,
    /// Classes of the checkpoint's head that become the new head's, in order, when the
    /// config's classes differ from the checkpoint's (`[0, 8]`: JetClass's QCD and top,
    /// so that fine-tuning starts from the zero-shot tagger); absent: a new head of
    /// random weights. One class per class of the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_classes: Option<Vec<usize>>,
}

impl InitConfig {
    /// How the checkpoint is loaded: the remaps, `strict`, a `module.` prefix recognised,
    /// new LoRA adapters allowed (a pretrained checkpoint has none).
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`] naming a remap that does not parse.
    pub fn load_options(&self) -> Result<noether_transfer::LoadOptions> {
        let remaps = self
            .remaps
            .iter()
            .enumerate()
            .map(|(k, r)| {
                noether_transfer::Remap::parse(r)
                    .map_err(|e| invalid(&format!("init.remaps[{k}]"), r, &e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(noether_transfer::LoadOptions {
            remaps,
            strip_module_prefix: true,
            strict: self.strict,
            head_classes: self.head_classes.clone(),
            ..noether_transfer::LoadOptions::default()
        }
        .allow_new_adapters())
    }
}

/// A whole run's configuration: `model = "<name>"` with the model's own section
/// `[<name>]` (any registered [`ModelKind`]; its defaults when absent) and the tables
/// below. Every table denies unknown keys; a section for a model other than the one
/// trained is an error too.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// The model trained, with its hyper-parameters.
    pub model: ModelConfig,
    /// Data.
    pub data: DataConfig,
    /// Optimizer.
    pub optim: OptimConfig,
    /// Schedule.
    pub schedule: ScheduleConfig,
    /// Loop.
    pub train: LoopConfig,
    /// LoRA adapters (fine-tuning).
    pub lora: Option<LoraSection>,
    /// Knowledge distillation from a teacher checkpoint.
    pub distill: Option<DistillConfig>,
    /// Magnitude pruning.
    pub prune: Option<PruneConfig>,
    /// Initial weights from a pretrained checkpoint (fine-tuning).
    pub init: Option<InitConfig>,
    /// Fixed-point precisions (quantisation-aware training, `[quant]`).
    pub quant: Option<QuantConfig>,
}

/// The tables of a run config besides the model's.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tables {
    #[serde(default)]
    data: DataConfig,
    #[serde(default)]
    optim: OptimConfig,
    #[serde(default)]
    schedule: ScheduleConfig,
    #[serde(default)]
    train: LoopConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lora: Option<LoraSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    distill: Option<DistillConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prune: Option<PruneConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    init: Option<InitConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quant: Option<QuantConfig>,
}

impl TrainConfig {
    /// The defaults of every table for `model` (its default hyper-parameters).
    pub fn for_model(model: ModelKind) -> Self {
        Self::assemble(ModelConfig::default_for(model), Tables::default())
    }

    fn assemble(model: ModelConfig, t: Tables) -> Self {
        Self {
            model,
            data: t.data,
            optim: t.optim,
            schedule: t.schedule,
            train: t.train,
            lora: t.lora,
            distill: t.distill,
            prune: t.prune,
            init: t.init,
            quant: t.quant,
        }
    }

    /// Parses and validates a TOML string (`origin` names it in errors).
    ///
    /// # Errors
    /// [`TrainError::ConfigParse`] for syntax errors and unknown keys,
    /// [`TrainError::InvalidConfig`] for impossible values.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        let parse_error = |message: String| TrainError::ConfigParse {
            path: origin.to_owned(),
            message,
        };
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
        let config = Self::from_table(table).map_err(parse_error)?;
        config.validate()?;
        Ok(config)
    }

    /// The config of a parsed TOML table: the model's name and section through the
    /// registry, the other tables by serde.
    fn from_table(mut table: toml::Table) -> std::result::Result<Self, String> {
        let registered = || {
            ModelKind::ALL
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let name = match table.remove("model") {
            Some(toml::Value::String(name)) => name,
            Some(other) => return Err(format!("key 'model' must be a string, found {other}")),
            None => return Err(format!("missing key 'model' (one of {})", registered())),
        };
        let kind = ModelKind::from_name(&name).ok_or_else(|| {
            format!(
                "unknown model \"{name}\" for key 'model' (one of {})",
                registered()
            )
        })?;
        let mut section = None;
        for other in ModelKind::ALL {
            if let Some(value) = table.remove(other.name()) {
                if *other != kind {
                    return Err(format!(
                        "section [{}] configures model \"{}\", but model = \"{name}\"",
                        other.name(),
                        other.name()
                    ));
                }
                section = Some(value);
            }
        }
        let model = ModelConfig::from_section(kind, section)
            .map_err(|e| format!("in [{name}]: {}", e.message()))?;
        let tables: Tables = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_owned())?;
        Ok(Self::assemble(model, tables))
    }

    /// Reads, parses and validates a TOML file.
    ///
    /// # Errors
    /// As [`TrainConfig::from_toml`], plus [`TrainError::Io`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// The resolved TOML (all defaults written out, the model's section included).
    ///
    /// # Panics
    /// Never: every field serialises.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.to_table()).expect("config serialises")
    }

    fn to_table(&self) -> toml::Table {
        let tables = Tables {
            data: self.data.clone(),
            optim: self.optim.clone(),
            schedule: self.schedule.clone(),
            train: self.train.clone(),
            lora: self.lora.clone(),
            distill: self.distill.clone(),
            prune: self.prune.clone(),
            init: self.init.clone(),
            quant: self.quant.clone(),
        };
        let mut table = toml::Table::try_from(&tables).expect("tables serialise");
        let name = self.model.kind().name();
        table.insert("model".into(), toml::Value::String(name.into()));
        table.insert(
            name.into(),
            toml::Value::try_from(&self.model).expect("model config serialises"),
        );
        table
    }

    /// Reads `data.config` (a weaver-core data config) into the model's inputs: for
    /// ParticleNet, `inputs` becomes the config's and `data.n_max` its length; its
    /// labels must number the model's classes.
    ///
    /// # Errors
    /// [`TrainError::Model`] for an unreadable or unusable YAML (naming file and key),
    /// [`TrainError::InvalidConfig`] for a model that takes no data config or a label
    /// count that differs from `n_class`.
    pub fn apply_data_config(&mut self) -> Result<()> {
        let Some(path) = self.data.config.clone() else {
            return Ok(());
        };
        let weaver = noether_equivariant::weaver::DataConfig::load(&path)?;
        let noether_equivariant::ModelConfig::ParticleNet(model) = &mut self.model else {
            return Err(invalid(
                "data.config",
                path.display(),
                &format!(
                    "a weaver data config defines ParticleNet's inputs; model = \"{}\" takes none",
                    self.model.kind()
                ),
            ));
        };
        if weaver.labels.len() != model.n_class {
            return Err(invalid(
                "data.config",
                path.display(),
                &format!(
                    "its labels.value names {} classes, the model's n_class is {}",
                    weaver.labels.len(),
                    model.n_class
                ),
            ));
        }
        self.data.n_max = weaver.inputs.length();
        model.inputs = weaver.inputs;
        Ok(())
    }

    /// Rejects impossible values, naming the key.
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`].
    pub fn validate(&self) -> Result<()> {
        let o = &self.optim;
        let positive = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(invalid(key, v, "must be a positive number"))
            }
        };
        let non_negative = |key: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(invalid(key, v, "must be finite and >= 0"))
            }
        };
        positive("optim.lr", o.lr)?;
        non_negative("optim.weight_decay", o.weight_decay)?;
        positive("optim.eps", o.eps)?;
        non_negative("optim.grad_clip", o.grad_clip)?;
        for (k, b) in o.betas().iter().enumerate() {
            if !(0.0..1.0).contains(b) {
                return Err(invalid(
                    &format!("optim.betas[{k}]"),
                    b,
                    "must be in [0, 1)",
                ));
            }
        }
        if !(0.0..1.0).contains(&o.momentum) {
            return Err(invalid("optim.momentum", o.momentum, "must be in [0, 1)"));
        }
        within("optim.accumulate", o.accumulate, MAX_BATCH)?;
        for (k, g) in o.groups.iter().enumerate() {
            if let Err(e) = regex::Regex::new(&g.pattern) {
                return Err(invalid(
                    &format!("optim.groups[{k}].pattern"),
                    &g.pattern,
                    &e.to_string(),
                ));
            }
            non_negative(&format!("optim.groups[{k}].lr_mult"), g.lr_mult)?;
        }
        for (k, f) in o.freeze.iter().enumerate() {
            if let Err(e) = regex::Regex::new(f) {
                return Err(invalid(&format!("optim.freeze[{k}]"), f, &e.to_string()));
            }
        }
        if let Err(e) = regex::Regex::new(&o.head) {
            return Err(invalid("optim.head", &o.head, &e.to_string()));
        }
        self.validate_transfer()?;
        within("data.n_max", self.data.n_max, MAX_N_MAX)?;
        within("data.batch_size", self.data.batch_size, MAX_BATCH)?;
        self.data.validate_extra_tests()?;
        within("train.epochs", self.train.epochs, MAX_EPOCHS)?;
        within(
            "train.eval_batch_size",
            self.train.eval_batch_size,
            MAX_BATCH,
        )?;
        let s = &self.schedule;
        non_negative("schedule.warmup_epochs", s.warmup_epochs)?;
        if !(0.0..=1.0).contains(&s.min_lr_ratio) {
            return Err(invalid(
                "schedule.min_lr_ratio",
                s.min_lr_ratio,
                "must be in [0, 1]",
            ));
        }
        positive("schedule.restart_epochs", s.restart_epochs)?;
        if s.restart_mult.is_nan() || s.restart_mult < 1.0 {
            return Err(invalid(
                "schedule.restart_mult",
                s.restart_mult,
                "must be >= 1",
            ));
        }
        positive("schedule.step_epochs", s.step_epochs)?;
        positive("schedule.gamma", s.gamma)?;
        self.model.check().map_err(|e| match e {
            noether_equivariant::ModelError::BadConfig { key, value, reason } => {
                TrainError::InvalidConfig {
                    key: format!("{}.{key}", self.section()),
                    value,
                    reason,
                }
            }
            other => TrainError::from(other),
        })?;
        if self.model.classes() != 2 {
            return Err(invalid(
                &format!("{}.n_class", self.section()),
                self.model.classes(),
                "must be 2: jet files hold labels 0 (background) and 1 (signal)",
            ));
        }
        self.check_quant()
    }

    /// Quantisation-aware training runs on the CPU: its fake-quantisation op has only a
    /// CPU kernel.
    fn check_quant(&self) -> Result<()> {
        if self.quant.is_some() && self.train.device != DeviceSetting::Cpu {
            return Err(invalid(
                "train.device",
                self.train.device,
                "quantisation-aware training ([quant]) runs on the CPU: its fake-quantisation \
                 op has only a CPU kernel",
            ));
        }
        Ok(())
    }

    /// Checks the fine-tuning and compression settings.
    fn validate_transfer(&self) -> Result<()> {
        if let Some(init) = &self.init {
            init.load_options()?;
            let classes = self.model.classes();
            if let Some(head) = init.head_classes.as_ref().filter(|h| h.len() != classes) {
                return Err(invalid(
                    "init.head_classes",
                    format!("{head:?}"),
                    &format!("names {} class(es), the model has {classes}", head.len()),
                ));
            }
        }
        let o = &self.optim;
        if !(o.snr_alpha.is_finite() && o.snr_alpha >= 0.0) {
            return Err(invalid(
                "optim.snr_alpha",
                o.snr_alpha,
                "must be finite and >= 0",
            ));
        }
        if !(0.0..1.0).contains(&o.snr_rho) {
            return Err(invalid("optim.snr_rho", o.snr_rho, "must be in [0, 1)"));
        }
        if !(0.0..=2.0).contains(&o.gaf_tau) {
            return Err(invalid(
                "optim.gaf_tau",
                o.gaf_tau,
                "must be in [0, 2] (a cosine distance)",
            ));
        }
        if o.gaf_tau > 0.0 && o.accumulate < 2 {
            return Err(invalid(
                "optim.gaf_tau",
                o.gaf_tau,
                "needs optim.accumulate >= 2 micro-batches to compare",
            ));
        }
        let decay = self.optim.layer_decay;
        if !(decay.is_finite() && decay > 0.0 && decay <= 1.0) {
            return Err(invalid("optim.layer_decay", decay, "must be in (0, 1]"));
        }
        if let Some(l) = &self.lora {
            within("lora.r", l.r, noether_equivariant::MAX_WIDTH)?;
            if !(l.alpha.is_finite() && l.alpha > 0.0) {
                return Err(invalid("lora.alpha", l.alpha, "must be a positive number"));
            }
            if let Err(e) = regex::Regex::new(&l.targets) {
                return Err(invalid("lora.targets", &l.targets, &e.to_string()));
            }
        }
        if let Some(d) = &self.distill {
            if !(d.temperature.is_finite() && d.temperature > 0.0) {
                return Err(invalid(
                    "distill.temperature",
                    d.temperature,
                    "must be a positive number",
                ));
            }
            if !(0.0..=1.0).contains(&d.alpha) {
                return Err(invalid("distill.alpha", d.alpha, "must be in [0, 1]"));
            }
        }
        if let Some(p) = &self.prune {
            if !(0.0..1.0).contains(&p.sparsity) {
                return Err(invalid("prune.sparsity", p.sparsity, "must be in [0, 1)"));
            }
            if let Err(e) = regex::Regex::new(&p.targets) {
                return Err(invalid("prune.targets", &p.targets, &e.to_string()));
            }
        }
        Ok(())
    }

    /// The head regex: `optim.head`, or the model's classification layer
    /// ([`noether_equivariant::TaggerModel::head`]).
    pub fn head_pattern(&self) -> String {
        if self.optim.head.is_empty() {
            self.model.head().to_owned()
        } else {
            self.optim.head.clone()
        }
    }

    /// The device and dtype of `train.device` / `train.dtype`, opened.
    ///
    /// # Errors
    /// A device this build cannot use: the message names the cargo feature to enable.
    pub fn placement(&self) -> Result<noether_equivariant::Placement> {
        Ok(noether_equivariant::Placement::new(
            self.train.device,
            self.train.dtype,
        )?)
    }

    /// Joins every relative file path of the config (data files, the weaver data
    /// config, the initial checkpoint, the teacher) onto `root`.
    pub fn relative_to(&mut self, root: &Path) {
        self.data.relative_to(root);
        if let Some(init) = &mut self.init {
            rebase(&mut init.from, root);
        }
        if let Some(distill) = &mut self.distill {
            rebase(&mut distill.teacher, root);
        }
    }

    /// The TOML section name of the model (its registry name).
    pub fn section(&self) -> &'static str {
        self.model.kind().name()
    }
}

impl Serialize for TrainConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_table().serialize(s)
    }
}

impl<'de> Deserialize<'de> for TrainConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let table = toml::Table::deserialize(d)?;
        Self::from_table(table).map_err(serde::de::Error::custom)
    }
}

/// The most constituents per jet a config may pad to (real jets have fewer than 1000).
pub const MAX_N_MAX: usize = 4096;

/// The largest training or evaluation batch (and gradient accumulation) a config may ask
/// for.
pub const MAX_BATCH: usize = 1 << 20;

/// The most epochs a config may ask for.
pub const MAX_EPOCHS: usize = 1_000_000;

/// `1 <= v <= max`, or an error naming `key`: every count a config holds is bounded, so
/// that a typo is named instead of aborting on a failed allocation.
fn within(key: &str, v: usize, max: usize) -> Result<()> {
    if (1..=max).contains(&v) {
        Ok(())
    } else {
        Err(invalid(key, v, &format!("must be between 1 and {max}")))
    }
}

//! # noether-train
//!
//! Training for noether's taggers: a TOML [`TrainConfig`] (unknown keys and impossible
//! values rejected by name), AdamW / SGD with decoupled weight decay, parameter groups
//! and gradient clipping ([`Optimizer`]), warm-up + cosine, SGDR and step schedules,
//! the tagging metrics ([`Scored`]: accuracy, ROC, AUC, 1/eps_B at eps_S = 0.3 and 0.5,
//! weighted, with bootstrap intervals), atomic safetensors checkpoints with the config
//! and RNG state in `__metadata__`, and the loop ([`train`]) that writes a run directory
//! and resumes bit-identically, into a typed run directory ([`RunDir`]: `config.toml`,
//! `history.csv`, `metrics.json` as [`RunSummary`], checkpoints). Models come from the
//! registry of `noether-equivariant` ([`build_model`]: the configured device and dtype,
//! seeded weights); their inputs are computed once per data set ([`jet_inputs`]).
//! For fine-tuning and compression: frozen parameters detached from autograd
//! ([`Freeze`]), LoRA adapters on the models' linear layers ([`attach_lora`],
//! `[lora]`), layer-wise learning-rate decay ([`layer_decay_mult`], from each model's
//! `TaggerModel::depth`), linear probing then fine-tuning, knowledge distillation
//! ([`distillation_loss`], `[distill]`) and global magnitude pruning
//! ([`magnitude_prune`], `[prune]`), with [`ModelProfile`] for before/after reports
//! (parameters, sparsity, AUC, latency). Checkpoints load through `noether-transfer`'s
//! one loader ([`load_weights`]).
//!
//! ```
//! use noether_train::Scored;
//!
//! let scores = [0.9, 0.8, 0.3, 0.6, 0.2, 0.1];
//! let labels = [1, 1, 1, 0, 0, 0];
//! let scored = Scored::new(&scores, &labels, None)?;
//! assert!((scored.auc() - 8.0 / 9.0).abs() < 1e-12);
//! assert_eq!(scored.accuracy(0.5), 4.0 / 6.0);
//! # Ok::<(), noether_train::TrainError>(())
//! ```

mod adamw_kernel;
mod adapt;
pub mod checkpoint;
mod config;
mod error;
mod evaluate;
mod fixed_point;
mod inputs;
mod job;
mod loss;
mod memory;
mod metrics;
mod model;
mod optim;
mod plots;
mod profile;
mod prune;
mod record;
mod schedule;
mod trainer;

pub use adapt::{attach_lora, is_adapter, layer_decay_mult, Freeze};
pub use checkpoint::{load_weights, write_atomically};
pub use config::{
    DataConfig, DistillConfig, InitConfig, LoopConfig, LoraSection, OptimConfig, OptimizerName,
    ParamGroup, PruneConfig, ScheduleConfig, ScheduleKind, SnrGate, TrainConfig, MAX_BATCH,
    MAX_EPOCHS, MAX_N_MAX,
};
pub use error::{Result, TrainError};
pub use evaluate::{logits, predict, predict_inputs};
pub use fixed_point::{engine_latency, fixed_point_logits, float_latency, Latency};
pub use inputs::{
    batch_input, beams_of, eval_batch_config, forward_batch, jet_inputs, row_indices, select,
};
pub use job::{default_run_dir, TrainJob};
pub use loss::{cross_entropy, distillation_loss, signal_scores};
pub use memory::check_memory;
pub use metrics::{bootstrap, Interval, Roc, Scored, TaggingMetrics};
pub use model::{
    build_model, inference_model, load_inference_model, load_inference_model_on, load_model,
    load_model_on, seeded_model,
};
pub use noether_equivariant::{DeviceSetting, ModelConfig, ModelKind, Precision, Tagger};
pub use optim::{parameters, trainable, AgreementFilter, Optimizer, Param};
pub use plots::{roc_svg, training_svg};
pub use profile::{profile, profile_checkpoint, single_jet_latency_ms, ModelProfile};
pub use prune::{magnitude_prune, masks_from_zeros, nonzero_parameters, PruneMasks};
pub use record::{DataRecord, EpochRecord, RunDir, RunSummary, TestMetrics};
pub use schedule::lr_factor;
pub use trainer::{train, write_outputs, InitHook, RunData, RunOptions};

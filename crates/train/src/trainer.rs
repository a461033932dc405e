//! The training loop: seeded class-balanced subsets, shuffled padded batches, gradient
//! accumulation and clipping, scheduled learning rate, validation AUC each epoch, best and
//! last checkpoints (atomic), early stopping, resume, and the run directory:
//! `config.toml`, `history.csv`, `metrics.json`, `roc.svg`, `training.svg`,
//! `best.safetensors`, `last.safetensors`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use candle_nn::VarMap;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use noether_data::sampling::balanced_subset;
use noether_data::{batches, BatchConfig, JetFile, JetSet};
use noether_equivariant::{parameter_count, Mode, Tagger, TaggerInput};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::adapt::Freeze;
use crate::checkpoint::{self, load_weights, weights, CheckpointMeta};
use crate::config::{DistillConfig, InitConfig, TrainConfig};
use crate::error::{invalid, Context, Result, TrainError};
use crate::evaluate::{logits, predict_inputs};
use crate::inputs::{beams_of, jet_inputs, row_indices, select};
use crate::loss::{cross_entropy, distillation_loss, scalar};
use crate::metrics::{bootstrap, Scored, TaggingMetrics};
use crate::model::{build_model, inference_model, load_inference_model};
use crate::optim::{add_gradients, parameters, AgreementFilter, Optimizer};
use crate::prune::{magnitude_prune, masks_from_zeros, nonzero_parameters, PruneMasks};
use crate::record::{DataRecord, EpochRecord, RunDir, RunSummary, TestMetrics};
use crate::schedule::lr_factor;
use noether_transfer::load_checkpoint;

/// The jets of a run.
#[derive(Debug, Clone)]
pub struct RunData {
    /// Training jets (already subset).
    pub train: JetSet,
    /// Validation jets.
    pub val: JetSet,
    /// Test jets.
    pub test: JetSet,
    /// The extra test sets (`data.extra_tests`), by name.
    pub extra_tests: Vec<(String, JetSet)>,
    /// What reading each file kept and dropped (recorded in `metrics.json`).
    pub records: Vec<DataRecord>,
}

impl RunData {
    /// Jets given directly (no file was read, so nothing is recorded).
    pub fn new(train: JetSet, val: JetSet, test: JetSet) -> Self {
        Self {
            train,
            val,
            test,
            extra_tests: Vec::new(),
            records: Vec::new(),
        }
    }

    /// Loads the files named in `config.data` (`train_jets` and `val_jets` as seeded
    /// class-balanced subsets), made massless if asked.
    ///
    /// # Errors
    /// Data errors naming the file; [`TrainError::InvalidConfig`] when `data.train_jets`
    /// or `data.val_jets` exceed what the file holds.
    pub fn load(config: &TrainConfig) -> Result<Self> {
        let d = &config.data;
        let seed = config.train.seed;
        let mut records = Vec::new();
        let mut read = |path: &Path, role: &str| -> Result<JetSet> {
            let (jets, report) = JetFile::open(path)?.read_all()?;
            records.push(DataRecord::new(role, &report));
            Ok(jets)
        };
        let subset = |jets: JetSet, path: &Path, n: usize, key: &str| -> Result<JetSet> {
            if n == 0 {
                return Ok(jets);
            }
            if n > jets.len() {
                return Err(invalid(
                    key,
                    n,
                    &format!("{} holds only {} jets", path.display(), jets.len()),
                ));
            }
            let indices = balanced_subset(jets.labels(), n, seed)
                .map_err(|e| invalid(key, n, &e.to_string()))?;
            Ok(jets.select(&indices))
        };
        let train = subset(
            read(&d.train, "train")?,
            &d.train,
            d.train_jets,
            "data.train_jets",
        )?;
        let val = subset(read(&d.val, "val")?, &d.val, d.val_jets, "data.val_jets")?;
        let test = read(&d.test, "test")?;
        let extra_tests = d
            .extra_tests
            .iter()
            .map(|(name, path)| Ok((name.clone(), read(path, &extra_role(name))?)))
            .collect::<Result<Vec<_>>>()?;
        let mut data = Self {
            train,
            val,
            test,
            extra_tests,
            records,
        };
        if d.massless {
            data.train.make_massless();
            data.val.make_massless();
            data.test.make_massless();
            for (_, jets) in &mut data.extra_tests {
                jets.make_massless();
            }
        }
        Ok(data)
    }

    /// Checks, before anything is trained or written, that every set holds jets of both
    /// classes: a one-class validation set cannot pick a best epoch by AUC, nor a
    /// one-class test set give one, and finding out after training wastes the run.
    ///
    /// # Errors
    /// [`TrainError::UnusableData`] naming the set and its file.
    pub fn check(&self) -> Result<()> {
        let extra: Vec<(String, String, &JetSet)> = self
            .extra_tests
            .iter()
            .map(|(name, jets)| (extra_role(name), format!("'{name}' test"), jets))
            .collect();
        let sets = [
            ("train".to_owned(), "training".to_owned(), &self.train),
            ("val".to_owned(), "validation".to_owned(), &self.val),
            ("test".to_owned(), "test".to_owned(), &self.test),
        ];
        for (role, name, jets) in sets.into_iter().chain(extra) {
            let what = match self.records.iter().find(|r| r.role == role) {
                Some(r) => format!("{name} file {}", r.file.display()),
                None => format!("{name} jets"),
            };
            let signal = jets.signal_count();
            let problem = if jets.is_empty() {
                "no jets (after skipping empty ones and taking the subset)".to_owned()
            } else if signal == 0 || signal == jets.len() {
                format!(
                    "all {} jets are {}: tagging needs both signal (1) and background (0) jets",
                    jets.len(),
                    if signal == 0 { "background" } else { "signal" }
                )
            } else {
                continue;
            };
            return Err(TrainError::UnusableData { what, problem });
        }
        Ok(())
    }
}

/// The role of an extra test set in the data records (`extra_tests.<name>`).
fn extra_role(name: &str) -> String {
    format!("extra_tests.{name}")
}

/// The model inputs of a run's jets, computed once.
struct RunInputs {
    train: TaggerInput,
    val: TaggerInput,
    test: TaggerInput,
    extra_tests: Vec<TaggerInput>,
}

impl RunInputs {
    fn new(model: &Tagger, data: &RunData, n_max: usize) -> Result<Self> {
        Ok(Self {
            train: jet_inputs(model, &data.train, n_max)?,
            val: jet_inputs(model, &data.val, n_max)?,
            test: jet_inputs(model, &data.test, n_max)?,
            extra_tests: data
                .extra_tests
                .iter()
                .map(|(_, jets)| jet_inputs(model, jets, n_max))
                .collect::<Result<_>>()?,
        })
    }
}

/// Sets a freshly built model's weights before training (e.g. from a pretrained
/// checkpoint); an `Err` message aborts the run.
pub type InitHook =
    std::sync::Arc<dyn Fn(&VarMap) -> std::result::Result<(), String> + Send + Sync>;

/// How a run is driven.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// The run directory.
    pub out: PathBuf,
    /// Continue from `out/last.safetensors`.
    pub resume: bool,
    /// Show a progress bar (on stderr).
    pub progress: bool,
    /// Stop after this many epochs without the final evaluation (for tests and
    /// interrupted runs).
    pub stop_after: Option<usize>,
    /// Initial weights (fine-tuning); ignored when resuming.
    pub init: Option<InitHook>,
    /// Overwrite a directory that holds another run, or resume with changed settings
    /// (`--force`); refused otherwise ([`RunDir::prepare`]).
    pub force: bool,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("out", &self.out)
            .field("resume", &self.resume)
            .field("progress", &self.progress)
            .field("stop_after", &self.stop_after)
            .field("init", &self.init.as_ref().map(|_| "hook"))
            .field("force", &self.force)
            .finish()
    }
}

/// Loads the initial weights of `[init]` into `varmap` and writes the load report
/// (`load_report.json`; also printed, as it says what did not load). The head (`head`)
/// is replaced when its shape differs (other classes), or taken from the checkpoint head's
/// `init.head_classes` rows; any other tensor that does not
/// fit, or a checkpoint of which nothing loads, is an error, before the report is
/// written.
fn load_init(init: &InitConfig, head: &regex::Regex, varmap: &VarMap, dir: &RunDir) -> Result<()> {
    let options = noether_transfer::LoadOptions {
        replace: Some(head.clone()),
        ..init.load_options()?
    };
    let report =
        load_checkpoint(&init.from, varmap, &options).map_err(|e| TrainError::Checkpoint {
            path: init.from.clone(),
            message: crate::error::without_path(&init.from, &e),
        })?;
    note(format_args!("{}", report.to_string().trim_end()));
    if let Some(m) = report.mismatched.first() {
        // Only the head may change shape (new classes); any other tensor that does not
        // fit means another architecture or configuration.
        return Err(TrainError::Checkpoint {
            path: init.from.clone(),
            message: format!(
                "tensor '{}' has shape {:?}, the model's parameter is {:?} ({} tensor(s) do \
                 not fit: the config describes another architecture)",
                m.name,
                m.found,
                m.expected,
                report.mismatched.len()
            ),
        });
    }
    if report.applied.is_empty() {
        // Fine-tuning from nothing is training from scratch under another name.
        let example = |names: &[String]| names.iter().take(3).cloned().collect::<Vec<_>>();
        return Err(TrainError::Checkpoint {
            path: init.from.clone(),
            message: format!(
                "no tensor of the checkpoint matches a model parameter (checkpoint: {:?}, \
                 model: {:?}); map the names with --remap FROM=TO (init.remaps)",
                example(&report.unexpected),
                example(&report.missing)
            ),
        });
    }
    checkpoint::write_atomically(
        &dir.path().join("load_report.json"),
        report.to_json().as_bytes(),
    )
}

/// The teacher's logits on every training jet (indexed like the set), from a noether
/// checkpoint whose metadata holds the teacher's config.
fn teacher_logits(distill: &DistillConfig, jets: &JetSet) -> Result<Tensor> {
    let (teacher, _, config) = load_inference_model(&distill.teacher)?;
    logits(
        &teacher,
        jets,
        config.data.n_max,
        config.train.eval_batch_size,
    )
}

/// The state of a run between epochs.
struct Run<'a> {
    config: &'a TrainConfig,
    options: &'a RunOptions,
    model: Tagger,
    /// The same weights, detached: validation and test passes build no graph.
    inference: Tagger,
    varmap: VarMap,
    optimizer: Optimizer,
    rng: ChaCha8Rng,
    epoch: usize,
    best: Option<(f64, usize)>,
    start_val_auc: Option<f64>,
    history: Vec<EpochRecord>,
    head: regex::Regex,
    /// Teacher logits of the training jets (distillation).
    teacher: Option<Tensor>,
    /// Pruning masks, re-applied after every step.
    masks: Option<PruneMasks>,
    /// The run directory.
    dir: RunDir,
    /// Model inputs of the training, validation and test jets.
    inputs: RunInputs,
}

impl Run<'_> {
    fn meta(&self) -> CheckpointMeta {
        CheckpointMeta {
            config: self.config.to_toml(),
            epoch: self.epoch,
            step: self.optimizer.steps(),
            best: self.best,
            start_val_auc: self.start_val_auc,
            rng: CheckpointMeta::rng_state(&self.rng),
        }
    }

    /// Writes a checkpoint; a `resumable` one also holds the optimizer state and is
    /// accompanied by `history.json`, so that a resumed run can still plot all epochs.
    fn save(&self, path: &Path, resumable: bool) -> Result<()> {
        let mut tensors = weights(&self.varmap);
        if resumable {
            tensors.extend(self.optimizer.state_tensors());
        }
        checkpoint::save(path, &tensors, &self.meta())?;
        if resumable {
            self.dir.write_resume_history(&self.history)?;
        }
        Ok(())
    }

    fn resume(&mut self) -> Result<()> {
        let path = self.dir.last_checkpoint();
        let ckpt = checkpoint::load(&path)?;
        load_weights(&self.varmap, &ckpt.tensors, &path)?;
        self.optimizer.restore(&ckpt.tensors, ckpt.meta.step)?;
        self.rng = ckpt.meta.restore_rng();
        self.epoch = ckpt.meta.epoch;
        self.best = ckpt.meta.best;
        self.start_val_auc = ckpt.meta.start_val_auc;
        self.history = self.dir.resume_history()?;
        self.history.truncate(self.epoch);
        Ok(())
    }

    /// Metrics and mean loss of the current weights on the validation set.
    fn validate(&self, data: &RunData) -> Result<(TaggingMetrics, f64)> {
        let c = self.config;
        let (scores, labels, loss) = predict_inputs(
            &self.inference,
            &data.val,
            &self.inputs.val,
            c.train.eval_batch_size,
        )?;
        Ok((
            TaggingMetrics::of(&Scored::new(&scores, &labels, None)?),
            loss,
        ))
    }

    /// Evaluates the starting weights on the validation set and keeps them as the best
    /// checkpoint so far (epoch 0).
    fn evaluate_start(&mut self, data: &RunData) -> Result<()> {
        let (val, val_loss) = self.validate(data)?;
        self.start_val_auc = Some(val.auc);
        self.best = Some((val.auc, 0));
        self.save(&self.dir.best_checkpoint(), false)?;
        if self.options.progress {
            note(format_args!(
                "epoch   0: val loss {val_loss:.4}, val acc {:.4}, val AUC {:.4} (starting weights)",
                val.acc, val.auc
            ));
        }
        Ok(())
    }

    /// One training epoch; returns (mean loss, last learning rate).
    fn train_epoch(&mut self, data: &RunData) -> Result<(f64, f64)> {
        let c = self.config;
        let batch_config = BatchConfig {
            beams: beams_of(&self.model),
            seed: c.train.seed,
            ..BatchConfig::new(c.data.batch_size, c.data.n_max)
        };
        let indices: Vec<usize> = (0..data.train.len()).collect();
        let n_batches = data.train.len().div_ceil(c.data.batch_size);
        let bar = self.progress_bar(data.train.len());
        let (mut loss_sum, mut seen, mut lr) = (0.0, 0usize, 0.0);
        let mut pending: Vec<Option<Tensor>> = Vec::new();
        let mut filter = (c.optim.gaf_tau > 0.0).then(|| AgreementFilter::new(c.optim.gaf_tau));
        let mut micro = 0;
        for (k, batch) in
            batches(&data.train, &indices, &batch_config, self.epoch as u64)?.enumerate()
        {
            let input = select(&self.model, &self.inputs.train, &batch)?;
            let logits = self
                .model
                .forward_t(&input, &mut Mode::Train(&mut self.rng))?;
            let loss = self.loss(&logits, &batch)?;
            let value = scalar(&loss)?;
            if !value.is_finite() {
                bar.abandon();
                return Err(TrainError::NonFiniteLoss {
                    epoch: self.epoch + 1,
                    step: self.optimizer.steps(),
                    value: value as f32,
                });
            }
            let grads = self
                .optimizer
                .gradients(&loss.backward().context("backward")?);
            match &mut filter {
                Some(f) => {
                    f.offer(grads)?;
                }
                None => pending = add_gradients(pending, grads)?,
            }
            micro += 1;
            if micro == c.optim.accumulate || k + 1 == n_batches {
                let step_grads = match &mut filter {
                    Some(f) => f.take()?,
                    None => Some(
                        std::mem::take(&mut pending)
                            .into_iter()
                            .map(|g| {
                                g.map(|g| (g / micro as f64).context("accumulate"))
                                    .transpose()
                            })
                            .collect::<Result<Vec<_>>>()?,
                    ),
                };
                micro = 0;
                let progress = self.epoch as f64 + (k + 1) as f64 / n_batches as f64;
                lr = c.optim.lr * lr_factor(&c.schedule, progress, c.train.epochs);
                // None: gradient agreement filtering found no agreeing micro-batches.
                if let Some(grads) = step_grads {
                    self.apply_step(grads, lr)?;
                }
            }
            loss_sum += value * batch.batch_size as f64;
            seen += batch.batch_size;
            bar.inc(batch.batch_size as u64);
            bar.set_message(format!("loss {:.4}", loss_sum / seen as f64));
        }
        bar.finish_and_clear();
        Ok((loss_sum / seen.max(1) as f64, lr))
    }

    /// Linear-probe masking, clipping, the optimizer step and the pruning masks.
    fn apply_step(&mut self, mut grads: Vec<Option<Tensor>>, lr: f64) -> Result<()> {
        let c = self.config;
        if self.epoch < c.optim.linear_probe_epochs {
            // Linear probing: only the head moves (no gradient, no update).
            for (g, p) in grads.iter_mut().zip(self.optimizer.params()) {
                if !self.head.is_match(&p.name) {
                    *g = None;
                }
            }
        }
        Optimizer::clip(&mut grads, c.optim.grad_clip)?;
        self.optimizer.step(&grads, lr)?;
        if let Some(masks) = &self.masks {
            masks.apply()?;
        }
        Ok(())
    }

    /// Cross-entropy, or the distillation loss when a teacher is set.
    fn loss(&self, logits: &Tensor, batch: &noether_data::Batch) -> Result<Tensor> {
        match (&self.teacher, &self.config.distill) {
            (Some(all), Some(d)) => {
                let rows = row_indices(batch.indices.iter().copied(), all.device())?;
                let teacher = all.index_select(&rows, 0).context("teacher logits")?;
                distillation_loss(
                    logits,
                    &teacher,
                    &batch.labels,
                    &batch.weights,
                    d.temperature,
                    d.alpha,
                )
            }
            _ => cross_entropy(logits, &batch.labels, &batch.weights),
        }
    }

    fn progress_bar(&self, jets: usize) -> ProgressBar {
        let bar = ProgressBar::new(jets as u64);
        if !self.options.progress {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "epoch {}/{} {{bar:30}} {{pos}}/{{len}} jets {{per_sec}} {{msg}} ETA {{eta}}",
                self.epoch + 1,
                self.config.train.epochs
            ))
            .expect("valid template"),
        );
        bar
    }
}

/// Trains (or resumes) a run and evaluates its best checkpoint on the test set.
/// Returns `None` when stopped early by [`RunOptions::stop_after`].
///
/// # Errors
/// Configuration, data, model, checkpoint and I/O errors; [`TrainError::NonFiniteLoss`]
/// stops the run and leaves the last good checkpoint in place.
pub fn train(
    config: &TrainConfig,
    data: &RunData,
    options: &RunOptions,
) -> Result<Option<RunSummary>> {
    config.validate()?;
    data.check()?;
    crate::memory::check_memory(
        config,
        data.train.len(),
        data.val.len().max(data.test.len()),
    )?;
    let start = Instant::now();
    let dir = RunDir::new(&options.out);
    let _lock = dir.lock()?;
    dir.prepare(config, options.resume, options.force)?;
    let (model, varmap) = build_model(config, config.train.seed)?;
    let inference = inference_model(config, &varmap)?;
    let optimizer = Optimizer::new(parameters(&varmap, config)?, &config.optim);
    let inputs = RunInputs::new(&model, data, config.data.n_max)?;
    let mut run = Run {
        config,
        options,
        model,
        inference,
        varmap,
        optimizer,
        rng: ChaCha8Rng::seed_from_u64(config.train.seed ^ 0x5eed_d40f),
        epoch: 0,
        best: None,
        start_val_auc: None,
        history: Vec::new(),
        head: regex::Regex::new(&config.head_pattern())
            .map_err(|e| invalid("optim.head", config.head_pattern(), &e.to_string()))?,
        teacher: None,
        masks: None,
        dir,
        inputs,
    };
    if options.resume {
        run.resume()?;
    } else if let Some(init) = &config.init {
        load_init(init, &run.head, &run.varmap, &run.dir)?;
    } else if let Some(init) = &options.init {
        init(&run.varmap).map_err(|message| TrainError::Checkpoint {
            path: options.out.clone(),
            message: format!("initialising the model: {message}"),
        })?;
    }
    // Only once the run can start: a failed --resume leaves config.toml as it was.
    run.dir.write_config(config)?;
    if let Some(prune) = &config.prune {
        let freeze = Freeze::new(config)?;
        run.masks = Some(if options.resume {
            masks_from_zeros(&run.varmap, prune, &freeze)?
        } else {
            magnitude_prune(&run.varmap, prune, &freeze)?
        });
    }
    if let Some(distill) = &config.distill {
        run.teacher = Some(teacher_logits(distill, &data.train)?);
    }
    if config.train.eval_on_start && !options.resume {
        run.evaluate_start(data)?;
    }
    while run.epoch < config.train.epochs {
        if options.stop_after.is_some_and(|k| run.epoch >= k) {
            return Ok(None);
        }
        let epoch_start = Instant::now();
        let (train_loss, lr) = run.train_epoch(data)?;
        let (val, val_loss) = run.validate(data)?;
        run.epoch += 1;
        run.history.push(EpochRecord {
            epoch: run.epoch,
            train_loss,
            val_loss,
            val_acc: val.acc,
            val_auc: val.auc,
            lr,
            seconds: epoch_start.elapsed().as_secs_f64(),
        });
        if run.best.is_none_or(|(auc, _)| val.auc > auc) {
            run.best = Some((val.auc, run.epoch));
            run.save(&run.dir.best_checkpoint(), false)?;
        }
        run.save(&run.dir.last_checkpoint(), true)?;
        if options.progress {
            note(format_args!(
                "epoch {:>3}: train loss {train_loss:.4}, val loss {val_loss:.4}, val acc {:.4}, val AUC {:.4}, lr {lr:.2e}",
                run.epoch, val.acc, val.auc
            ));
        }
        let patience = config.train.patience;
        if patience > 0 && run.best.is_some_and(|(_, e)| run.epoch - e >= patience) {
            break;
        }
    }
    finish(&run, data, start).map(Some)
}

/// Evaluates the best checkpoint on the test set and writes the run directory's files.
fn finish(run: &Run, data: &RunData, start: Instant) -> Result<RunSummary> {
    let config = run.config;
    let best_path = run.dir.best_checkpoint();
    let best = checkpoint::load(&best_path)?;
    load_weights(&run.varmap, &best.tensors, &best_path)?;
    let batch = config.train.eval_batch_size;
    let (scores, labels, test_loss) =
        predict_inputs(&run.inference, &data.test, &run.inputs.test, batch)?;
    let scored = Scored::new(&scores, &labels, None)?;
    let test = test_metrics(config, &scored, test_loss);
    let extra_tests = data
        .extra_tests
        .iter()
        .zip(&run.inputs.extra_tests)
        .map(|((name, jets), inputs)| {
            let (scores, labels, loss) = predict_inputs(&run.inference, jets, inputs, batch)?;
            let metrics = test_metrics(config, &Scored::new(&scores, &labels, None)?, loss);
            Ok((name.clone(), metrics))
        })
        .collect::<Result<_>>()?;
    #[allow(clippy::cast_precision_loss)] // FLOP counts far below 2^53 relative error
    let forward_flops = config.model.forward_flops(config.data.n_max) as f64;
    let summary = RunSummary {
        model: config.section().to_owned(),
        acc: test.acc,
        auc: test.auc,
        rejection_at_0_3: test.rejection_at_0_3,
        rejection_at_0_5: test.rejection_at_0_5,
        test_loss: test.test_loss,
        intervals: test.intervals,
        train_jets: data.train.len(),
        test_jets: data.test.len(),
        extra_tests,
        params: parameter_count(&run.varmap),
        nonzero_params: nonzero_parameters(&run.varmap)?,
        trainable_params: run
            .optimizer
            .params()
            .iter()
            .map(|p| p.var.elem_count())
            .sum(),
        forward_flops_per_jet: forward_flops,
        train_flops: 3.0 * forward_flops * (data.train.len() * run.epoch) as f64,
        seconds: start.elapsed().as_secs_f64(),
        epochs: run.epoch,
        best_epoch: run.best.map_or(0, |(_, e)| e),
        start_val_auc: run.start_val_auc,
        data: data.records.clone(),
    };
    write_outputs(&run.dir, &summary, &run.history, &scored)?;
    Ok(summary)
}

/// The metrics of one scored test set, bootstrapped as the config asks.
fn test_metrics(config: &TrainConfig, scored: &Scored, test_loss: f64) -> TestMetrics {
    let m = TaggingMetrics::of(scored);
    let mut intervals = HashMap::new();
    if config.train.bootstrap > 0 {
        let names = ["acc", "auc", "rejection_at_0.3", "rejection_at_0.5"];
        for (name, i) in
            names
                .iter()
                .zip(bootstrap(scored, config.train.bootstrap, config.train.seed))
        {
            intervals.insert((*name).to_owned(), i);
        }
    }
    TestMetrics {
        test_jets: scored.len(),
        test_loss,
        acc: m.acc,
        auc: m.auc,
        rejection_at_0_3: m.rejection_at_0_3,
        rejection_at_0_5: m.rejection_at_0_5,
        intervals,
    }
}

/// Writes `metrics.json`, `history.csv`, `roc.svg` and `training.svg`.
///
/// # Errors
/// I/O and plotting errors naming the file.
pub fn write_outputs(
    dir: &RunDir,
    summary: &RunSummary,
    history: &[EpochRecord],
    scored: &Scored,
) -> Result<()> {
    dir.write_metrics(summary)?;
    dir.write_history(history)?;
    crate::plots::roc_svg(
        &dir.path().join("roc.svg"),
        &[(&summary.model, &scored.roc())],
    )?;
    if !history.is_empty() {
        crate::plots::training_svg(&dir.path().join("training.svg"), history)?;
    }
    Ok(())
}

/// A progress line on standard error; a failed write (a full or closed stderr) must not
/// stop, nor panic, a training run.
pub(crate) fn note(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

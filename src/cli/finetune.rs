//! `noether finetune`: train from a pretrained checkpoint (any safetensors file, e.g. a
//! PyTorch state dict), with key remapping, a load report and frozen parameters.

use std::path::PathBuf;

use clap::Args;
use noether::train::{checkpoint, InitConfig, LoraSection, RunData, TrainConfig, TrainJob};
use noether_transfer::{adapters_in, load_checkpoint, save_adapter_tensors, LoraConfig};

use super::train::TrainArgs;
use crate::cli::output::note;

/// Arguments of `finetune`: those of `train`, plus where the weights come from.
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// The pretrained checkpoint (safetensors; a `module.` prefix is recognised).
    #[arg(long)]
    from: PathBuf,
    /// Rename checkpoint keys: FROM is a regex, TO its replacement (repeatable, applied
    /// in order).
    #[arg(long = "remap", value_name = "FROM=TO")]
    remaps: Vec<String>,
    /// Freeze parameters whose name matches this regex (repeatable).
    #[arg(long = "freeze", value_name = "REGEX")]
    freeze: Vec<String>,
    /// Fail when a model parameter is missing from the checkpoint.
    #[arg(long)]
    strict: bool,
    /// Start the new head from these classes of the checkpoint's head, in order, e.g.
    /// `0,8` (JetClass's QCD and top) for a 2-class tagger: fine-tuning then starts from
    /// the zero-shot tagger rather than from a random head (`init.head_classes`).
    #[arg(long, value_delimiter = ',', value_name = "C0,C1,...")]
    head_classes: Vec<usize>,
    /// Linear probing, then fine-tuning (LP-FT): only the head trains for the first
    /// third of the epochs (`optim.linear_probe_epochs` in the config overrides this).
    #[arg(long)]
    lp_ft: bool,
    /// LoRA adapters on every linear layer but the head, e.g. `r=8,alpha=16`: only the
    /// adapters and the head train; the adapters are also written in PEFT's layout
    /// (`adapter/adapter_model.safetensors`, `adapter/adapter_config.json`).
    #[arg(long, value_name = "r=R,alpha=A")]
    lora: Option<String>,
    /// Evaluate the pretrained weights before training, so that the tested model is the
    /// starting one when no epoch beats it on the validation set (`train.eval_on_start`).
    #[arg(long)]
    eval_on_start: bool,
    #[command(flatten)]
    common: TrainArgs,
}

/// Runs `noether finetune`: prints the load report, then the test metrics like `train`;
/// the run directory also holds `load_report.json`.
pub fn run(args: &FinetuneArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = args.common.resolve()?;
    config.optim.freeze.extend(args.freeze.iter().cloned());
    config.train.eval_on_start |= args.eval_on_start;
    if args.lp_ft && config.optim.linear_probe_epochs == 0 {
        config.optim.linear_probe_epochs = config.train.epochs.div_ceil(3);
    }
    let lora = match &args.lora {
        Some(spec) => Some(lora_section(spec, &mut config)?),
        None => None,
    };
    config.init = Some(InitConfig {
        from: args.from.clone(),
        remaps: args.remaps.clone(),
        strict: args.strict,
        head_classes: (!args.head_classes.is_empty()).then(|| args.head_classes.clone()),
    });
    config.validate()?;
    crate::cli::set_threads(config.train.threads);
    let data = RunData::load(&config)?;
    let out = args.common.out_dir(&config);
    let job = TrainJob {
        resume: args.common.resume,
        progress: !args.common.quiet,
        force: args.common.force,
        ..TrainJob::new(config.clone(), &out)
    };
    let summary = job.run_on(&data)?;
    if let Some(lora) = lora {
        export_adapters(&out, &lora)?;
    }
    if config.prune.is_some() || config.distill.is_some() {
        let before = match &config.distill {
            Some(d) => noether::train::profile_checkpoint(&d.teacher, &data.test)?,
            None => pretrained_profile(&config, &data)?,
        };
        super::compress::report(&out, &summary, &data.test, Some(&before))?;
    }
    super::train::print_summary(&summary, &out)?;
    Ok(())
}

/// Parses `--lora`, sets `config.lora`, and returns PEFT's config for the export.
fn lora_section(
    spec: &str,
    config: &mut TrainConfig,
) -> Result<LoraConfig, Box<dyn std::error::Error>> {
    let lora = LoraConfig::parse(spec)?;
    if lora.lora_dropout > 0.0 {
        return Err(format!(
            "--lora {spec}: adapter dropout is not supported on model layers (use dropout=0)"
        )
        .into());
    }
    config.lora = Some(LoraSection {
        r: lora.r,
        alpha: lora.lora_alpha,
        ..config.lora.clone().unwrap_or_default()
    });
    Ok(lora)
}

/// Writes the best checkpoint's adapters in PEFT's layout under `out/adapter`.
fn export_adapters(
    out: &std::path::Path,
    lora: &LoraConfig,
) -> Result<(), Box<dyn std::error::Error>> {
    let best = checkpoint::load(&out.join("best.safetensors"))?;
    let adapters = adapters_in(&best.tensors)?;
    let dir = out.join("adapter");
    save_adapter_tensors(&dir, lora, &adapters)?;
    note!(
        "wrote {} LoRA adapters to {}",
        adapters.len(),
        dir.display()
    );
    Ok(())
}

/// The pretrained model as loaded (`[init]`), before pruning and fine-tuning.
fn pretrained_profile(
    config: &TrainConfig,
    data: &RunData,
) -> Result<noether::train::ModelProfile, Box<dyn std::error::Error>> {
    let base = TrainConfig {
        lora: None,
        prune: None,
        distill: None,
        ..config.clone()
    };
    let init = base
        .init
        .as_ref()
        .ok_or("no [init] checkpoint to profile")?;
    let (_, varmap) = noether::train::build_model(&base, base.train.seed)?;
    let options = init.load_options()?;
    load_checkpoint(&init.from, &varmap, &options)?;
    let model = noether::train::inference_model(&base, &varmap)?;
    Ok(noether::train::profile(
        &model,
        &varmap,
        &data.test,
        base.data.n_max,
        base.train.eval_batch_size,
    )?)
}

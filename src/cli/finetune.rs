//! `noether finetune`: train from a pretrained checkpoint (any safetensors file, e.g. a
//! PyTorch state dict), with key remapping, a load report and frozen parameters.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clap::Args;
use noether::train::{train, RunData, RunOptions};
use noether_transfer::{load_checkpoint, LoadOptions, LoadReport, Remap};

use super::train::TrainArgs;

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
    /// Linear probing, then fine-tuning (LP-FT): only the head trains for the first
    /// third of the epochs (`optim.linear_probe_epochs` in the config overrides this).
    #[arg(long)]
    lp_ft: bool,
    #[command(flatten)]
    common: TrainArgs,
}

/// Runs `noether finetune`: prints the load report, then the test metrics like `train`;
/// the run directory also holds `load_report.json`.
pub fn run(args: &FinetuneArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = args.common.resolve()?;
    config.optim.freeze.extend(args.freeze.iter().cloned());
    if args.lp_ft && config.optim.linear_probe_epochs == 0 {
        config.optim.linear_probe_epochs = config.train.epochs.div_ceil(3);
    }
    config.validate()?;
    let remaps = args
        .remaps
        .iter()
        .map(|r| Remap::parse(r))
        .collect::<Result<Vec<_>, _>>()?;
    let options = LoadOptions {
        remaps,
        strip_module_prefix: true,
        strict: args.strict,
    };
    super::set_threads(config.train.threads);
    let data = RunData::load(&config)?;
    let out = args.common.out_dir(&config);
    let report: Arc<Mutex<Option<LoadReport>>> = Arc::default();
    let (from, sink) = (args.from.clone(), Arc::clone(&report));
    let init = Arc::new(move |varmap: &candle_nn::VarMap| {
        let r = load_checkpoint(&from, varmap, &options).map_err(|e| e.to_string())?;
        eprint!("{r}");
        *sink.lock().expect("report lock") = Some(r);
        Ok(())
    });
    let options = RunOptions {
        out: out.clone(),
        resume: args.common.resume,
        progress: !args.common.quiet,
        stop_after: None,
        init: Some(init),
    };
    let summary = train(&config, &data, &options)?.ok_or("run stopped early")?;
    if let Some(r) = report.lock().expect("report lock").as_ref() {
        std::fs::write(out.join("load_report.json"), r.to_json())?;
    }
    super::train::print_summary(&summary, &out);
    Ok(())
}

//! The before/after report of pruning and distillation (`compression.json`):
//! parameters, sparsity, test AUC and 1/eps_B(0.3), single-jet latency.

use std::path::Path;

use crate::cli::output::say;
use noether::data::JetSet;
use noether::train::{load_inference_model, single_jet_latency_ms, ModelProfile, RunSummary};

/// The profile of a finished run's best checkpoint: counts and metrics from `summary`
/// (measured on the best weights), the latency measured here.
fn after(
    out: &Path,
    summary: &RunSummary,
    test: &JetSet,
) -> Result<ModelProfile, Box<dyn std::error::Error>> {
    let (model, _, config) = load_inference_model(&out.join("best.safetensors"))?;
    Ok(ModelProfile {
        params: summary.params,
        nonzero_params: summary.nonzero_params,
        sparsity: 1.0 - summary.nonzero_params as f64 / summary.params.max(1) as f64,
        auc: summary.auc,
        rejection_at_0_3: summary.rejection_at_0_3,
        latency_ms: single_jet_latency_ms(&model, test, config.data.n_max)?,
    })
}

/// Writes `compression.json` (`before` may be absent) and prints one line per model.
///
/// # Errors
/// Checkpoint, model and I/O errors.
pub fn report(
    out: &Path,
    summary: &RunSummary,
    test: &JetSet,
    before: Option<&ModelProfile>,
) -> Result<(), Box<dyn std::error::Error>> {
    let after = after(out, summary, test)?;
    let json = serde_json::json!({ "before": before, "after": after });
    std::fs::write(
        out.join("compression.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    let line = |name: &str, p: &ModelProfile| {
        say!(
            "{name}: params={} nonzero={} sparsity={:.3} auc={:.4} rejection_at_0.3={:.1} latency_ms={:.2}",
            p.params, p.nonzero_params, p.sparsity, p.auc, p.rejection_at_0_3, p.latency_ms
        )
    };
    if let Some(b) = before {
        line("before", b)?;
    }
    line("after", &after)?;
    Ok(())
}

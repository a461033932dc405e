//! Loading a safetensors checkpoint into a model's [`VarMap`], tensor by tensor: keys are
//! remapped, float dtypes (F16, BF16, F32, F64) converted to the parameter's dtype,
//! shapes checked, and everything that did not fit reported ([`LoadReport`], like
//! burn-store's apply result). candle's own `VarMap::load` fails on the first missing key
//! and silently ignores extra ones; this loads what matches and says what did not.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use safetensors::tensor::Dtype;
use serde::Serialize;

use crate::error::{Result, TransferError};
use crate::remap::{remap_key, Remap};

/// How to load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Renaming rules applied in order to the checkpoint's keys.
    pub remaps: Vec<Remap>,
    /// Strip the prefixes wrappers add, `module.` (DistributedDataParallel) and then
    /// `mod.` (weaver-core's and Particle Transformer's model wrappers), each when every
    /// key has it.
    pub strip_module_prefix: bool,
    /// Fail when any model parameter is missing from the checkpoint.
    pub strict: bool,
    /// Model parameters the checkpoint need not hold (new LoRA adapters, a replaced
    /// head): loaded when present, otherwise listed as `new`, never as missing.
    pub optional: Vec<regex::Regex>,
    /// Checkpoint keys that are not model tensors (optimizer state): skipped without
    /// being reported as unexpected.
    pub ignore: Vec<regex::Regex>,
    /// Parameters that a checkpoint tensor differing in its first (output) dimension only
    /// leaves newly initialised rather than mismatched: the head, when the config's
    /// classes differ from the checkpoint's (a 2-class head on a 10-class JetClass model).
    /// A head tensor of another input width is a mismatch like any other.
    pub replace: Option<regex::Regex>,
    /// Classes of the checkpoint's head that become the rows of a [`Self::replace`]d head,
    /// in order, instead of new random rows: `[0, 8]` starts a QCD-vs-top tagger from a
    /// 10-class JetClass head exactly where the pretrained model stands (its two-class
    /// softmax is the zero-shot score p(top) / (p(top) + p(QCD))). One class per row of
    /// the parameter.
    pub head_classes: Option<Vec<usize>>,
}

impl LoadOptions {
    /// Also accept new LoRA adapters (`*.lora_A.weight`, `*.lora_B.weight`) that the
    /// checkpoint does not hold.
    #[must_use]
    pub fn allow_new_adapters(mut self) -> Self {
        self.optional
            .push(regex::Regex::new(r"\.lora_[AB]\.weight$").expect("a valid regex"));
        self
    }

    /// noether's own checkpoints: every parameter must be there with its shape
    /// (`strict`), optimizer state (`optimizer.*`) is skipped.
    pub fn exact() -> Self {
        Self {
            strict: true,
            ignore: vec![regex::Regex::new(r"^optimizer\.").expect("a valid regex")],
            ..Self::default()
        }
    }

    /// Lenient loading with the `module.` prefix recognised.
    pub fn lenient() -> Self {
        Self {
            strip_module_prefix: true,
            ..Self::default()
        }
    }
}

/// The prefixes model wrappers add to every key, stripped in this order.
const WRAPPER_PREFIXES: [&str; 2] = ["module.", "mod."];

/// A tensor whose shape does not match the parameter it maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// The parameter name (after remapping).
    pub name: String,
    /// The parameter's shape.
    pub expected: Vec<usize>,
    /// The checkpoint tensor's shape.
    pub found: Vec<usize>,
}

/// What a load did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    /// Parameters set from the checkpoint.
    pub applied: Vec<String>,
    /// Applied parameters whose dtype was converted: (name, checkpoint dtype).
    pub converted: Vec<(String, String)>,
    /// Model parameters without a checkpoint tensor (left as initialised).
    pub missing: Vec<String>,
    /// Optional parameters ([`LoadOptions::optional`]) the checkpoint does not hold
    /// (left as initialised, as intended).
    pub new: Vec<String>,
    /// Checkpoint tensors (remapped names) that match no parameter.
    pub unexpected: Vec<String>,
    /// PyTorch BatchNorm `num_batches_tracked` counters, not loaded: noether's BatchNorm
    /// uses a fixed momentum (0.1), and PyTorch reads the counter only without one.
    pub ignored: Vec<String>,
    /// Tensors whose shape differs from their parameter (not applied).
    pub mismatched: Vec<Mismatch>,
    /// Parameters of [`LoadOptions::replace`] whose checkpoint tensor has another shape:
    /// newly initialised (a new head), as intended.
    pub replaced: Vec<Mismatch>,
    /// Parameters of [`LoadOptions::replace`] set from the rows
    /// [`LoadOptions::head_classes`] of a checkpoint tensor with other classes (also in
    /// `applied`).
    pub selected: Vec<Mismatch>,
}

impl LoadReport {
    /// The report as pretty JSON (saved as `load_report.json` in run directories).
    ///
    /// # Panics
    /// Never: the report serialises.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serialises")
    }

    /// Whether every parameter was loaded and nothing was left over.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "load report: {} applied ({} converted), {} missing, {} unexpected, {} shape-mismatched",
            self.applied.len(),
            self.converted.len(),
            self.missing.len(),
            self.unexpected.len(),
            self.mismatched.len()
        )?;
        if !self.ignored.is_empty() {
            writeln!(
                f,
                "  {} ignored (BatchNorm num_batches_tracked counters)",
                self.ignored.len()
            )?;
        }
        for m in &self.replaced {
            writeln!(
                f,
                "  replaced    {}: a new head {:?} (the checkpoint's is {:?}: the config's classes differ)",
                m.name, m.expected, m.found
            )?;
        }
        for m in &self.selected {
            writeln!(
                f,
                "  selected    {}: {:?} from rows of the checkpoint's {:?} (init.head_classes)",
                m.name, m.expected, m.found
            )?;
        }
        if !self.new.is_empty() {
            writeln!(
                f,
                "  {} new (not in the checkpoint, as intended)",
                self.new.len()
            )?;
        }
        for name in &self.missing {
            writeln!(f, "  missing     {name}")?;
        }
        for name in &self.unexpected {
            writeln!(f, "  unexpected  {name}")?;
        }
        for m in &self.mismatched {
            writeln!(
                f,
                "  mismatched  {}: model {:?}, checkpoint {:?}",
                m.name, m.expected, m.found
            )?;
        }
        Ok(())
    }
}

/// A checkpoint tensor whose shape differs from its parameter's (`mismatch`): the tensor
/// to set instead (a head started from [`LoadOptions::head_classes`]), or `None` with
/// the tensor reported as a replaced head or a mismatch.
fn other_shape(
    tensor: &Tensor,
    mismatch: Mismatch,
    original: &str,
    path: &Path,
    options: &LoadOptions,
    report: &mut LoadReport,
) -> Result<Option<Tensor>> {
    // A head of other classes differs in its output dimension only; a head whose input
    // width differs sits on another backbone, which is a mismatch.
    let other_classes = mismatch.expected.len() == mismatch.found.len()
        && mismatch.expected.first() != mismatch.found.first()
        && mismatch.expected[1..] == mismatch.found[1..];
    let head = other_classes
        && options
            .replace
            .as_ref()
            .is_some_and(|r| r.is_match(&mismatch.name));
    match (head, &options.head_classes) {
        (true, Some(classes)) => {
            let rows = select_head_rows(tensor, classes, &mismatch, original, path)?;
            report.selected.push(mismatch);
            Ok(Some(rows))
        }
        (true, None) => {
            report.replaced.push(mismatch);
            Ok(None)
        }
        (false, _) => {
            report.mismatched.push(mismatch);
            Ok(None)
        }
    }
}

/// The rows `classes` of a checkpoint head tensor (`[classes, ...]`), as the new head
/// parameter described by `mismatch` ([`LoadOptions::head_classes`]).
fn select_head_rows(
    tensor: &Tensor,
    classes: &[usize],
    mismatch: &Mismatch,
    original: &str,
    path: &Path,
) -> Result<Tensor> {
    let refuse = |reason: String| TransferError::BadHeadClasses {
        path: path.to_owned(),
        tensor: original.to_owned(),
        classes: classes.to_vec(),
        reason,
    };
    let (rows, available) = (mismatch.expected[0], mismatch.found[0]);
    if classes.len() != rows {
        return Err(refuse(format!(
            "{} class(es) given for a head of {rows} rows (the config's classes)",
            classes.len()
        )));
    }
    if let Some(c) = classes.iter().find(|&&c| c >= available) {
        return Err(refuse(format!(
            "class {c} is out of range: the checkpoint's head has {available} classes (0..{available})"
        )));
    }
    let index: Vec<u32> = classes.iter().map(|&c| c as u32).collect();
    Tensor::from_vec(index, rows, tensor.device())
        .and_then(|index| tensor.index_select(&index, 0))
        .map_err(|e| TransferError::Candle {
            context: format!("{}: tensor '{original}'", path.display()),
            source: e,
        })
}

/// Refuses a tensor holding NaN or infinity: evaluated, such weights give plausible
/// numbers (a ReLU maps NaN to 0) or hang iterative diagnostics, never a clear failure.
fn check_finite(tensor: &Tensor, name: &str, path: &Path) -> Result<()> {
    let values = tensor
        .flatten_all()
        .and_then(|t| t.to_dtype(DType::F64))
        .and_then(|t| t.to_vec1::<f64>())
        .map_err(|e| TransferError::Candle {
            context: format!("{}: tensor '{name}'", path.display()),
            source: e,
        })?;
    let mut bad = values.iter().enumerate().filter(|(_, v)| !v.is_finite());
    if let Some((first, _)) = bad.next() {
        return Err(TransferError::NonFinite {
            path: path.to_owned(),
            tensor: name.to_owned(),
            count: 1 + bad.count(),
            first,
        });
    }
    Ok(())
}

/// The candle dtype of a float safetensors dtype (`None` for integers, bools, ...).
fn float_dtype(dtype: Dtype) -> Option<DType> {
    match dtype {
        Dtype::F16 => Some(DType::F16),
        Dtype::BF16 => Some(DType::BF16),
        Dtype::F32 => Some(DType::F32),
        Dtype::F64 => Some(DType::F64),
        _ => None,
    }
}

/// Loads the checkpoint at `path`, safetensors or a PyTorch `.pt` file (recognised by its
/// zip magic, read by [`crate::read_torch`]), into the variables of `varmap` (converted to
/// each variable's dtype, moved to its device).
///
/// # Errors
/// [`TransferError::Io`], [`TransferError::Safetensors`] for malformed files (truncated,
/// header sizes beyond the file), the errors of [`crate::read_torch`] for `.pt` files, [`TransferError::UnsupportedDtype`] for a non-float
/// tensor that maps to a parameter, [`TransferError::NonFinite`] for one holding NaN or
/// infinity, [`TransferError::Missing`] under `strict`.
pub fn load_checkpoint(path: &Path, varmap: &VarMap, options: &LoadOptions) -> Result<LoadReport> {
    let bytes = std::fs::read(path).map_err(|source| TransferError::Io {
        path: path.to_owned(),
        source,
    })?;
    if bytes.starts_with(crate::torch::ZIP_MAGIC) || crate::torch::is_legacy(&bytes) {
        let checkpoint = crate::torch::read_torch_bytes(&bytes, path)?;
        return apply_tensors(&checkpoint.by_name(), path, varmap, options);
    }
    let file =
        safetensors::SafeTensors::deserialize(&bytes).map_err(|e| TransferError::Safetensors {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    let fetch = |original: &str| -> Result<(Tensor, String)> {
        let view = file
            .tensor(original)
            .map_err(|e| TransferError::Safetensors {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        let Some(dtype) = float_dtype(view.dtype()) else {
            return Err(TransferError::UnsupportedDtype {
                path: path.to_owned(),
                tensor: original.to_owned(),
                dtype: format!("{:?}", view.dtype()),
            });
        };
        let tensor = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), &Device::Cpu)
            .map_err(|e| TransferError::Candle {
                context: format!("{}: tensor '{original}'", path.display()),
                source: e,
            })?;
        Ok((tensor, format!("{:?}", view.dtype())))
    };
    apply(&file.names(), fetch, path, varmap, options)
}

/// Loads tensors already in memory (read from `source`, which errors name) into the
/// variables of `varmap`, with the same matching, conversion and report as
/// [`load_checkpoint`]: the one loader behind fine-tuning, resuming and evaluating.
///
/// # Errors
/// [`TransferError::UnsupportedDtype`] for a non-float tensor that maps to a parameter,
/// [`TransferError::NonFinite`] for one holding NaN or infinity,
/// [`TransferError::Missing`] under `strict`.
pub fn apply_tensors(
    tensors: &HashMap<String, Tensor>,
    source: &Path,
    varmap: &VarMap,
    options: &LoadOptions,
) -> Result<LoadReport> {
    let names: Vec<&String> = tensors.keys().collect();
    let fetch = |original: &str| -> Result<(Tensor, String)> {
        let tensor = &tensors[original];
        if !tensor.dtype().is_float() {
            return Err(TransferError::UnsupportedDtype {
                path: source.to_owned(),
                tensor: original.to_owned(),
                dtype: format!("{:?}", tensor.dtype()),
            });
        }
        Ok((tensor.clone(), format!("{:?}", tensor.dtype())))
    };
    apply(&names, fetch, source, varmap, options)
}

/// Matches the checkpoint's `names` (remapped) to the variables of `varmap`, setting
/// each from `fetch` (the tensor and its stored dtype's name) and reporting the rest.
fn apply<S: AsRef<str>>(
    names: &[S],
    fetch: impl Fn(&str) -> Result<(Tensor, String)>,
    path: &Path,
    varmap: &VarMap,
    options: &LoadOptions,
) -> Result<LoadReport> {
    let mut rules = Vec::new();
    if options.strip_module_prefix {
        let mut stripped: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
        for prefix in WRAPPER_PREFIXES {
            if !stripped.is_empty() && stripped.iter().all(|n| n.starts_with(prefix)) {
                rules.push(Remap::strip_prefix(prefix));
                stripped = stripped.iter().map(|n| &n[prefix.len()..]).collect();
            }
        }
    }
    rules.extend(options.remaps.iter().cloned());
    let vars = varmap.data().lock().expect("VarMap lock poisoned");
    let mut report = LoadReport::default();
    let mut seen = BTreeSet::new();
    let mut sorted: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    sorted.sort_unstable();
    for original in sorted {
        if options.ignore.iter().any(|r| r.is_match(original)) {
            continue;
        }
        let name = remap_key(&rules, original);
        let Some(var) = vars.get(&name) else {
            if name.rsplit('.').next() == Some("num_batches_tracked") {
                report.ignored.push(name);
            } else {
                report.unexpected.push(name);
            }
            continue;
        };
        let (mut tensor, stored) = fetch(original)?;
        if tensor.dims() != var.dims() {
            let mismatch = Mismatch {
                expected: var.dims().to_vec(),
                found: tensor.dims().to_vec(),
                name: name.clone(),
            };
            match other_shape(&tensor, mismatch, original, path, options, &mut report)? {
                Some(head) => tensor = head,
                None => continue,
            }
        }
        let candle = |e: candle_core::Error| TransferError::Candle {
            context: format!("{}: tensor '{original}'", path.display()),
            source: e,
        };
        check_finite(&tensor, original, path)?;
        let converted = tensor.dtype() != var.dtype();
        let tensor = tensor
            .to_dtype(var.dtype())
            .and_then(|t| t.to_device(var.device()))
            .map_err(candle)?;
        var.set(&tensor).map_err(candle)?;
        if converted {
            report.converted.push((name.clone(), stored));
        }
        seen.insert(name.clone());
        report.applied.push(name);
    }
    let mut missing: Vec<String> = vars
        .keys()
        .filter(|k| {
            !seen.contains(*k)
                && !report
                    .mismatched
                    .iter()
                    .chain(&report.replaced)
                    .any(|m| &m.name == *k)
        })
        .cloned()
        .collect();
    missing.sort();
    let (new, missing): (Vec<String>, Vec<String>) = missing
        .into_iter()
        .partition(|k| options.optional.iter().any(|r| r.is_match(k)));
    report.new = new;
    report.missing = missing;
    if options.strict && !report.missing.is_empty() {
        return Err(TransferError::Missing {
            path: path.to_owned(),
            missing: report.missing,
        });
    }
    Ok(report)
}

//! weaver-core data configs (the YAML files pretrained weaver models come with) and the
//! model inputs they define, built from noether's jets.
//!
//! A config names `new_variables` (formulas over per-particle and per-jet variables,
//! [`expr`]), `inputs` (groups such as `pf_points`, `pf_features`, `pf_mask`: a length,
//! a padding mode and variables with their standardisation) and `labels`. noether reads
//! the keys weaver-core defines, computes the base variables from the constituents'
//! four-momenta ([`BASE_VARIABLES`]; the jet is the sum of its constituents) and refuses
//! what it cannot compute, naming it. Standardisation is weaver's manual method:
//! `clip((x - subtract) * multiply, clip_min, clip_max)` for a variable with a subtract
//! value, the raw value otherwise; NaN becomes 0; `wrap` padding repeats the particle
//! list, `constant` padding fills `pad_value`.
//!
//! Not used by noether, so not evaluated: `observers` and `monitor_variables` (weaver
//! writes them to prediction files) and the names in `labels` (the truth is the data
//! file's `is_signal`; only their number is checked against the model's classes).

pub mod expr;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use noether_kinematics::FourMomentum;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::model::PaddedJets;
use expr::{Column, Expr};

/// The variables noether computes from a jet's constituents: per particle, then per jet.
pub const BASE_VARIABLES: [&str; 16] = [
    "part_px",
    "part_py",
    "part_pz",
    "part_energy",
    "part_pt",
    "part_eta",
    "part_phi",
    "part_deta",
    "part_dphi",
    "part_mass",
    "jet_pt",
    "jet_eta",
    "jet_phi",
    "jet_energy",
    "jet_mass",
    "jet_nparticles",
];

/// The embedded default: the config of the JetClass ParticleNet checkpoint.
const DEFAULT_CONFIG: &str = include_str!("jetclass_kin.yaml");

/// How an input group fills the positions after a jet's last particle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PadMode {
    /// The particle list repeated (weaver's `wrap`).
    Wrap,
    /// `pad_value`.
    Constant,
}

/// One variable of an input group with its standardisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VarSpec {
    /// The variable.
    pub name: String,
    /// Subtracted before scaling; `None`: the raw value, untransformed and unclipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtract: Option<f64>,
    /// The scale (weaver's `multiply_by`).
    pub multiply: f64,
    /// Lower clip of the standardised value.
    pub clip_min: f64,
    /// Upper clip of the standardised value.
    pub clip_max: f64,
    /// The value of padded positions under constant padding.
    pub pad_value: f64,
}

impl VarSpec {
    /// The standardised value of `x`, NaN mapped to 0 (as weaver does).
    pub fn transform(&self, x: f64) -> f64 {
        let v = match self.subtract {
            Some(centre) => ((x - centre) * self.multiply).clamp(self.clip_min, self.clip_max),
            None => x,
        };
        if v.is_nan() {
            0.0
        } else {
            v
        }
    }
}

/// An input group: `[jets, length, vars]` (channels last in noether).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputGroup {
    /// Particles per jet (truncated or padded to it).
    pub length: usize,
    /// Padding.
    pub pad_mode: PadMode,
    /// The variables, in order.
    pub vars: Vec<VarSpec>,
}

/// The inputs of a particle-cloud model as a weaver data config defines them: what a
/// ParticleNet config carries, so that a checkpoint knows how its inputs are built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeaverInputs {
    /// The `new_variables` the groups need, in the config's order: `[name, formula]`.
    pub variables: Vec<[String; 2]>,
    /// `pf_points`: the coordinates of the first kNN graph.
    pub points: InputGroup,
    /// `pf_features`.
    pub features: InputGroup,
    /// `pf_mask`.
    pub mask: InputGroup,
}

impl Default for WeaverInputs {
    /// The inputs of the JetClass ParticleNet (`JetClass_kin.yaml`).
    fn default() -> Self {
        DataConfig::parse(DEFAULT_CONFIG, Path::new("<built-in JetClass_kin.yaml>"))
            .expect("the embedded data config parses")
            .inputs
    }
}

/// A weaver data config as noether uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct DataConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// The model inputs.
    pub inputs: WeaverInputs,
    /// The class names of `labels.value`, in order.
    pub labels: Vec<String>,
}

/// The YAML as weaver-core defines its keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    selection: Option<String>,
    #[serde(default)]
    test_time_selection: Option<String>,
    #[serde(default)]
    new_variables: Option<IndexMap<String, String>>,
    #[serde(default)]
    preprocess: Option<RawPreprocess>,
    inputs: IndexMap<String, RawGroup>,
    labels: RawLabels,
    /// Written by weaver to prediction files; not evaluated here.
    #[serde(default, rename = "observers")]
    _observers: Option<serde::de::IgnoredAny>,
    /// As `observers`.
    #[serde(default, rename = "monitor_variables")]
    _monitor_variables: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    weights: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreprocess {
    method: String,
    /// The fraction of events auto standardisation samples: irrelevant to manual.
    #[serde(default, rename = "data_fraction")]
    _data_fraction: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    params: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    length: usize,
    #[serde(default)]
    pad_mode: Option<String>,
    vars: Vec<RawVar>,
}

/// `name` or `[name, subtract, multiply, clip_min, clip_max, pad_value]` (trailing
/// entries optional, `null` for the default).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawVar {
    Name(String),
    List(Vec<Option<RawScalar>>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawScalar {
    Number(f64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabels {
    #[serde(rename = "type")]
    kind: String,
    value: LabelValue,
}

/// `labels.value`: a list of names for `simple`, a map of formulas for `custom` (not
/// read: refused by name).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum LabelValue {
    List(Vec<String>),
    Map(serde::de::IgnoredAny),
}

impl DataConfig {
    /// Reads the data config at `path`.
    ///
    /// # Errors
    /// [`ModelError::DataConfig`] naming the file and the key: unreadable, not YAML,
    /// unknown keys, a selection or weights (not supported), auto standardisation,
    /// formulas noether cannot evaluate, variables it cannot compute, a missing
    /// `pf_points` / `pf_features` / `pf_mask` group.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::DataConfig {
            path: path.to_owned(),
            key: "(file)".into(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// [`DataConfig::load`] of YAML text (`path` names it in errors).
    ///
    /// # Errors
    /// As [`DataConfig::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let bad = |key: &str, reason: String| ModelError::DataConfig {
            path: path.to_owned(),
            key: key.to_owned(),
            reason,
        };
        let raw: RawConfig =
            serde_saphyr::from_str(text).map_err(|e| bad("(document)", e.to_string()))?;
        for (key, value) in [
            ("selection", &raw.selection),
            ("test_time_selection", &raw.test_time_selection),
        ] {
            if value.as_deref().is_some_and(|s| !s.trim().is_empty()) {
                return Err(bad(
                    key,
                    "selections are not evaluated by noether; select the jets of the data file instead"
                        .into(),
                ));
            }
        }
        if raw.weights.is_some() {
            return Err(bad("weights", "reweighting is not supported".into()));
        }
        if let Some(pre) = &raw.preprocess {
            if !pre.method.eq_ignore_ascii_case("manual") || pre.params.is_some() {
                return Err(bad(
                    "preprocess.method",
                    format!(
                        "'{}': only manual standardisation (subtract and multiply given per \
                         variable) is read",
                        pre.method
                    ),
                ));
            }
        }
        let formulas = parse_formulas(raw.new_variables.unwrap_or_default(), &bad)?;
        let mut groups = IndexMap::new();
        for (name, group) in &raw.inputs {
            groups.insert(name.clone(), input_group(name, group, &bad)?);
        }
        let mut needed = Vec::new();
        for (group, spec) in &groups {
            for (k, var) in spec.vars.iter().enumerate() {
                let key = format!("inputs.{group}.vars[{k}]");
                require(&var.name, &formulas, &mut needed, &key, 0, &bad)?;
            }
        }
        let take = |name: &str| {
            groups.get(name).cloned().ok_or_else(|| {
                bad(
                    &format!("inputs.{name}"),
                    "missing: ParticleNet reads pf_points, pf_features and pf_mask".into(),
                )
            })
        };
        let inputs = WeaverInputs {
            variables: formulas
                .iter()
                .filter(|(name, _)| needed.contains(name))
                .map(|(name, (text, _))| [name.clone(), text.clone()])
                .collect(),
            points: take("pf_points")?,
            features: take("pf_features")?,
            mask: take("pf_mask")?,
        };
        check_group_shapes(&inputs, &bad)?;
        let labels = match (raw.labels.kind.as_str(), raw.labels.value) {
            ("simple", LabelValue::List(names)) if !names.is_empty() => names,
            (kind, _) => {
                return Err(bad(
                    "labels",
                    format!("type '{kind}': only `simple` labels (a list of class names) are read"),
                ))
            }
        };
        Ok(Self {
            path: path.to_owned(),
            inputs,
            labels,
        })
    }
}

type Formulas = IndexMap<String, (String, Expr)>;

fn parse_formulas(
    raw: IndexMap<String, String>,
    bad: &dyn Fn(&str, String) -> ModelError,
) -> Result<Formulas> {
    raw.into_iter()
        .map(|(name, text)| {
            let parsed = expr::parse(&text)
                .map_err(|e| bad(&format!("new_variables.{name}"), format!("'{text}': {e}")))?;
            Ok((name, (text, parsed)))
        })
        .collect()
}

/// Records `name` and the new variables it depends on in `needed`, refusing names
/// neither computed by noether nor defined by the config.
fn require(
    name: &str,
    formulas: &Formulas,
    needed: &mut Vec<String>,
    key: &str,
    depth: usize,
    bad: &dyn Fn(&str, String) -> ModelError,
) -> Result<()> {
    if depth > formulas.len() {
        return Err(bad(key, format!("'{name}' is defined in terms of itself")));
    }
    if let Some((_, parsed)) = formulas.get(name) {
        for dep in parsed.names() {
            require(
                dep,
                formulas,
                needed,
                &format!("new_variables.{name}"),
                depth + 1,
                bad,
            )?;
        }
        if !needed.iter().any(|n| n == name) {
            needed.push(name.to_owned());
        }
        Ok(())
    } else if BASE_VARIABLES.contains(&name) {
        Ok(())
    } else {
        Err(bad(
            key,
            format!(
                "the variable '{name}' is neither defined in new_variables nor one noether \
                 computes from four-momenta ({})",
                BASE_VARIABLES.join(", ")
            ),
        ))
    }
}

fn input_group(
    name: &str,
    raw: &RawGroup,
    bad: &dyn Fn(&str, String) -> ModelError,
) -> Result<InputGroup> {
    let pad_mode = match raw
        .pad_mode
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("constant") => PadMode::Constant,
        Some("wrap") => PadMode::Wrap,
        Some(other) => {
            return Err(bad(
                &format!("inputs.{name}.pad_mode"),
                format!("'{other}': wrap or constant"),
            ))
        }
    };
    if name.ends_with("_mask") && pad_mode != PadMode::Constant {
        return Err(bad(
            &format!("inputs.{name}.pad_mode"),
            "a mask input must use constant padding (as weaver requires)".into(),
        ));
    }
    if !(1..=crate::model::MAX_WIDTH).contains(&raw.length) {
        return Err(bad(
            &format!("inputs.{name}.length"),
            format!(
                "{} must be between 1 and {}",
                raw.length,
                crate::model::MAX_WIDTH
            ),
        ));
    }
    let vars = raw
        .vars
        .iter()
        .enumerate()
        .map(|(k, v)| {
            var_spec(v).map_err(|reason| bad(&format!("inputs.{name}.vars[{k}]"), reason))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(InputGroup {
        length: raw.length,
        pad_mode,
        vars,
    })
}

fn var_spec(raw: &RawVar) -> std::result::Result<VarSpec, String> {
    let (name, rest): (String, &[Option<RawScalar>]) = match raw {
        RawVar::Name(name) => (name.clone(), &[]),
        RawVar::List(items) => match items.split_first() {
            Some((Some(RawScalar::Text(name)), rest)) => (name.clone(), rest),
            _ => return Err("the first entry must be the variable's name".into()),
        },
    };
    if rest.len() > 5 {
        return Err(format!(
            "{} entries: [name, subtract, multiply, clip_min, clip_max, pad_value] at most",
            rest.len() + 1
        ));
    }
    let number = |k: usize, default: f64| -> std::result::Result<f64, String> {
        match rest.get(k) {
            None | Some(None) => Ok(default),
            Some(Some(RawScalar::Number(x))) if x.is_finite() => Ok(*x),
            Some(Some(other)) => Err(format!(
                "entry {} must be a finite number, not {other:?}",
                k + 1
            )),
        }
    };
    let subtract = match rest.first() {
        None | Some(None) => None,
        Some(_) => Some(number(0, 0.0)?),
    };
    let spec = VarSpec {
        name,
        subtract,
        multiply: number(1, 1.0)?,
        clip_min: number(2, -5.0)?,
        clip_max: number(3, 5.0)?,
        pad_value: number(4, 0.0)?,
    };
    if spec.clip_min > spec.clip_max {
        return Err(format!(
            "clip_min {} is above clip_max {}",
            spec.clip_min, spec.clip_max
        ));
    }
    Ok(spec)
}

/// ParticleNet's groups: 2-D points, at least one feature, one mask variable, one
/// length for all.
fn check_group_shapes(
    inputs: &WeaverInputs,
    bad: &dyn Fn(&str, String) -> ModelError,
) -> Result<()> {
    if inputs.points.vars.len() != 2 {
        return Err(bad(
            "inputs.pf_points.vars",
            format!(
                "{} variables; the kNN coordinates are 2 (deta, dphi)",
                inputs.points.vars.len()
            ),
        ));
    }
    if inputs.features.vars.is_empty() {
        return Err(bad("inputs.pf_features.vars", "no variables".into()));
    }
    if inputs.mask.vars.len() != 1 {
        return Err(bad(
            "inputs.pf_mask.vars",
            format!("{} variables; a mask is one", inputs.mask.vars.len()),
        ));
    }
    let length = inputs.points.length;
    for (name, group) in [("pf_features", &inputs.features), ("pf_mask", &inputs.mask)] {
        if group.length != length {
            return Err(bad(
                &format!("inputs.{name}.length"),
                format!("{} differs from pf_points' {length}", group.length),
            ));
        }
    }
    Ok(())
}

/// The arrays of [`WeaverInputs`] for a set of jets, channels last, f32.
#[derive(Debug, Clone, PartialEq)]
pub struct WeaverArrays {
    /// `[jets, length, 2]`.
    pub points: Vec<f32>,
    /// `[jets, length, features]`.
    pub features: Vec<f32>,
    /// `[jets, length]`: 1 for the particles kept.
    pub mask: Vec<f32>,
    /// Jets.
    pub jets: usize,
    /// Positions per jet.
    pub length: usize,
}

impl WeaverInputs {
    /// Variables per feature position.
    pub fn feature_dims(&self) -> usize {
        self.features.vars.len()
    }

    /// Positions per jet.
    pub fn length(&self) -> usize {
        self.points.length
    }

    /// Builds the arrays for `jets` (constituents after the beams; the first `length`
    /// real ones are kept), in f64 and cast once.
    ///
    /// # Errors
    /// Never for inputs that passed [`PaddedJets::check`]; kept fallible for the
    /// formulas.
    pub fn build(&self, jets: &PaddedJets) -> Result<WeaverArrays> {
        let length = self.length();
        let features = self.feature_dims();
        let mut out = WeaverArrays {
            points: vec![0.0; jets.jets * length * 2],
            features: vec![0.0; jets.jets * length * features],
            mask: vec![0.0; jets.jets * length],
            jets: jets.jets,
            length,
        };
        let parsed: Vec<(String, Expr)> = self
            .variables
            .iter()
            .map(|[name, text]| {
                expr::parse(text)
                    .map(|e| (name.clone(), e))
                    .map_err(|e| ModelError::DataConfig {
                        path: PathBuf::from("<model config>"),
                        key: format!("new_variables.{name}"),
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<_>>()?;
        for b in 0..jets.jets {
            let mut particles: Vec<FourMomentum> = crate::jet_particles(jets, b)
                .into_iter()
                .map(|(_, p)| p)
                .collect();
            particles.truncate(length);
            let columns = JetColumns::new(&particles, &parsed);
            let rows = particles.len();
            fill(
                &self.points,
                &columns,
                rows,
                &mut out.points[b * length * 2..(b + 1) * length * 2],
            );
            let span = b * length * features..(b + 1) * length * features;
            fill(&self.features, &columns, rows, &mut out.features[span]);
            fill(
                &self.mask,
                &columns,
                rows,
                &mut out.mask[b * length..(b + 1) * length],
            );
        }
        Ok(out)
    }
}

/// Writes `group` for one jet of `rows` particles into `out` (`[length, vars]`).
fn fill(group: &InputGroup, columns: &JetColumns, rows: usize, out: &mut [f32]) {
    let width = group.vars.len();
    for (v, spec) in group.vars.iter().enumerate() {
        let values = columns.particles(&spec.name, rows);
        for j in 0..group.length {
            let value = if j < rows {
                spec.transform(values[j])
            } else {
                match group.pad_mode {
                    PadMode::Wrap if rows > 0 => spec.transform(values[j % rows]),
                    PadMode::Wrap => 0.0,
                    PadMode::Constant => spec.pad_value,
                }
            };
            out[j * width + v] = value as f32;
        }
    }
}

/// Every variable of one jet: the base ones, then the config's formulas in order.
struct JetColumns {
    columns: Vec<(String, Column)>,
}

impl JetColumns {
    fn new(particles: &[FourMomentum], formulas: &[(String, Expr)]) -> Self {
        let jet = particles
            .iter()
            .fold(FourMomentum::new_unchecked(0.0, 0.0, 0.0, 0.0), |s, p| {
                s + *p
            });
        let (jet_eta, jet_phi) = (jet.eta(), jet.phi());
        let per =
            |f: &dyn Fn(&FourMomentum) -> f64| Column::Particles(particles.iter().map(f).collect());
        let mut columns = vec![
            ("part_px".to_owned(), per(&|p| p.px())),
            ("part_py".to_owned(), per(&|p| p.py())),
            ("part_pz".to_owned(), per(&|p| p.pz())),
            ("part_energy".to_owned(), per(&|p| p.e())),
            ("part_pt".to_owned(), per(&|p| p.pt())),
            ("part_eta".to_owned(), per(&|p| p.eta())),
            ("part_phi".to_owned(), per(&|p| p.phi())),
            // weaver's part_deta: signed along the jet's eta, so that forward and
            // backward jets look alike.
            (
                "part_deta".to_owned(),
                per(&|p| (p.eta() - jet_eta) * if jet_eta < 0.0 { -1.0 } else { 1.0 }),
            ),
            (
                "part_dphi".to_owned(),
                per(&|p| noether_kinematics::delta_phi(p.phi(), jet_phi)),
            ),
            ("part_mass".to_owned(), per(&|p| p.mass2().max(0.0).sqrt())),
            ("jet_pt".to_owned(), Column::Jet(jet.pt())),
            ("jet_eta".to_owned(), Column::Jet(jet_eta)),
            ("jet_phi".to_owned(), Column::Jet(jet_phi)),
            ("jet_energy".to_owned(), Column::Jet(jet.e())),
            (
                "jet_mass".to_owned(),
                Column::Jet(jet.mass2().max(0.0).sqrt()),
            ),
            (
                "jet_nparticles".to_owned(),
                Column::Jet(particles.len() as f64),
            ),
        ];
        for (name, formula) in formulas {
            let value = {
                let lookup = |n: &str| {
                    columns
                        .iter()
                        .rev()
                        .find(|(c, _)| c == n)
                        .map(|(_, v)| v.clone())
                };
                formula.eval(&lookup)
            };
            columns.push((name.clone(), value));
        }
        Self { columns }
    }

    /// The per-particle values of `name` (a per-jet variable repeated).
    fn particles(&self, name: &str, rows: usize) -> Vec<f64> {
        match self.columns.iter().rev().find(|(c, _)| c == name) {
            Some((_, Column::Particles(v))) => v.clone(),
            Some((_, Column::Jet(x))) => vec![*x; rows],
            None => vec![f64::NAN; rows],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_jetclass_config_parses_as_weaver_reads_it() {
        let inputs = WeaverInputs::default();
        assert_eq!(inputs.length(), 128);
        assert_eq!(inputs.feature_dims(), 7);
        assert_eq!(inputs.points.pad_mode, PadMode::Wrap);
        assert_eq!(inputs.mask.pad_mode, PadMode::Constant);
        let pt_log = &inputs.features.vars[0];
        assert_eq!(
            (
                pt_log.name.as_str(),
                pt_log.subtract,
                pt_log.multiply,
                pt_log.clip_min,
                pt_log.clip_max
            ),
            ("part_pt_log", Some(1.7), 0.7, -5.0, 5.0)
        );
        assert_eq!(inputs.features.vars[5].subtract, None);
        let names: Vec<&str> = inputs.variables.iter().map(|[n, _]| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "part_mask",
                "part_pt",
                "part_pt_log",
                "part_e_log",
                "part_logptrel",
                "part_logerel",
                "part_deltaR"
            ]
        );
    }

    fn refusal(yaml: &str) -> String {
        DataConfig::parse(yaml, Path::new("t.yaml"))
            .unwrap_err()
            .to_string()
    }

    const GROUPS: &str = "inputs:\n  pf_points:\n    length: 8\n    vars: [[part_deta, null], [part_dphi, null]]\n  pf_features:\n    length: 8\n    vars: [part_pt]\n  pf_mask:\n    length: 8\n    vars: [[part_mask, null]]\nlabels:\n  type: simple\n  value: [a, b]\n";

    #[test]
    fn unknown_keys_variables_and_functions_are_named() {
        let ok = format!("new_variables:\n  part_mask: ak.ones_like(part_pt)\n{GROUPS}");
        DataConfig::parse(&ok, Path::new("t.yaml")).unwrap();
        let message = refusal(&format!(
            "new_variables:\n  part_mask: ak.ones_like(part_pt)\nfoo: 1\n{GROUPS}"
        ));
        assert!(
            message.contains("t.yaml") && message.contains("foo"),
            "{message}"
        );
        let message = refusal(&format!(
            "new_variables:\n  part_mask: ak.ones_like(part_d0val)\n{GROUPS}"
        ));
        assert!(
            message.contains("part_d0val") && message.contains("new_variables.part_mask"),
            "{message}"
        );
        let message = refusal(&format!(
            "new_variables:\n  part_mask: np.erf(part_pt)\n{GROUPS}"
        ));
        assert!(message.contains("np.erf"), "{message}");
        let message = refusal(GROUPS);
        assert!(
            message.contains("part_mask") && message.contains("inputs.pf_mask.vars[0]"),
            "{message}"
        );
        let message = refusal(&format!("selection: (jet_pt > 500)\nnew_variables:\n  part_mask: ak.ones_like(part_pt)\n{GROUPS}"));
        assert!(message.contains("'selection'"), "{message}");
    }

    #[test]
    fn standardisation_clips_and_maps_nan_to_zero() {
        let spec = VarSpec {
            name: "x".into(),
            subtract: Some(1.0),
            multiply: 2.0,
            clip_min: -5.0,
            clip_max: 5.0,
            pad_value: 0.0,
        };
        assert_eq!(spec.transform(2.0), 2.0);
        assert_eq!(spec.transform(100.0), 5.0);
        assert_eq!(spec.transform(f64::NEG_INFINITY), -5.0);
        assert_eq!(spec.transform(f64::NAN), 0.0);
        let raw = VarSpec {
            subtract: None,
            ..spec
        };
        assert_eq!(raw.transform(100.0), 100.0);
    }
}

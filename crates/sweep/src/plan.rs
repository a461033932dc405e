//! The sweep file and its plan: a base config (or a list of configs, as an axis), data
//! files, fixed overrides by dotted key, and axes whose Cartesian product (times the
//! rows of the zipped lists) are the trials. Every trial's config is resolved and
//! validated here, so a bad value fails at `plan`, naming the trial and the key.
//!
//! ```toml
//! base = "configs/pfn-cpu.toml"   # or configs = ["a.toml", "b.toml"], an axis
//! data = "data/train.h5"          # data.train of every trial (relative: to this file)
//! test_data = "data/test.h5"      # data.test (val_data: data.val)
//! [set]                           # fixed overrides by dotted config key
//! "train.epochs" = 1
//! [axes]                          # the Cartesian product of these
//! "data.train_jets" = [200, 400]
//! "train.seed" = [0, 1]
//! [zip]                           # lists that advance together (equal lengths)
//! "optim.lr" = [1e-3, 3e-3]
//! "schedule.warmup_epochs" = [0.5, 1.0]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{io, Result, SweepError};
use crate::manifest::{fnv1a, Trial};

/// A sweep file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    base: Option<PathBuf>,
    #[serde(default)]
    configs: Vec<PathBuf>,
    data: Option<PathBuf>,
    val_data: Option<PathBuf>,
    test_data: Option<PathBuf>,
    #[serde(default)]
    set: toml::Table,
    #[serde(default)]
    axes: toml::Table,
    #[serde(default)]
    zip: toml::Table,
}

/// The varied key of the `configs` axis in a trial's settings.
pub const CONFIG_AXIS: &str = "config";

/// Sets `key` (dotted: `train.epochs`) in `table`, creating intermediate tables.
fn set_dotted(
    table: &mut toml::Table,
    key: &str,
    value: toml::Value,
) -> std::result::Result<(), String> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let leaf = parts
        .pop()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| format!("'{key}' is not a dotted key"))?;
    let mut here = table;
    for part in parts {
        let next = here
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        here = next
            .as_table_mut()
            .ok_or_else(|| format!("'{key}': '{part}' is not a table in the config"))?;
    }
    here.insert(leaf.to_owned(), value);
    Ok(())
}

/// The most trials a sweep may have (a Slurm array of 100,000 tasks is already far past
/// most clusters' `MaxArraySize`): counted before the product is built, so that ten axes
/// of ten values are named instead of filling memory.
pub const MAX_TRIALS: u64 = 100_000;

/// The number of trials the product would have, saturating.
fn trial_count(configs: &[PathBuf], axes: &toml::Table, zip: &toml::Table) -> u64 {
    let len = |v: &toml::Value| v.as_array().map_or(1, |a| a.len().max(1) as u64);
    let zipped = zip.values().map(len).max().unwrap_or(1);
    axes.values().map(len).fold(
        (configs.len().max(1) as u64).saturating_mul(zipped),
        u64::saturating_mul,
    )
}

/// The assignments of every trial: the product of `configs` (outermost), the axes (in key
/// order, the last varying fastest) and the zipped rows.
fn assignments(
    configs: &[PathBuf],
    axes: &toml::Table,
    zip: &toml::Table,
) -> std::result::Result<Vec<BTreeMap<String, toml::Value>>, String> {
    let count = trial_count(configs, axes, zip);
    if count > MAX_TRIALS {
        return Err(format!(
            "the sweep would have {count} trials, more than {MAX_TRIALS}: split it into several sweeps"
        ));
    }
    let mut out: Vec<BTreeMap<String, toml::Value>> = vec![BTreeMap::new()];
    if !configs.is_empty() {
        out = configs
            .iter()
            .map(|c| {
                let mut m = BTreeMap::new();
                m.insert(
                    CONFIG_AXIS.to_owned(),
                    toml::Value::String(c.to_string_lossy().into_owned()),
                );
                m
            })
            .collect();
    }
    for (key, values) in axes {
        let values = values
            .as_array()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("axes.\"{key}\" must be a non-empty list"))?;
        out = out
            .iter()
            .flat_map(|m| {
                values.iter().map(move |v| {
                    let mut m = m.clone();
                    m.insert(key.clone(), v.clone());
                    m
                })
            })
            .collect();
    }
    if !zip.is_empty() {
        let mut rows: Option<usize> = None;
        for (key, values) in zip {
            let n = values
                .as_array()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("zip.\"{key}\" must be a non-empty list"))?
                .len();
            if rows.is_some_and(|r| r != n) {
                return Err(format!(
                    "zip.\"{key}\" has {n} values, the other zipped lists {}",
                    rows.unwrap_or(0)
                ));
            }
            rows = Some(n);
        }
        out = out
            .iter()
            .flat_map(|m| {
                (0..rows.unwrap_or(0)).map(move |row| {
                    let mut m = m.clone();
                    for (key, values) in zip {
                        m.insert(
                            key.clone(),
                            values.as_array().expect("checked")[row].clone(),
                        );
                    }
                    m
                })
            })
            .collect();
    }
    Ok(out)
}

/// The stable identifier of a trial: FNV-1a (64 bit) of its resolved config as written
/// (paths relative to the sweep file), so planning twice, or adding a value to an axis,
/// keeps every existing trial's id; changing a setting of a trial gives it a new one.
fn trial_id(resolved: &str) -> String {
    format!("{:016x}", fnv1a(resolved.as_bytes()))
}

/// `key=value` pairs, joined by commas.
pub fn describe(settings: &BTreeMap<String, toml::Value>) -> String {
    settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The first file the config names that does not exist, with its key.
fn missing_file(config: &noether_train::TrainConfig) -> Option<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = config
        .data
        .files()
        .into_iter()
        .map(|(key, file)| (key, file.to_owned()))
        .collect();
    files.extend(
        config
            .init
            .as_ref()
            .map(|i| ("init.from".to_owned(), i.from.clone())),
    );
    files.extend(
        config
            .distill
            .as_ref()
            .map(|d| ("distill.teacher".to_owned(), d.teacher.clone())),
    );
    files.into_iter().find(|(_, f)| !f.is_file())
}

/// Plans the sweep in `sweep_file`: every trial resolved and validated, in order.
///
/// # Errors
/// [`SweepError::SweepFile`] for a malformed file, an unknown key, a bad list or a base
/// config that cannot be read; [`SweepError::Trial`] naming the trial and the config key
/// a value is rejected for.
pub fn plan(sweep_file: &Path) -> Result<Vec<Trial>> {
    let bad = |message: String| SweepError::SweepFile {
        path: sweep_file.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(sweep_file).map_err(io(sweep_file))?;
    let spec: SweepFile = toml::from_str(&text).map_err(|e| bad(e.message().to_owned()))?;
    let root = sweep_file.parent().unwrap_or(Path::new("")).to_owned();
    let configs = match (&spec.base, spec.configs.is_empty()) {
        (Some(_), false) => return Err(bad("give either 'base' or 'configs', not both".into())),
        (None, true) => return Err(bad("missing 'base' (or a 'configs' list)".into())),
        (Some(base), true) => vec![base.clone()],
        (None, false) => spec.configs.clone(),
    };
    for key in spec.axes.keys().chain(spec.zip.keys()) {
        if spec.set.contains_key(key) {
            return Err(bad(format!("'{key}' is both fixed in [set] and varied")));
        }
    }
    let axis_configs = if spec.configs.is_empty() {
        &[][..]
    } else {
        &configs[..]
    };
    let assignments = assignments(axis_configs, &spec.axes, &spec.zip).map_err(bad)?;
    let mut trials = Vec::with_capacity(assignments.len());
    for (index, settings) in assignments.into_iter().enumerate() {
        let config_file = match settings.get(CONFIG_AXIS) {
            Some(toml::Value::String(c)) => PathBuf::from(c),
            _ => configs[0].clone(),
        };
        let path = root.join(&config_file);
        let base =
            std::fs::read_to_string(&path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let mut table: toml::Table = base
            .parse()
            .map_err(|e: toml::de::Error| bad(format!("{}: {}", path.display(), e.message())))?;
        for (key, file) in [
            ("data.train", &spec.data),
            ("data.val", &spec.val_data),
            ("data.test", &spec.test_data),
        ] {
            if let Some(file) = file {
                let file = toml::Value::String(file.to_string_lossy().into_owned());
                set_dotted(&mut table, key, file).map_err(&bad)?;
            }
        }
        for (key, value) in spec
            .set
            .iter()
            .chain(settings.iter().filter(|(k, _)| *k != CONFIG_AXIS))
        {
            set_dotted(&mut table, key, value.clone()).map_err(&bad)?;
        }
        let as_written = toml::to_string(&table).expect("a table serialises");
        let trial_error = |e: noether_train::TrainError| SweepError::Trial {
            trial: index,
            settings: describe(&settings),
            source: Box::new(e),
        };
        let mut config =
            noether_train::TrainConfig::from_toml(&as_written, &path).map_err(trial_error)?;
        config.relative_to(&root);
        missing_file(&config).map_or(Ok(()), |(key, file)| {
            Err(trial_error(noether_train::TrainError::InvalidConfig {
                key,
                value: file.display().to_string(),
                reason: "no such file".into(),
            }))
        })?;
        // A weaver data config (`data.config`) is read now, so that a bad YAML fails here.
        config.apply_data_config().map_err(trial_error)?;
        let id = trial_id(&as_written);
        trials.push(Trial {
            trial: index,
            dir: PathBuf::from("runs").join(&id),
            id,
            settings,
            config: config.to_toml(),
        });
    }
    let mut ids: Vec<&str> = trials.iter().map(|t| t.id.as_str()).collect();
    ids.sort_unstable();
    if let Some([a, _]) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(bad(format!(
            "two trials resolve to the same config (id {a})"
        )));
    }
    Ok(trials)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn axes_multiply_and_zips_advance_together() {
        let a = assignments(
            &[],
            &table("a = [1, 2]\nb = [10, 20, 30]"),
            &table("x = [0.1, 0.2]\ny = [5, 6]"),
        )
        .unwrap();
        assert_eq!(a.len(), 2 * 3 * 2);
        assert_eq!(describe(&a[0]), "a=1,b=10,x=0.1,y=5");
        assert_eq!(describe(&a[1]), "a=1,b=10,x=0.2,y=6");
        assert_eq!(describe(&a[11]), "a=2,b=30,x=0.2,y=6");
        let e = assignments(&[], &table(""), &table("x = [1]\ny = [1, 2]")).unwrap_err();
        assert!(e.contains("zip.\"y\""), "{e}");
        let e = assignments(&[], &table("a = []"), &table("")).unwrap_err();
        assert!(e.contains("non-empty"), "{e}");
    }

    #[test]
    fn dotted_keys_reach_nested_tables() {
        let mut t = table("model = \"pfn\"\n[train]\nepochs = 3");
        set_dotted(&mut t, "train.epochs", toml::Value::Integer(1)).unwrap();
        set_dotted(&mut t, "pfn.phi_sizes", toml::Value::Array(vec![])).unwrap();
        assert_eq!(t["train"]["epochs"].as_integer(), Some(1));
        assert!(t["pfn"]["phi_sizes"].is_array());
        let e = set_dotted(&mut t, "model.x", toml::Value::Integer(1)).unwrap_err();
        assert!(e.contains("'model' is not a table"), "{e}");
    }
}

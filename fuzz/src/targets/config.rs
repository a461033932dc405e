//! TOML run configs: parse, validate, and write back what was read.

use std::path::Path;

use noether_train::TrainConfig;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::{input_file, outcome, seed_files};
use crate::mutate::{havoc, interesting_number_text, pick};
use crate::{Outcome, Target};

/// `TrainConfig::from_toml` (every `noether train`, `finetune` and sweep trial).
pub struct ConfigTarget;

impl Target for ConfigTarget {
    fn name(&self) -> &'static str {
        "toml"
    }

    fn seeds(&self) -> std::io::Result<Vec<Vec<u8>>> {
        seed_files("configs", "toml")
    }

    fn mutate(&self, input: &[u8], corpus: &[Vec<u8>], rng: &mut ChaCha8Rng) -> Vec<u8> {
        let text = String::from_utf8_lossy(input);
        match rng.random_range(0..10) {
            0..=5 => mutate_toml(&text, rng).into_bytes(),
            6 | 7 => insert_token(&text, rng).into_bytes(),
            _ => havoc(input, corpus, rng),
        }
    }

    fn execute(&self, input: &[u8], scratch: &Path) -> Outcome {
        let path = input_file(scratch, "input.toml", input);
        match TrainConfig::load(&path) {
            Ok(config) => {
                // What noether writes (config.toml, checkpoint metadata) it must read back.
                let again = TrainConfig::from_toml(&config.to_toml(), &path);
                assert!(
                    again
                        .as_ref()
                        .is_ok_and(|c| c.to_toml() == config.to_toml()),
                    "a config does not round-trip through config.toml: {again:?}"
                );
                Outcome::Accepted
            }
            Err(e) => outcome::<(), _>(Err(e)),
        }
    }
}

/// A mutation of the parsed document: one value replaced by an interesting one (of any
/// type), a key removed or added, or the model renamed.
pub(crate) fn mutate_toml(text: &str, rng: &mut ChaCha8Rng) -> String {
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return insert_token(text, rng);
    };
    let mut paths = Vec::new();
    leaves(&table, &mut Vec::new(), &mut paths);
    let Some(path) = pick(&paths, rng).cloned() else {
        return text.to_owned();
    };
    match rng.random_range(0..6) {
        0 => {
            remove(&mut table, &path);
        }
        1 => {
            let mut key = path.clone();
            let name =
                ["n_max", "model", "extra", "lr", "from", "n_hidden"][rng.random_range(0..6)];
            name.clone_into(key.last_mut().expect("a leaf has a key"));
            set(&mut table, &key, interesting_value(rng));
        }
        2 => set(
            &mut table,
            &["model".to_owned()],
            toml::Value::String(
                ["lorentznet", "pelican", "pfn", "efn", "mlp", "lgatr", ""][rng.random_range(0..7)]
                    .into(),
            ),
        ),
        _ => set(&mut table, &path, interesting_value(rng)),
    }
    toml::to_string(&table).unwrap_or_else(|_| text.to_owned())
}

fn leaves(table: &toml::Table, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for (key, value) in table {
        prefix.push(key.clone());
        match value {
            toml::Value::Table(inner) => leaves(inner, prefix, out),
            _ => out.push(prefix.clone()),
        }
        prefix.pop();
    }
}

fn set(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let (last, parents) = path.split_last().expect("a non-empty path");
    let mut at = table;
    for key in parents {
        let next = at
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(inner) = next else {
            return;
        };
        at = inner;
    }
    at.insert(last.clone(), value);
}

fn remove(table: &mut toml::Table, path: &[String]) {
    let (last, parents) = path.split_last().expect("a non-empty path");
    let mut at = table;
    for key in parents {
        let Some(toml::Value::Table(inner)) = at.get_mut(key) else {
            return;
        };
        at = inner;
    }
    at.remove(last);
}

fn interesting_value(rng: &mut ChaCha8Rng) -> toml::Value {
    let number = interesting_number_text(rng);
    match rng.random_range(0..7) {
        0 => number
            .parse::<i64>()
            .map_or(toml::Value::Integer(i64::MAX), toml::Value::Integer),
        1 => toml::Value::Float(number.parse().unwrap_or(f64::NAN)),
        2 => toml::Value::String(number),
        3 => toml::Value::Boolean(rng.random()),
        4 => toml::Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| toml::Value::Integer([0, 1, -1, 1 << 40, 64][rng.random_range(0..5)]))
                .collect(),
        ),
        5 => toml::Value::Table(toml::Table::new()),
        _ => toml::Value::Integer([0, -1, 1, 1 << 31, 1 << 62, 10_000_000][rng.random_range(0..6)]),
    }
}

/// TOML syntax dropped into the text at a random place.
fn insert_token(text: &str, rng: &mut ChaCha8Rng) -> String {
    const TOKENS: [&str; 12] = [
        "\n[data]\n",
        "\n[lorentznet]\n",
        "=",
        "\"",
        "'''",
        "[[",
        "]]",
        "\nmodel = \"pfn\"\n",
        "\n[init]\nfrom = \"\"\n",
        "\u{feff}",
        "\0",
        "# \n",
    ];
    let mut at = rng.random_range(0..=text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let mut out = text.to_owned();
    out.insert_str(at, TOKENS[rng.random_range(0..TOKENS.len())]);
    out
}

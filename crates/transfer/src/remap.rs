//! Key remapping rules: `FROM=TO` with FROM a regex and TO its replacement (`$1` and
//! named groups allowed), applied in order to every checkpoint key. `^module\.=` strips
//! DistributedDataParallel's prefix; `^=model.` adds one.

use regex::Regex;

use crate::error::{Result, TransferError};

/// One renaming rule.
#[derive(Debug, Clone)]
pub struct Remap {
    pattern: Regex,
    replacement: String,
    rule: String,
}

impl Remap {
    /// Parses `FROM=TO` (split at the first `=`).
    ///
    /// # Errors
    /// [`TransferError::BadRemap`] without `=` or with an invalid regex.
    pub fn parse(rule: &str) -> Result<Self> {
        let bad = |reason: String| TransferError::BadRemap {
            rule: rule.to_owned(),
            reason,
        };
        let (from, to) = rule
            .split_once('=')
            .ok_or_else(|| bad("expected FROM=TO (FROM a regex, TO its replacement)".into()))?;
        if from.is_empty() {
            return Err(bad(
                "FROM is empty (use ^ to match the start of every key)".into()
            ));
        }
        let pattern = Regex::new(from).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            pattern,
            replacement: to.to_owned(),
            rule: rule.to_owned(),
        })
    }

    /// The rule that strips a literal prefix such as `module.`.
    ///
    /// # Panics
    /// Never: an escaped literal is a valid regex.
    pub fn strip_prefix(prefix: &str) -> Self {
        Self::parse(&format!("^{}=", regex::escape(prefix))).expect("escaped prefix is a regex")
    }

    /// Applies the rule to a key (every match is replaced).
    pub fn apply(&self, key: &str) -> String {
        self.pattern
            .replace_all(key, self.replacement.as_str())
            .into_owned()
    }

    /// The rule as written.
    pub fn rule(&self) -> &str {
        &self.rule
    }
}

/// Applies `rules` in order.
pub fn remap_key(rules: &[Remap], key: &str) -> String {
    rules.iter().fold(key.to_owned(), |k, r| r.apply(&k))
}

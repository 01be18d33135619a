//! Locating a config problem: the file and line, or the `KEYWARDEN_*` variable, that set the
//! key. Loading and validation both use it, so it sits below them.

use std::path::Path;

use figment::Figment;

use super::{Issue, ENV_PREFIX};

/// Where each key of one load came from: the file's text (for line numbers) and figment's
/// metadata (file or environment variable).
pub(super) struct Locator<'a> {
    pub(super) path: &'a Path,
    pub(super) text: Option<&'a str>,
    pub(super) figment: &'a Figment,
}

impl Locator<'_> {
    pub(super) fn figment_issue(&self, e: figment::Error) -> Issue {
        let mut key_path = e.path.clone();
        if let figment::error::Kind::UnknownField(field, _) = &e.kind {
            if key_path.last() != Some(field) {
                key_path.push(field.clone());
            }
        }
        let full_key = (!key_path.is_empty()).then(|| key_path.join("."));
        let key = full_key.as_deref().map(cut);
        // A name is echoed at most once, and cut: a megabyte key is not a megabyte error.
        let mut message = e.kind.to_string();
        for part in key_path.iter().filter(|p| p.len() > NAME_SHOWN) {
            message = message.replace(part.as_str(), &cut(part));
        }
        if let figment::error::Kind::UnknownField(field, expected) = &e.kind {
            if let Some(near) = super::suggest::closest(field, expected.iter().copied()) {
                message.push_str(&format!("; did you mean `{near}`?"));
            }
        }
        match &e.metadata {
            Some(md) if md.name.contains("environment") => Issue {
                origin: format!("environment variable {}", env_var_name(&key_path)),
                line: None,
                key,
                message,
            },
            _ => {
                // A TOML syntax error carries its own line in the message.
                let line = full_key.as_deref().and_then(|k| self.line_of(k));
                Issue {
                    origin: self.path.display().to_string(),
                    line,
                    key,
                    message,
                }
            }
        }
    }

    /// An issue found during validation: ask figment who set the key.
    pub(super) fn issue(&self, key: &str, message: impl Into<String>) -> Issue {
        let md = self.figment.find_metadata(key);
        let from_env = md.is_some_and(|m| m.name.contains("environment"));
        if from_env {
            let parts: Vec<String> = key.split('.').map(str::to_string).collect();
            return Issue {
                origin: format!("environment variable {}", env_var_name(&parts)),
                line: None,
                key: Some(key.to_string()),
                message: message.into(),
            };
        }
        let origin = match self.text {
            Some(_) => self.path.display().to_string(),
            None => "defaults".to_string(),
        };
        Issue {
            line: self.line_of(key),
            origin,
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    fn line_of(&self, key: &str) -> Option<usize> {
        self.text.and_then(|t| find_key_line(t, key))
    }
}

fn env_var_name(path: &[String]) -> String {
    cut(&format!("{ENV_PREFIX}{}", path.join("__").to_uppercase()))
}

/// How much of a name an error shows.
const NAME_SHOWN: usize = 80;

/// `name`, cut to [`NAME_SHOWN`] bytes when longer.
pub(super) fn cut(name: &str) -> String {
    crate::sys::cut(name, NAME_SHOWN)
}

/// Best-effort 1-based line of a dotted key (`rules.max_key_age.max_age`, `exemptions.1.user`)
/// in TOML text written in the usual `[table]` / `key = value` style. Comments and strings
/// that merely look like keys are skipped because only line starts are matched.
pub fn find_key_line(text: &str, key: &str) -> Option<usize> {
    let parts: Vec<&str> = key.split('.').collect();
    let (leaf, table) = parts.split_last()?;
    let table = table.join(".");
    let mut current = String::new();
    let mut array_index: std::collections::HashMap<String, usize> = Default::default();
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_string();
            let idx = array_index.entry(name.clone()).and_modify(|i| *i += 1).or_insert(0);
            current = format!("{name}.{idx}");
            if key == current || key == name {
                return Some(n + 1);
            }
            continue;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            current = name.trim().to_string();
            if current == key {
                return Some(n + 1);
            }
            continue;
        }
        if current == table {
            if let Some(rest) = l.strip_prefix(leaf) {
                let rest = rest.trim_start();
                if rest.starts_with('=') {
                    return Some(n + 1);
                }
            }
        }
    }
    None
}

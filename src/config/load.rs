//! Loading: the file (optional unless named), then `KEYWARDEN_*` variables, through figment;
//! every problem located by file and line or variable name.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;

use super::validate::validate;
use super::{Config, ConfigError, Issue, RawConfig, DEFAULT_PATH, ENV_PREFIX};

// ---------------------------------------------------------------------------------------------
// Loading.

/// Where the config file is: `--config`, else `$KEYWARDEN_CONFIG`, else the default path.
/// Returns whether the path was asked for explicitly (then it must exist).
pub fn resolve_path(cli: Option<&Path>) -> (PathBuf, bool) {
    if let Some(p) = cli {
        return (p.to_path_buf(), true);
    }
    match std::env::var_os("KEYWARDEN_CONFIG") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (PathBuf::from(DEFAULT_PATH), false),
    }
}

/// Loads, merges (file < environment) and validates. A missing file is an error when
/// `required`; otherwise defaults and environment are used alone.
pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => None,
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut figment = Figment::new();
    if text.is_some() {
        // `file_exact`, not `file`: never search parent directories for a relative path.
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(env_provider());
    let located = Locator {
        path,
        text: text.as_deref(),
        figment: &figment,
    };
    let raw: RawConfig = figment.extract().map_err(|e| ConfigError::Invalid {
        issues: e.into_iter().map(|e| located.figment_issue(e)).collect(),
    })?;
    let mut config = validate(raw, &located)?;
    config.source = text.map(|_| path.to_path_buf());
    Ok(config)
}

fn env_provider() -> Env {
    // KEYWARDEN_CONFIG names the file; it is not a key.
    // KEYWARDEN_FAILPOINT_PANIC_RUNS is a test hook of debug builds (daemon.rs).
    Env::prefixed(ENV_PREFIX)
        .split("__")
        .ignore(&["config", "failpoint_panic_runs"])
}

pub(super) struct Locator<'a> {
    path: &'a Path,
    text: Option<&'a str>,
    figment: &'a Figment,
}

impl Locator<'_> {
    fn figment_issue(&self, e: figment::Error) -> Issue {
        let mut key_path = e.path.clone();
        if let figment::error::Kind::UnknownField(field, _) = &e.kind {
            if key_path.last() != Some(field) {
                key_path.push(field.clone());
            }
        }
        let key = (!key_path.is_empty()).then(|| key_path.join("."));
        let mut message = e.kind.to_string();
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
                let line = key.as_deref().and_then(|k| self.line_of(k));
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
    format!("{ENV_PREFIX}{}", path.join("__").to_uppercase())
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

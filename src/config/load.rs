//! Loading: the file (optional unless named), then `KEYWARDEN_*` variables, through figment;
//! every problem located by file and line or variable name.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;

use super::locate::Locator;
use super::validate::validate;
use super::{Config, ConfigError, Issue, RawConfig, DEFAULT_PATH, ENV_PREFIX};

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
    let text = match crate::sys::files::read_text(path, crate::sys::files::CONFIG_LIMIT) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => None,
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut issues: Vec<Issue> = text
        .as_deref()
        .and_then(|t| control_character(path, t))
        .into_iter()
        .collect();
    issues.extend(empty_variable_names());
    if !issues.is_empty() {
        return Err(ConfigError::Invalid { issues });
    }
    let mut figment = Figment::new();
    if let Some(t) = &text {
        // The text read once above (a regular file, bounded), never the path again.
        figment = figment.merge(Toml::string(t));
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

/// The first control character TOML forbids (everywhere, comments included), named with its
/// line and column: the TOML parser's own error for it says nothing.
fn control_character(path: &Path, text: &str) -> Option<Issue> {
    text.lines().enumerate().find_map(|(i, line)| {
        let (col, c) = line
            .chars()
            .enumerate()
            .find(|(_, c)| c.is_control() && *c != '\t' && *c != '\r')?;
        Some(Issue {
            origin: path.display().to_string(),
            line: Some(i + 1),
            key: None,
            message: format!(
                "column {}: the control character U+{:04X} is not allowed in TOML, not even in a comment",
                col + 1,
                c as u32
            ),
        })
    })
}

/// `KEYWARDEN_` variables that name no key (`KEYWARDEN_`, `KEYWARDEN__X`, `KEYWARDEN_A____B`):
/// figment would ignore them, and a setting that is silently ignored is worse than an error.
fn empty_variable_names() -> Vec<Issue> {
    std::env::vars_os()
        .filter_map(|(name, _)| {
            let name = name.to_str()?.to_string();
            let rest = name.strip_prefix(ENV_PREFIX)?;
            rest.split("__").any(str::is_empty).then(|| Issue {
                origin: format!("environment variable {}", super::locate::cut(&name)),
                line: None,
                key: None,
                message: format!("names no key (a variable sets one key: {ENV_PREFIX}SECTION__KEY sets section.key)"),
            })
        })
        .collect()
}

fn env_provider() -> Env {
    // KEYWARDEN_CONFIG names the file; it is not a key.
    // KEYWARDEN_FAILPOINT_PANIC_RUNS is a test hook of debug builds (daemon.rs).
    Env::prefixed(ENV_PREFIX)
        .split("__")
        .ignore(&["config", "failpoint_panic_runs"])
}

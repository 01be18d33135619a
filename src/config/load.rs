//! Loading: the file (optional unless named), then `KEYWARDEN_*` variables, through figment;
//! every problem located by file and line or variable name.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;

use super::locate::Locator;
use super::validate::validate;
use super::{Config, ConfigError, RawConfig, DEFAULT_PATH, ENV_PREFIX};

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

//! Configuration: raw (what the TOML file and `KEYWARDEN_*` variables say) -> validated
//! ([`Config`], typed values only).
//!
//! Every error names where the bad value came from (file and line, or environment variable)
//! and the key, so `keywarden check-config` reads like `nginx -t`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::model::Timestamp;
use crate::rules::{Action, Exemption, Policy, Rule, RulePolicy, Rules};

pub const DEFAULT_PATH: &str = "/etc/keywarden/keywarden.toml";
pub const ENV_PREFIX: &str = "KEYWARDEN_";

// ---------------------------------------------------------------------------------------------
// Raw layer: mirrors the file. Unknown keys are rejected; every field has the documented default.

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub schedule: RawSchedule,
    pub aws: RawAws,
    pub rules: RawRules,
    pub enforcement: RawEnforcement,
    pub state: RawState,
    pub metrics: RawMetrics,
    pub log: RawLog,
    pub exemptions: Vec<RawExemption>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSchedule {
    pub cron: String,
    pub run_on_start: bool,
    /// A run older than this makes `/-/healthy` 503 and stops the systemd watchdog.
    pub max_run_duration: String,
}

impl Default for RawSchedule {
    fn default() -> Self {
        RawSchedule {
            cron: "0 0 * * * *".into(),
            run_on_start: true,
            max_run_duration: "2h".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAws {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    /// `api`, `credential-report` or `auto`.
    pub inventory: String,
    /// `auto` uses the credential report from this many users on.
    pub credential_report_min_users: u32,
    pub max_concurrent_requests: u32,
    /// IAM requests per second per account; 0: no limit beyond the concurrency bound.
    pub max_requests_per_second: u32,
    pub max_attempts: u32,
    pub connect_timeout: String,
    pub attempt_timeout: String,
    pub operation_timeout: String,
    /// Accounts read at the same time (each within the global `max_concurrent_requests`).
    pub max_concurrent_accounts: u32,
    /// `[[aws.accounts]]`: when empty (and no organization), the credentials' own account.
    pub accounts: Vec<RawAccount>,
    pub organization: Option<RawOrganization>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub id: String,
    /// Omitted: the ambient credentials, which must belong to `id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrganization {
    /// Assumed in every member account: `keywarden-audit` or `path/keywarden-audit`.
    pub role_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Account ids or names (globs); empty: every active account.
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

impl Default for RawAws {
    fn default() -> Self {
        RawAws {
            region: None,
            profile: None,
            endpoint_url: None,
            inventory: "api".into(),
            credential_report_min_users: 1000,
            max_concurrent_requests: 8,
            max_requests_per_second: 0,
            max_attempts: 10,
            connect_timeout: "5s".into(),
            attempt_timeout: "20s".into(),
            operation_timeout: "120s".into(),
            max_concurrent_accounts: 4,
            accounts: Vec::new(),
            organization: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRules {
    pub multiple_active_keys: RawRule,
    pub max_key_age: RawRule,
    pub unused_key: RawRule,
}

impl Default for RawRules {
    fn default() -> Self {
        let mut rules = RawRules {
            multiple_active_keys: RawRule::default(),
            max_key_age: RawRule::default(),
            unused_key: RawRule::default(),
        };
        rules.fill_defaults();
        rules
    }
}

impl RawRules {
    /// A rule table that sets only some keys keeps the rule's own defaults for the others.
    fn fill_defaults(&mut self) {
        let fill = |r: &mut RawRule, action: &str| {
            r.enabled.get_or_insert(true);
            r.action.get_or_insert_with(|| action.to_string());
        };
        fill(&mut self.multiple_active_keys, "deactivate");
        fill(&mut self.max_key_age, "report");
        fill(&mut self.unused_key, "deactivate");
        self.multiple_active_keys.wait_for_kept_key.get_or_insert(true);
        self.max_key_age.max_age.get_or_insert_with(|| "90d".into());
        self.unused_key.max_unused.get_or_insert_with(|| "45d".into());
    }
}

/// One rule table. Only the threshold key that belongs to the rule is accepted
/// (checked during validation, so the error can name the key).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub enabled: Option<bool>,
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_unused: Option<String>,
    /// `multiple_active_keys` only: a used key waits until the kept key has been used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_for_kept_key: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEnforcement {
    pub mode: String,
    pub grace_period: String,
    pub max_deactivations_per_run: u32,
}

impl Default for RawEnforcement {
    fn default() -> Self {
        RawEnforcement {
            mode: "dry-run".into(),
            grace_period: "7d".into(),
            max_deactivations_per_run: 25,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExemption {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<String>>,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawState {
    pub path: PathBuf,
}

impl Default for RawState {
    fn default() -> Self {
        RawState {
            path: "/var/lib/keywarden/state.json".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    pub listen: String,
    pub per_key: bool,
    /// HTTPS instead of HTTP (exporter-toolkit's `tls_server_config`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawTls>,
    /// user name -> bcrypt hash (exporter-toolkit's `basic_auth_users`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics {
            listen: "127.0.0.1:9786".into(),
            per_key: true,
            tls: None,
            basic_auth_users: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: String,
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validated layer.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    DryRun,
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::DryRun => "dry-run",
            Mode::Enforce => "enforce",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    /// Six fields, seconds first; already checked with the scheduler's own parser settings.
    pub cron: String,
    pub run_on_start: bool,
    pub max_run_duration: Duration,
}

#[derive(Debug, Clone)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub inventory: crate::aws::InventoryMode,
    pub credential_report_min_users: usize,
    pub max_concurrent_requests: usize,
    pub max_requests_per_second: u32,
    pub max_attempts: u32,
    pub connect_timeout: Duration,
    pub attempt_timeout: Duration,
    pub operation_timeout: Duration,
    pub max_concurrent_accounts: usize,
    pub accounts: Vec<AccountTarget>,
    pub organization: Option<Organization>,
}

/// An account named in `[[aws.accounts]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountTarget {
    /// Twelve digits.
    pub id: String,
    pub name: Option<String>,
    /// `None`: the ambient credentials.
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
}

/// `[aws.organization]`: member accounts found with organizations:ListAccounts.
#[derive(Debug, Clone)]
pub struct Organization {
    pub role_name: String,
    pub external_id: Option<String>,
    pub include: Vec<glob::Pattern>,
    pub exclude: Vec<glob::Pattern>,
}

impl Organization {
    /// Include (empty: all) and then exclude, each matching the id or the name.
    pub fn selects(&self, id: &str, name: &str) -> bool {
        let hit = |p: &glob::Pattern| p.matches(id) || p.matches(name);
        (self.include.is_empty() || self.include.iter().any(hit)) && !self.exclude.iter().any(hit)
    }
}

#[derive(Debug, Clone)]
pub struct Enforcement {
    pub mode: Mode,
    pub max_deactivations_per_run: usize,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from; `None` when only defaults and environment were used.
    pub source: Option<PathBuf>,
    pub schedule: Schedule,
    pub aws: AwsSettings,
    pub policy: Policy,
    pub enforcement: Enforcement,
    pub state_path: PathBuf,
    pub metrics_listen: SocketAddr,
    pub metrics_per_key: bool,
    /// TLS and basic auth of the listener; swapped in on reload.
    pub metrics_web: Arc<crate::web::Web>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// The merged raw values, for `check-config` to print.
    pub effective: RawConfig,
}

impl Config {
    /// The effective configuration as TOML, with secrets redacted.
    pub fn effective_toml(&self) -> String {
        let mut shown = self.effective.clone();
        for hash in shown.metrics.basic_auth_users.values_mut() {
            *hash = "<bcrypt hash>".into();
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// One problem in the configuration, located as precisely as the source allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// A file path, or `environment variable KEYWARDEN_...`, or `defaults`.
    pub origin: String,
    pub line: Option<usize>,
    /// Dotted key, e.g. `rules.max_key_age.max_age`.
    pub key: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read config file: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}", issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid { issues: Vec<Issue> },
}

impl ConfigError {
    pub fn issues(&self) -> &[Issue] {
        match self {
            ConfigError::Invalid { issues } => issues,
            ConfigError::Read { .. } => &[],
        }
    }
}

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

struct Locator<'a> {
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
        let message = e.kind.to_string();
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
    fn issue(&self, key: &str, message: impl Into<String>) -> Issue {
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

// ---------------------------------------------------------------------------------------------
// Validation: raw strings -> typed values. Collects every issue, not just the first.

/// The longest duration any setting takes: 100 years (humantime's `100y`). Bounding every
/// duration here is what keeps date arithmetic on them (first seen + grace, now - max age)
/// far from chrono's limits.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// A humantime duration within [`MAX_DURATION`], or the message saying why not.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?}: {e} (use e.g. \"90d\", \"12h\", \"30s\")"))?;
    if d > MAX_DURATION {
        return Err(format!(
            "duration {s:?} is longer than 100 years (the most any setting takes)"
        ));
    }
    Ok(d)
}

fn validate(mut raw: RawConfig, at: &Locator<'_>) -> Result<Config, ConfigError> {
    raw.rules.fill_defaults();
    let mut issues = Vec::new();
    let mut dur =
        |key: &str, s: &str| -> Option<Duration> { parse_duration(s).map_err(|e| issues.push(at.issue(key, e))).ok() };
    let connect_timeout = dur("aws.connect_timeout", &raw.aws.connect_timeout);
    let attempt_timeout = dur("aws.attempt_timeout", &raw.aws.attempt_timeout);
    let operation_timeout = dur("aws.operation_timeout", &raw.aws.operation_timeout);
    let grace = dur("enforcement.grace_period", &raw.enforcement.grace_period);
    let max_run = dur("schedule.max_run_duration", &raw.schedule.max_run_duration);

    let multiple = rule_policy(
        &raw.rules.multiple_active_keys,
        Rule::MultipleActiveKeys,
        at,
        &mut issues,
    );
    let max_age = rule_policy(&raw.rules.max_key_age, Rule::MaxKeyAge, at, &mut issues);
    let unused = rule_policy(&raw.rules.unused_key, Rule::UnusedKey, at, &mut issues);

    if let Err(e) = validate_cron(&raw.schedule.cron) {
        issues.push(at.issue("schedule.cron", e));
    }

    if raw.aws.max_concurrent_requests == 0 {
        issues.push(at.issue("aws.max_concurrent_requests", "must be at least 1"));
    }
    if raw.aws.max_concurrent_accounts == 0 {
        issues.push(at.issue("aws.max_concurrent_accounts", "must be at least 1"));
    }
    let accounts = accounts(&raw.aws.accounts, at, &mut issues);
    let organization = raw
        .aws
        .organization
        .as_ref()
        .and_then(|o| organization(o, at, &mut issues));
    if raw.aws.max_attempts == 0 {
        issues.push(at.issue("aws.max_attempts", "must be at least 1"));
    }
    if let Some(url) = &raw.aws.endpoint_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            issues.push(at.issue("aws.endpoint_url", format!("{url:?} is not an http:// or https:// URL")));
        }
    }
    for (key, v) in [("aws.region", &raw.aws.region), ("aws.profile", &raw.aws.profile)] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            issues.push(at.issue(key, "must not be empty (leave it out instead)"));
        }
    }

    let inventory = match raw.aws.inventory.as_str() {
        "api" => Some(crate::aws::InventoryMode::Api),
        "credential-report" => Some(crate::aws::InventoryMode::CredentialReport),
        "auto" => Some(crate::aws::InventoryMode::Auto),
        other => {
            issues.push(at.issue(
                "aws.inventory",
                format!("{other:?} is not \"api\", \"credential-report\" or \"auto\""),
            ));
            None
        }
    };
    let mode = match raw.enforcement.mode.as_str() {
        "dry-run" => Some(Mode::DryRun),
        "enforce" => Some(Mode::Enforce),
        other => {
            issues.push(at.issue(
                "enforcement.mode",
                format!("{other:?} is not \"dry-run\" or \"enforce\""),
            ));
            None
        }
    };

    let listen = match raw.metrics.listen.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            issues.push(at.issue(
                "metrics.listen",
                format!(
                    "{:?} is not an address:port such as \"127.0.0.1:9786\"",
                    raw.metrics.listen
                ),
            ));
            None
        }
    };
    let tls = raw.metrics.tls.as_ref().and_then(|t| {
        crate::web::tls_acceptor(&t.cert_file, &t.key_file)
            .map_err(|e| issues.push(at.issue("metrics.tls", e)))
            .ok()
    });
    for (user, hash) in &raw.metrics.basic_auth_users {
        let key = format!("metrics.basic_auth_users.{user}");
        if user.is_empty() || user.contains(':') {
            issues.push(at.issue(&key, "a user name must be non-empty and without ':'"));
        }
        if let Err(e) = crate::web::check_hash(hash) {
            issues.push(at.issue(&key, e));
        }
    }
    let log_format = match raw.log.format.as_str() {
        "text" => Some(LogFormat::Text),
        "json" => Some(LogFormat::Json),
        other => {
            issues.push(at.issue("log.format", format!("{other:?} is not \"text\" or \"json\"")));
            None
        }
    };
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&raw.log.level) {
        issues.push(at.issue(
            "log.level",
            format!("{:?} is not a level or filter: {e}", raw.log.level),
        ));
    }
    if raw.state.path.as_os_str().is_empty() {
        issues.push(at.issue("state.path", "must not be empty"));
    }

    let exemptions: Vec<Option<Exemption>> = raw
        .exemptions
        .iter()
        .enumerate()
        .map(|(i, e)| exemption(i, e, at, &mut issues))
        .collect();

    if !issues.is_empty() {
        return Err(ConfigError::Invalid { issues });
    }
    // Every `None` above pushed an issue, so from here on all values are present.
    let missing = || ConfigError::Invalid {
        issues: vec![Issue {
            origin: "keywarden".into(),
            line: None,
            key: None,
            message: "internal error: a value failed validation without an error".into(),
        }],
    };
    let policy = Policy {
        rules: Rules {
            multiple_active_keys: multiple.ok_or_else(missing)?,
            max_key_age: max_age.ok_or_else(missing)?,
            unused_key: unused.ok_or_else(missing)?,
        },
        exemptions: exemptions.into_iter().collect::<Option<Vec<_>>>().ok_or_else(missing)?,
        grace_period: to_delta(grace.ok_or_else(missing)?),
        wait_for_kept_key: raw.rules.multiple_active_keys.wait_for_kept_key.unwrap_or(true),
    };
    Ok(Config {
        source: None,
        schedule: Schedule {
            cron: raw.schedule.cron.clone(),
            run_on_start: raw.schedule.run_on_start,
            max_run_duration: max_run.ok_or_else(missing)?,
        },
        aws: AwsSettings {
            region: raw.aws.region.clone(),
            profile: raw.aws.profile.clone(),
            endpoint_url: raw.aws.endpoint_url.clone(),
            inventory: inventory.ok_or_else(missing)?,
            credential_report_min_users: raw.aws.credential_report_min_users as usize,
            max_concurrent_requests: raw.aws.max_concurrent_requests as usize,
            max_requests_per_second: raw.aws.max_requests_per_second,
            max_attempts: raw.aws.max_attempts,
            connect_timeout: connect_timeout.ok_or_else(missing)?,
            attempt_timeout: attempt_timeout.ok_or_else(missing)?,
            operation_timeout: operation_timeout.ok_or_else(missing)?,
            max_concurrent_accounts: raw.aws.max_concurrent_accounts as usize,
            accounts: accounts.ok_or_else(missing)?,
            organization: match &raw.aws.organization {
                Some(_) => Some(organization.ok_or_else(missing)?),
                None => None,
            },
        },
        policy,
        enforcement: Enforcement {
            mode: mode.ok_or_else(missing)?,
            max_deactivations_per_run: raw.enforcement.max_deactivations_per_run as usize,
        },
        state_path: raw.state.path.clone(),
        metrics_listen: listen.ok_or_else(missing)?,
        metrics_per_key: raw.metrics.per_key,
        metrics_web: Arc::new(crate::web::Web::new(tls, raw.metrics.basic_auth_users.clone())),
        log_format: log_format.ok_or_else(missing)?,
        log_level: raw.log.level.clone(),
        effective: raw,
    })
}

fn to_delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// The scheduler (tokio-cron-scheduler) parses with croner, seconds required; use the same
/// settings so a schedule accepted here is accepted there.
pub fn validate_cron(expr: &str) -> Result<(), String> {
    let fields = expr.split_whitespace().count();
    if fields != 6 {
        return Err(format!(
            "{expr:?} has {fields} fields; expected 6 (sec min hour day-of-month month day-of-week), e.g. \"0 0 * * * *\""
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map(|_| ())
        .map_err(|e| format!("invalid cron expression {expr:?}: {e}"))
}

fn rule_policy(raw: &RawRule, rule: Rule, at: &Locator<'_>, issues: &mut Vec<Issue>) -> Option<RulePolicy> {
    let base = format!("rules.{rule}");
    let action = match raw.action.as_deref().unwrap_or_default() {
        "deactivate" => Some(Action::Deactivate),
        "report" => Some(Action::Report),
        other => {
            issues.push(at.issue(
                &format!("{base}.action"),
                format!("{other:?} is not \"deactivate\" or \"report\""),
            ));
            None
        }
    };
    let (wanted, unwanted, value) = match rule {
        Rule::MultipleActiveKeys => (None, [Some("max_age"), Some("max_unused")], None),
        Rule::MaxKeyAge => (Some("max_age"), [Some("max_unused"), None], raw.max_age.as_deref()),
        Rule::UnusedKey => (Some("max_unused"), [Some("max_age"), None], raw.max_unused.as_deref()),
    };
    for name in unwanted.into_iter().flatten() {
        let set = if name == "max_age" {
            &raw.max_age
        } else {
            &raw.max_unused
        };
        if set.is_some() {
            issues.push(at.issue(&format!("{base}.{name}"), format!("unknown key for rule {rule}")));
        }
    }
    let threshold = match (wanted, value) {
        (None, _) => Some(TimeDelta::zero()),
        (Some(name), None) => {
            issues.push(at.issue(&format!("{base}.{name}"), "missing (a duration such as \"90d\")"));
            None
        }
        (Some(name), Some(s)) => match parse_duration(s) {
            Ok(d) => Some(to_delta(d)),
            Err(e) => {
                issues.push(at.issue(&format!("{base}.{name}"), e));
                None
            }
        },
    };
    if rule != Rule::MultipleActiveKeys && raw.wait_for_kept_key.is_some() {
        issues.push(at.issue(
            &format!("{base}.wait_for_kept_key"),
            format!("unknown key for rule {rule} (only multiple_active_keys has it)"),
        ));
    }
    Some(RulePolicy {
        enabled: raw.enabled.unwrap_or(true),
        action: action?,
        threshold: threshold?,
    })
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn accounts(raw: &[RawAccount], at: &Locator<'_>, issues: &mut Vec<Issue>) -> Option<Vec<AccountTarget>> {
    let before = issues.len();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, a) in raw.iter().enumerate() {
        let key = |k: &str| format!("aws.accounts.{i}.{k}");
        if !is_account_id(&a.id) {
            issues.push(at.issue(&key("id"), format!("{:?} is not a 12-digit account id", a.id)));
        } else if !seen.insert(a.id.clone()) {
            issues.push(at.issue(&key("id"), format!("account {} is listed twice", a.id)));
        }
        if let Some(arn) = &a.role_arn {
            match role_arn_account(arn) {
                None => issues.push(at.issue(
                    &key("role_arn"),
                    format!("{arn:?} is not a role ARN such as \"arn:aws:iam::123456789012:role/keywarden-audit\""),
                )),
                Some(owner) if owner != a.id => issues.push(at.issue(
                    &key("role_arn"),
                    format!("the role belongs to account {owner}, not to id {}", a.id),
                )),
                Some(_) => {}
            }
        }
        if a.role_arn.is_none() && a.external_id.is_some() {
            issues.push(at.issue(&key("external_id"), "only used with role_arn"));
        }
        for (k, v) in [("external_id", &a.external_id), ("name", &a.name)] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                issues.push(at.issue(&key(k), "must not be empty (leave it out instead)"));
            }
        }
        out.push(AccountTarget {
            id: a.id.clone(),
            name: a.name.clone(),
            role_arn: a.role_arn.clone(),
            external_id: a.external_id.clone(),
        });
    }
    (issues.len() == before).then_some(out)
}

/// The account id in `arn:<partition>:iam::<id>:role/<path/name>`.
fn role_arn_account(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (arn_, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let name = resource.strip_prefix("role/")?;
    let ok = arn_ == "arn"
        && !partition.is_empty()
        && service == "iam"
        && region.is_empty()
        && is_account_id(account)
        && !name.is_empty()
        && !name.ends_with('/');
    ok.then_some(account)
}

fn organization(raw: &RawOrganization, at: &Locator<'_>, issues: &mut Vec<Issue>) -> Option<Organization> {
    let before = issues.len();
    let role = raw.role_name.trim_matches('/');
    if role.is_empty() || role != raw.role_name || raw.role_name.contains(char::is_whitespace) {
        issues.push(at.issue(
            "aws.organization.role_name",
            format!(
                "{:?} is not a role name such as \"keywarden-audit\" (a path may precede it: \"ops/keywarden-audit\")",
                raw.role_name
            ),
        ));
    }
    if raw.external_id.as_deref().is_some_and(|s| s.trim().is_empty()) {
        issues.push(at.issue(
            "aws.organization.external_id",
            "must not be empty (leave it out instead)",
        ));
    }
    let mut patterns = |key: &str, list: &[String]| -> Vec<glob::Pattern> {
        list.iter()
            .filter_map(|g| match glob::Pattern::new(g) {
                Ok(p) => Some(p),
                Err(e) => {
                    issues.push(at.issue(key, format!("invalid glob {g:?}: {e}")));
                    None
                }
            })
            .collect()
    };
    let include = patterns("aws.organization.include", &raw.include);
    let exclude = patterns("aws.organization.exclude", &raw.exclude);
    (issues.len() == before).then(|| Organization {
        role_name: raw.role_name.clone(),
        external_id: raw.external_id.clone(),
        include,
        exclude,
    })
}

fn exemption(i: usize, raw: &RawExemption, at: &Locator<'_>, issues: &mut Vec<Issue>) -> Option<Exemption> {
    let key = |k: &str| format!("exemptions.{i}.{k}");
    let before = issues.len();
    if raw.user.is_none() && raw.access_key_id.is_none() && raw.user_tag.is_none() && raw.path_prefix.is_none() {
        issues.push(at.issue(
            &format!("exemptions.{i}"),
            "an exemption needs at least one of user, access_key_id, user_tag, path_prefix",
        ));
    }
    if raw.reason.trim().is_empty() {
        issues.push(at.issue(&key("reason"), "must say why (e.g. a ticket)"));
    }
    let user = raw.user.as_deref().and_then(|g| match glob::Pattern::new(g) {
        Ok(p) => Some(p),
        Err(e) => {
            issues.push(at.issue(&key("user"), format!("invalid glob {g:?}: {e}")));
            None
        }
    });
    let user_tag = raw.user_tag.as_deref().and_then(|t| match t.split_once('=') {
        Some((k, v)) if !k.is_empty() => Some((k.to_string(), v.to_string())),
        _ => {
            issues.push(at.issue(&key("user_tag"), format!("{t:?} is not \"key=value\"")));
            None
        }
    });
    let rules = raw.rules.as_ref().map(|names| {
        names
            .iter()
            .filter_map(|n| {
                let r = Rule::parse(n);
                if r.is_none() {
                    issues.push(at.issue(
                        &key("rules"),
                        format!("unknown rule {n:?} (known: multiple_active_keys, max_key_age, unused_key)"),
                    ));
                }
                r
            })
            .collect::<Vec<_>>()
    });
    let expires: Option<Timestamp> = raw.expires.as_deref().and_then(|s| match crate::timefmt::parse(s) {
        Ok(t) => Some(t),
        Err(e) => {
            issues.push(at.issue(&key("expires"), format!("{s:?} is not an RFC 3339 date-time: {e}")));
            None
        }
    });
    if issues.len() > before {
        return None;
    }
    Some(Exemption {
        user,
        access_key_id: raw.access_key_id.clone(),
        user_tag,
        path_prefix: raw.path_prefix.clone(),
        rules,
        reason: raw.reason.clone(),
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_of_keys_in_tables_and_arrays() {
        let text = "[schedule]\ncron = \"x\"\n\n[rules.max_key_age]\n# max_age = \"1d\"\nmax_age = \"9x\"\n\
                    [[exemptions]]\nuser = \"a\"\n[[exemptions]]\nreason = \"r\"\nuser = \"b\"\n";
        assert_eq!(find_key_line(text, "schedule.cron"), Some(2));
        assert_eq!(find_key_line(text, "rules.max_key_age.max_age"), Some(6));
        assert_eq!(find_key_line(text, "exemptions.0.user"), Some(8));
        assert_eq!(find_key_line(text, "exemptions.1.user"), Some(11));
        assert_eq!(find_key_line(text, "exemptions.1"), Some(9));
        assert_eq!(find_key_line(text, "log.level"), None);
    }

    #[test]
    fn role_arns_name_their_account() {
        assert_eq!(
            role_arn_account("arn:aws:iam::111122223333:role/keywarden-audit"),
            Some("111122223333")
        );
        assert_eq!(
            role_arn_account("arn:aws-us-gov:iam::111122223333:role/ops/keywarden"),
            Some("111122223333")
        );
        for bad in [
            "keywarden-audit",
            "arn:aws:iam::11112222333:role/x",
            "arn:aws:iam::111122223333:user/x",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:sts::111122223333:role/x",
            "arn:aws:iam:us-east-1:111122223333:role/x",
        ] {
            assert_eq!(role_arn_account(bad), None, "{bad}");
        }
    }

    #[test]
    fn organization_include_then_exclude() {
        let org = |inc: &[&str], exc: &[&str]| Organization {
            role_name: "r".into(),
            external_id: None,
            include: inc.iter().map(|g| glob::Pattern::new(g).unwrap()).collect(),
            exclude: exc.iter().map(|g| glob::Pattern::new(g).unwrap()).collect(),
        };
        assert!(org(&[], &[]).selects("111111111111", "prod"));
        assert!(org(&["prod-*"], &[]).selects("111111111111", "prod-eu"));
        assert!(!org(&["prod-*"], &[]).selects("111111111111", "dev"));
        assert!(org(&["1111*"], &[]).selects("111111111111", "dev"));
        assert!(!org(&[], &["prod-eu", "2222*"]).selects("111111111111", "prod-eu"));
        assert!(!org(&["*"], &["2222*"]).selects("222222222222", "x"));
    }

    #[test]
    fn cron_needs_six_fields() {
        assert!(validate_cron("0 0 * * * *").is_ok());
        assert!(validate_cron("*/5 * * * * *").is_ok());
        assert!(validate_cron("0 * * * *").unwrap_err().contains("5 fields"));
        assert!(validate_cron("0 0 25 * * *").is_err());
    }
}

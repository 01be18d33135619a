//! Configuration: raw (`raw`: what the TOML file and `KEYWARDEN_*` variables say) ->
//! validated (`validate`: typed values only, every problem at once) -> [`Config`], loaded from
//! file and environment by `load`; `locate` names the file line or variable behind a key.
//!
//! Every error names where the bad value came from (file and line, or environment variable)
//! and the key, so `keywarden check-config` reads like `nginx -t`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use crate::core::policy::Mode;
use crate::core::policy::Policy;

mod durations;
mod load;
mod locate;
mod raw;
mod rules;
mod suggest;
mod validate;
mod warnings;

pub use durations::MAX_DURATION;
pub use load::{load, resolve_path};
pub use locate::find_key_line;
pub use raw::*;
pub use validate::validate_cron;

pub const DEFAULT_PATH: &str = "/etc/keywarden/keywarden.toml";
pub const ENV_PREFIX: &str = "KEYWARDEN_";

// ---------------------------------------------------------------------------------------------
// Validated layer.

/// `log.format`; the type is the logger's own, so `sys` needs nothing from the config.
pub use crate::sys::logging::LogFormat;

#[derive(Debug, Clone)]
pub struct Schedule {
    /// Six fields, seconds first; already checked with the scheduler's own parser settings.
    pub cron: String,
    /// The zone the cron expression is read in (`schedule.timezone`).
    pub timezone: chrono_tz::Tz,
    pub run_on_start: bool,
    pub max_run_duration: Duration,
}

#[derive(Debug, Clone)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub inventory: crate::ports::InventoryMode,
    pub credential_report_min_users: usize,
    pub max_concurrent_requests: usize,
    pub max_requests_per_second: u32,
    pub max_attempts: u32,
    pub connect_timeout: Duration,
    pub attempt_timeout: Duration,
    pub operation_timeout: Duration,
    pub max_concurrent_accounts: usize,
    /// Credential-report mode: runs between full listings of key ids (1: every run).
    pub full_refresh_every: u32,
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

/// `metrics.per_key`: which keys get per-key series (`access_key_id` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerKey {
    /// Every key (`true`).
    All,
    /// None (`false`).
    Off,
    /// Keys with findings (`"findings"`): the page grows with problems, not with keys.
    Findings,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StateBackend {
    /// `state.path` and `state.journal_path`: one instance.
    File,
    /// One DynamoDB table shared by every instance (`state::dynamodb`).
    DynamoDb(DynamoDbSettings),
}

/// `[state.dynamodb]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamoDbSettings {
    pub table: String,
    /// `None`: `aws.region` (and its defaults).
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub lease_duration: Duration,
    /// `None`: `hostname:pid`.
    pub instance_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Enforcement {
    pub mode: Mode,
    pub max_deactivations_per_run: usize,
}

/// `[events]`, validated, with a queue.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsSettings {
    pub queue_url: String,
    /// `None`: the region of the AWS settings.
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub poll_wait: Duration,
    /// SNS topics whose notifications are read (none: no SNS-wrapped message is).
    pub sns_topic_arns: Vec<String>,
}

/// `[usage]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageSettings {
    pub enabled: bool,
    /// `None`: no usage queue.
    pub queue_url: Option<String>,
    /// Where the usage queue and LookupEvents are (`usage.region`, else `events.region`);
    /// `None`: the region of the AWS settings.
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub backfill: bool,
    pub cloudtrail_endpoint_url: Option<String>,
    pub live_window: chrono::TimeDelta,
    pub hold_live_keys: bool,
}

/// `[rotation]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RotationSettings {
    pub secret_prefix: String,
    /// Zero: no automatic rotation.
    pub auto_before: chrono::TimeDelta,
    /// `None`: the region of the AWS settings.
    pub region: Option<String>,
    /// `None`: Secrets Manager's regional endpoint (`rotation.endpoint_url`, else
    /// `aws.endpoint_url`).
    pub endpoint_url: Option<String>,
}

/// `[export.security_hub]`, validated and enabled.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityHubSettings {
    /// `None`: the region of the AWS settings.
    pub region: Option<String>,
    /// `None`: `aws.endpoint_url`, else Security Hub's regional endpoint.
    pub endpoint_url: Option<String>,
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
    /// The action journal (`state.journal_path`, else `actions.jsonl` next to the state).
    pub journal_path: PathBuf,
    pub journal_retention: chrono::TimeDelta,
    /// `state.backend`: where the state, the journal and (with a table) the leader lease live.
    pub backend: StateBackend,
    /// `[export.security_hub]`, when enabled.
    pub security_hub: Option<SecurityHubSettings>,
    /// `[events]`, when a queue is set.
    pub events: Option<EventsSettings>,
    pub rotation: RotationSettings,
    pub usage: UsageSettings,
    pub metrics_listen: SocketAddr,
    pub metrics_per_key: PerKey,
    /// TLS and basic auth of the listener; swapped in on reload.
    pub metrics_web: Arc<crate::sys::web::Web>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// Where each `[[exemptions]]` entry is (file and line, or variable), for warnings.
    pub exemption_places: Vec<Issue>,
    /// The merged raw values, for `check-config` to print.
    pub effective: RawConfig,
}

impl Config {
    /// `rotation.auto_before` above zero: the daemon rotates tagged users.
    pub fn auto_rotation(&self) -> bool {
        self.rotation.auto_before > chrono::TimeDelta::zero()
    }

    /// Whether user tags are read: for the policy (owners, exemptions) or for the rotation tag.
    pub fn needs_tags(&self) -> bool {
        self.policy.needs_tags() || self.auto_rotation()
    }

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

//! The raw layer: mirrors the file. Unknown keys are rejected; every field has the documented
//! default.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
    pub owners: RawOwners,
    pub exemptions_from_tags: RawTagExemptions,
    pub export: RawExport,
    pub events: RawEvents,
    pub rotation: RawRotation,
    pub usage: RawUsage,
}

/// `[rotation]`: where `keywarden rotate` (and the daemon, for tagged users) hands new keys
/// over.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRotation {
    /// Secret names are `<secret_prefix><account_id>/<user>`.
    pub secret_prefix: String,
    /// Above zero: users tagged `keywarden:rotate = "secretsmanager"` get a new key this long
    /// before their active key reaches `rules.max_key_age.max_age`.
    pub auto_before: String,
    /// Default: `aws.region`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Default: Secrets Manager's regional endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
}

impl Default for RawRotation {
    fn default() -> Self {
        RawRotation {
            secret_prefix: "keywarden/".into(),
            auto_before: "0s".into(),
            region: None,
            endpoint_url: None,
        }
    }
}

/// `[usage]`: usage profiles of access keys, from CloudTrail events signed by a long-term key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUsage {
    /// Keep usage profiles (the daemon consumes `queue_url`).
    pub enabled: bool,
    /// The queue EventBridge feeds with events signed by long-term keys; empty: none.
    pub queue_url: String,
    /// Default: `events.region`, else `aws.region`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Default: SQS's regional endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// The leader backfills keys without a profile from CloudTrail's LookupEvents.
    pub backfill: bool,
    /// Default: CloudTrail's regional endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloudtrail_endpoint_url: Option<String>,
    /// A key called within this window is in live use.
    pub live_window: String,
    /// Hold a due deactivation of a key in live use (bounded, journaled).
    pub hold_live_keys: bool,
}

impl Default for RawUsage {
    fn default() -> Self {
        RawUsage {
            enabled: false,
            queue_url: String::new(),
            region: None,
            endpoint_url: None,
            backfill: false,
            cloudtrail_endpoint_url: None,
            live_window: "24h".into(),
            hold_live_keys: false,
        }
    }
}

/// `[events]`: the queue EventBridge feeds with IAM's CloudTrail events (absent or empty
/// `queue_url`: no events, the cron alone).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEvents {
    pub queue_url: String,
    /// Default: `aws.region`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Default: SQS's regional endpoint (not `aws.endpoint_url`: another service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// How long one ReceiveMessage waits for a message (long polling; 1 s to 20 s).
    pub poll_wait: String,
    /// SNS topics whose notifications are read when a topic sits between EventBridge and the
    /// queue; empty: SNS-wrapped messages are ignored.
    pub sns_topic_arns: Vec<String>,
}

impl Default for RawEvents {
    fn default() -> Self {
        RawEvents {
            queue_url: String::new(),
            region: None,
            endpoint_url: None,
            poll_wait: "20s".into(),
            sns_topic_arns: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawExport {
    pub security_hub: RawSecurityHub,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSecurityHub {
    pub enabled: bool,
    /// Default: `aws.region`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Default: `aws.endpoint_url`, else Security Hub's regional endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOwners {
    /// IAM user tag keys; the first one a user has names its owner.
    pub tags: Vec<String>,
    pub default: String,
    pub map: Vec<RawOwnerMap>,
}

impl Default for RawOwners {
    fn default() -> Self {
        RawOwners {
            tags: Vec::new(),
            default: "unowned".into(),
            map: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOwnerMap {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    pub owner: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTagExemptions {
    pub enabled: bool,
    pub max_duration: String,
    /// Empty: every rule.
    pub rules: Vec<String>,
}

impl Default for RawTagExemptions {
    fn default() -> Self {
        RawTagExemptions {
            enabled: false,
            max_duration: "90d".into(),
            rules: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSchedule {
    pub cron: String,
    /// IANA zone of the cron expression.
    pub timezone: String,
    pub run_on_start: bool,
    /// A run older than this makes `/-/healthy` 503 and stops the systemd watchdog.
    pub max_run_duration: String,
}

impl Default for RawSchedule {
    fn default() -> Self {
        RawSchedule {
            cron: "0 0 * * * *".into(),
            timezone: "UTC".into(),
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
    /// Default: 4, or 16 with `[aws.organization]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_accounts: Option<u32>,
    /// Credential-report mode: list every user's key ids afresh every this many runs (in
    /// between, only users whose report slots changed).
    pub full_refresh_every: u32,
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
            max_concurrent_accounts: None,
            full_refresh_every: 24,
            accounts: Vec::new(),
            organization: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRules {
    pub exposed_key: RawRule,
    pub multiple_active_keys: RawRule,
    pub max_key_age: RawRule,
    pub unused_key: RawRule,
    pub unused_password: RawRule,
    pub max_credential_age: RawRule,
    pub long_term_service_credential: RawRule,
}

impl Default for RawRules {
    fn default() -> Self {
        let mut rules = RawRules {
            exposed_key: RawRule::default(),
            multiple_active_keys: RawRule::default(),
            max_key_age: RawRule::default(),
            unused_key: RawRule::default(),
            unused_password: RawRule::default(),
            max_credential_age: RawRule::default(),
            long_term_service_credential: RawRule::default(),
        };
        rules.fill_defaults();
        rules
    }
}

impl RawRules {
    /// A rule table that sets only some keys keeps the rule's own defaults for the others.
    pub(super) fn fill_defaults(&mut self) {
        let fill = |r: &mut RawRule, enabled: bool, action: &str| {
            r.enabled.get_or_insert(enabled);
            r.action.get_or_insert_with(|| action.to_string());
        };
        fill(&mut self.exposed_key, true, "deactivate");
        fill(&mut self.multiple_active_keys, true, "deactivate");
        fill(&mut self.max_key_age, true, "report");
        fill(&mut self.unused_key, true, "deactivate");
        // The password columns come with the credential report at no cost; in api mode each
        // user costs one GetLoginProfile. The other two rules list up to three kinds per user
        // and run: off until asked for (docs/credentials.md).
        fill(&mut self.unused_password, true, "report");
        fill(&mut self.max_credential_age, false, "report");
        fill(&mut self.long_term_service_credential, false, "report");
        self.unused_password.max_unused.get_or_insert_with(|| "45d".into());
        self.max_credential_age.max_age.get_or_insert_with(|| "90d".into());
        self.max_credential_age.types.get_or_insert_with(|| {
            ["ssh_public_key", "service_specific_credential", "signing_certificate"]
                .map(String::from)
                .to_vec()
        });
        self.long_term_service_credential
            .max_lifetime
            .get_or_insert_with(|| "90d".into());
        self.long_term_service_credential.services.get_or_insert_with(Vec::new);
        self.multiple_active_keys.wait_for_kept_key.get_or_insert(true);
        self.max_key_age.max_age.get_or_insert_with(|| "90d".into());
        self.unused_key.max_unused.get_or_insert_with(|| "45d".into());
        self.exposed_key.grace_period.get_or_insert_with(|| "0s".into());
        self.exposed_key.revoke_sessions.get_or_insert(true);
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
    /// `exposed_key` only: its own grace period (default `0s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<String>,
    /// `exposed_key` only: deny the sessions issued before the deactivation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoke_sessions: Option<bool>,
    /// `long_term_service_credential` only: the longest lifetime allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lifetime: Option<String>,
    /// `max_credential_age` only: the credential kinds it checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    /// `long_term_service_credential` only: the services it checks (empty: every one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEnforcement {
    pub mode: String,
    pub grace_period: String,
    pub max_deactivations_per_run: u32,
    /// `DAYS HH:MM-HH:MM` each; empty: any time.
    pub windows: Vec<String>,
    /// IANA zone of the windows.
    pub timezone: String,
}

impl Default for RawEnforcement {
    fn default() -> Self {
        RawEnforcement {
            mode: "dry-run".into(),
            grace_period: "7d".into(),
            max_deactivations_per_run: 25,
            windows: Vec::new(),
            timezone: "UTC".into(),
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
    /// A date (`2027-06-30`: through that day, UTC) or an RFC 3339 date-time, written as a
    /// string or as a bare TOML date-time.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "text_or_datetime"
    )]
    pub expires: Option<String>,
}

/// A TOML date-time (`expires = 2027-06-30T00:00:00Z`) reaches serde as a one-key map; taken
/// as its text, so that it is checked like the string form.
fn text_or_datetime<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Text(String),
        Datetime {
            #[serde(rename = "$__toml_private_datetime")]
            value: String,
        },
    }
    Ok(Option::<Form>::deserialize(d)?.map(|f| match f {
        Form::Text(t) => t,
        Form::Datetime { value } => value,
    }))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawState {
    /// `file` or `dynamodb`.
    pub backend: String,
    pub path: PathBuf,
    /// Default: `actions.jsonl` in the directory of `path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal_path: Option<PathBuf>,
    pub journal_retention: String,
    pub dynamodb: RawDynamoDb,
}

impl Default for RawState {
    fn default() -> Self {
        RawState {
            backend: "file".into(),
            path: "/var/lib/keywarden/state.json".into(),
            journal_path: None,
            journal_retention: "400d".into(),
            dynamodb: RawDynamoDb::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDynamoDb {
    pub table: String,
    /// Default: `aws.region`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    pub lease_duration: String,
    /// Default (empty): `hostname:pid`.
    pub instance_id: String,
}

impl Default for RawDynamoDb {
    fn default() -> Self {
        RawDynamoDb {
            table: "keywarden".into(),
            region: None,
            endpoint_url: None,
            lease_duration: "30s".into(),
            instance_id: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    pub listen: String,
    /// `true`, `false` or `"findings"`.
    pub per_key: RawPerKey,
    /// HTTPS instead of HTTP (exporter-toolkit's `tls_server_config`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawTls>,
    /// user name -> bcrypt hash (exporter-toolkit's `basic_auth_users`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub basic_auth_users: BTreeMap<String, String>,
}

/// `metrics.per_key` as written: a boolean, or a word (only `"findings"` is valid).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawPerKey {
    Bool(bool),
    Word(String),
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
            per_key: RawPerKey::Bool(true),
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

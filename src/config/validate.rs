//! Validation: raw strings -> typed values. Collects every issue, not just the first.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;

use super::durations::{parse_duration, to_delta};
use super::locate::Locator;
use super::rules::rule_policy;
use super::*;
use crate::core::model::Timestamp;
use crate::core::owners::{OwnerRule, Owners, TagExemptions};
use crate::core::policy::{Exemption, Policy, Rule, Rules};
use crate::core::windows::{Window, Windows};

// ---------------------------------------------------------------------------------------------
// Validation: raw strings -> typed values. Collects every issue, not just the first.

/// The policy with `usage.hold_live_keys` (which needs the usage profiles kept).
fn with_holds(policy: Option<Policy>, usage: Option<&UsageSettings>) -> Option<Policy> {
    let hold_live = usage.filter(|u| u.enabled && u.hold_live_keys).map(|u| u.live_window);
    policy.map(|p| Policy { hold_live, ..p })
}

/// Raw -> validated: each section checks its own keys (all problems at once), then the
/// sections are assembled. Nothing downstream sees a raw string.
pub(super) fn validate(mut raw: RawConfig, at: &Locator<'_>) -> Result<Config, ConfigError> {
    raw.rules.fill_defaults();
    let mut c = Checker { at, issues: Vec::new() };
    let schedule = c.schedule(&raw.schedule);
    let aws = c.aws(&raw.aws);
    let policy = c.policy(&raw);
    let mode = c.mode(&raw.enforcement.mode);
    let listener = c.listener(&raw.metrics);
    let log_format = c.log(&raw.log);
    if raw.state.path.as_os_str().is_empty() {
        c.push("state.path", "must not be empty");
    }
    let journal_retention = c.duration("state.journal_retention", &raw.state.journal_retention);
    let journal_path = match &raw.state.journal_path {
        Some(p) if p.as_os_str().is_empty() => {
            c.push(
                "state.journal_path",
                "must not be empty (omit it for actions.jsonl next to the state)",
            );
            None
        }
        Some(p) => Some(p.clone()),
        None => Some(raw.state.path.with_file_name("actions.jsonl")),
    };
    let backend = c.backend(&raw.state);
    let security_hub = c.security_hub(&raw.export.security_hub);
    let events = c.events(&raw.events);
    let usage = c.usage(&raw.usage, raw.events.region.as_deref());
    let max_age = policy.as_ref().map(|p| p.rules.max_key_age.threshold);
    let rotation = c.rotation(&raw.rotation, max_age, raw.aws.endpoint_url.as_deref());
    let per_key = match &raw.metrics.per_key {
        RawPerKey::Bool(true) => Some(PerKey::All),
        RawPerKey::Bool(false) => Some(PerKey::Off),
        RawPerKey::Word(w) if w == "findings" => Some(PerKey::Findings),
        RawPerKey::Word(w) => {
            c.push("metrics.per_key", format!("{w:?} is not true, false or \"findings\""));
            None
        }
    };
    c.cap(raw.enforcement.max_deactivations_per_run);
    let exemption_places = places(at, "exemptions", raw.exemptions.len());
    if !c.issues.is_empty() {
        return Err(ConfigError::Invalid { issues: c.issues });
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
    let (metrics_listen, metrics_web) = listener.ok_or_else(missing)?;
    Ok(Config {
        source: None,
        schedule: schedule.ok_or_else(missing)?,
        aws: aws.ok_or_else(missing)?,
        policy: with_holds(policy, usage.as_ref()).ok_or_else(missing)?,
        enforcement: Enforcement {
            mode: mode.ok_or_else(missing)?,
            max_deactivations_per_run: raw.enforcement.max_deactivations_per_run as usize,
        },
        state_path: raw.state.path.clone(),
        journal_path: journal_path.ok_or_else(missing)?,
        journal_retention: to_delta(journal_retention.ok_or_else(missing)?),
        backend: backend.ok_or_else(missing)?,
        security_hub: security_hub.ok_or_else(missing)?,
        events: events.ok_or_else(missing)?,
        rotation: rotation.ok_or_else(missing)?,
        usage: usage.ok_or_else(missing)?,
        metrics_listen,
        metrics_per_key: per_key.ok_or_else(missing)?,
        metrics_web,
        log_format: log_format.ok_or_else(missing)?,
        log_level: raw.log.level.clone(),
        exemption_places,
        effective: raw,
    })
}

/// Collects the issues of one validation; each section returns `None` after pushing at least
/// one issue.
struct Checker<'a, 'b> {
    at: &'a Locator<'b>,
    issues: Vec<Issue>,
}

impl Checker<'_, '_> {
    fn push(&mut self, key: &str, message: impl Into<String>) {
        self.issues.push(self.at.issue(key, message));
    }

    fn duration(&mut self, key: &str, s: &str) -> Option<Duration> {
        parse_duration(s).map_err(|e| self.push(key, e)).ok()
    }

    /// One of `choices` (raw value -> typed value), else an issue listing them.
    fn one_of<T: Copy>(&mut self, key: &str, value: &str, choices: &[(&str, T)]) -> Option<T> {
        if let Some((_, v)) = choices.iter().find(|(name, _)| *name == value) {
            return Some(*v);
        }
        let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
        let list = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        };
        self.push(key, format!("{value:?} is not {list}"));
        None
    }

    fn backend(&mut self, raw: &RawState) -> Option<StateBackend> {
        #[derive(Clone, Copy)]
        enum Kind {
            File,
            DynamoDb,
        }
        let kind = self.one_of(
            "state.backend",
            &raw.backend,
            &[("file", Kind::File), ("dynamodb", Kind::DynamoDb)],
        )?;
        let d = &raw.dynamodb;
        // Checked whatever the backend, so a switch later meets no surprise.
        let lease = self.duration("state.dynamodb.lease_duration", &d.lease_duration);
        if lease.is_some_and(|l| l < Duration::from_secs(3)) {
            self.push(
                "state.dynamodb.lease_duration",
                "must be at least 3s (renewals come every third of it)",
            );
        }
        let valid_name = |t: &str| {
            (3..=255).contains(&t.len())
                && t.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'))
        };
        if !valid_name(&d.table) {
            self.push(
                "state.dynamodb.table",
                format!(
                    "{:?} is not a DynamoDB table name (3-255 of a-z, A-Z, 0-9, _, -, .)",
                    d.table
                ),
            );
        }
        self.endpoint_url("state.dynamodb.endpoint_url", d.endpoint_url.as_deref());
        let lease = lease.filter(|l| *l >= Duration::from_secs(3))?;
        if !valid_name(&d.table) {
            return None;
        }
        Some(match kind {
            Kind::File => StateBackend::File,
            Kind::DynamoDb => StateBackend::DynamoDb(DynamoDbSettings {
                table: d.table.clone(),
                region: d.region.clone().filter(|r| !r.is_empty()),
                endpoint_url: d.endpoint_url.clone().filter(|u| !u.is_empty()),
                lease_duration: lease,
                instance_id: Some(d.instance_id.trim().to_string()).filter(|i| !i.is_empty()),
            }),
        })
    }

    /// Whether an optional service endpoint is an http(s) URL; reported under `key` if not.
    fn endpoint_url(&mut self, key: &str, url: Option<&str>) -> bool {
        let ok = url.is_none_or(|u| u.starts_with("http://") || u.starts_with("https://"));
        if !ok {
            self.push(key, "must start with http:// or https://");
        }
        ok
    }

    /// `[rotation]`: a secret prefix Secrets Manager accepts, and an `auto_before` shorter than
    /// `max_age` (else every key would be rotated as soon as it is made).
    /// Without its own `endpoint_url`, Secrets Manager is reached at `aws.endpoint_url` when
    /// that is set (an emulator or a proxy serving every service), as Security Hub is.
    fn rotation(
        &mut self,
        raw: &RawRotation,
        max_age: Option<TimeDelta>,
        aws_endpoint: Option<&str>,
    ) -> Option<RotationSettings> {
        let endpoint_ok = self.endpoint_url("rotation.endpoint_url", raw.endpoint_url.as_deref());
        let region_ok = self.region("rotation.region", raw.region.as_deref());
        let prefix_ok = raw
            .secret_prefix
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "/_+=.@-".contains(ch));
        if !prefix_ok {
            self.push(
                "rotation.secret_prefix",
                "may hold only letters, digits and /_+=.@- (Secrets Manager's names)",
            );
        }
        let before = self.duration("rotation.auto_before", &raw.auto_before).map(to_delta);
        let before = match (before, max_age) {
            (Some(b), Some(m)) if b > TimeDelta::zero() && b >= m => {
                self.push(
                    "rotation.auto_before",
                    "must be shorter than rules.max_key_age.max_age (a new key would be rotated at once)",
                );
                None
            }
            (b, _) => b,
        };
        if !(endpoint_ok && region_ok && prefix_ok) {
            return None;
        }
        Some(RotationSettings {
            secret_prefix: raw.secret_prefix.clone(),
            auto_before: before?,
            region: raw.region.clone(),
            endpoint_url: raw
                .endpoint_url
                .as_deref()
                .or(aws_endpoint)
                .filter(|u| !u.is_empty())
                .map(str::to_string),
        })
    }

    /// `enforcement.max_deactivations_per_run`: at least 1.
    fn cap(&mut self, cap: u32) {
        if cap == 0 {
            self.push(
                "enforcement.max_deactivations_per_run",
                "must be at least 1: a cap of 0 would deactivate nothing while the mode says enforce (to act on nothing, set enforcement.mode = \"dry-run\")",
            );
        }
    }

    /// `Some(None)` without a queue; checked either way.
    fn events(&mut self, raw: &RawEvents) -> Option<Option<EventsSettings>> {
        let endpoint_ok = self.endpoint_url("events.endpoint_url", raw.endpoint_url.as_deref());
        let region_ok = self.region("events.region", raw.region.as_deref());
        let wait = self.duration("events.poll_wait", &raw.poll_wait);
        let wait = wait.and_then(|w| {
            if (Duration::from_secs(1)..=Duration::from_secs(20)).contains(&w) {
                Some(w)
            } else {
                self.push("events.poll_wait", "must be 1s to 20s (SQS's long polling)");
                None
            }
        });
        let url = raw.queue_url.trim();
        let url_ok = self.queue_url("events.queue_url", url);
        let topics_ok = raw.sns_topic_arns.iter().all(|t| {
            let ok = t.starts_with("arn:") && t.split(':').nth(2) == Some("sns") && t.split(':').count() == 6;
            if !ok {
                self.push(
                    "events.sns_topic_arns",
                    format!("{t:?} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"),
                );
            }
            ok
        });
        let wait = wait?;
        if !(endpoint_ok && region_ok && url_ok && topics_ok) {
            return None;
        }
        Some((!url.is_empty()).then(|| EventsSettings {
            queue_url: url.to_string(),
            region: raw.region.clone(),
            endpoint_url: raw.endpoint_url.clone().filter(|u| !u.is_empty()),
            poll_wait: wait,
            sns_topic_arns: raw.sns_topic_arns.clone(),
        }))
    }

    /// An SQS queue's URL, or empty (no queue).
    fn queue_url(&mut self, key: &str, url: &str) -> bool {
        let ok = url.is_empty() || url.starts_with("https://") || url.starts_with("http://");
        if !ok {
            self.push(
                key,
                "must be the queue's URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)",
            );
        }
        ok
    }

    /// `[usage]`; `events_region`: its region's default.
    fn usage(&mut self, raw: &RawUsage, events_region: Option<&str>) -> Option<UsageSettings> {
        let endpoint_ok = self.endpoint_url("usage.endpoint_url", raw.endpoint_url.as_deref());
        let trail_ok = self.endpoint_url("usage.cloudtrail_endpoint_url", raw.cloudtrail_endpoint_url.as_deref());
        let region_ok = self.region("usage.region", raw.region.as_deref());
        let window = self.duration("usage.live_window", &raw.live_window).map(to_delta);
        let url = raw.queue_url.trim();
        let url_ok = self.queue_url("usage.queue_url", url);
        let window = window?;
        if raw.hold_live_keys && !raw.enabled {
            self.push(
                "usage.hold_live_keys",
                "needs usage.enabled = true: holds come from the usage profiles",
            );
            return None;
        }
        if !(endpoint_ok && trail_ok && region_ok && url_ok) {
            return None;
        }
        Some(UsageSettings {
            enabled: raw.enabled,
            queue_url: (!url.is_empty()).then(|| url.to_string()),
            region: raw.region.clone().or_else(|| events_region.map(str::to_string)),
            endpoint_url: raw.endpoint_url.clone().filter(|u| !u.is_empty()),
            backfill: raw.backfill,
            cloudtrail_endpoint_url: raw.cloudtrail_endpoint_url.clone().filter(|u| !u.is_empty()),
            live_window: window,
            hold_live_keys: raw.hold_live_keys,
        })
    }

    /// An AWS region name, when given.
    fn region(&mut self, key: &str, region: Option<&str>) -> bool {
        let ok = region.is_none_or(|r| {
            !r.is_empty()
                && r.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        });
        if !ok {
            self.push(key, format!("{:?} is not an AWS region name", region.unwrap_or("")));
        }
        ok
    }

    /// `Some(None)` when the export is off; checked whether on or off.
    fn security_hub(&mut self, raw: &RawSecurityHub) -> Option<Option<SecurityHubSettings>> {
        if !self.endpoint_url("export.security_hub.endpoint_url", raw.endpoint_url.as_deref()) {
            return None;
        }
        if !self.region("export.security_hub.region", raw.region.as_deref()) {
            return None;
        }
        Some(raw.enabled.then(|| SecurityHubSettings {
            region: raw.region.clone(),
            endpoint_url: raw.endpoint_url.clone().filter(|u| !u.is_empty()),
        }))
    }

    fn schedule(&mut self, raw: &RawSchedule) -> Option<Schedule> {
        let cron = validate_cron(&raw.cron).map_err(|e| self.push("schedule.cron", e)).ok();
        let max_run = self.duration("schedule.max_run_duration", &raw.max_run_duration);
        let tz = self.timezone("schedule.timezone", &raw.timezone);
        cron?;
        Some(Schedule {
            cron: raw.cron.clone(),
            timezone: tz?,
            run_on_start: raw.run_on_start,
            max_run_duration: max_run?,
        })
    }

    fn aws(&mut self, raw: &RawAws) -> Option<AwsSettings> {
        let connect_timeout = self.duration("aws.connect_timeout", &raw.connect_timeout);
        let attempt_timeout = self.duration("aws.attempt_timeout", &raw.attempt_timeout);
        let operation_timeout = self.duration("aws.operation_timeout", &raw.operation_timeout);
        // An organization has many accounts, each with its own IAM rate: read more at once
        // (the global request bound and the per-account rates stay what they are).
        let max_concurrent_accounts =
            raw.max_concurrent_accounts
                .unwrap_or(if raw.organization.is_some() { 16 } else { 4 });
        for (key, n) in [
            ("aws.max_concurrent_requests", raw.max_concurrent_requests),
            ("aws.max_concurrent_accounts", max_concurrent_accounts),
            ("aws.max_attempts", raw.max_attempts),
            ("aws.full_refresh_every", raw.full_refresh_every),
        ] {
            if n == 0 {
                self.push(key, "must be at least 1");
            }
        }
        let accounts = accounts(&raw.accounts, self.at, &mut self.issues);
        let organization = match &raw.organization {
            Some(o) => Some(organization(o, self.at, &mut self.issues)),
            None => None,
        };
        if let Some(url) = &raw.endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                self.push("aws.endpoint_url", format!("{url:?} is not an http:// or https:// URL"));
            }
        }
        for (key, v) in [("aws.region", &raw.region), ("aws.profile", &raw.profile)] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                self.push(key, "must not be empty (leave it out instead)");
            }
        }
        use crate::ports::InventoryMode as M;
        let inventory = self.one_of(
            "aws.inventory",
            &raw.inventory,
            &[
                ("api", M::Api),
                ("credential-report", M::CredentialReport),
                ("auto", M::Auto),
            ],
        );
        Some(AwsSettings {
            region: raw.region.clone(),
            profile: raw.profile.clone(),
            endpoint_url: raw.endpoint_url.clone(),
            inventory: inventory?,
            credential_report_min_users: raw.credential_report_min_users as usize,
            max_concurrent_requests: raw.max_concurrent_requests as usize,
            max_requests_per_second: raw.max_requests_per_second,
            max_attempts: raw.max_attempts,
            connect_timeout: connect_timeout?,
            attempt_timeout: attempt_timeout?,
            operation_timeout: operation_timeout?,
            max_concurrent_accounts: max_concurrent_accounts as usize,
            full_refresh_every: raw.full_refresh_every,
            accounts: accounts?,
            organization: match organization {
                Some(o) => Some(o?),
                None => None,
            },
        })
    }

    fn policy(&mut self, raw: &RawConfig) -> Option<Policy> {
        let grace = self.duration("enforcement.grace_period", &raw.enforcement.grace_period);
        let (at, issues) = (self.at, &mut self.issues);
        let rules = &raw.rules;
        let exposed = rule_policy(&rules.exposed_key, Rule::ExposedKey, at, issues);
        let multiple = rule_policy(&rules.multiple_active_keys, Rule::MultipleActiveKeys, at, issues);
        let max_age = rule_policy(&rules.max_key_age, Rule::MaxKeyAge, at, issues);
        let unused = rule_policy(&rules.unused_key, Rule::UnusedKey, at, issues);
        let password = rule_policy(&rules.unused_password, Rule::UnusedPassword, at, issues);
        let credential_age = rule_policy(&rules.max_credential_age, Rule::MaxCredentialAge, at, issues);
        let credential_types = super::rules::credential_types(&rules.max_credential_age, at, issues);
        let long_term = rule_policy(
            &rules.long_term_service_credential,
            Rule::LongTermServiceCredential,
            at,
            issues,
        );
        let services = super::rules::services(&rules.long_term_service_credential, at, issues);
        // Collected into a Vec first so every entry is checked (collecting straight into an
        // Option would stop at the first bad one and hide the others' issues).
        let exemptions: Option<Vec<Exemption>> = raw
            .exemptions
            .iter()
            .enumerate()
            .map(|(i, e)| exemption(i, e, at, issues))
            .collect::<Vec<_>>()
            .into_iter()
            .collect();
        let owners = self.owners(&raw.owners);
        let tag_exemptions = self.tag_exemptions(&raw.exemptions_from_tags);
        let windows = self.windows(&raw.enforcement);
        Some(Policy {
            rules: Rules {
                exposed_key: exposed?,
                multiple_active_keys: multiple?,
                max_key_age: max_age?,
                unused_key: unused?,
                unused_password: password?,
                max_credential_age: credential_age?,
                credential_types: credential_types?,
                long_term_service_credential: long_term?,
                services: services?,
            },
            exemptions: exemptions?,
            owners: owners?,
            tag_exemptions: tag_exemptions?,
            windows: windows?,
            grace_period: to_delta(grace?),
            wait_for_kept_key: rules.multiple_active_keys.wait_for_kept_key.unwrap_or(true),
            revoke_sessions: rules.exposed_key.revoke_sessions.unwrap_or(true),
            // From `[usage]`, once it is validated.
            hold_live: None,
        })
    }

    fn owners(&mut self, raw: &RawOwners) -> Option<Owners> {
        let before = self.issues.len();
        for (i, tag) in raw.tags.iter().enumerate() {
            if tag.trim().is_empty() {
                self.push(&format!("owners.tags.{i}"), "must not be empty");
            }
        }
        if raw.default.trim().is_empty() {
            self.push(
                "owners.default",
                "must name an owner (it labels the alerts of every unowned user)",
            );
        }
        let mut map = Vec::new();
        for (i, m) in raw.map.iter().enumerate() {
            let key = |k: &str| format!("owners.map.{i}.{k}");
            if m.user.is_none() && m.path_prefix.is_none() {
                self.push(&format!("owners.map.{i}"), "needs user (a glob) and/or path_prefix");
            }
            if m.owner.trim().is_empty() {
                self.push(&key("owner"), "must not be empty");
            }
            let user = match m.user.as_deref().map(glob::Pattern::new) {
                Some(Err(e)) => {
                    self.push(
                        &key("user"),
                        format!("invalid glob {:?}: {e}", m.user.as_deref().unwrap_or("")),
                    );
                    None
                }
                Some(Ok(p)) => Some(p),
                None => None,
            };
            map.push(OwnerRule {
                user,
                path_prefix: m.path_prefix.clone(),
                owner: m.owner.trim().to_string(),
            });
        }
        (self.issues.len() == before).then(|| Owners {
            tags: raw.tags.iter().map(|t| t.trim().to_string()).collect(),
            map,
            default: raw.default.trim().to_string(),
        })
    }

    fn windows(&mut self, raw: &RawEnforcement) -> Option<Windows> {
        let tz = self.timezone("enforcement.timezone", &raw.timezone);
        let before = self.issues.len();
        let list: Vec<Window> = raw
            .windows
            .iter()
            .enumerate()
            .filter_map(|(i, w)| {
                Window::parse(w)
                    .map_err(|e| self.push(&format!("enforcement.windows.{i}"), e))
                    .ok()
            })
            .collect();
        (self.issues.len() == before).then_some(())?;
        Some(Windows { list, tz: tz? })
    }

    fn timezone(&mut self, key: &str, name: &str) -> Option<chrono_tz::Tz> {
        name.parse::<chrono_tz::Tz>()
            .map_err(|_| {
                self.push(
                    key,
                    format!("{name:?} is not an IANA time zone (e.g. \"UTC\", \"Europe/Berlin\")"),
                )
            })
            .ok()
    }

    fn tag_exemptions(&mut self, raw: &RawTagExemptions) -> Option<TagExemptions> {
        let max = self.duration("exemptions_from_tags.max_duration", &raw.max_duration);
        let before = self.issues.len();
        let rules = rule_names(&raw.rules, "exemptions_from_tags.rules", self.at, &mut self.issues);
        if self.issues.len() > before {
            return None;
        }
        Some(TagExemptions {
            enabled: raw.enabled,
            max_duration: to_delta(max?),
            rules: (!rules.is_empty()).then_some(rules),
        })
    }

    fn mode(&mut self, raw: &str) -> Option<Mode> {
        self.one_of(
            "enforcement.mode",
            raw,
            &[("dry-run", Mode::DryRun), ("enforce", Mode::Enforce)],
        )
    }

    /// The listener's address, and its TLS and basic auth (certificate files are read here, so
    /// `check-config` names a missing one).
    fn listener(&mut self, raw: &RawMetrics) -> Option<(SocketAddr, Arc<crate::sys::web::Web>)> {
        let listen = raw.listen.parse::<SocketAddr>().ok();
        if listen.is_none() {
            let message = format!("{:?} is not an address:port such as \"127.0.0.1:9786\"", raw.listen);
            self.push("metrics.listen", message);
        }
        let tls = raw.tls.as_ref().map(|t| {
            crate::sys::web::tls_acceptor(&t.cert_file, &t.key_file)
                .map_err(|e| self.push("metrics.tls", e))
                .ok()
        });
        for (user, hash) in &raw.basic_auth_users {
            let key = format!("metrics.basic_auth_users.{user}");
            if user.is_empty() || user.contains(':') {
                self.push(&key, "a user name must be non-empty and without ':'");
            }
            if let Err(e) = crate::sys::web::check_hash(hash) {
                self.push(&key, e);
            }
        }
        let tls = match tls {
            Some(acceptor) => Some(acceptor?),
            None => None,
        };
        let web = crate::sys::web::Web::new(tls, raw.basic_auth_users.clone());
        Some((listen?, Arc::new(web)))
    }

    fn log(&mut self, raw: &RawLog) -> Option<LogFormat> {
        let format = self.one_of(
            "log.format",
            &raw.format,
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        );
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&raw.level) {
            self.push("log.level", format!("{:?} is not a level or filter: {e}", raw.level));
        }
        format
    }
}

/// The scheduler (tokio-cron-scheduler) parses with croner, seconds required; use the same
/// settings so a schedule accepted here is accepted there.
/// Where each entry of the array `key` is (file and line, or variable), for later warnings.
fn places(at: &Locator<'_>, key: &str, n: usize) -> Vec<Issue> {
    (0..n)
        .map(|i| Issue {
            message: String::new(),
            ..at.issue(&format!("{key}.{i}"), "")
        })
        .collect()
}

pub fn validate_cron(expr: &str) -> Result<(), String> {
    let fields = expr.split_whitespace().count();
    if fields != 6 {
        return Err(format!(
            "{expr:?} has {fields} fields; expected 6 (sec min hour day-of-month month day-of-week), e.g. \"0 0 * * * *\""
        ));
    }
    let parse = |e: &str| {
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(e)
            .map(|_| ())
    };
    parse(expr).map_err(|e| {
        // croner says what is wrong ("Number out of bounds"), not where: try each field alone.
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let bad = (0..fields.len()).find(|&i| {
            let alone: Vec<&str> = (0..fields.len())
                .map(|j| if j == i { fields[j] } else { "*" })
                .collect();
            parse(&alone.join(" ")).is_err()
        });
        match bad {
            Some(i) => format!(
                "invalid cron expression {expr:?}: field {} ({}) {:?}: {e}; it takes {}",
                i + 1,
                CRON_FIELDS[i].0,
                fields[i],
                CRON_FIELDS[i].1
            ),
            None => format!("invalid cron expression {expr:?}: {e}"),
        }
    })
}

/// The six fields of `schedule.cron`, and what each takes.
const CRON_FIELDS: [(&str, &str); 6] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day of week", "0-6 or SUN-SAT"),
];

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

/// Rule names -> rules; each unknown name is an issue at `key`.
fn rule_names(names: &[String], key: &str, at: &Locator<'_>, issues: &mut Vec<Issue>) -> Vec<Rule> {
    names
        .iter()
        .filter_map(|n| {
            let r = Rule::parse(n);
            if r.is_none() {
                issues.push(at.issue(
                    key,
                    format!("unknown rule {n:?} (known: exposed_key, multiple_active_keys, max_key_age, unused_key)"),
                ));
            }
            r
        })
        .collect()
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
    let rules = raw
        .rules
        .as_ref()
        .map(|names| rule_names(names, &key("rules"), at, issues));
    let expires: Option<Timestamp> = raw
        .expires
        .as_deref()
        .and_then(|s| match crate::core::owners::parse_until(s) {
            Some(t) => Some(t),
            None => {
                issues.push(at.issue(
                    &key("expires"),
                    format!("{s:?} is not a date (YYYY-MM-DD, through that day UTC) or an RFC 3339 date-time"),
                ));
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
    fn holds_need_the_profiles_and_take_the_live_window() {
        let dir = std::env::temp_dir().join(format!("keywarden-holds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.toml");
        let load = |usage: &str| {
            std::fs::write(&path, format!("[usage]\n{usage}")).unwrap();
            crate::config::load(&path, true)
        };
        let err = load("hold_live_keys = true\n").unwrap_err().to_string();
        assert!(
            err.contains("usage.hold_live_keys") && err.contains("usage.enabled"),
            "{err}"
        );
        let c = load("enabled = true\nhold_live_keys = true\nlive_window = \"2h\"\n").unwrap();
        assert_eq!(c.policy.hold_live, Some(TimeDelta::hours(2)));
        assert_eq!(load("enabled = true\n").unwrap().policy.hold_live, None);
        let _ = std::fs::remove_dir_all(&dir);
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
        let e = validate_cron("0 0 25 * * *").unwrap_err();
        assert!(e.contains("field 3 (hour) \"25\"") && e.contains("0-23"), "{e}");
    }
}

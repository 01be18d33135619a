//! What the operator decided: the rules with their thresholds and actions, the exemptions,
//! the grace period and the enforcement mode. Built by `config` from the file; read by the
//! rules and the plan. Pure data and matching, no I/O.

use chrono::TimeDelta;

use crate::core::model::{CredentialType, Timestamp, User};
use crate::core::owners::{Owners, TagExemptions};
use crate::core::windows::Windows;

/// The rule and mode names live in the model, which every layer may import; they are
/// re-exported here, where the operator's decisions about them are.
pub use crate::core::model::{Mode, Rule};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Deactivate,
    /// A console password cannot be switched off, only deleted (`unused_password` only).
    DeleteLoginProfile,
    Report,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deactivate => "deactivate",
            Action::DeleteLoginProfile => "delete_login_profile",
            Action::Report => "report",
        }
    }

    /// Whether a due finding is acted on (set Inactive, or for a password deleted).
    pub fn acts(self) -> bool {
        self != Action::Report
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RulePolicy {
    pub enabled: bool,
    pub action: Action,
    /// The rule's duration: `max_age` (`max_key_age`, `max_credential_age`), `max_unused`
    /// (`unused_key`, `unused_password`), `max_lifetime` (`long_term_service_credential`);
    /// zero for the rules without one.
    pub threshold: TimeDelta,
    /// The rule's own grace period (`exposed_key`), else `enforcement.grace_period`.
    pub grace_period: Option<TimeDelta>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub exposed_key: RulePolicy,
    pub multiple_active_keys: RulePolicy,
    pub max_key_age: RulePolicy,
    pub unused_key: RulePolicy,
    pub unused_password: RulePolicy,
    pub max_credential_age: RulePolicy,
    /// `rules.max_credential_age.types`: the kinds it applies to.
    pub credential_types: Vec<CredentialType>,
    pub long_term_service_credential: RulePolicy,
    /// `rules.long_term_service_credential.services`: empty, every service.
    pub services: Vec<String>,
}

impl Rules {
    pub fn get(&self, rule: Rule) -> &RulePolicy {
        match rule {
            Rule::ExposedKey => &self.exposed_key,
            Rule::MultipleActiveKeys => &self.multiple_active_keys,
            Rule::MaxKeyAge => &self.max_key_age,
            Rule::UnusedKey => &self.unused_key,
            Rule::UnusedPassword => &self.unused_password,
            Rule::MaxCredentialAge => &self.max_credential_age,
            Rule::LongTermServiceCredential => &self.long_term_service_credential,
        }
    }

    /// The kinds of credentials beyond access keys that an enabled rule needs read.
    pub fn credential_kinds(&self) -> Vec<CredentialType> {
        let mut kinds = Vec::new();
        if self.unused_password.enabled {
            kinds.push(CredentialType::Password);
        }
        if self.max_credential_age.enabled {
            kinds.extend(self.credential_types.iter().copied());
        }
        if self.long_term_service_credential.enabled {
            kinds.push(CredentialType::ServiceSpecificCredential);
        }
        kinds.sort();
        kinds.dedup();
        kinds
    }

    /// The kinds an enabled rule acts on: sets Inactive (`deactivate`), or for passwords
    /// deletes (`delete_login_profile`).
    pub fn credential_deactivations(&self) -> Vec<CredentialType> {
        let acts = |r: &RulePolicy| r.enabled && r.action.acts();
        let mut kinds = Vec::new();
        if acts(&self.unused_password) {
            kinds.push(CredentialType::Password);
        }
        if acts(&self.max_credential_age) {
            kinds.extend(self.credential_types.iter().copied());
        }
        if acts(&self.long_term_service_credential) {
            kinds.push(CredentialType::ServiceSpecificCredential);
        }
        kinds.sort();
        kinds.dedup();
        kinds
    }
}

/// One `[[exemptions]]` entry, validated. Every matcher that is set must match (AND);
/// at least one is always set (the config layer guarantees it).
#[derive(Debug, Clone)]
pub struct Exemption {
    pub user: Option<glob::Pattern>,
    pub access_key_id: Option<String>,
    pub user_tag: Option<(String, String)>,
    pub path_prefix: Option<String>,
    /// `None`: every rule.
    pub rules: Option<Vec<Rule>>,
    pub reason: String,
    /// The exemption stops applying at this instant.
    pub expires: Option<Timestamp>,
}

impl Exemption {
    /// Whether it exempts credential `id` of `user` from `rule` at `now` (`access_key_id`
    /// matches any kind's id).
    pub fn applies(&self, user: &User, id: &str, rule: Rule, now: Timestamp) -> bool {
        if self.expires.is_some_and(|e| now >= e) {
            return false;
        }
        // A leaked key is exempted only on purpose: an entry must name the rule.
        match &self.rules {
            Some(rs) if !rs.contains(&rule) => return false,
            None if rule == Rule::ExposedKey => return false,
            _ => {}
        }
        if self.user.as_ref().is_some_and(|p| !p.matches(&user.name)) {
            return false;
        }
        if self.access_key_id.as_ref().is_some_and(|named| named != id) {
            return false;
        }
        if let Some((k, v)) = &self.user_tag {
            if !user.tags.iter().any(|(tk, tv)| tk == k && tv == v) {
                return false;
            }
        }
        if let Some(prefix) = &self.path_prefix {
            if !user.path.starts_with(prefix.as_str()) {
                return false;
            }
        }
        true
    }
}

/// Where the exemption that decided a finding came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExemptionSource {
    /// `[[exemptions]]` in the config: always wins.
    Config,
    /// The user's `keywarden:exempt-until` / `keywarden:exempt-reason` tags.
    Tag,
    /// `keywarden reactivate --snooze`: not an exemption, the deadline is moved to its end.
    Snooze,
}

impl ExemptionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ExemptionSource::Config => "config",
            ExemptionSource::Tag => "tag",
            ExemptionSource::Snooze => "snooze",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub rules: Rules,
    pub exemptions: Vec<Exemption>,
    pub owners: Owners,
    pub tag_exemptions: TagExemptions,
    /// `enforcement.windows`: deadlines move to the next instant inside one.
    pub windows: Windows,
    pub grace_period: TimeDelta,
    /// `rules.multiple_active_keys.wait_for_kept_key`.
    pub wait_for_kept_key: bool,
    /// `rules.exposed_key.revoke_sessions`: after deactivating an exposed key, deny the
    /// temporary credentials issued before that instant (`keywarden-revoke-sessions`).
    pub revoke_sessions: bool,
    /// `usage.hold_live_keys` (with usage profiles kept): a due deactivation of a key called
    /// within this window (`usage.live_window`) is held, for at most one more grace period.
    pub hold_live: Option<TimeDelta>,
}

impl Policy {
    /// The grace period of `rule`: its own, else `enforcement.grace_period`.
    pub fn grace_period(&self, rule: Rule) -> TimeDelta {
        self.rules.get(rule).grace_period.unwrap_or(self.grace_period)
    }

    /// Tags cost one ListUserTags per user: only read them when an exemption or the owner
    /// needs them.
    pub fn needs_tags(&self) -> bool {
        self.exemptions.iter().any(|e| e.user_tag.is_some())
            || !self.owners.tags.is_empty()
            || self.tag_exemptions.enabled
    }
}

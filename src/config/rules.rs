//! The `[rules.*]` tables: each rule takes `enabled`, `action` and the keys that belong to it;
//! a key of another rule is an error naming which rules take it.

use chrono::TimeDelta;

use super::durations::{parse_duration, to_delta};
use super::locate::Locator;
use super::*;
use crate::core::model::CredentialType;
use crate::core::policy::{Action, Rule, RulePolicy};

/// The keys beyond `enabled` and `action`, and the rules that take each.
const OWN_KEYS: [(&str, &[Rule]); 8] = [
    ("max_age", &[Rule::MaxKeyAge, Rule::MaxCredentialAge]),
    ("max_unused", &[Rule::UnusedKey, Rule::UnusedPassword]),
    ("max_lifetime", &[Rule::LongTermServiceCredential]),
    ("wait_for_kept_key", &[Rule::MultipleActiveKeys]),
    ("grace_period", &[Rule::ExposedKey]),
    ("revoke_sessions", &[Rule::ExposedKey]),
    ("types", &[Rule::MaxCredentialAge]),
    ("services", &[Rule::LongTermServiceCredential]),
];

/// Whether `raw` sets `key` (one of [`OWN_KEYS`]).
fn is_set(raw: &RawRule, key: &str) -> bool {
    match key {
        "max_age" => raw.max_age.is_some(),
        "max_unused" => raw.max_unused.is_some(),
        "max_lifetime" => raw.max_lifetime.is_some(),
        "wait_for_kept_key" => raw.wait_for_kept_key.is_some(),
        "grace_period" => raw.grace_period.is_some(),
        "revoke_sessions" => raw.revoke_sessions.is_some(),
        "types" => raw.types.is_some(),
        "services" => raw.services.is_some(),
        _ => false,
    }
}

/// The duration a rule is about, and its key.
fn threshold(raw: &RawRule, rule: Rule) -> Option<(&'static str, Option<&str>)> {
    match rule {
        Rule::ExposedKey | Rule::MultipleActiveKeys => None,
        Rule::MaxKeyAge | Rule::MaxCredentialAge => Some(("max_age", raw.max_age.as_deref())),
        Rule::UnusedKey | Rule::UnusedPassword => Some(("max_unused", raw.max_unused.as_deref())),
        Rule::LongTermServiceCredential => Some(("max_lifetime", raw.max_lifetime.as_deref())),
    }
}

/// The actions a rule takes. A console password cannot be switched off, only deleted, so
/// `unused_password` offers `delete_login_profile` instead of `deactivate`.
fn action(raw: &RawRule, rule: Rule) -> Result<Action, String> {
    let value = raw.action.as_deref().unwrap_or_default();
    match (rule, value) {
        (_, "report") => Ok(Action::Report),
        (Rule::UnusedPassword, "delete_login_profile") => Ok(Action::DeleteLoginProfile),
        (Rule::UnusedPassword, "deactivate") => Err(
            "a console password cannot be deactivated, only deleted: \"delete_login_profile\" (undone by keywarden reactivate USER --password) or \"report\"".into(),
        ),
        (Rule::UnusedPassword, other) => Err(format!("{other:?} is not \"delete_login_profile\" or \"report\"")),
        (_, "deactivate") => Ok(Action::Deactivate),
        (_, other) => Err(format!("{other:?} is not \"deactivate\" or \"report\"")),
    }
}

pub(super) fn rule_policy(raw: &RawRule, rule: Rule, at: &Locator<'_>, issues: &mut Vec<Issue>) -> Option<RulePolicy> {
    let base = format!("rules.{rule}");
    let action = action(raw, rule)
        .map_err(|e| issues.push(at.issue(&format!("{base}.action"), e)))
        .ok();
    for (key, owners) in OWN_KEYS {
        if is_set(raw, key) && !owners.contains(&rule) {
            let names: Vec<&str> = owners.iter().map(|r| r.as_str()).collect();
            let verb = if names.len() > 1 { "have" } else { "has" };
            issues.push(at.issue(
                &format!("{base}.{key}"),
                format!("unknown key for rule {rule} (only {} {verb} it)", names.join(" and ")),
            ));
        }
    }
    let threshold = match threshold(raw, rule) {
        None => Some(TimeDelta::zero()),
        Some((name, None)) => {
            issues.push(at.issue(&format!("{base}.{name}"), "missing (a duration such as \"90d\")"));
            None
        }
        Some((name, Some(s))) => parse_duration(s)
            .map(to_delta)
            .map_err(|e| issues.push(at.issue(&format!("{base}.{name}"), e)))
            .ok(),
    };
    let grace_period = match raw.grace_period.as_deref().filter(|_| rule == Rule::ExposedKey) {
        None => Some(None),
        Some(s) => parse_duration(s)
            .map(|d| Some(to_delta(d)))
            .map_err(|e| issues.push(at.issue(&format!("{base}.grace_period"), e)))
            .ok(),
    };
    Some(RulePolicy {
        enabled: raw.enabled.unwrap_or(true),
        action: action?,
        threshold: threshold?,
        grace_period: grace_period?,
    })
}

/// `rules.max_credential_age.types`: kinds other than access keys and passwords (those have
/// rules of their own), each once.
pub(super) fn credential_types(
    raw: &RawRule,
    at: &Locator<'_>,
    issues: &mut Vec<Issue>,
) -> Option<Vec<CredentialType>> {
    let before = issues.len();
    let mut kinds = Vec::new();
    for (i, name) in raw.types.iter().flatten().enumerate() {
        let key = format!("rules.max_credential_age.types.{i}");
        match CredentialType::parse(name) {
            Some(k @ (CredentialType::AccessKey | CredentialType::Password)) => issues.push(at.issue(
                &key,
                format!("{k} has rules of its own (max_key_age, unused_key, unused_password)"),
            )),
            Some(k) if kinds.contains(&k) => issues.push(at.issue(&key, format!("{k} is listed twice"))),
            Some(k) => kinds.push(k),
            None => issues.push(at.issue(
                &key,
                format!(
                    "{name:?} is not \"ssh_public_key\", \"service_specific_credential\" or \"signing_certificate\""
                ),
            )),
        }
    }
    (issues.len() == before).then_some(kinds)
}

/// `rules.long_term_service_credential.services`: service names as IAM gives them
/// (`bedrock.amazonaws.com`). A name keywarden does not know is taken as written: IAM adds
/// services, and a misspelt one matches nothing, which `check-config` cannot tell apart.
pub(super) fn services(raw: &RawRule, at: &Locator<'_>, issues: &mut Vec<Issue>) -> Option<Vec<String>> {
    let before = issues.len();
    for (i, name) in raw.services.iter().flatten().enumerate() {
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            issues.push(at.issue(
                &format!("rules.long_term_service_credential.services.{i}"),
                format!("{name:?} is not a service name such as \"bedrock.amazonaws.com\""),
            ));
        }
    }
    (issues.len() == before).then(|| raw.services.clone().unwrap_or_default())
}

//! The JSON report (`audit --format json`, `GET /api/v1/report`): the documented report plus
//! the added fields docs/names.md lists. The core's types carry no wire format; the field names,
//! their order and the RFC 3339 timestamps are decided here only.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::model::{CredentialType, ReadError, Timestamp};
use crate::core::report::{AccountSummary, Report, Summary};
use crate::core::rules::Finding;

#[derive(Serialize)]
struct ReportDoc<'a> {
    #[serde(with = "crate::sys::timefmt")]
    evaluated_at: Timestamp,
    complete: bool,
    mode: &'a str,
    summary: SummaryDoc,
    accounts: Vec<AccountDoc<'a>>,
    findings: Vec<FindingDoc<'a>>,
    errors: Vec<ErrorDoc<'a>>,
}

#[derive(Serialize)]
struct SummaryDoc {
    users: usize,
    access_keys: usize,
    active_access_keys: usize,
    /// `null` when the audit is incomplete: a count over part of the users is not the answer.
    violations: Option<usize>,
    /// The non-exempt findings among what was read (always a number).
    violations_found: usize,
    exempt: usize,
    planned_deactivations: usize,
    held_deactivations: usize,
    violations_by_rule: BTreeMap<&'static str, usize>,
    root_access_keys_present: Option<bool>,
    unreadable_users: usize,
}

#[derive(Serialize)]
struct AccountDoc<'a> {
    account_id: &'a str,
    users: usize,
    access_keys: usize,
    active_access_keys: usize,
    root_access_keys_present: Option<bool>,
    complete: bool,
}

#[derive(Serialize)]
struct FindingDoc<'a> {
    account_id: &'a str,
    user: &'a str,
    /// `access_key`, `password`, `ssh_public_key`, `service_specific_credential`,
    /// `signing_certificate`.
    credential_type: &'static str,
    credential_id: &'a str,
    /// Access keys only (null for the other kinds).
    access_key_id: Option<&'a str>,
    rule: &'static str,
    /// The benchmark and Security Hub controls the rule checks (`core::controls`).
    controls: &'static [&'static str],
    #[serde(with = "crate::sys::timefmt")]
    created: Timestamp,
    #[serde(with = "crate::sys::timefmt::option")]
    last_used: Option<Timestamp>,
    exempt: bool,
    exemption_reason: Option<&'a str>,
    exemption_source: Option<&'static str>,
    tag_exemption_problem: Option<&'a str>,
    /// A config exemption that would apply had it not expired (reason and expiry).
    expired_exemption: Option<&'a str>,
    owner: &'a str,
    action: &'static str,
    #[serde(with = "crate::sys::timefmt")]
    first_seen: Timestamp,
    #[serde(with = "crate::sys::timefmt::option")]
    deactivate_after: Option<Timestamp>,
    own_credentials: bool,
    held: Option<&'static str>,
    /// `in_live_use`: when the hold ends at the latest (the deadline plus one grace period).
    #[serde(with = "crate::sys::timefmt::option", skip_serializing_if = "Option::is_none")]
    held_until: Option<Timestamp>,
    kept_access_key_id: Option<&'a str>,
    waiting_for_window: bool,
    /// What uses the key (its usage profile), when one exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageDoc<'a>>,
    /// `multiple_active_keys`: what uses the key kept, when its profile exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    kept_key_usage: Option<UsageDoc<'a>>,
}

/// A finding's `usage`: the workload, the last source and the calls in 30 days.
#[derive(Serialize)]
struct UsageDoc<'a> {
    workload: &'static str,
    last_source: Option<&'a str>,
    #[serde(with = "crate::sys::timefmt::option")]
    last_event: Option<Timestamp>,
    events: u64,
}

/// Usage by (account, key id): what `usage` and `kept_key_usage` are taken from.
pub type UsageByKey<'a> = BTreeMap<(&'a str, &'a str), &'a crate::core::usage::summary::KeyUsage>;

fn usage_doc<'a>(usage: &UsageByKey<'a>, account_id: &str, key: Option<&str>) -> Option<UsageDoc<'a>> {
    let u = *usage.get(&(account_id, key?))?;
    (u.profile.events > 0).then(|| UsageDoc {
        workload: u.verdict.workload.as_str(),
        last_source: u.profile.last_source.as_deref(),
        last_event: u.profile.last_event,
        events: u.recent_events,
    })
}

#[derive(Serialize)]
struct ErrorDoc<'a> {
    account_id: &'a str,
    user: Option<&'a str>,
    operation: &'a str,
    message: &'a str,
}

fn summary(s: &Summary, complete: bool) -> SummaryDoc {
    SummaryDoc {
        users: s.users,
        access_keys: s.access_keys,
        active_access_keys: s.active_access_keys,
        violations: complete.then_some(s.violations),
        violations_found: s.violations,
        exempt: s.exempt,
        planned_deactivations: s.planned_deactivations,
        held_deactivations: s.held_deactivations,
        violations_by_rule: s.violations_by_rule.iter().map(|(r, n)| (r.as_str(), *n)).collect(),
        root_access_keys_present: s.root_access_keys_present,
        unreadable_users: s.unreadable_users,
    }
}

fn account(a: &AccountSummary) -> AccountDoc<'_> {
    AccountDoc {
        account_id: &a.account_id,
        users: a.users,
        access_keys: a.access_keys,
        active_access_keys: a.active_access_keys,
        root_access_keys_present: a.root_access_keys_present,
        complete: a.complete,
    }
}

fn finding(f: &Finding) -> FindingDoc<'_> {
    FindingDoc {
        account_id: &f.account_id,
        user: &f.user,
        credential_type: f.credential_type.as_str(),
        credential_id: &f.access_key_id,
        access_key_id: (f.credential_type == CredentialType::AccessKey).then_some(f.access_key_id.as_str()),
        rule: f.rule.as_str(),
        controls: crate::core::controls::of(f.rule),
        created: f.created,
        last_used: f.last_used,
        exempt: f.exempt,
        exemption_reason: f.exemption_reason.as_deref(),
        exemption_source: f.exemption_source.map(|s| s.as_str()),
        tag_exemption_problem: f.tag_exemption_problem.as_deref(),
        expired_exemption: f.expired_exemption.as_deref(),
        owner: &f.owner,
        action: f.action.as_str(),
        first_seen: f.first_seen,
        deactivate_after: f.deactivate_after,
        own_credentials: f.own_credentials,
        held: f.held.map(|h| h.as_str()),
        held_until: f.held.and_then(|h| h.until()),
        kept_access_key_id: f.kept_access_key_id.as_deref(),
        waiting_for_window: f.waiting_for_window,
        usage: None,
        kept_key_usage: None,
    }
}

fn error(e: &ReadError) -> ErrorDoc<'_> {
    ErrorDoc {
        account_id: &e.account_id,
        user: e.user.as_deref(),
        operation: &e.operation,
        message: &e.message,
    }
}

/// Each finding as the JSON object the report holds (for the other formats: `output::csv`).
pub fn finding_values(r: &Report) -> Vec<serde_json::Value> {
    r.findings
        .iter()
        .map(|f| serde_json::to_value(finding(f)).unwrap_or_default())
        .collect()
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&document(self)).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The report with each access-key finding's `usage` (and a `multiple_active_keys`
    /// finding's `kept_key_usage`) from `usage`.
    pub fn to_json_with_usage(&self, usage: &[(String, crate::core::usage::summary::KeyUsage)]) -> String {
        let by_key: UsageByKey<'_> = usage
            .iter()
            .map(|(account, u)| ((account.as_str(), u.profile.access_key_id.as_str()), u))
            .collect();
        let mut doc = document(self);
        for (d, f) in doc.findings.iter_mut().zip(&self.findings) {
            d.usage = usage_doc(&by_key, &f.account_id, d.access_key_id);
            d.kept_key_usage = usage_doc(&by_key, &f.account_id, f.kept_access_key_id.as_deref());
        }
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

fn document(r: &Report) -> ReportDoc<'_> {
    ReportDoc {
        evaluated_at: r.evaluated_at,
        complete: r.complete,
        mode: &r.mode,
        summary: summary(&r.summary, r.complete),
        accounts: r.accounts.iter().map(account).collect(),
        findings: r.findings.iter().map(finding).collect(),
        errors: r.errors.iter().map(error).collect(),
    }
}

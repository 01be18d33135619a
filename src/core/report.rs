//! The audit report: summary counts per run and per account, and the exit code, built from
//! inventories and findings. Its forms are `output::json` (the JSON document docs/names.md describes)
//! and `output::table`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::core::model::{AccountInventory, ReadError, Timestamp};
use crate::core::owners::{TagExemption, TagExemptions};
use crate::core::policy::{Mode, Rule};
use crate::core::rules::Finding;

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub evaluated_at: Timestamp,
    /// False when any read failed: the findings then cover only the users that were read.
    pub complete: bool,
    /// `dry-run` or `enforce`: what `planned_deactivations` would lead to.
    pub mode: String,
    pub summary: Summary,
    pub accounts: Vec<AccountSummary>,
    pub findings: Vec<Finding>,
    pub errors: Vec<ReadError>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    pub users: usize,
    pub access_keys: usize,
    pub active_access_keys: usize,
    /// Non-exempt findings.
    pub violations: usize,
    pub exempt: usize,
    /// Distinct access keys that have at least one non-exempt finding whose action is deactivate.
    pub planned_deactivations: usize,
    /// Of those, keys whose only deactivating findings wait (a rotation in progress, or in
    /// live use).
    pub held_deactivations: usize,
    /// Of those, keys held because usage evidence shows them in live use.
    pub live_holds: usize,
    pub violations_by_rule: BTreeMap<Rule, usize>,
    /// True if any account's root user has access keys; null if unknown for some account and
    /// true for none.
    pub root_access_keys_present: Option<bool>,
    pub unreadable_users: usize,
}

/// One account's counts, computed once per audit: the report's `accounts[]` and every
/// per-account metric come from here.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccountSummary {
    pub account_id: String,
    pub users: usize,
    pub access_keys: usize,
    pub active_access_keys: usize,
    pub root_access_keys_present: Option<bool>,
    pub complete: bool,
    pub unreadable_users: usize,
    /// Non-exempt findings per rule; every rule present (0 when none).
    pub violations_by_rule: BTreeMap<Rule, usize>,
    /// Exempt findings per rule; every rule present.
    pub exempt_by_rule: BTreeMap<Rule, usize>,
    /// Distinct keys with a non-exempt finding whose action is deactivate.
    pub planned_deactivations: usize,
    /// Of those, keys whose every such finding is held (a rotation in progress).
    pub held_deactivations: usize,
    /// Keys past their grace period waiting for an enforcement window to open.
    pub window_waits: usize,
    /// Of the held keys, those held because usage evidence shows them in live use
    /// (`usage.hold_live_keys`).
    pub live_holds: usize,
    /// Non-exempt findings on the key keywarden signs with.
    pub own_key_findings: usize,
    /// Active keys AWS found exposed (`exposed_key` findings, exempt ones too: an exemption
    /// decides what keywarden does, not whether the key leaked).
    pub exposed_keys: usize,
    /// Whether the key keywarden signs with is one of them.
    pub own_key_exposed: bool,
    pub oldest_active_key_created: Option<Timestamp>,
    pub credential_report_generated: Option<Timestamp>,
    /// Users with exemption tags, by `TagExemption::state` (every state present; all 0 while
    /// `[exemptions_from_tags]` is off or no user's tags were read).
    pub tag_exemptions: BTreeMap<&'static str, usize>,
}

impl AccountSummary {
    /// The inventory's counts; the findings' are added by `count_findings`.
    fn of(a: &AccountInventory) -> AccountSummary {
        let keys = a.users.iter().flat_map(|u| &u.keys);
        let every_rule = || Rule::ALL.iter().map(|r| (*r, 0)).collect::<BTreeMap<_, _>>();
        AccountSummary {
            account_id: a.account_id.clone(),
            users: a.users.len(),
            access_keys: keys.clone().count(),
            active_access_keys: keys.clone().filter(|k| k.is_active()).count(),
            root_access_keys_present: a.root_access_keys_present,
            complete: a.is_complete(),
            unreadable_users: a.errors.iter().filter(|e| e.user.is_some()).count(),
            violations_by_rule: every_rule(),
            exempt_by_rule: every_rule(),
            oldest_active_key_created: keys.filter(|k| k.is_active()).map(|k| k.created).min(),
            credential_report_generated: a.credential_report_generated,
            tag_exemptions: TagExemption::STATES.into_iter().map(|s| (s, 0)).collect(),
            ..AccountSummary::default()
        }
    }

    /// The account could not be read at all (no credentials, a refused endpoint, a role
    /// that cannot be assumed): none of its counts means anything.
    pub fn read_nothing(&self) -> bool {
        !self.complete && self.users == 0 && self.unreadable_users == 0
    }

    /// Keys with a deadline (planned and not held).
    pub fn scheduled_deactivations(&self) -> usize {
        self.planned_deactivations - self.held_deactivations
    }
}

/// Adds each finding to its account's counts.
fn count_findings(per_account: &mut [AccountSummary], findings: &[Finding]) {
    let index: HashMap<String, usize> = per_account
        .iter()
        .enumerate()
        .map(|(i, a)| (a.account_id.clone(), i))
        .collect();
    let mut planned: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); per_account.len()];
    let mut scheduled: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); per_account.len()];
    let mut waiting: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); per_account.len()];
    let mut live: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); per_account.len()];
    for f in findings {
        // Findings come from the accounts' inventories, so every one has its account.
        let Some(&i) = index.get(&f.account_id) else { continue };
        let a = &mut per_account[i];
        if f.rule == Rule::ExposedKey {
            a.exposed_keys += 1;
            a.own_key_exposed |= f.own_credentials;
        }
        if f.exempt {
            *a.exempt_by_rule.entry(f.rule).or_default() += 1;
            continue;
        }
        *a.violations_by_rule.entry(f.rule).or_default() += 1;
        a.own_key_findings += usize::from(f.own_credentials);
        if f.action.acts() {
            planned[i].insert(&f.access_key_id);
            match f.held {
                None => {
                    scheduled[i].insert(&f.access_key_id);
                }
                Some(crate::core::rules::Hold::InLiveUse { .. }) => {
                    live[i].insert(&f.access_key_id);
                }
                Some(_) => {}
            }
        }
        if f.waiting_for_window {
            waiting[i].insert(&f.access_key_id);
        }
    }
    for (i, a) in per_account.iter_mut().enumerate() {
        a.planned_deactivations = planned[i].len();
        a.held_deactivations = planned[i].difference(&scheduled[i]).count();
        a.window_waits = waiting[i].len();
        a.live_holds = live[i].difference(&scheduled[i]).count();
    }
}

/// The run's totals: the sums of the accounts'.
fn summarize(per_account: &[AccountSummary]) -> Summary {
    let mut s = Summary::default();
    for a in per_account {
        s.users += a.users;
        s.access_keys += a.access_keys;
        s.active_access_keys += a.active_access_keys;
        s.unreadable_users += a.unreadable_users;
        s.exempt += a.exempt_by_rule.values().sum::<usize>();
        s.violations += a.violations_by_rule.values().sum::<usize>();
        for (rule, n) in a.violations_by_rule.iter().filter(|(_, n)| **n > 0) {
            *s.violations_by_rule.entry(*rule).or_default() += n;
        }
        s.planned_deactivations += a.planned_deactivations;
        s.held_deactivations += a.held_deactivations;
        s.live_holds += a.live_holds;
    }
    let roots = || per_account.iter().map(|a| a.root_access_keys_present);
    s.root_access_keys_present = if roots().any(|r| r == Some(true)) {
        Some(true)
    } else if roots().all(|r| r == Some(false)) {
        Some(false)
    } else {
        None
    };
    s
}

impl Report {
    pub fn build(evaluated_at: Timestamp, mode: Mode, accounts: &[AccountInventory], findings: Vec<Finding>) -> Report {
        let mut per_account: Vec<AccountSummary> = accounts.iter().map(AccountSummary::of).collect();
        count_findings(&mut per_account, &findings);
        let errors: Vec<ReadError> = accounts.iter().flat_map(|a| a.errors.iter().cloned()).collect();
        Report {
            evaluated_at,
            complete: errors.is_empty(),
            mode: mode.as_str().to_string(),
            summary: summarize(&per_account),
            accounts: per_account,
            findings,
            errors,
        }
    }

    /// Nothing could be read at all: every account failed before any user was read (no
    /// credentials, an endpoint that refuses, a role that cannot be assumed). No count of
    /// such a run means anything.
    pub fn read_nothing(&self) -> bool {
        !self.complete && self.summary.users == 0 && self.errors.iter().all(|e| e.user.is_none())
    }

    /// The first line a person must see when the answer is not complete; `None` when it is.
    pub fn failure_headline(&self) -> Option<String> {
        if self.complete {
            return None;
        }
        if self.read_nothing() {
            let first = self
                .errors
                .first()
                .map(|e| format!(": {}: {}", e.operation, e.message))
                .unwrap_or_default();
            return Some(format!("FAILED: nothing could be read{first}"));
        }
        let accounts = self.errors.iter().filter(|e| e.user.is_none()).count();
        let mut parts = Vec::new();
        if self.summary.unreadable_users > 0 {
            parts.push(format!(
                "{} of {} user(s) could not be read",
                self.summary.unreadable_users,
                self.summary.unreadable_users + self.summary.users
            ));
        }
        if accounts > 0 {
            parts.push(format!("{accounts} account-level read(s) failed"));
        }
        Some(format!(
            "INCOMPLETE: {}; the counts cover only what was read, and nothing is planned for the rest",
            parts.join(" and ")
        ))
    }

    /// What to do about the failed reads, from their error codes.
    pub fn failure_hint(&self) -> Option<&'static str> {
        if self.complete {
            return None;
        }
        let denied = self.errors.iter().any(|e| {
            e.code
                .as_deref()
                .is_some_and(|c| c.contains("AccessDenied") || c == "UnauthorizedOperation")
        });
        let unreachable = self.errors.iter().any(|e| e.message.contains("could not connect"));
        let credentials = self.errors.iter().any(|e| {
            e.message.contains("credentials") || e.message.contains("profile") || e.message.contains("sso login")
        });
        Some(if credentials && !denied {
            "What to do: give keywarden credentials as the reason says (AWS_PROFILE or aws.profile, `aws sso login`, the environment, an instance role), then run again."
        } else if denied {
            "What to do: grant what `keywarden check-access` names missing (the packaged policies are in /usr/share/keywarden/), then run again."
        } else if unreachable {
            "What to do: check that the endpoint is reachable from here (aws.endpoint_url, the network, a proxy), then run again."
        } else {
            "What to do: each failed read below says why; fix it and run again (throttling and 5xx answers usually pass by themselves)."
        })
    }

    /// Counts the users whose exemption tags are active, invalid or too long, per account.
    pub fn count_tag_exemptions(&mut self, accounts: &[AccountInventory], policy: &TagExemptions) {
        for (summary, inv) in self.accounts.iter_mut().zip(accounts) {
            for user in &inv.users {
                if let Some(t) = policy.read(user, self.evaluated_at) {
                    *summary.tag_exemptions.entry(t.state()).or_default() += 1;
                }
            }
        }
    }

    /// The exit code of `audit`: 1 when the answer is incomplete (it then must not pass as clean),
    /// 3 when there are violations, 0 otherwise.
    pub fn exit_code(&self) -> i32 {
        if !self.complete {
            1
        } else if self.summary.violations > 0 {
            3
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{AccessKey, KeyStatus, User};
    use crate::core::policy::Action;
    use chrono::{TimeDelta, TimeZone};

    fn t0() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
    }

    fn finding(user: &str, key: &str, rule: Rule, exempt: bool, action: Action) -> Finding {
        Finding {
            credential_type: crate::core::model::CredentialType::AccessKey,
            account_id: "123456789012".into(),
            user: user.into(),
            access_key_id: key.into(),
            rule,
            created: t0() - TimeDelta::days(120),
            last_used: None,
            exempt,
            exemption_reason: exempt.then(|| "a very long reason that will not fit in the column".into()),
            exemption_source: None,
            tag_exemption_problem: None,
            expired_exemption: None,
            owner: "unowned".into(),
            action,
            first_seen: t0(),
            deactivate_after: (action == Action::Deactivate).then(|| t0() + TimeDelta::days(7)),
            own_credentials: false,
            held: None,
            kept_access_key_id: None,
            waiting_for_window: false,
        }
    }

    fn account() -> AccountInventory {
        let key = |id: &str, active| AccessKey {
            id: id.into(),
            status: if active { KeyStatus::Active } else { KeyStatus::Inactive },
            created: t0(),
            last_used: None,
        };
        AccountInventory {
            account_id: "123456789012".into(),
            users: vec![User {
                credentials: vec![],
                name: "alice".into(),
                path: "/".into(),
                tags: vec![],
                keys: vec![key("AKIAAAAAAAAAAAAAAAA1", true), key("AKIAAAAAAAAAAAAAAAA2", false)],
            }],
            root_access_keys_present: Some(false),
            errors: vec![],
            credential_report_generated: None,
            own_access_key_id: None,
            exposure: Default::default(),
            last_calls: Default::default(),
        }
    }

    #[test]
    fn summary_counts_and_exit_codes() {
        let findings = vec![
            finding("alice", "AKIAAAAAAAAAAAAAAAA1", Rule::MaxKeyAge, false, Action::Report),
            finding(
                "alice",
                "AKIAAAAAAAAAAAAAAAA1",
                Rule::UnusedKey,
                false,
                Action::Deactivate,
            ),
            finding(
                "bob",
                "AKIAAAAAAAAAAAAAAAA3",
                Rule::UnusedKey,
                false,
                Action::Deactivate,
            ),
            finding("carol", "AKIAAAAAAAAAAAAAAAA4", Rule::UnusedKey, true, Action::Report),
        ];
        let r = Report::build(t0(), Mode::DryRun, &[account()], findings);
        assert_eq!(r.summary.users, 1);
        assert_eq!(r.summary.access_keys, 2);
        assert_eq!(r.summary.active_access_keys, 1);
        assert_eq!(r.summary.violations, 3);
        assert_eq!(r.summary.exempt, 1);
        assert_eq!(r.summary.planned_deactivations, 2);
        assert_eq!(r.summary.violations_by_rule.get(&Rule::UnusedKey), Some(&2));
        assert_eq!(r.exit_code(), 3);
        assert!(r.complete);

        let clean = Report::build(t0(), Mode::DryRun, &[account()], vec![]);
        assert_eq!(clean.exit_code(), 0);

        let mut broken = account();
        broken.errors.push(ReadError {
            account_id: "123456789012".into(),
            user: Some("bob".into()),
            operation: "ListAccessKeys".into(),
            message: "Throttling: Rate exceeded".into(),
            code: None,
        });
        let r = Report::build(t0(), Mode::DryRun, &[broken], vec![]);
        assert_eq!((r.complete, r.exit_code(), r.summary.unreadable_users), (false, 1, 1));
        assert!(r.to_table().contains("INCOMPLETE"));
    }

    #[test]
    fn table_fits_80_columns_and_groups_by_user() {
        let findings = vec![
            finding(
                "alice",
                "AKIAAAAAAAAAAAAAAAA1",
                Rule::MultipleActiveKeys,
                false,
                Action::Deactivate,
            ),
            finding("alice", "AKIAAAAAAAAAAAAAAAA1", Rule::MaxKeyAge, false, Action::Report),
            finding("carol", "AKIAAAAAAAAAAAAAAAA4", Rule::UnusedKey, true, Action::Report),
        ];
        let table = Report::build(t0(), Mode::DryRun, &[account()], findings).to_table();
        for line in table.lines() {
            assert!(
                line.chars().count() <= 80,
                "too wide ({}): {line}",
                line.chars().count()
            );
        }
        assert_eq!(
            table.lines().filter(|l| *l == "alice  owner: unowned").count(),
            1,
            "{table}"
        );
        assert!(table.contains("deactivate 2026-12-08"), "{table}");
        assert!(table.contains("exempt: a very long"), "{table}");
    }

    #[test]
    fn json_has_the_contract_fields() {
        let findings = vec![finding(
            "alice",
            "AKIAAAAAAAAAAAAAAAA1",
            Rule::UnusedKey,
            false,
            Action::Deactivate,
        )];
        let v: serde_json::Value =
            serde_json::from_str(&Report::build(t0(), Mode::DryRun, &[account()], findings).to_json()).unwrap();
        assert_eq!(v["evaluated_at"], "2026-12-01T00:00:00Z");
        for k in [
            "users",
            "access_keys",
            "active_access_keys",
            "violations",
            "exempt",
            "planned_deactivations",
        ] {
            assert!(v["summary"][k].is_u64(), "summary.{k}");
        }
        let f = &v["findings"][0];
        assert_eq!(f["account_id"], "123456789012");
        assert_eq!(f["rule"], "unused_key");
        assert_eq!(f["created"], "2026-08-03T00:00:00Z");
        assert!(f["last_used"].is_null());
        assert_eq!(f["exempt"], false);
        assert!(f["exemption_reason"].is_null());
        assert_eq!(f["action"], "deactivate");
        assert_eq!(f["deactivate_after"], "2026-12-08T00:00:00Z");
    }

    fn failed(user: Option<&str>, operation: &str, message: &str, code: Option<&str>) -> ReadError {
        ReadError {
            account_id: "123456789012".into(),
            user: user.map(str::to_string),
            operation: operation.into(),
            message: message.into(),
            code: code.map(str::to_string),
        }
    }

    #[test]
    fn a_run_that_read_nothing_says_so_first_and_one_that_read_part_counts_what_failed() {
        let nothing = AccountInventory {
            account_id: "unknown".into(),
            errors: vec![failed(
                None,
                "GetCallerIdentity",
                "could not connect to http://127.0.0.1:1: connection refused",
                None,
            )],
            ..Default::default()
        };
        let r = Report::build(t0(), Mode::DryRun, &[nothing], vec![]);
        assert!(r.read_nothing() && r.accounts[0].read_nothing());
        assert_eq!(
            r.failure_headline().as_deref(),
            Some("FAILED: nothing could be read: GetCallerIdentity: could not connect to http://127.0.0.1:1: connection refused")
        );
        assert!(r.failure_hint().is_some_and(|h| h.contains("reachable")));

        let mut part = account();
        part.errors = vec![failed(
            Some("bob"),
            "GetAccessKeyLastUsed",
            "denied",
            Some("AccessDenied"),
        )];
        let r = Report::build(t0(), Mode::DryRun, &[part], vec![]);
        assert!(!r.read_nothing() && !r.accounts[0].read_nothing());
        let headline = r.failure_headline().unwrap_or_default();
        assert!(headline.starts_with("INCOMPLETE: 1 of "), "{headline}");
        assert!(r.failure_hint().is_some_and(|h| h.contains("check-access")));
        let r = Report::build(t0(), Mode::DryRun, &[account()], vec![]);
        assert_eq!((r.failure_headline(), r.failure_hint()), (None, None), "complete");
    }
}

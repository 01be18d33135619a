//! The audit report: the JSON document of CONTRACT.md (plus added fields) and the table for
//! people. Built from inventories and findings; no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::config::Mode;
use crate::model::{AccountInventory, ReadError, Timestamp};
use crate::rules::{Action, Finding, Rule};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    #[serde(with = "crate::timefmt")]
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

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub users: usize,
    pub access_keys: usize,
    pub active_access_keys: usize,
    /// Non-exempt findings.
    pub violations: usize,
    pub exempt: usize,
    /// Distinct access keys that have at least one non-exempt finding whose action is deactivate.
    pub planned_deactivations: usize,
    /// Of those, keys whose only deactivating findings wait (a rotation in progress).
    pub held_deactivations: usize,
    pub violations_by_rule: BTreeMap<Rule, usize>,
    /// True if any account's root user has access keys; null if unknown for some account and
    /// true for none.
    pub root_access_keys_present: Option<bool>,
    pub unreadable_users: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountSummary {
    pub account_id: String,
    pub users: usize,
    pub access_keys: usize,
    pub active_access_keys: usize,
    pub root_access_keys_present: Option<bool>,
    pub complete: bool,
}

impl Report {
    pub fn build(evaluated_at: Timestamp, mode: Mode, accounts: &[AccountInventory], findings: Vec<Finding>) -> Report {
        let mut summary = Summary::default();
        let mut per_account = Vec::with_capacity(accounts.len());
        let mut errors = Vec::new();
        for a in accounts {
            let keys = a.users.iter().map(|u| u.keys.len()).sum();
            let active = a.users.iter().flat_map(|u| &u.keys).filter(|k| k.is_active()).count();
            summary.users += a.users.len();
            summary.access_keys += keys;
            summary.active_access_keys += active;
            summary.unreadable_users += a.errors.iter().filter(|e| e.user.is_some()).count();
            per_account.push(AccountSummary {
                account_id: a.account_id.clone(),
                users: a.users.len(),
                access_keys: keys,
                active_access_keys: active,
                root_access_keys_present: a.root_access_keys_present,
                complete: a.is_complete(),
            });
            errors.extend(a.errors.iter().cloned());
        }
        summary.root_access_keys_present = if accounts.iter().any(|a| a.root_access_keys_present == Some(true)) {
            Some(true)
        } else if accounts.iter().all(|a| a.root_access_keys_present == Some(false)) {
            Some(false)
        } else {
            None
        };
        let mut planned = BTreeSet::new();
        let mut scheduled = BTreeSet::new();
        for f in &findings {
            if f.exempt {
                summary.exempt += 1;
                continue;
            }
            summary.violations += 1;
            *summary.violations_by_rule.entry(f.rule).or_default() += 1;
            if f.action == Action::Deactivate {
                planned.insert((&f.account_id, &f.access_key_id));
                if f.held.is_none() {
                    scheduled.insert((&f.account_id, &f.access_key_id));
                }
            }
        }
        summary.planned_deactivations = planned.len();
        summary.held_deactivations = planned.difference(&scheduled).count();
        Report {
            evaluated_at,
            complete: errors.is_empty(),
            mode: mode.as_str().to_string(),
            summary,
            accounts: per_account,
            findings,
            errors,
        }
    }

    /// CONTRACT.md: 1 when the answer is incomplete (it then must not pass as clean),
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

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// Fits 80 columns: a heading per user, one line per finding, then the summary.
    pub fn to_table(&self) -> String {
        let now = self.evaluated_at;
        let mut out = String::new();
        let multi_account = self.accounts.len() > 1;
        if self.findings.is_empty() {
            out.push_str("No findings.\n");
        } else {
            let _ = writeln!(
                out,
                "{:<23}{:<21}{:>5} {:>5}  ACTION",
                "USER / ACCESS KEY", "RULE", "AGE", "IDLE"
            );
            let mut last_user: Option<(&str, &str)> = None;
            for f in &self.findings {
                let this = (f.account_id.as_str(), f.user.as_str());
                if last_user != Some(this) {
                    if multi_account {
                        let _ = writeln!(out, "{} ({})", f.user, f.account_id);
                    } else {
                        let _ = writeln!(out, "{}", f.user);
                    }
                    last_user = Some(this);
                }
                let age = short_age(now, f.created);
                // Time since last use; "never" for a key never used.
                let used = f.last_used.map_or("never".to_string(), |t| short_age(now, t));
                let action = match (f.exempt, f.action, f.deactivate_after) {
                    (true, _, _) => {
                        format!("exempt: {}", f.exemption_reason.as_deref().unwrap_or(""))
                    }
                    _ if f.own_credentials => "report: own key".to_string(),
                    _ if f.held.is_some() => "held: kept key unused".to_string(),
                    (false, Action::Deactivate, Some(d)) if d <= now => "deactivate now".to_string(),
                    (false, Action::Deactivate, Some(d)) => {
                        format!("deactivate {}", d.format("%Y-%m-%d"))
                    }
                    _ => "report".to_string(),
                };
                let _ = writeln!(
                    out,
                    "  {:<20} {:<20} {:>5} {:>5}  {}",
                    f.access_key_id,
                    f.rule.as_str(),
                    age,
                    used,
                    truncate(&action, 23)
                );
            }
        }
        out.push('\n');
        let s = &self.summary;
        let _ = writeln!(out, "Evaluated at {} ({})", crate::timefmt::format(&now), self.mode);
        let _ = writeln!(
            out,
            "Users {}, access keys {} ({} active), accounts {}",
            s.users,
            s.access_keys,
            s.active_access_keys,
            self.accounts.len()
        );
        let by_rule: Vec<String> = Rule::ALL
            .iter()
            .map(|r| format!("{} {}", r, s.violations_by_rule.get(r).copied().unwrap_or(0)))
            .collect();
        let _ = writeln!(out, "Violations {}: {}", s.violations, by_rule.join(", "));
        let _ = writeln!(
            out,
            "Exempt {}, planned deactivations {}",
            s.exempt, s.planned_deactivations
        );
        if s.held_deactivations > 0 {
            let _ = writeln!(
                out,
                "Held {}: rotations in progress, deactivated once the kept key has been used",
                s.held_deactivations
            );
        }
        let mut own: Vec<&str> = self
            .findings
            .iter()
            .filter(|f| f.own_credentials)
            .map(|f| f.access_key_id.as_str())
            .collect();
        own.dedup();
        for id in own {
            let _ = writeln!(
                out,
                "{id} is keywarden's own key: never deactivated by keywarden, rotate it"
            );
        }
        let root = match s.root_access_keys_present {
            Some(true) => "YES (CIS 1.4: remove them)",
            Some(false) => "no",
            None => "unknown",
        };
        let _ = writeln!(out, "Root access keys present: {root}");
        if !self.errors.is_empty() {
            let _ = writeln!(
                out,
                "\nINCOMPLETE: {} read(s) failed; nothing is planned for these users:",
                self.errors.len()
            );
            for e in &self.errors {
                let who = e.user.as_deref().unwrap_or("(account)");
                let _ = writeln!(out, "  {} {} {}: {}", e.account_id, who, e.operation, e.message);
            }
        }
        out
    }
}

fn short_age(now: Timestamp, then: Timestamp) -> String {
    let secs = now.signed_duration_since(then).num_seconds().max(0);
    match secs {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AccessKey, KeyStatus, User};
    use chrono::{TimeDelta, TimeZone};

    fn t0() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
    }

    fn finding(user: &str, key: &str, rule: Rule, exempt: bool, action: Action) -> Finding {
        Finding {
            account_id: "123456789012".into(),
            user: user.into(),
            access_key_id: key.into(),
            rule,
            created: t0() - TimeDelta::days(120),
            last_used: None,
            exempt,
            exemption_reason: exempt.then(|| "a very long reason that will not fit in the column".into()),
            action,
            first_seen: t0(),
            deactivate_after: (action == Action::Deactivate).then(|| t0() + TimeDelta::days(7)),
            own_credentials: false,
            held: None,
            kept_access_key_id: None,
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
                name: "alice".into(),
                path: "/".into(),
                tags: vec![],
                keys: vec![key("AKIAAAAAAAAAAAAAAAA1", true), key("AKIAAAAAAAAAAAAAAAA2", false)],
            }],
            root_access_keys_present: Some(false),
            errors: vec![],
            credential_report_generated: None,
            own_access_key_id: None,
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
        assert_eq!(table.lines().filter(|l| *l == "alice").count(), 1, "{table}");
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
}

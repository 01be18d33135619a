//! Enforcement: which findings are due, how the state file moves forward, and the careful
//! deactivation of due keys.
//!
//! `plan` and `next_state` are pure. `execute` acts through the small [`KeyActions`] trait:
//! for each due key it re-reads the user's keys, decides again on the fresh data, and only
//! then (in enforce mode) calls UpdateAccessKey(Status=Inactive) and reads back to confirm.
//! Keys are never deleted. At most `cap` keys per run, oldest deadline first.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Mode;
use crate::model::{AccountInventory, KeyStatus, ReadError, Timestamp, User};
use crate::rules::{self, Action, Finding, FirstSeen, Policy, Rule};
use crate::state::{Entry, State};

/// A key due for deactivation: every due rule, earliest deadline first.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub account_id: String,
    pub user: String,
    pub access_key_id: String,
    pub rules: Vec<Rule>,
    pub first_seen: Timestamp,
    pub deadline: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// At most the cap, oldest deadline first.
    pub due: Vec<Candidate>,
    /// Due keys left for a later run because of the cap, per account.
    pub held_back: BTreeMap<String, usize>,
}

fn is_due(f: &Finding, now: Timestamp) -> bool {
    !f.exempt && f.action == Action::Deactivate && f.deactivate_after.is_some_and(|d| d <= now)
}

pub fn plan(findings: &[Finding], now: Timestamp, cap: usize) -> Plan {
    let mut by_key: BTreeMap<(&str, &str), Candidate> = BTreeMap::new();
    for f in findings.iter().filter(|f| is_due(f, now)) {
        let deadline = f.deactivate_after.unwrap_or(now);
        let c = by_key
            .entry((f.account_id.as_str(), f.access_key_id.as_str()))
            .or_insert_with(|| Candidate {
                account_id: f.account_id.clone(),
                user: f.user.clone(),
                access_key_id: f.access_key_id.clone(),
                rules: Vec::new(),
                first_seen: f.first_seen,
                deadline,
            });
        if deadline < c.deadline {
            c.deadline = deadline;
            c.first_seen = f.first_seen;
            c.rules.insert(0, f.rule);
        } else {
            c.rules.push(f.rule);
        }
    }
    let mut all: Vec<Candidate> = by_key.into_values().collect();
    all.sort_by(|a, b| {
        (a.deadline, &a.account_id, &a.access_key_id).cmp(&(b.deadline, &b.account_id, &b.access_key_id))
    });
    let mut held_back = BTreeMap::new();
    for c in all.iter().skip(cap) {
        *held_back.entry(c.account_id.clone()).or_insert(0) += 1;
    }
    all.truncate(cap);
    Plan { due: all, held_back }
}

/// The state after an audit. A finding is tracked while it holds, is not exempt and its
/// action is deactivate (so an exemption that expires, or a rule switched to deactivate,
/// starts a fresh grace period). Entries of users or accounts that could not be read are
/// kept as they were: a failed read never resets a grace period.
pub fn next_state(old: &State, findings: &[Finding], accounts: &[AccountInventory]) -> State {
    let mut unreadable_users: HashSet<(&str, &str)> = HashSet::new();
    let mut unreadable_accounts: HashSet<&str> = HashSet::new();
    for a in accounts {
        for e in &a.errors {
            match &e.user {
                Some(u) => {
                    unreadable_users.insert((e.account_id.as_str(), u.as_str()));
                }
                None => {
                    unreadable_accounts.insert(e.account_id.as_str());
                }
            }
        }
    }
    let kept = old.entries().filter(|e| {
        unreadable_accounts.contains(e.account_id.as_str())
            || unreadable_users.contains(&(e.account_id.as_str(), e.user.as_str()))
    });
    let current = findings
        .iter()
        .filter(|f| !f.exempt && f.action == Action::Deactivate)
        .map(|f| Entry {
            account_id: f.account_id.clone(),
            user: f.user.clone(),
            access_key_id: f.access_key_id.clone(),
            rule: f.rule,
            first_seen: f.first_seen,
        });
    State::from_entries(kept.cloned().chain(current))
}

/// The edge enforcement acts through (IAM in production, fakes in unit tests).
pub trait KeyActions {
    fn read_user(&self, account_id: &str, user: &str) -> impl Future<Output = Result<User, ReadError>> + Send;
    fn deactivate(
        &self,
        account_id: &str,
        user: &str,
        access_key_id: &str,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    /// Deactivated and confirmed by reading back.
    Success,
    /// The call, the re-read or the read-back failed; retried at the next run.
    Error,
    /// Dry-run: would have been deactivated.
    DryRun,
    /// Fresh data shows the finding no longer holds (or is exempt now): left alone.
    NoLongerDue,
}

impl OutcomeKind {
    /// The `outcome` label of `keywarden_deactivations_total`; `None`: not counted.
    pub fn label(self) -> Option<&'static str> {
        match self {
            OutcomeKind::Success => Some("success"),
            OutcomeKind::Error => Some("error"),
            OutcomeKind::DryRun => Some("dry_run"),
            OutcomeKind::NoLongerDue => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub candidate: Candidate,
    pub kind: OutcomeKind,
    pub error: Option<String>,
}

/// What a fresh decision needs: the same policy, first-seen times and instant as the audit.
pub struct Context<'a> {
    pub policy: &'a Policy,
    pub history: &'a dyn FirstSeen,
    pub now: Timestamp,
    pub mode: Mode,
    /// Checked between keys: a stop request ends the run after the key in hand.
    pub stop: &'a AtomicBool,
}

pub async fn execute(plan: &Plan, ctx: &Context<'_>, actions: &impl KeyActions) -> Vec<Outcome> {
    let mut out = Vec::with_capacity(plan.due.len());
    for c in &plan.due {
        if ctx.stop.load(Ordering::Acquire) {
            tracing::info!("stop requested; remaining deactivations wait for the next run");
            break;
        }
        let outcome = decide_and_act(c, ctx, actions).await;
        log(&outcome, ctx.mode);
        out.push(outcome);
    }
    out
}

async fn decide_and_act(c: &Candidate, ctx: &Context<'_>, actions: &impl KeyActions) -> Outcome {
    let done = |kind, error: Option<String>| Outcome {
        candidate: c.clone(),
        kind,
        error,
    };
    let fresh = match actions.read_user(&c.account_id, &c.user).await {
        Ok(u) => u,
        Err(e) => {
            return done(
                OutcomeKind::Error,
                Some(format!("re-read failed: {}: {}", e.operation, e.message)),
            )
        }
    };
    let inv = AccountInventory {
        account_id: c.account_id.clone(),
        users: vec![fresh],
        root_access_keys_present: None,
        errors: vec![],
        credential_report_generated: None,
    };
    let still_due = rules::evaluate(&inv, ctx.policy, ctx.history, ctx.now)
        .iter()
        .any(|f| f.access_key_id == c.access_key_id && is_due(f, ctx.now));
    if !still_due {
        return done(OutcomeKind::NoLongerDue, None);
    }
    if ctx.mode == Mode::DryRun {
        return done(OutcomeKind::DryRun, None);
    }
    // Read back even after an error: a response lost on the way back (a dropped connection,
    // a truncated body) may hide an update that was applied. What IAM shows decides.
    let call = actions.deactivate(&c.account_id, &c.user, &c.access_key_id).await.err();
    let because = |what: String| match &call {
        Some(e) => format!("{e} ({what})"),
        None => what,
    };
    match actions.read_user(&c.account_id, &c.user).await {
        Ok(u) => match u.keys.iter().find(|k| k.id == c.access_key_id) {
            Some(k) if k.status == KeyStatus::Inactive => done(
                OutcomeKind::Success,
                call.map(|e| format!("UpdateAccessKey reported an error but the key is inactive: {e}")),
            ),
            Some(_) => done(
                OutcomeKind::Error,
                Some(because("read-back shows the key still active".into())),
            ),
            None => done(
                OutcomeKind::Error,
                Some(because("read-back does not list the key".into())),
            ),
        },
        Err(e) => done(
            OutcomeKind::Error,
            Some(because(format!("read-back failed: {}: {}", e.operation, e.message))),
        ),
    }
}

fn log(o: &Outcome, mode: Mode) {
    let c = &o.candidate;
    let rules: Vec<&str> = c.rules.iter().map(|r| r.as_str()).collect();
    let rules = rules.join(",");
    let first_seen = crate::timefmt::format(&c.first_seen);
    let deadline = crate::timefmt::format(&c.deadline);
    let outcome = o.kind.label().unwrap_or("no_longer_due");
    let error = o.error.as_deref().unwrap_or("");
    macro_rules! event {
        ($level:ident, $msg:literal) => {
            tracing::$level!(
                account_id = %c.account_id,
                user = %c.user,
                access_key_id = %c.access_key_id,
                rule = %rules,
                first_seen = %first_seen,
                deadline = %deadline,
                outcome,
                error,
                mode = mode.as_str(),
                $msg
            )
        };
    }
    match o.kind {
        OutcomeKind::Success => event!(warn, "deactivated access key"),
        OutcomeKind::DryRun => event!(info, "would deactivate access key (dry-run)"),
        OutcomeKind::Error => event!(error, "deactivation failed; retried at the next run"),
        OutcomeKind::NoLongerDue => event!(info, "finding no longer holds on fresh data; key left alone"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AccessKey;
    use crate::rules::{RulePolicy, Rules};
    use chrono::{TimeDelta, TimeZone};
    use std::sync::Mutex;

    fn t0() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
    }

    fn finding(key: &str, rule: Rule, deadline_days: i64, exempt: bool) -> Finding {
        Finding {
            account_id: "1".into(),
            user: format!("u-{key}"),
            access_key_id: key.into(),
            rule,
            created: t0() - TimeDelta::days(200),
            last_used: None,
            exempt,
            exemption_reason: None,
            action: if exempt { Action::Report } else { Action::Deactivate },
            first_seen: t0() - TimeDelta::days(10),
            deactivate_after: (!exempt).then(|| t0() + TimeDelta::days(deadline_days)),
        }
    }

    #[test]
    fn plan_takes_due_keys_oldest_deadline_first_up_to_the_cap() {
        let findings = vec![
            finding("K1", Rule::UnusedKey, -1, false),
            finding("K2", Rule::UnusedKey, -5, false),
            finding("K3", Rule::UnusedKey, 1, false), // not due yet
            finding("K4", Rule::UnusedKey, -9, true), // exempt
            finding("K5", Rule::UnusedKey, -3, false),
            finding("K5", Rule::MultipleActiveKeys, -4, false),
            finding("K6", Rule::UnusedKey, 0, false), // due exactly now
        ];
        let p = plan(&findings, t0(), 3);
        let ids: Vec<&str> = p.due.iter().map(|c| c.access_key_id.as_str()).collect();
        assert_eq!(ids, ["K2", "K5", "K1"]);
        assert_eq!(p.due[1].rules, [Rule::MultipleActiveKeys, Rule::UnusedKey]);
        assert_eq!(p.held_back.get("1"), Some(&1), "K6 waits for the next run");
        assert!(plan(&findings, t0(), 0).due.is_empty());
    }

    #[test]
    fn next_state_tracks_pending_findings_and_keeps_unreadable_users() {
        let old = State::from_entries([
            Entry {
                account_id: "1".into(),
                user: "gone".into(),
                access_key_id: "OLD".into(),
                rule: Rule::UnusedKey,
                first_seen: t0() - TimeDelta::days(30),
            },
            Entry {
                account_id: "1".into(),
                user: "flaky".into(),
                access_key_id: "FLAKY".into(),
                rule: Rule::UnusedKey,
                first_seen: t0() - TimeDelta::days(30),
            },
        ]);
        let findings = vec![
            finding("K1", Rule::UnusedKey, 1, false),
            finding("K2", Rule::UnusedKey, 1, true),
        ];
        let accounts = vec![AccountInventory {
            account_id: "1".into(),
            users: vec![],
            root_access_keys_present: Some(false),
            errors: vec![ReadError {
                account_id: "1".into(),
                user: Some("flaky".into()),
                operation: "ListAccessKeys".into(),
                message: "Throttling".into(),
            }],
            credential_report_generated: None,
        }];
        let next = next_state(&old, &findings, &accounts);
        let mut keys: Vec<&str> = next.entries().map(|e| e.access_key_id.as_str()).collect();
        keys.sort();
        assert_eq!(
            keys,
            ["FLAKY", "K1"],
            "stopped holding: forgotten; unreadable: kept; exempt: not tracked"
        );
        assert_eq!(
            next.first_seen("1", "FLAKY", Rule::UnusedKey),
            Some(t0() - TimeDelta::days(30))
        );
    }

    /// In-memory IAM for one user, recording calls.
    struct Fake {
        user: Mutex<User>,
        fail_update: bool,
        /// With `fail_update`: the change is applied, only the answer is an error.
        applied_anyway: bool,
        calls: Mutex<Vec<String>>,
    }

    impl KeyActions for Fake {
        async fn read_user(&self, _: &str, _: &str) -> Result<User, ReadError> {
            self.calls.lock().unwrap().push("read".into());
            Ok(self.user.lock().unwrap().clone())
        }
        async fn deactivate(&self, _: &str, _: &str, id: &str) -> Result<(), String> {
            self.calls.lock().unwrap().push(format!("deactivate {id}"));
            if !self.fail_update || self.applied_anyway {
                for k in self.user.lock().unwrap().keys.iter_mut().filter(|k| k.id == id) {
                    k.status = KeyStatus::Inactive;
                }
            }
            if self.fail_update {
                return Err("AccessDenied".into());
            }
            Ok(())
        }
    }

    fn policy() -> Policy {
        let p = |action, days| RulePolicy {
            enabled: true,
            action,
            threshold: TimeDelta::days(days),
        };
        Policy {
            rules: Rules {
                multiple_active_keys: p(Action::Deactivate, 0),
                max_key_age: p(Action::Report, 90),
                unused_key: p(Action::Deactivate, 45),
            },
            exemptions: vec![],
            grace_period: TimeDelta::zero(),
        }
    }

    fn fake(keys: Vec<AccessKey>, fail_update: bool) -> Fake {
        Fake {
            user: Mutex::new(User {
                name: "u".into(),
                path: "/".into(),
                tags: vec![],
                keys,
            }),
            fail_update,
            applied_anyway: false,
            calls: Mutex::new(vec![]),
        }
    }

    fn key(id: &str, created_days: i64, used_days: Option<i64>) -> AccessKey {
        AccessKey {
            id: id.into(),
            status: KeyStatus::Active,
            created: t0() - TimeDelta::days(created_days),
            last_used: used_days.map(|d| t0() - TimeDelta::days(d)),
        }
    }

    fn candidate(id: &str) -> Plan {
        Plan {
            due: vec![Candidate {
                account_id: "1".into(),
                user: "u".into(),
                access_key_id: id.into(),
                rules: vec![Rule::UnusedKey],
                first_seen: t0(),
                deadline: t0(),
            }],
            held_back: BTreeMap::new(),
        }
    }

    async fn run(fake: &Fake, plan: &Plan, mode: Mode) -> Vec<Outcome> {
        let stop = AtomicBool::new(false);
        let p = policy();
        let ctx = Context {
            policy: &p,
            history: &rules::NoHistory,
            now: t0(),
            mode,
            stop: &stop,
        };
        execute(plan, &ctx, fake).await
    }

    #[tokio::test]
    async fn enforce_deactivates_after_a_fresh_decision_and_confirms() {
        let f = fake(vec![key("IDLE", 100, None)], false);
        let out = run(&f, &candidate("IDLE"), Mode::Enforce).await;
        assert_eq!(out[0].kind, OutcomeKind::Success);
        assert_eq!(*f.calls.lock().unwrap(), ["read", "deactivate IDLE", "read"]);
        assert_eq!(f.user.lock().unwrap().keys[0].status, KeyStatus::Inactive);
    }

    #[tokio::test]
    async fn dry_run_decides_the_same_and_changes_nothing() {
        let f = fake(vec![key("IDLE", 100, None)], false);
        let out = run(&f, &candidate("IDLE"), Mode::DryRun).await;
        assert_eq!(out[0].kind, OutcomeKind::DryRun);
        assert_eq!(*f.calls.lock().unwrap(), ["read"]);
        assert_eq!(f.user.lock().unwrap().keys[0].status, KeyStatus::Active);
    }

    #[tokio::test]
    async fn a_key_compliant_on_fresh_data_is_left_alone() {
        // Used yesterday: the audit's view was stale.
        let f = fake(vec![key("IDLE", 100, Some(1))], false);
        let out = run(&f, &candidate("IDLE"), Mode::Enforce).await;
        assert_eq!(out[0].kind, OutcomeKind::NoLongerDue);
        assert_eq!(*f.calls.lock().unwrap(), ["read"]);
    }

    #[tokio::test]
    async fn the_kept_key_is_never_deactivated_for_multiple_keys() {
        // Both used recently: only multiple_active_keys applies, and KEEP is the kept key.
        let f = fake(vec![key("KEEP", 10, Some(1)), key("OTHER", 20, Some(5))], false);
        let mut p = candidate("KEEP");
        p.due[0].rules = vec![Rule::MultipleActiveKeys];
        let out = run(&f, &p, Mode::Enforce).await;
        assert_eq!(out[0].kind, OutcomeKind::NoLongerDue);
        let out = run(&f, &candidate("OTHER"), Mode::Enforce).await;
        assert_eq!(out[0].kind, OutcomeKind::Success);
    }

    #[tokio::test]
    async fn update_errors_are_reported_not_retried() {
        let f = fake(vec![key("IDLE", 100, None)], true);
        let out = run(&f, &candidate("IDLE"), Mode::Enforce).await;
        assert_eq!(out[0].kind, OutcomeKind::Error);
        assert_eq!(
            out[0].error.as_deref(),
            Some("AccessDenied (read-back shows the key still active)")
        );
        assert_eq!(
            *f.calls.lock().unwrap(),
            ["read", "deactivate IDLE", "read"],
            "read back, never called twice"
        );
    }

    #[tokio::test]
    async fn an_update_whose_answer_was_lost_counts_as_done_when_iam_shows_it() {
        let mut f = fake(vec![key("IDLE", 100, None)], true);
        f.applied_anyway = true;
        let out = run(&f, &candidate("IDLE"), Mode::Enforce).await;
        assert_eq!(out[0].kind, OutcomeKind::Success);
        assert!(out[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("reported an error but the key is inactive")));
        assert_eq!(*f.calls.lock().unwrap(), ["read", "deactivate IDLE", "read"]);
    }
}

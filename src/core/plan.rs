//! Enforcement decisions, pure: which findings are due (`plan`), how the remembered state
//! moves forward after an audit (`next_state`) and after actions (`record_outcomes`), and the
//! backoff of keys whose deactivation failed. Acting on the plan is `app::execute`.
//!
//! The cap (`max_deactivations_per_run`) bounds the keys deactivated (or, in dry-run, that
//! would be), oldest deadline first. A failed attempt does not take one of those slots, and a
//! key whose deactivation failed is retried only after a backoff kept in the state (not every
//! run), so keys that cannot be deactivated (an SCP, a permissions boundary) never starve the
//! others and never cost a burst of failing calls every run. The cap bounds the blast radius
//! of a run; its request rate is `aws.max_requests_per_second`'s job.

use std::collections::{BTreeMap, HashSet};

use chrono::TimeDelta;

use crate::core::history::{Entry, Failure, State};
use crate::core::journal::{JournalAction, JournalEntry, LiveHold, RunInfo, PENDING};
use crate::core::model::{AccountInventory, CredentialType, Timestamp};
use crate::core::policy::{Mode, Rule};
use crate::core::rules::Finding;

/// A key due for deactivation: every due rule, earliest deadline first.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub account_id: String,
    pub user: String,
    pub credential_type: CredentialType,
    /// The credential's id (see `rules::Finding::access_key_id`).
    pub access_key_id: String,
    pub rules: Vec<Rule>,
    pub first_seen: Timestamp,
    pub deadline: Timestamp,
    /// The user's owner, for the log event of the action.
    pub owner: String,
}

/// Due now: not exempt, not keywarden's own key, not held, action deactivate, deadline passed.
pub fn is_due(f: &Finding, now: Timestamp) -> bool {
    !f.exempt
        && !f.own_credentials
        && f.held.is_none()
        && f.action.acts()
        && f.deactivate_after.is_some_and(|d| d <= now)
}

/// Every due key, exposed keys first, then oldest deadline first (the cap is applied while executing, so that a key
/// that cannot be deactivated does not take a slot).
pub fn plan(findings: &[Finding], now: Timestamp) -> Vec<Candidate> {
    let mut by_key: BTreeMap<(&str, &str), Candidate> = BTreeMap::new();
    for f in findings.iter().filter(|f| is_due(f, now)) {
        let deadline = f.deactivate_after.unwrap_or(now);
        let c = by_key
            .entry((f.account_id.as_str(), f.access_key_id.as_str()))
            .or_insert_with(|| Candidate {
                account_id: f.account_id.clone(),
                user: f.user.clone(),
                credential_type: f.credential_type,
                access_key_id: f.access_key_id.clone(),
                rules: Vec::new(),
                first_seen: f.first_seen,
                deadline,
                owner: f.owner.clone(),
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
    // An exposed key goes first: the cap must never leave a leaked key for a stale one.
    let order = |c: &Candidate| (!c.rules.contains(&Rule::ExposedKey), c.deadline);
    all.sort_by(|a, b| (order(a), &a.account_id, &a.access_key_id).cmp(&(order(b), &b.account_id, &b.access_key_id)));
    all
}

/// The state after an audit. A finding is tracked while it holds, is not exempt and its
/// action is deactivate (so an exemption that expires, or a rule switched to deactivate,
/// starts a fresh grace period). Entries of users or accounts that could not be read are
/// kept as they were: a failed read never resets a grace period. Deactivation failures are
/// kept for keys still tracked. `last_run` only moves forward.
/// Settles the intents a stopped process left (`State::begin_action`): what IAM shows now
/// decides. An inactive key was deactivated by that process (a success, journaled late with a
/// note, and the key forgotten); an active one never was (the intent is dropped and the key
/// stays due); a deleted one is no longer due. An intent whose run journaled it already is just
/// dropped; one whose user could not be read waits for the next run. Returns the entries to
/// append to the journal.
pub fn reconcile(state: &mut State, accounts: &[AccountInventory], journal: &[JournalEntry]) -> Vec<JournalEntry> {
    const LATE: &str = "journaled by a later run: the run that sent the update could not confirm it (it stopped, or its read-back failed); the outcome is what IAM showed then";
    let mut late = Vec::new();
    let intents: Vec<JournalEntry> = state.intents().cloned().collect();
    for intent in intents {
        let Some(account) = accounts.iter().find(|a| a.account_id == intent.account_id) else {
            continue;
        };
        let unreadable = account
            .errors
            .iter()
            .any(|e| e.user.as_deref().is_none_or(|u| u == intent.user));
        if unreadable {
            continue;
        }
        state.end_action(&intent.account_id, &intent.access_key_id);
        // An `error` entry of the same run left the outcome open (the read-back failed after
        // the update was sent): what IAM shows now settles it.
        let recorded = journal.iter().any(|e| {
            e.run.run_id == intent.run.run_id
                && e.access_key_id == intent.access_key_id
                && e.outcome != OutcomeKind::Error.as_str()
        });
        if recorded {
            continue;
        }
        let active = account
            .users
            .iter()
            .find(|u| u.name == intent.user)
            .and_then(|u| u.is_active(intent.credential_type, &intent.access_key_id));
        // A password is deleted, not switched off: gone is the deletion's success.
        let deleted = intent.credential_type == crate::core::model::CredentialType::Password;
        let outcome = match active {
            Some(true) if !deleted => continue,
            Some(false) => {
                state.forget_key(&intent.account_id, &intent.access_key_id);
                OutcomeKind::Success
            }
            Some(_) => continue,
            None if deleted => {
                state.forget_key(&intent.account_id, &intent.access_key_id);
                OutcomeKind::Success
            }
            None => OutcomeKind::NoLongerDue,
        };
        late.push(JournalEntry {
            outcome: outcome.as_str().to_string(),
            error: Some(LATE.to_string()),
            ..intent
        });
    }
    late
}

pub fn next_state(old: &State, findings: &[Finding], accounts: &[AccountInventory], now: Timestamp) -> State {
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
    let current = findings.iter().filter(|f| !f.exempt && f.action.acts()).map(|f| Entry {
        account_id: f.account_id.clone(),
        user: f.user.clone(),
        access_key_id: f.access_key_id.clone(),
        rule: f.rule,
        first_seen: f.first_seen,
    });
    let mut next = State::from_entries(kept.cloned().chain(current));
    let tracked: HashSet<(String, String)> = next
        .entries()
        .map(|e| (e.account_id.clone(), e.access_key_id.clone()))
        .collect();
    for f in old.failures() {
        if tracked.contains(&(f.account_id.clone(), f.access_key_id.clone())) {
            next.set_failure(f.clone());
        }
    }
    for (account_id, key, first_seen) in old.dry_run_notes() {
        if tracked.contains(&(account_id.to_string(), key.to_string())) {
            next.note_dry_run(account_id, key, first_seen);
        }
    }
    for (account_id, key, until) in old.hold_notes() {
        if tracked.contains(&(account_id.to_string(), key.to_string())) {
            next.note_hold(account_id, key, until);
        }
    }
    next.keep_snoozes_of(old, now);
    next.keep_intents_of(old);
    next.last_run = Some(old.last_run.map_or(now, |t| t.max(now)));
    next
}

/// The live-use holds (`usage.hold_live_keys`) not journaled yet: one per key, with the
/// earliest end of its held findings. A hold already journaled with the same end is not
/// journaled again; a new grace period (a new end) is.
pub fn new_live_holds(findings: &[Finding], accounts: &[AccountInventory], state: &State) -> Vec<LiveHold> {
    let mut by_key: BTreeMap<(&str, &str), LiveHold> = BTreeMap::new();
    for f in findings.iter().filter(|f| !f.exempt) {
        let Some(crate::core::rules::Hold::InLiveUse { until }) = f.held else {
            continue;
        };
        let h = by_key
            .entry((f.account_id.as_str(), f.access_key_id.as_str()))
            .or_insert_with(|| LiveHold {
                account_id: f.account_id.clone(),
                user: f.user.clone(),
                access_key_id: f.access_key_id.clone(),
                rules: Vec::new(),
                first_seen: f.first_seen,
                until,
                last_call: accounts
                    .iter()
                    .find(|a| a.account_id == f.account_id)
                    .and_then(|a| a.last_calls.get(&f.access_key_id).copied()),
            });
        h.rules.push(f.rule);
        h.until = h.until.min(until);
        h.first_seen = h.first_seen.min(f.first_seen);
    }
    by_key
        .into_values()
        .filter(|h| state.hold_noted(&h.account_id, &h.access_key_id) != Some(h.until))
        .collect()
}

/// How long a key whose deactivation failed `attempts` times waits before the next attempt:
/// 30 minutes, doubling, at most a day.
pub fn backoff(attempts: u32) -> TimeDelta {
    let steps = attempts.saturating_sub(1).min(6);
    TimeDelta::minutes(30 * (1_i64 << steps)).min(TimeDelta::days(1))
}

/// The state after the actions of a run: deactivated keys are forgotten, failures are
/// counted with their next attempt, a key no longer due loses its failure record, a dry-run
/// decision is remembered as journaled. Returns whether anything changed (what needs saving).
pub fn record_outcomes(state: &mut State, outcomes: &[Outcome], now: Timestamp) -> bool {
    let mut changed = false;
    for o in outcomes {
        let c = &o.candidate;
        changed |= match o.kind {
            OutcomeKind::DryRun => state.dry_run_noted(&c.account_id, &c.access_key_id) != Some(c.first_seen),
            OutcomeKind::Backoff => false,
            OutcomeKind::Error if !o.refused => false,
            OutcomeKind::Success | OutcomeKind::NoLongerDue | OutcomeKind::Error => true,
        };
        match o.kind {
            OutcomeKind::Success => state.forget_key(&c.account_id, &c.access_key_id),
            OutcomeKind::NoLongerDue => state.clear_failure(&c.account_id, &c.access_key_id),
            OutcomeKind::Error if !o.refused => {}
            OutcomeKind::Error => {
                let attempts = state
                    .failure(&c.account_id, &c.access_key_id)
                    .map_or(0, |f| f.attempts)
                    .saturating_add(1);
                state.set_failure(Failure {
                    account_id: c.account_id.clone(),
                    user: c.user.clone(),
                    access_key_id: c.access_key_id.clone(),
                    attempts,
                    last_error: o.error.clone().unwrap_or_default(),
                    last_attempt: now,
                    next_attempt: now.checked_add_signed(backoff(attempts)).unwrap_or(now),
                });
            }
            OutcomeKind::DryRun => state.note_dry_run(&c.account_id, &c.access_key_id, c.first_seen),
            OutcomeKind::Backoff => {}
        }
    }
    changed
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    /// Deactivated and confirmed by reading back.
    Success,
    /// The fresh read, the call or the read-back failed. Retried after a backoff when the
    /// service refused the call (`Outcome::refused`), else at the next run.
    Error,
    /// Dry-run: would have been deactivated.
    DryRun,
    /// Fresh data shows the finding no longer holds (or is exempt now, or the user or key is
    /// gone): left alone.
    NoLongerDue,
    /// An earlier attempt failed and its backoff has not passed: not tried this run.
    Backoff,
}

impl OutcomeKind {
    /// The `outcome` label of `keywarden_deactivations_total`; `None`: not counted.
    pub fn label(self) -> Option<&'static str> {
        match self {
            OutcomeKind::Success => Some("success"),
            OutcomeKind::Error => Some("error"),
            OutcomeKind::DryRun => Some("dry_run"),
            OutcomeKind::NoLongerDue | OutcomeKind::Backoff => None,
        }
    }

    /// The `outcome` field of the log event.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::NoLongerDue => "no_longer_due",
            OutcomeKind::Backoff => "backoff",
            other => other.label().unwrap_or(""),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub candidate: Candidate,
    pub kind: OutcomeKind,
    pub error: Option<String>,
    /// The service refused the update (`ServiceError::refused`): only then does the key back
    /// off. Any other error (the fresh read failed, no answer, throttling, a server error)
    /// leaves it due at the next run: nothing shows that it cannot be deactivated.
    pub refused: bool,
    /// The update was sent and its effect is unknown (the read-back failed): its intent stays
    /// for the next run to settle from what IAM shows then (`reconcile`), without a backoff.
    pub open: bool,
    /// A login profile's deletion: the settings it had (for the journal).
    pub login_profile: Option<crate::core::model::LoginProfile>,
}

/// A plan's journal entries are built here, beside the plan's types, so that the journal's
/// vocabulary does not depend on the plan.
impl JournalEntry {
    /// The entry of one deactivation outcome; `None` for a key left for its backoff (nothing
    /// was attempted, nothing to record).
    pub fn of_outcome(o: &Outcome, mode: Mode, run: &RunInfo, time: Timestamp) -> Option<JournalEntry> {
        if o.kind == OutcomeKind::Backoff {
            return None;
        }
        Some(JournalEntry {
            mode: mode.as_str().to_string(),
            outcome: o.kind.as_str().to_string(),
            error: o.error.clone(),
            login_profile: o.login_profile,
            ..JournalEntry::intent(&o.candidate, run, time)
        })
    }

    /// The write-ahead record of a deactivation about to be sent (`State::begin_action`);
    /// its outcome is decided later, by the run itself or by `plan::reconcile`.
    pub fn intent(c: &Candidate, run: &RunInfo, time: Timestamp) -> JournalEntry {
        let action = match c.credential_type {
            crate::core::model::CredentialType::Password => JournalAction::DeleteLoginProfile,
            _ => JournalAction::Deactivate,
        };
        JournalEntry {
            time,
            action,
            mode: Mode::Enforce.as_str().to_string(),
            account_id: c.account_id.clone(),
            user: c.user.clone(),
            credential_type: c.credential_type,
            access_key_id: c.access_key_id.clone(),
            rules: c.rules.clone(),
            first_seen: Some(c.first_seen),
            deadline: Some(c.deadline),
            outcome: PENDING.to_string(),
            error: None,
            reason: None,
            operator: None,
            new_access_key_id: None,
            secret_arn: None,
            login_profile: None,
            run: run.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::ReadError;
    use crate::core::policy::Action;
    use crate::core::rules::FirstSeen;
    use crate::core::rules::Hold;
    use chrono::TimeZone;

    fn t0() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn only_a_refused_update_backs_off() {
        // Found by the randomized campaign (seeds 1 and 5): a truncated answer to the fresh
        // read, or a dropped connection of UpdateAccessKey, made a due key wait 30 minutes, as
        // if it could not be deactivated.
        let candidate = plan(&[finding("AK", Rule::UnusedKey, -1, false)], t0()).remove(0);
        let outcome = |refused| Outcome {
            candidate: candidate.clone(),
            kind: OutcomeKind::Error,
            error: Some("re-read failed: ListAccessKeys: the answer was cut off".into()),
            login_profile: None,
            refused,
            open: false,
        };
        let mut state = State::default();
        assert!(!record_outcomes(&mut state, &[outcome(false)], t0()));
        assert!(state.failure("1", "AK").is_none());
        assert!(record_outcomes(&mut state, &[outcome(true)], t0()));
        let f = state.failure(&candidate.account_id, "AK").expect("a backoff");
        assert_eq!(f.next_attempt, t0() + TimeDelta::minutes(30));
    }

    fn finding(key: &str, rule: Rule, deadline_days: i64, exempt: bool) -> Finding {
        Finding {
            credential_type: crate::core::model::CredentialType::AccessKey,
            account_id: "1".into(),
            user: format!("u-{key}"),
            access_key_id: key.into(),
            rule,
            created: t0() - TimeDelta::days(200),
            last_used: None,
            exempt,
            exemption_reason: None,
            exemption_source: None,
            tag_exemption_problem: None,
            expired_exemption: None,
            owner: "unowned".into(),
            action: if exempt { Action::Report } else { Action::Deactivate },
            first_seen: t0() - TimeDelta::days(10),
            deactivate_after: (!exempt).then(|| t0() + TimeDelta::days(deadline_days)),
            own_credentials: false,
            held: None,
            kept_access_key_id: None,
            waiting_for_window: false,
        }
    }

    #[test]
    fn an_exposed_key_goes_first_whatever_its_deadline() {
        let findings = vec![
            finding("OLD", Rule::UnusedKey, -30, false),
            finding("LEAK", Rule::UnusedKey, -40, false),
            finding("LEAK", Rule::ExposedKey, 0, false),
            finding("STALE", Rule::MaxKeyAge, -50, false),
        ];
        let ids: Vec<String> = plan(&findings, t0()).into_iter().map(|c| c.access_key_id).collect();
        assert_eq!(ids, ["LEAK", "STALE", "OLD"]);
    }

    #[test]
    fn plan_takes_every_due_key_oldest_deadline_first() {
        let findings = vec![
            finding("K1", Rule::UnusedKey, -1, false),
            finding("K2", Rule::UnusedKey, -5, false),
            finding("K3", Rule::UnusedKey, 1, false), // not due yet
            finding("K4", Rule::UnusedKey, -9, true), // exempt
            finding("K5", Rule::UnusedKey, -3, false),
            finding("K5", Rule::MultipleActiveKeys, -4, false),
            finding("K6", Rule::UnusedKey, 0, false), // due exactly now
        ];
        let p = plan(&findings, t0());
        let ids: Vec<&str> = p.iter().map(|c| c.access_key_id.as_str()).collect();
        assert_eq!(ids, ["K2", "K5", "K1", "K6"]);
        assert_eq!(p[1].rules, [Rule::MultipleActiveKeys, Rule::UnusedKey]);

        let mut own = finding("K7", Rule::UnusedKey, -20, false);
        own.own_credentials = true;
        let mut held = finding("K8", Rule::MultipleActiveKeys, -20, false);
        held.held = Some(Hold::WaitingForKeptKeyUse);
        assert!(
            plan(&[own, held], t0()).is_empty(),
            "its own key and held keys are never due"
        );
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
        let mut reported = finding("K3", Rule::MaxKeyAge, 1, false);
        reported.action = Action::Report;
        reported.deactivate_after = None;
        let findings = vec![
            finding("K1", Rule::UnusedKey, 1, false),
            finding("K2", Rule::UnusedKey, 1, true),
            reported,
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
                code: None,
            }],
            credential_report_generated: None,
            own_access_key_id: None,
            exposure: Default::default(),
            last_calls: Default::default(),
        }];
        let next = next_state(&old, &findings, &accounts, t0());
        let mut keys: Vec<&str> = next.entries().map(|e| e.access_key_id.as_str()).collect();
        keys.sort();
        assert_eq!(
            keys,
            ["FLAKY", "K1"],
            "stopped holding: forgotten; unreadable: kept; exempt or report-only: not tracked"
        );
        assert_eq!(
            next.first_seen("1", "FLAKY", Rule::UnusedKey),
            Some(t0() - TimeDelta::days(30))
        );
    }

    #[test]
    fn equal_deadlines_keep_the_rule_order() {
        // The first rule names the decision in metrics and logs.
        let findings = vec![
            finding("K", Rule::MultipleActiveKeys, -1, false),
            finding("K", Rule::UnusedKey, -1, false),
        ];
        assert_eq!(
            plan(&findings, t0())[0].rules,
            [Rule::MultipleActiveKeys, Rule::UnusedKey]
        );
    }

    #[test]
    fn outcomes_speak_the_metric_and_log_vocabulary() {
        use OutcomeKind::*;
        let kinds = [Success, Error, DryRun, NoLongerDue, Backoff];
        let labels: Vec<Option<&str>> = kinds.iter().map(|k| k.label()).collect();
        assert_eq!(labels, [Some("success"), Some("error"), Some("dry_run"), None, None]);
        let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, ["success", "error", "dry_run", "no_longer_due", "backoff"]);
    }

    #[test]
    fn backoff_doubles_up_to_a_day() {
        assert_eq!(backoff(1), TimeDelta::minutes(30));
        assert_eq!(backoff(2), TimeDelta::hours(1));
        assert_eq!(backoff(6), TimeDelta::hours(16));
        assert_eq!(backoff(7), TimeDelta::days(1));
        assert_eq!(backoff(u32::MAX), TimeDelta::days(1));
    }
}

#[cfg(test)]
mod reconcile_tests {
    use super::*;
    use crate::core::journal::{sample_entry, PENDING};
    use crate::core::model::{AccessKey, KeyStatus, ReadError, User};
    use chrono::TimeZone;

    fn t0() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
    }

    /// A state with one pending finding of `AK` (user `u`) and its intent.
    fn state() -> (State, JournalEntry) {
        let mut s = State::from_entries([Entry {
            account_id: "123456789012".into(),
            user: "u".into(),
            access_key_id: "AK".into(),
            rule: Rule::UnusedKey,
            first_seen: t0(),
        }]);
        let intent = JournalEntry {
            outcome: PENDING.into(),
            ..sample_entry(t0(), "u", "AK")
        };
        s.begin_action(intent.clone());
        (s, intent)
    }

    fn account(status: Option<KeyStatus>, unreadable: bool) -> Vec<AccountInventory> {
        let keys = status
            .map(|status| AccessKey {
                id: "AK".into(),
                status,
                created: t0(),
                last_used: None,
            })
            .into_iter()
            .collect();
        vec![AccountInventory {
            account_id: "123456789012".into(),
            users: vec![User {
                credentials: vec![],
                name: "u".into(),
                path: "/".into(),
                tags: vec![],
                keys,
            }],
            errors: if unreadable {
                vec![ReadError {
                    account_id: "123456789012".into(),
                    user: Some("u".into()),
                    operation: "ListAccessKeys".into(),
                    message: "Throttling".into(),
                    code: None,
                }]
            } else {
                vec![]
            },
            ..Default::default()
        }]
    }

    #[test]
    fn an_inactive_key_left_by_a_stopped_process_is_journaled_late_as_a_success() {
        let (mut s, _) = state();
        let late = reconcile(&mut s, &account(Some(KeyStatus::Inactive), false), &[]);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].outcome, "success");
        assert!(late[0].error.as_deref().unwrap_or("").contains("later run"));
        assert_eq!(s.intents().count(), 0);
        assert_eq!(s.entries().count(), 0, "the key is forgotten");
    }

    #[test]
    fn an_active_key_was_never_touched_and_stays_due() {
        let (mut s, _) = state();
        assert!(reconcile(&mut s, &account(Some(KeyStatus::Active), false), &[]).is_empty());
        assert_eq!(s.intents().count(), 0);
        assert_eq!(s.entries().count(), 1);
    }

    #[test]
    fn a_deleted_key_is_no_longer_due_and_a_journaled_intent_is_just_dropped() {
        let (mut s, intent) = state();
        let late = reconcile(&mut s, &account(None, false), &[]);
        assert_eq!(late[0].outcome, "no_longer_due");
        let (mut s, _) = state();
        let done = JournalEntry {
            outcome: "success".into(),
            ..intent
        };
        assert!(reconcile(&mut s, &account(Some(KeyStatus::Inactive), false), &[done]).is_empty());
        assert_eq!(s.intents().count(), 0);
    }

    #[test]
    fn a_deactivation_whose_read_back_failed_is_settled_from_iam_by_the_next_run() {
        // Found by the randomized campaign (seed 3): UpdateAccessKey was applied, the read-back
        // timed out, the run journaled `error`, and no later entry ever said the key was
        // deactivated (nor could `reactivate` undo it). The intent stays for the next run.
        let (mut s, intent) = state();
        let unknown = JournalEntry {
            outcome: "error".into(),
            error: Some("read-back failed: ListAccessKeys: no answer in time".into()),
            ..intent
        };
        let late = reconcile(&mut s, &account(Some(KeyStatus::Inactive), false), &[unknown]);
        assert_eq!(late.len(), 1, "{late:?}");
        assert_eq!(late[0].outcome, "success");
        assert_eq!(s.intents().count(), 0);
    }

    #[test]
    fn an_unreadable_user_keeps_its_intent_for_the_next_run() {
        let (mut s, _) = state();
        assert!(reconcile(&mut s, &account(Some(KeyStatus::Inactive), true), &[]).is_empty());
        assert_eq!(s.intents().count(), 1);
    }
}

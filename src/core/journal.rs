//! The action journal's entries: one per deactivation (or dry-run "would deactivate", or a
//! deactivation that failed or was no longer due on fresh data) and one per reactivation.
//! The state forgets a key once it is deactivated; the journal is what remembers, so that an
//! operator can see what keywarden did and undo it (`keywarden history`, `keywarden reactivate`).
//! Plain data here; the file form is `state::journal`.

use chrono::TimeDelta;

use crate::core::model::{CredentialType, Mode, Rule, Timestamp};

/// The outcome of an intent (never in the journal itself).
pub const PENDING: &str = "pending";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalAction {
    Deactivate,
    /// `rules.unused_password` with `action = "delete_login_profile"`: the user's console
    /// password deleted (a password cannot be switched off). Undone by `reactivate --password`.
    DeleteLoginProfile,
    Reactivate,
    /// `keywarden rotate` or the daemon's automatic rotation: a new key handed over.
    Rotate,
    /// After an exposed key's deactivation: the user's older sessions denied.
    RevokeSessions,
    /// `reactivate` of an exposed key: that denial removed again.
    RestoreSessions,
    /// An AWS Health event claimed a key exposed and no live read confirmed it (outcome
    /// `unconfirmed`): reported, nothing changed.
    ReportExposure,
}

impl JournalAction {
    pub fn as_str(self) -> &'static str {
        match self {
            JournalAction::Deactivate => "deactivate",
            JournalAction::DeleteLoginProfile => "delete_login_profile",
            JournalAction::Reactivate => "reactivate",
            JournalAction::Rotate => "rotate",
            JournalAction::RevokeSessions => "revoke_sessions",
            JournalAction::RestoreSessions => "restore_sessions",
            JournalAction::ReportExposure => "report_exposure",
        }
    }

    pub fn parse(s: &str) -> Option<JournalAction> {
        [
            JournalAction::Deactivate,
            JournalAction::DeleteLoginProfile,
            JournalAction::Reactivate,
            JournalAction::Rotate,
            JournalAction::RevokeSessions,
            JournalAction::RestoreSessions,
            JournalAction::ReportExposure,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// A due deactivation held for live use, as journaled (`plan::new_live_holds`).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveHold {
    pub account_id: String,
    pub user: String,
    pub access_key_id: String,
    /// The held rules.
    pub rules: Vec<Rule>,
    pub first_seen: Timestamp,
    /// The earliest end of the key's holds: the key is due then whatever the evidence says.
    pub until: Timestamp,
    /// The call the usage evidence shows.
    pub last_call: Option<Timestamp>,
}

/// Who and what wrote an entry: the same for every entry of one run or command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    pub run_id: String,
    pub host: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    pub time: Timestamp,
    pub action: JournalAction,
    /// `enforce` or `dry-run`.
    pub mode: String,
    pub account_id: String,
    pub user: String,
    /// The credential's kind (`access_key` for every entry written before there were others).
    pub credential_type: CredentialType,
    /// The credential's id (see `rules::Finding::access_key_id`).
    pub access_key_id: String,
    pub rules: Vec<Rule>,
    pub first_seen: Option<Timestamp>,
    pub deadline: Option<Timestamp>,
    /// `success`, `error`, `dry_run` or `no_longer_due`; `held` for a deactivation held for
    /// live use; `unconfirmed` for `report_exposure`.
    pub outcome: String,
    pub error: Option<String>,
    /// Reactivations: why (`--reason`).
    pub reason: Option<String>,
    /// Reactivations and rotations: who (`$SUDO_USER`, else `$USER`).
    pub operator: Option<String>,
    /// Rotations: the key made to replace `access_key_id`.
    pub new_access_key_id: Option<String>,
    /// Rotations: the Secrets Manager secret the new key was handed over in; a password's
    /// reactivation: the secret its temporary password was handed over in.
    pub secret_arn: Option<String>,
    /// A login profile's deletion: the settings it had.
    pub login_profile: Option<crate::core::model::LoginProfile>,
    pub run: RunInfo,
}

impl JournalEntry {
    /// The entry of the sessions' denial after `deactivated`'s success, at `time`.
    pub fn revoked_sessions(deactivated: &JournalEntry, time: Timestamp, error: Option<String>) -> JournalEntry {
        JournalEntry {
            time,
            action: JournalAction::RevokeSessions,
            outcome: if error.is_some() { "error" } else { "success" }.to_string(),
            reason: Some(format!(
                "exposed key deactivated: temporary credentials of {} issued before {} are denied (inline policy keywarden-revoke-sessions)",
                deactivated.user,
                time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
            error,
            first_seen: None,
            deadline: None,
            ..deactivated.clone()
        }
    }

    /// The record of an exposure claim no live read confirmed (`Exposure::unconfirmed`):
    /// nothing was changed, and the entry says why.
    pub fn unconfirmed_exposure(
        account_id: &str,
        claim: &crate::core::model::UnconfirmedExposure,
        mode: Mode,
        run: &RunInfo,
        time: Timestamp,
    ) -> JournalEntry {
        let why = match &claim.user {
            Some(_) => "the user carries none of AWS's quarantine policies",
            None => "no user of the account has this key",
        };
        JournalEntry {
            time,
            action: JournalAction::ReportExposure,
            mode: mode.as_str().to_string(),
            account_id: account_id.to_string(),
            user: claim.user.clone().unwrap_or_default(),
            credential_type: CredentialType::AccessKey,
            access_key_id: claim.access_key_id.clone(),
            rules: vec![Rule::ExposedKey],
            first_seen: None,
            deadline: None,
            outcome: "unconfirmed".to_string(),
            error: None,
            reason: Some(format!(
                "an AWS Health event named this key exposed, but the live read does not confirm it ({why}); nothing was changed"
            )),
            operator: None,
            new_access_key_id: None,
            secret_arn: None,
            login_profile: None,
            run: run.clone(),
        }
    }

    /// The record of a due deactivation held because usage evidence shows the key in live use
    /// (`usage.hold_live_keys`, outcome `held`): nothing was changed, and `deadline` is when
    /// the hold ends at the latest. Journaled once per hold.
    pub fn live_hold(hold: &LiveHold, mode: Mode, run: &RunInfo, time: Timestamp) -> JournalEntry {
        let stamp = |t: Timestamp| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        JournalEntry {
            time,
            action: JournalAction::Deactivate,
            mode: mode.as_str().to_string(),
            account_id: hold.account_id.clone(),
            user: hold.user.clone(),
            credential_type: CredentialType::AccessKey,
            access_key_id: hold.access_key_id.clone(),
            rules: hold.rules.clone(),
            first_seen: Some(hold.first_seen),
            deadline: Some(hold.until),
            outcome: "held".to_string(),
            error: None,
            reason: Some(format!(
                "in live use: its usage profile shows a call at {}; held until {} at the latest (usage.hold_live_keys), then deactivated whatever the usage evidence says",
                hold.last_call.map_or_else(|| "an unknown time".to_string(), stamp),
                stamp(hold.until)
            )),
            operator: None,
            new_access_key_id: None,
            secret_arn: None,
            login_profile: None,
            run: run.clone(),
        }
    }

    /// Whether this entry records keywarden itself deactivating the credential (or deleting
    /// a login profile): what `reactivate` requires before it undoes anything.
    pub fn is_confirmed_deactivation(&self) -> bool {
        self.action.removes() && self.mode == Mode::Enforce.as_str() && self.outcome == "success"
    }
}

impl JournalAction {
    /// A deactivation, or a login profile's deletion: what `reactivate` undoes.
    pub fn removes(self) -> bool {
        matches!(self, JournalAction::Deactivate | JournalAction::DeleteLoginProfile)
    }
}

/// The newest deactivation or reactivation of `access_key_id`, entries being in file (time)
/// order (what was done to the key itself, not to its user's sessions).
pub fn latest_for<'a>(entries: &'a [JournalEntry], access_key_id: &str) -> Option<&'a JournalEntry> {
    entries
        .iter()
        .rev()
        .find(|e| e.access_key_id == access_key_id && (e.action.removes() || e.action == JournalAction::Reactivate))
}

/// What `history` and `/api/v1/actions` select from the journal.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only entries at most this old.
    pub since: Option<TimeDelta>,
    /// Only users matching this glob.
    pub user: Option<glob::Pattern>,
}

/// The entries `q` selects, newest first (`entries` in append order).
pub fn select<'a>(entries: &'a [JournalEntry], q: &Query, now: Timestamp) -> Vec<&'a JournalEntry> {
    let cutoff = q.since.and_then(|s| now.checked_sub_signed(s));
    // Reversed first: entries of the same second stay newest (last appended) first.
    let mut out: Vec<&JournalEntry> = entries
        .iter()
        .rev()
        .filter(|e| cutoff.is_none_or(|c| e.time >= c))
        .filter(|e| q.user.as_ref().is_none_or(|p| p.matches(&e.user)))
        .collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.time));
    out
}

/// Test fixtures shared by the journal's unit tests here and in `state::journal`.
#[cfg(test)]
impl RunInfo {
    pub(crate) fn for_tests() -> RunInfo {
        RunInfo {
            run_id: "run-1".into(),
            host: "host".into(),
            version: "0".into(),
        }
    }
}

/// A successful enforce-mode deactivation of `key` of `user` at `time`.
#[cfg(test)]
pub(crate) fn sample_entry(time: Timestamp, user: &str, key: &str) -> JournalEntry {
    JournalEntry {
        credential_type: crate::core::model::CredentialType::AccessKey,
        time,
        action: JournalAction::Deactivate,
        mode: "enforce".into(),
        account_id: "123456789012".into(),
        user: user.into(),
        access_key_id: key.into(),
        rules: vec![Rule::UnusedKey, Rule::MaxKeyAge],
        first_seen: None,
        deadline: None,
        outcome: "success".into(),
        error: None,
        reason: None,
        operator: None,
        new_access_key_id: None,
        secret_arn: None,
        login_profile: None,
        run: RunInfo::for_tests(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::{Candidate, Outcome, OutcomeKind};
    use chrono::TimeZone;

    fn t(h: u32) -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).unwrap()
    }
    fn run() -> RunInfo {
        RunInfo::for_tests()
    }
    fn outcome(kind: OutcomeKind) -> Outcome {
        Outcome {
            candidate: Candidate {
                credential_type: crate::core::model::CredentialType::AccessKey,
                account_id: "1".into(),
                user: "u".into(),
                access_key_id: "AK".into(),
                rules: vec![Rule::UnusedKey],
                first_seen: t(1),
                deadline: t(2),
                owner: "o".into(),
            },
            kind,
            error: None,
            login_profile: None,
            refused: true,
            open: false,
        }
    }

    #[test]
    fn every_attempt_is_journaled_but_a_backoff_is_not() {
        for (kind, name) in [
            (OutcomeKind::Success, "success"),
            (OutcomeKind::Error, "error"),
            (OutcomeKind::DryRun, "dry_run"),
            (OutcomeKind::NoLongerDue, "no_longer_due"),
        ] {
            let e = JournalEntry::of_outcome(&outcome(kind), Mode::Enforce, &run(), t(3)).unwrap();
            assert_eq!(e.outcome, name);
            assert_eq!((e.first_seen, e.deadline), (Some(t(1)), Some(t(2))));
        }
        assert_eq!(
            JournalEntry::of_outcome(&outcome(OutcomeKind::Backoff), Mode::Enforce, &run(), t(3)),
            None
        );
    }

    #[test]
    fn only_an_enforced_successful_deactivation_counts_as_keywardens() {
        let ok = JournalEntry::of_outcome(&outcome(OutcomeKind::Success), Mode::Enforce, &run(), t(3)).unwrap();
        assert!(ok.is_confirmed_deactivation());
        let dry = JournalEntry::of_outcome(&outcome(OutcomeKind::DryRun), Mode::DryRun, &run(), t(3)).unwrap();
        assert!(!dry.is_confirmed_deactivation());
        let failed = JournalEntry::of_outcome(&outcome(OutcomeKind::Error), Mode::Enforce, &run(), t(3)).unwrap();
        assert!(!failed.is_confirmed_deactivation());
        let reactivated = JournalEntry {
            action: JournalAction::Reactivate,
            ..ok.clone()
        };
        assert!(!reactivated.is_confirmed_deactivation());
        let entries = [ok.clone(), reactivated.clone()];
        assert_eq!(latest_for(&entries, "AK"), Some(&reactivated));
        assert_eq!(latest_for(&entries, "other"), None);
    }

    #[test]
    fn newest_first_within_since_and_matching_the_user() {
        let entry = |hour: u32, user: &str| sample_entry(t(hour), user, &format!("AK{hour}"));
        let entries = [entry(1, "ci-a"), entry(5, "bob"), entry(9, "ci-b")];
        let now = t(10);
        let ids = |q: &Query| -> Vec<String> {
            select(&entries, q, now)
                .iter()
                .map(|e| e.access_key_id.clone())
                .collect()
        };
        assert_eq!(ids(&Query::default()), ["AK9", "AK5", "AK1"]);
        let recent = Query {
            since: Some(TimeDelta::hours(6)),
            ..Query::default()
        };
        assert_eq!(ids(&recent), ["AK9", "AK5"]);
        let ci = Query {
            user: Some(glob::Pattern::new("ci-*").unwrap()),
            ..Query::default()
        };
        assert_eq!(ids(&ci), ["AK9", "AK1"]);
    }
}

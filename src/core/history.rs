//! What keywarden remembers between runs, in memory: when each pending finding was first seen
//! (grace periods), which deactivations failed and when to try again (backoff), which keys an
//! operator reactivated and snoozed (`keywarden reactivate`), and the time of the last run (a
//! clock that went backwards), each user's key ids as a ListAccessKeys named them (so a
//! credential-report run lists only users whose keys changed), and each user's other
//! credentials as last listed (so a run between full refreshes lists none). Stored by a state
//! store (`state::file`, `state::items`).

use std::collections::{HashMap, HashSet};

use crate::core::journal::JournalEntry;
use crate::core::model::Rule;
use crate::core::model::{AccountInventory, Credential, CredentialType, Timestamp};
use crate::core::rules::FirstSeen;

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub account_id: String,
    pub user: String,
    pub access_key_id: String,
    pub rule: Rule,
    pub first_seen: Timestamp,
}

/// A key whose deactivation failed: retried after `next_attempt`, not every run.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub account_id: String,
    pub user: String,
    pub access_key_id: String,
    pub attempts: u32,
    pub last_error: String,
    pub last_attempt: Timestamp,
    pub next_attempt: Timestamp,
}

/// A key an operator reactivated: not deactivated again before `until`.
#[derive(Debug, Clone, PartialEq)]
pub struct Snooze {
    pub account_id: String,
    pub user: String,
    pub access_key_id: String,
    pub until: Timestamp,
    pub reason: String,
}

/// One user's key ids with the creation time each was named by. The credential report knows
/// a key only by its slot's last-rotated second; while those seconds are the same as here, the
/// ids are too (ids are never reused, and a key created later has a later second).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyNames {
    pub account_id: String,
    pub user: String,
    pub keys: Vec<(String, Timestamp)>,
}

/// One user's credentials of `kinds` beyond access keys, as last read. SSH keys and
/// service-specific credentials have no column in the credential report and a login profile's
/// existence none in ListUsers, so listing them every run would cost a request per user and
/// kind; between full refreshes (`aws.full_refresh_every`) a run takes them from here, and a
/// CloudTrail event for one of their calls has the user read live (`core::events`). Only
/// findings come from it: every action re-reads the user live first.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub account_id: String,
    pub user: String,
    /// The kinds that were read (a kind not here is listed live, whatever `credentials` says).
    pub kinds: Vec<CredentialType>,
    pub credentials: Vec<Credential>,
}

impl Listing {
    /// The remembered credentials of `kind`, if that kind was read.
    pub fn of(&self, kind: CredentialType) -> Option<impl Iterator<Item = &Credential>> {
        self.kinds
            .contains(&kind)
            .then(|| self.credentials.iter().filter(move |c| c.kind == kind))
    }
}

/// The kinds a run remembers for the users of an account: every kind the rules read, except a
/// password where the credential report was read (its row gives the password at no request).
pub fn remembered_kinds(kinds: &[CredentialType], from_report: bool) -> Vec<CredentialType> {
    kinds
        .iter()
        .copied()
        .filter(|k| !(from_report && *k == CredentialType::Password))
        .collect()
}

type Key = (String, String, Rule);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    entries: HashMap<Key, Entry>,
    failures: HashMap<(String, String), Failure>,
    snoozes: HashMap<(String, String), Snooze>,
    /// Dry-run decisions already journaled, by the first-seen time they were made for: a
    /// dry-run daemon journals each decision once, not at every run.
    dry_run_noted: HashMap<(String, String), Timestamp>,
    /// Live-use holds already journaled (`usage.hold_live_keys`), by when each ends: a hold
    /// is journaled once, not at every run it lasts.
    holds_noted: HashMap<(String, String), Timestamp>,
    /// Deactivations begun and not yet journaled (write-ahead): saved right before each
    /// UpdateAccessKey, dropped once its journal entry is written. One left over means the
    /// acting process stopped in between; the next run journals what IAM shows
    /// (`plan::reconcile`).
    intents: HashMap<(String, String), JournalEntry>,
    /// Key ids by (account, user), from the last ListAccessKeys of each user.
    key_names: HashMap<(String, String), KeyNames>,
    /// Other credentials by (account, user), as last read.
    listings: HashMap<(String, String), Listing>,
    /// Runs since key ids were last read in full (`aws.full_refresh_every`).
    pub runs_since_full_read: u32,
    /// The local time of the last run that saved this state: a clock now earlier than this
    /// went backwards.
    pub last_run: Option<Timestamp>,
}

impl State {
    pub fn from_entries(entries: impl IntoIterator<Item = Entry>) -> State {
        State {
            entries: entries
                .into_iter()
                .map(|e| ((e.account_id.clone(), e.access_key_id.clone(), e.rule), e))
                .collect(),
            ..State::default()
        }
    }

    /// The key ids `user` had at its last listing, if known.
    pub fn key_names(&self, account_id: &str, user: &str) -> Option<&KeyNames> {
        self.key_names.get(&(account_id.to_string(), user.to_string()))
    }

    pub fn all_key_names(&self) -> impl Iterator<Item = &KeyNames> {
        self.key_names.values()
    }

    pub fn set_key_names(&mut self, k: KeyNames) {
        self.key_names.insert((k.account_id.clone(), k.user.clone()), k);
    }

    /// `user`'s other credentials as last read, if known.
    pub fn listing(&self, account_id: &str, user: &str) -> Option<&Listing> {
        self.listings.get(&(account_id.to_string(), user.to_string()))
    }

    pub fn all_listings(&self) -> impl Iterator<Item = &Listing> {
        self.listings.values()
    }

    pub fn set_listing(&mut self, l: Listing) {
        self.listings.insert((l.account_id.clone(), l.user.clone()), l);
    }

    /// The listings after a run: every user read this run is recorded with the kinds
    /// `kinds_of` its account gives (none: no record); a user gone from an account read
    /// completely is dropped; the rest (unreadable this run) keep their record.
    pub fn remember_listings(
        &mut self,
        old: &State,
        accounts: &[AccountInventory],
        kinds_of: impl Fn(&AccountInventory) -> Vec<CredentialType>,
    ) {
        let mut listings = old.listings.clone();
        let present: HashMap<&str, HashSet<&str>> = accounts
            .iter()
            .filter(|a| !a.errors.iter().any(|e| e.user.is_none()))
            .map(|a| (a.account_id.as_str(), a.users.iter().map(|u| u.name.as_str()).collect()))
            .collect();
        listings.retain(|(acc, user), _| present.get(acc.as_str()).is_none_or(|p| p.contains(user.as_str())));
        for a in accounts {
            let kinds = kinds_of(a);
            let unreadable: HashSet<&str> = a.errors.iter().filter_map(|e| e.user.as_deref()).collect();
            for u in a.users.iter().filter(|u| !unreadable.contains(u.name.as_str())) {
                let slot = (a.account_id.clone(), u.name.clone());
                if kinds.is_empty() {
                    listings.remove(&slot);
                    continue;
                }
                let credentials = u
                    .credentials
                    .iter()
                    .filter(|c| kinds.contains(&c.kind))
                    .cloned()
                    .collect();
                listings.insert(
                    slot,
                    Listing {
                        account_id: a.account_id.clone(),
                        user: u.name.clone(),
                        kinds: kinds.clone(),
                        credentials,
                    },
                );
            }
        }
        self.listings = listings;
    }

    /// The key ids after a run: every user whose keys the run named (read through the API or
    /// named from the report) is recorded as read; a user without keys, or gone from an account
    /// read completely, is dropped; the rest (not named this run, or unreadable) keep their
    /// record. `full`: this run read every id afresh, which restarts the count.
    ///
    /// A user with a key created in the hour before `now` is not recorded (listed again next
    /// run): a key deleted and replaced within the second it was created in, after a listing in
    /// that same second, would share its slot's second with the recorded one. An hour also
    /// covers any clock skew the run accepts.
    pub fn remember_key_names(&mut self, old: &State, accounts: &[AccountInventory], full: bool, now: Timestamp) {
        let settled = now - chrono::TimeDelta::hours(1);
        let mut names = old.key_names.clone();
        // The users of each account read completely; a record of any other user there is gone.
        let present: HashMap<&str, HashSet<&str>> = accounts
            .iter()
            .filter(|a| !a.errors.iter().any(|e| e.user.is_none()))
            .map(|a| (a.account_id.as_str(), a.users.iter().map(|u| u.name.as_str()).collect()))
            .collect();
        names.retain(|(acc, user), _| present.get(acc.as_str()).is_none_or(|p| p.contains(user.as_str())));
        for a in accounts {
            let unreadable: HashSet<&str> = a.errors.iter().filter_map(|e| e.user.as_deref()).collect();
            for u in a.users.iter().filter(|u| !unreadable.contains(u.name.as_str())) {
                let slot = (a.account_id.clone(), u.name.clone());
                if u.keys.is_empty() || u.keys.iter().any(|k| k.created > settled) {
                    names.remove(&slot);
                } else if u.keys.iter().all(|k| k.is_named()) {
                    let keys = u.keys.iter().map(|k| (k.id.clone(), k.created)).collect();
                    names.insert(
                        slot,
                        KeyNames {
                            account_id: a.account_id.clone(),
                            user: u.name.clone(),
                            keys,
                        },
                    );
                }
            }
        }
        self.key_names = names;
        self.runs_since_full_read = if full {
            0
        } else {
            old.runs_since_full_read.saturating_add(1)
        };
    }

    pub fn failures(&self) -> impl Iterator<Item = &Failure> {
        self.failures.values()
    }

    pub fn failure(&self, account_id: &str, access_key_id: &str) -> Option<&Failure> {
        self.failures.get(&(account_id.to_string(), access_key_id.to_string()))
    }

    pub fn set_failure(&mut self, f: Failure) {
        self.failures.insert((f.account_id.clone(), f.access_key_id.clone()), f);
    }

    pub fn clear_failure(&mut self, account_id: &str, access_key_id: &str) {
        self.failures
            .remove(&(account_id.to_string(), access_key_id.to_string()));
    }

    pub fn dry_run_noted(&self, account_id: &str, access_key_id: &str) -> Option<Timestamp> {
        self.dry_run_noted
            .get(&(account_id.to_string(), access_key_id.to_string()))
            .copied()
    }

    pub fn note_dry_run(&mut self, account_id: &str, access_key_id: &str, first_seen: Timestamp) {
        self.dry_run_noted
            .insert((account_id.to_string(), access_key_id.to_string()), first_seen);
    }

    pub fn dry_run_notes(&self) -> impl Iterator<Item = (&str, &str, Timestamp)> {
        self.dry_run_noted
            .iter()
            .map(|((a, k), t)| (a.as_str(), k.as_str(), *t))
    }

    pub fn hold_noted(&self, account_id: &str, access_key_id: &str) -> Option<Timestamp> {
        self.holds_noted
            .get(&(account_id.to_string(), access_key_id.to_string()))
            .copied()
    }

    pub fn note_hold(&mut self, account_id: &str, access_key_id: &str, until: Timestamp) {
        self.holds_noted
            .insert((account_id.to_string(), access_key_id.to_string()), until);
    }

    pub fn hold_notes(&self) -> impl Iterator<Item = (&str, &str, Timestamp)> {
        self.holds_noted.iter().map(|((a, k), t)| (a.as_str(), k.as_str(), *t))
    }

    pub fn snoozes(&self) -> impl Iterator<Item = &Snooze> {
        self.snoozes.values()
    }

    pub fn set_snooze(&mut self, s: Snooze) {
        self.snoozes.insert((s.account_id.clone(), s.access_key_id.clone()), s);
    }

    /// The snooze of a key, while it lasts.
    pub fn snooze(&self, account_id: &str, access_key_id: &str, now: Timestamp) -> Option<&Snooze> {
        self.snoozes
            .get(&(account_id.to_string(), access_key_id.to_string()))
            .filter(|s| s.until > now)
    }

    /// Snoozes still running at `now` (the others are dropped).
    pub fn keep_snoozes_of(&mut self, old: &State, now: Timestamp) {
        for s in old.snoozes().filter(|s| s.until > now) {
            self.set_snooze(s.clone());
        }
    }

    pub fn intents(&self) -> impl Iterator<Item = &JournalEntry> {
        self.intents.values()
    }

    pub fn begin_action(&mut self, entry: JournalEntry) {
        self.intents
            .insert((entry.account_id.clone(), entry.access_key_id.clone()), entry);
    }

    pub fn end_action(&mut self, account_id: &str, access_key_id: &str) {
        self.intents
            .remove(&(account_id.to_string(), access_key_id.to_string()));
    }

    /// Intents not yet resolved stay (their users could not be read this run).
    pub fn keep_intents_of(&mut self, old: &State) {
        for e in old.intents() {
            self.begin_action(e.clone());
        }
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Records a first-seen time where there is none yet (an event's, for an event run); an
    /// existing one is kept, as `plan::next_state` keeps it.
    pub fn first_seen_at(&mut self, e: Entry) {
        self.entries
            .entry((e.account_id.clone(), e.access_key_id.clone(), e.rule))
            .or_insert(e);
    }

    /// Drops every finding of one key (it was deactivated: none of them holds any more).
    pub fn forget_key(&mut self, account_id: &str, access_key_id: &str) {
        self.entries
            .retain(|(a, k, _), _| a != account_id || k != access_key_id);
        self.clear_failure(account_id, access_key_id);
        self.dry_run_noted
            .remove(&(account_id.to_string(), access_key_id.to_string()));
        self.holds_noted
            .remove(&(account_id.to_string(), access_key_id.to_string()));
    }
}

impl FirstSeen for State {
    fn first_seen(&self, account_id: &str, access_key_id: &str, rule: Rule) -> Option<Timestamp> {
        self.entries
            .get(&(account_id.to_string(), access_key_id.to_string(), rule))
            .map(|e| e.first_seen)
    }

    fn snoozed(&self, account_id: &str, access_key_id: &str, now: Timestamp) -> Option<(Timestamp, String)> {
        self.snooze(account_id, access_key_id, now)
            .map(|s| (s.until, s.reason.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{AccessKey, KeyStatus, ReadError, User};
    use chrono::{TimeDelta, TimeZone};

    fn now() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
    }

    fn user(name: &str, ids: &[&str], age: TimeDelta) -> User {
        User {
            name: name.into(),
            keys: ids
                .iter()
                .map(|id| AccessKey {
                    id: id.to_string(),
                    status: KeyStatus::Active,
                    created: now() - age,
                    last_used: None,
                })
                .collect(),
            ..User::default()
        }
    }

    fn account(users: Vec<User>, errors: Vec<ReadError>) -> AccountInventory {
        AccountInventory {
            account_id: "1".into(),
            users,
            errors,
            ..Default::default()
        }
    }

    fn error(user: Option<&str>) -> ReadError {
        ReadError {
            account_id: "1".into(),
            user: user.map(str::to_string),
            operation: "ListUsers".into(),
            message: "denied".into(),
            code: Some("AccessDenied".into()),
        }
    }

    fn names(s: &State) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<_> = s
            .all_key_names()
            .map(|k| (k.user.clone(), k.keys.iter().map(|(id, _)| id.clone()).collect()))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn key_names_follow_complete_reads_and_survive_failed_ones() {
        let day = TimeDelta::days(1);
        let mut first = State::default();
        let inv = account(
            vec![
                user("a", &["AKA"], day),
                user("b", &["AKB1", "AKB2"], day),
                // Known by slot only this run: nothing to record.
                user("c", &["c#slot1"], day),
                // Created minutes ago: listed again next run.
                user("d", &["AKD"], TimeDelta::minutes(5)),
            ],
            vec![],
        );
        first.remember_key_names(&State::default(), &[inv], true, now());
        assert_eq!(
            names(&first),
            [
                ("a".into(), vec!["AKA".into()]),
                ("b".into(), vec!["AKB1".into(), "AKB2".into()])
            ]
        );
        assert_eq!(first.runs_since_full_read, 0);

        // a's read failed: its record stays; b is gone from a complete account: dropped.
        let mut second = State::default();
        second.remember_key_names(
            &first,
            &[account(vec![user("a", &[], day)], vec![error(Some("a"))])],
            false,
            now(),
        );
        assert_eq!(names(&second), [("a".into(), vec!["AKA".into()])]);
        assert_eq!(second.runs_since_full_read, 1);

        // The account could not be listed: nothing is dropped.
        let mut third = State::default();
        third.remember_key_names(&first, &[account(vec![], vec![error(None)])], false, now());
        assert_eq!(names(&third), names(&first));
    }
}

#[cfg(test)]
mod listing_tests {
    use super::*;
    use crate::core::model::{CredentialStatus, ReadError, User};
    use chrono::TimeZone;

    fn ssh(id: &str) -> Credential {
        Credential {
            kind: CredentialType::SshPublicKey,
            id: id.into(),
            status: CredentialStatus::Active,
            created: chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            last_used: None,
            service: None,
            expires: None,
        }
    }

    fn user(name: &str, credentials: Vec<Credential>) -> User {
        User {
            name: name.into(),
            credentials,
            ..User::default()
        }
    }

    fn account(users: Vec<User>, errors: Vec<ReadError>) -> AccountInventory {
        AccountInventory {
            account_id: "1".into(),
            users,
            errors,
            ..Default::default()
        }
    }

    fn unreadable(user: Option<&str>) -> ReadError {
        ReadError {
            account_id: "1".into(),
            user: user.map(str::to_string),
            operation: "ListSSHPublicKeys".into(),
            message: "denied".into(),
            code: None,
        }
    }

    fn remembered(s: &State, user: &str) -> Option<Vec<String>> {
        let l = s.listing("1", user)?;
        Some(l.of(CredentialType::SshPublicKey)?.map(|c| c.id.clone()).collect())
    }

    #[test]
    fn every_read_user_is_remembered_with_its_kinds_and_the_rest_as_it_was() {
        let ssh_only = |_: &AccountInventory| vec![CredentialType::SshPublicKey];
        let first = account(
            vec![user("a", vec![ssh("APKA1")]), user("b", vec![]), user("c", vec![])],
            vec![],
        );
        let mut one = State::default();
        one.remember_listings(&State::default(), &[first], ssh_only);
        assert_eq!(remembered(&one, "a"), Some(vec!["APKA1".to_string()]));
        assert_eq!(remembered(&one, "b"), Some(vec![]), "no SSH key is something known too");
        let l = one.listing("1", "a").unwrap();
        assert!(
            l.of(CredentialType::ServiceSpecificCredential).is_none(),
            "a kind not read"
        );

        // a unreadable now: its record stays; b read again; c gone from a complete read.
        let second = account(
            vec![user("a", vec![]), user("b", vec![ssh("APKA2")])],
            vec![unreadable(Some("a"))],
        );
        let mut two = State::default();
        two.remember_listings(&one, &[second], ssh_only);
        assert_eq!(remembered(&two, "a"), Some(vec!["APKA1".to_string()]));
        assert_eq!(remembered(&two, "b"), Some(vec!["APKA2".to_string()]));
        assert_eq!(remembered(&two, "c"), None);

        // An account that could not be listed keeps every record; no kind to read keeps none.
        let mut three = State::default();
        three.remember_listings(&two, &[account(vec![], vec![unreadable(None)])], ssh_only);
        assert_eq!(remembered(&three, "b"), Some(vec!["APKA2".to_string()]));
        let mut four = State::default();
        four.remember_listings(&two, &[account(vec![user("b", vec![])], vec![])], |_| vec![]);
        assert!(four.listing("1", "b").is_none());
    }

    #[test]
    fn a_password_is_remembered_only_where_the_report_does_not_give_it() {
        let all = CredentialType::ALL;
        assert!(remembered_kinds(&all, false).contains(&CredentialType::Password));
        let report = remembered_kinds(&all, true);
        assert!(!report.contains(&CredentialType::Password));
        assert!(report.contains(&CredentialType::SigningCertificate));
    }
}

//! What keywarden remembers between runs, in memory: when each pending finding was first seen
//! (grace periods), which deactivations failed and when to try again (backoff), which keys an
//! operator reactivated and snoozed (`keywarden reactivate`), and the time of the last run (a
//! clock that went backwards). Stored by a state store (`state::file`).

use std::collections::HashMap;

use crate::core::journal::JournalEntry;
use crate::core::model::Timestamp;
use crate::core::policy::Rule;
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

type Key = (String, String, Rule);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    entries: HashMap<Key, Entry>,
    failures: HashMap<(String, String), Failure>,
    snoozes: HashMap<(String, String), Snooze>,
    /// Dry-run decisions already journaled, by the first-seen time they were made for: a
    /// dry-run daemon journals each decision once, not at every run.
    dry_run_noted: HashMap<(String, String), Timestamp>,
    /// Deactivations begun and not yet journaled (write-ahead): saved right before each
    /// UpdateAccessKey, dropped once its journal entry is written. One left over means the
    /// acting process stopped in between; the next run journals what IAM shows
    /// (`plan::reconcile`).
    intents: HashMap<(String, String), JournalEntry>,
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

    /// Drops every finding of one key (it was deactivated: none of them holds any more).
    pub fn forget_key(&mut self, account_id: &str, access_key_id: &str) {
        self.entries
            .retain(|(a, k, _), _| a != account_id || k != access_key_id);
        self.clear_failure(account_id, access_key_id);
        self.dry_run_noted
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

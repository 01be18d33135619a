//! The state as table items: one item per finding, failure, snooze and dry-run note, plus one
//! for the last run's time, so that a run writes only what changed (`state::dynamodb`).
//!
//! An item is its sort key and a JSON document: the same documents as the state file's lists
//! (`state::file`), so the two backends cannot drift apart and `state import` is a re-keying.
//!
//! | sort key                                   | document                          |
//! |--------------------------------------------|-----------------------------------|
//! | `finding#<account>#<access key>#<rule>`    | a `findings` entry                |
//! | `failure#<account>#<access key>`           | a `failures` entry                |
//! | `snooze#<account>#<access key>`            | a `snoozes` entry                 |
//! | `dryrun#<account>#<access key>`            | a `dry_run_journaled` entry       |
//! | `hold#<account>#<access key>`              | a `holds_journaled` entry         |
//! | `intent#<account>#<access key>`            | a `pending_deactivations` entry   |
//! | `meta#last_run`                            | `{"last_run": RFC 3339}`          |

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::history::State;
use crate::core::model::Timestamp;
use crate::state::file::{self, File};

/// Sort key -> JSON document.
pub type Items = BTreeMap<String, String>;

const LAST_RUN: &str = "meta#last_run";

#[derive(Serialize, Deserialize)]
struct LastRun {
    #[serde(with = "crate::sys::timefmt")]
    last_run: Timestamp,
    /// Written with `last_run` (one item per run either way).
    #[serde(default)]
    runs_since_full_read: u32,
}

pub fn snooze_key(account_id: &str, access_key_id: &str) -> String {
    format!("snooze#{account_id}#{access_key_id}")
}

pub fn to_items(state: &State) -> Items {
    let doc = file::to_doc(state);
    let mut items = Items::new();
    for d in &doc.findings {
        items.insert(
            format!("finding#{}#{}#{}", d.account_id, d.access_key_id, d.rule),
            json(d),
        );
    }
    for d in &doc.failures {
        items.insert(format!("failure#{}#{}", d.account_id, d.access_key_id), json(d));
    }
    for d in &doc.snoozes {
        items.insert(snooze_key(&d.account_id, &d.access_key_id), json(d));
    }
    for d in &doc.dry_run_journaled {
        items.insert(format!("dryrun#{}#{}", d.account_id, d.access_key_id), json(d));
    }
    for d in &doc.holds_journaled {
        items.insert(format!("hold#{}#{}", d.account_id, d.access_key_id), json(d));
    }
    for d in &doc.pending_deactivations {
        items.insert(format!("intent#{}#{}", d.account_id, d.id()), json(d));
    }
    for d in &doc.key_names {
        // A user name has no `#` (IAM allows letters, digits and +=,.@_-).
        items.insert(format!("keys#{}#{}", d.account_id, d.user), json(d));
    }
    for d in &doc.listings {
        items.insert(format!("listing#{}#{}", d.account_id, d.user), json(d));
    }
    if let Some(t) = doc.last_run {
        items.insert(
            LAST_RUN.into(),
            json(&LastRun {
                last_run: t,
                runs_since_full_read: doc.runs_since_full_read,
            }),
        );
    }
    items
}

/// Items as read -> the state; an item that does not parse is an error naming its key (never
/// skipped: a lost first-seen time would restart a grace period).
pub fn from_items<'a>(items: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<State, String> {
    let mut doc = File {
        schema_version: file::SCHEMA_VERSION,
        last_run: None,
        findings: Vec::new(),
        failures: Vec::new(),
        snoozes: Vec::new(),
        dry_run_journaled: Vec::new(),
        holds_journaled: Vec::new(),
        pending_deactivations: Vec::new(),
        key_names: Vec::new(),
        listings: Vec::new(),
        runs_since_full_read: 0,
    };
    for (key, body) in items {
        let bad = |e: serde_json::Error| format!("item {key:?}: {e}");
        match key.split_once('#').map(|(kind, _)| kind) {
            Some("finding") => doc.findings.push(serde_json::from_str(body).map_err(bad)?),
            Some("failure") => doc.failures.push(serde_json::from_str(body).map_err(bad)?),
            Some("snooze") => doc.snoozes.push(serde_json::from_str(body).map_err(bad)?),
            Some("dryrun") => doc.dry_run_journaled.push(serde_json::from_str(body).map_err(bad)?),
            Some("hold") => doc.holds_journaled.push(serde_json::from_str(body).map_err(bad)?),
            Some("intent") => doc.pending_deactivations.push(serde_json::from_str(body).map_err(bad)?),
            Some("keys") => doc.key_names.push(serde_json::from_str(body).map_err(bad)?),
            Some("listing") => doc.listings.push(serde_json::from_str(body).map_err(bad)?),
            Some("meta") if key == LAST_RUN => {
                let meta = serde_json::from_str::<LastRun>(body).map_err(bad)?;
                doc.last_run = Some(meta.last_run);
                doc.runs_since_full_read = meta.runs_since_full_read;
            }
            _ => return Err(format!("item {key:?}: not a keywarden state item")),
        }
    }
    file::from_doc(doc)
}

/// The writes that turn `old` into `new`: items to put (new or changed) and keys to delete.
pub fn diff(old: &Items, new: &Items) -> (Vec<(String, String)>, Vec<String>) {
    let puts = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let deletes = old.keys().filter(|k| !new.contains_key(*k)).cloned().collect();
    (puts, deletes)
}

fn json<T: Serialize>(v: &T) -> String {
    // Serializing plain strings and numbers cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::history::{Entry, Failure, Snooze};
    use crate::core::policy::Rule;
    use chrono::TimeZone;

    fn t(h: u32) -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).unwrap()
    }

    fn sample() -> State {
        let mut s = State::from_entries([
            Entry {
                account_id: "111".into(),
                user: "alice".into(),
                access_key_id: "AK1".into(),
                rule: Rule::UnusedKey,
                first_seen: t(1),
            },
            Entry {
                account_id: "111".into(),
                user: "alice".into(),
                access_key_id: "AK1".into(),
                rule: Rule::MaxKeyAge,
                first_seen: t(2),
            },
        ]);
        s.set_failure(Failure {
            account_id: "111".into(),
            user: "alice".into(),
            access_key_id: "AK1".into(),
            attempts: 2,
            last_error: "AccessDenied".into(),
            last_attempt: t(3),
            next_attempt: t(4),
        });
        s.set_snooze(Snooze {
            account_id: "222".into(),
            user: "bob".into(),
            access_key_id: "AK2".into(),
            until: t(9),
            reason: "INC-1".into(),
        });
        s.note_dry_run("111", "AK1", t(1));
        s.note_hold("111", "AK1", t(8));
        s.begin_action(crate::core::journal::sample_entry(t(5), "carol", "AK3"));
        s.set_listing(crate::core::history::Listing {
            account_id: "111".into(),
            user: "dave".into(),
            kinds: vec![
                crate::core::model::CredentialType::ServiceSpecificCredential,
                crate::core::model::CredentialType::SshPublicKey,
            ],
            credentials: vec![crate::core::model::Credential {
                kind: crate::core::model::CredentialType::ServiceSpecificCredential,
                id: "ACCA1".into(),
                status: crate::core::model::CredentialStatus::Expired,
                created: t(1),
                last_used: None,
                service: Some("bedrock.amazonaws.com".into()),
                expires: Some(t(2)),
            }],
        });
        s.last_run = Some(t(5));
        s
    }

    #[test]
    fn a_state_round_trips_through_items() {
        let items = to_items(&sample());
        assert_eq!(items.len(), 9, "{items:?}");
        let back = from_items(items.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn a_run_writes_only_what_changed() {
        let old = to_items(&sample());
        let mut s = sample();
        s.forget_key("111", "AK1");
        s.last_run = Some(t(6));
        let (puts, deletes) = diff(&old, &to_items(&s));
        assert_eq!(puts.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), [LAST_RUN]);
        assert_eq!(
            deletes.len(),
            5,
            "two findings, the failure, the dry-run note, the hold note: {deletes:?}"
        );
        assert_eq!(diff(&old, &old), (vec![], vec![]));
    }

    #[test]
    fn an_unreadable_item_is_an_error_naming_it() {
        let err = from_items([("finding#1#AK#unused_key", "{")]).unwrap_err();
        assert!(err.contains("finding#1#AK#unused_key"), "{err}");
        let err = from_items([("lease#x", "{}")]).unwrap_err();
        assert!(err.contains("not a keywarden state item"), "{err}");
    }
}

//! The usage queue's consumer (`[usage]` with `enabled` and `queue_url`): CloudTrail events
//! signed by long-term keys, delivered by their own EventBridge rule, counted into the usage
//! profile of the key that signed each. Every instance consumes it, leader or not: usage
//! events are many (every call a key makes), and counting them acts on nothing.
//!
//! A batch: each message's record is read (`aws::eventbridge::usage_event`) and admitted
//! (`core::usage::event::admit`); an admitted event of a key the last full run read counts in
//! that key's profile (`Profile::record`: an event id counts once), an event of a key or
//! account keywarden does not know counts as `unknown_key` and changes nothing; the changed
//! profiles are saved in one write, then the batch is deleted. A batch whose save failed is
//! not deleted: SQS delivers it again after its visibility timeout, and the remembered event
//! ids keep a redelivered event from counting twice. Malformed messages are counted and
//! deleted with their batch: they are evidence of nothing, and a dead-letter queue of them
//! would help nobody. A usage event never triggers a re-audit (key-change events, on the
//! events queue, do).
//!
//! Saves are conditional per key (optimistic concurrency, `ports::UsageStore::save_all`): a
//! key another instance saved first is read again and its events counted into that profile.
//! After each cron run the leader forgets the profiles of keys gone from an account read in
//! full (`app::usage::forget_gone`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::harness::Harness;
use crate::app::internal_events::{UsageEventsReceived, UsageReceiveFailed};
use crate::app::usage::Known;
use crate::aws::sqs::{Message, Queue};
use crate::config::{Config, UsageSettings};
use crate::core::model::Timestamp;
use crate::core::usage::event::{admit, RawEvent, UsageEvent};
use crate::core::usage::profile::{Feed, Profile, Recorded};
use crate::ports::UsageStore;

/// How long the consumer waits before trying again after an error or without a queue.
const IDLE: Duration = Duration::from_secs(5);

/// `keywarden_usage_events_total` outcomes.
pub const OUTCOMES: [&str; 4] = ["recorded", "duplicate", "unknown_key", "malformed"];

/// What one batch did, by outcome.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub recorded: u64,
    pub duplicate: u64,
    pub unknown_key: u64,
    pub malformed: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.recorded += other.recorded;
        self.duplicate += other.duplicate;
        self.unknown_key += other.unknown_key;
        self.malformed += other.malformed;
    }

    pub fn by_outcome(&self) -> [(&'static str, u64); 4] {
        [
            ("recorded", self.recorded),
            ("duplicate", self.duplicate),
            ("unknown_key", self.unknown_key),
            ("malformed", self.malformed),
        ]
    }
}

/// The admitted events of known keys in `records` (each a message's record, or why it is
/// none), by key, and the counts of the records that are neither (`malformed`, `unknown_key`).
pub fn classify(
    known: &Known,
    records: &[Result<RawEvent, String>],
    now: Timestamp,
) -> (Counts, BTreeMap<(String, String), Vec<UsageEvent>>) {
    let mut counts = Counts::default();
    let mut events: BTreeMap<(String, String), Vec<UsageEvent>> = BTreeMap::new();
    for record in records {
        let Ok(e) = record
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|r| admit(r, now).map_err(|e| e.to_string()))
        else {
            counts.malformed += 1;
            continue;
        };
        let slot = (e.account_id.clone(), e.access_key_id.clone());
        if !known.keys.contains(&slot) {
            counts.unknown_key += 1;
            continue;
        }
        events.entry(slot).or_default().push(e);
    }
    (counts, events)
}

/// Counts each key's events into its profile (a new one where none is given); returns what
/// each key's events did.
pub fn apply(
    profiles: &mut BTreeMap<(String, String), Profile>,
    events: &BTreeMap<(String, String), Vec<UsageEvent>>,
) -> BTreeMap<(String, String), Counts> {
    let mut out = BTreeMap::new();
    for (slot, list) in events {
        let profile = profiles
            .entry(slot.clone())
            .or_insert_with(|| Profile::new(&slot.0, &slot.1));
        let c: &mut Counts = out.entry(slot.clone()).or_default();
        for e in list {
            match profile.record(e, Feed::Live) {
                Recorded::New => c.recorded += 1,
                Recorded::Duplicate => c.duplicate += 1,
            }
        }
    }
    out
}

/// Counts `records` into `profiles` at `now` ([`classify`], then [`apply`]); returns the counts
/// and the keys whose profile changed.
pub fn ingest(
    profiles: &mut BTreeMap<(String, String), Profile>,
    known: &Known,
    records: &[Result<RawEvent, String>],
    now: Timestamp,
) -> (Counts, BTreeSet<(String, String)>) {
    let (mut counts, events) = classify(known, records, now);
    let mut changed = BTreeSet::new();
    for (slot, c) in apply(profiles, &events) {
        counts.add(&c);
        if c.recorded > 0 {
            changed.insert(slot);
        }
    }
    (counts, changed)
}

/// The consumer's loop, until the daemon stops; idle without a usage queue.
pub(crate) async fn consume(mut config_rx: watch::Receiver<Arc<Config>>, harness: Harness) {
    let mut queue: Option<(UsageSettings, Queue)> = None;
    while !harness.stop.load(Ordering::Acquire) {
        let config = Arc::clone(&config_rx.borrow_and_update());
        let settings = config.usage.clone();
        let Some(url) = settings.queue_url.clone().filter(|_| settings.enabled) else {
            queue = None;
            let _ = tokio::time::timeout(IDLE, config_rx.changed()).await;
            continue;
        };
        if queue.as_ref().is_none_or(|(s, _)| *s != settings) {
            let sdk = crate::aws::sdk_config(&config.aws).await;
            match Queue::new(&sdk, &url, settings.region.as_deref(), settings.endpoint_url.as_deref()) {
                Ok(q) => queue = Some((settings.clone(), q)),
                Err(e) => {
                    UsageReceiveFailed { error: &e, setup: true }.emit(&harness.shared.metrics);
                    tokio::time::sleep(IDLE).await;
                    continue;
                }
            }
        }
        let Some((_, q)) = queue.as_ref() else { continue };
        // Which keys exist comes from the last full run: before it, nothing is received (a
        // message received now would hide for its whole visibility timeout).
        let known = match harness.runs.lock().await.as_ref() {
            Some(last) => Known::of(&last.accounts),
            None => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let wait = config.events.as_ref().map_or(Duration::from_secs(20), |e| e.poll_wait);
        match q.receive(wait).await {
            Ok(messages) if !messages.is_empty() => {
                let store = harness.memory.usage(&config);
                handle(&harness, q, &store, &known, &messages).await;
            }
            Ok(_) => {}
            Err(e) => {
                UsageReceiveFailed {
                    error: &e,
                    setup: false,
                }
                .emit(&harness.shared.metrics);
                tokio::time::sleep(IDLE).await;
            }
        }
    }
}

/// How often a batch's events of one key are counted again into its profile read anew, after
/// other instances saved it first; then the batch is left to SQS's redelivery.
const MERGE_ATTEMPTS: usize = 8;

/// One batch: counted, saved, deleted once saved. The save is conditional per key
/// (`ports::UsageStore::save_all`): a key another instance saved first is read again and its
/// events counted into that, so concurrent consumers lose no event and count none twice.
async fn handle(harness: &Harness, queue: &Queue, store: &impl UsageStore, known: &Known, messages: &[Message]) {
    let records: Vec<Result<RawEvent, String>> = messages
        .iter()
        .map(|m| crate::aws::eventbridge::usage_event(&m.body))
        .collect();
    let (mut counts, mut pending) = classify(known, &records, chrono::Utc::now());
    let failed = |error: &dyn std::fmt::Display| {
        UsageReceiveFailed { error, setup: false }.emit(&harness.shared.metrics);
    };
    for _ in 0..MERGE_ATTEMPTS {
        if pending.is_empty() {
            break;
        }
        match merge(store, &pending).await {
            Ok(done) => {
                for (slot, c) in done {
                    counts.add(&c);
                    pending.remove(&slot);
                }
            }
            Err(e) => return failed(&e.0),
        }
    }
    if !pending.is_empty() {
        return failed(&"other instances kept saving the same usage profiles first; the batch is left for redelivery");
    }
    UsageEventsReceived {
        counts: counts.by_outcome(),
    }
    .emit(&harness.shared.metrics);
    let handles: Vec<String> = messages.iter().map(|m| m.receipt_handle.clone()).collect();
    if let Err(e) = queue.delete(&handles).await {
        failed(&e);
    }
}

/// One attempt: the keys' profiles read now, their events counted in, saved where no other
/// writer came first. Returns what each saved key's events did; a key that lost is absent.
async fn merge(
    store: &impl UsageStore,
    events: &BTreeMap<(String, String), Vec<UsageEvent>>,
) -> Result<BTreeMap<(String, String), Counts>, crate::ports::StoreError> {
    let slots: Vec<(String, String)> = events.keys().cloned().collect();
    let mut profiles = crate::core::usage::profile::by_key(store.read(&slots).await?);
    let mut done = apply(&mut profiles, events);
    let mut changed: Vec<Profile> = profiles
        .into_iter()
        .filter(|(slot, _)| done.get(slot).is_some_and(|c| c.recorded > 0))
        .map(|(_, p)| p)
        .collect();
    for slot in store.save_all(&mut changed, &[]).await? {
        done.remove(&slot);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::usage::gone;
    use crate::core::model::{AccessKey, AccountInventory, KeyStatus, User};

    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    const ACCOUNT: &str = "123456789012";

    fn now() -> Timestamp {
        chrono::DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .unwrap()
            .into()
    }

    fn raw(id: &str, key: &str) -> Result<RawEvent, String> {
        Ok(RawEvent {
            event_id: Some(id.into()),
            time: Some(now()),
            account_id: Some(ACCOUNT.into()),
            access_key_id: Some(key.into()),
            event_source: Some("s3.amazonaws.com".into()),
            event_name: Some("GetObject".into()),
            region: Some("us-east-1".into()),
            source: Some("198.51.100.7".into()),
            user_agent: Some("aws-cli/2.15.30".into()),
        })
    }

    fn known(keys: &[&str]) -> Known {
        let user = User {
            name: "alice".into(),
            keys: keys
                .iter()
                .map(|k| AccessKey {
                    id: k.to_string(),
                    status: KeyStatus::Active,
                    created: now(),
                    last_used: None,
                })
                .collect(),
            ..User::default()
        };
        Known::of(&[AccountInventory {
            account_id: ACCOUNT.into(),
            users: vec![user],
            ..Default::default()
        }])
    }

    #[test]
    fn every_message_has_an_outcome_and_only_known_keys_get_a_profile() {
        let mut profiles = BTreeMap::new();
        let records = [
            raw("e1", KEY),
            raw("e1", KEY),                    // redelivered
            raw("e2", "AKIAOTHER0000000000X"), // a key no run read
            raw("e3", "ASIAIOSFODNN7EXAMPLE"), // temporary credentials: not a usage event
            Err("not JSON".into()),
        ];
        let (counts, changed) = ingest(&mut profiles, &known(&[KEY]), &records, now());
        assert_eq!(
            counts,
            Counts {
                recorded: 1,
                duplicate: 1,
                unknown_key: 1,
                malformed: 2
            }
        );
        assert_eq!(changed.len(), 1);
        assert_eq!(profiles.len(), 1, "no profile for an unknown key");
        assert_eq!(profiles[&(ACCOUNT.to_string(), KEY.to_string())].events, 1);
    }

    #[test]
    fn a_forged_event_for_another_account_changes_nothing() {
        let mut profiles = BTreeMap::new();
        let mut forged = raw("e1", KEY).unwrap();
        forged.account_id = Some("999999999999".into());
        let (counts, _) = ingest(&mut profiles, &known(&[KEY]), &[Ok(forged)], now());
        assert_eq!(counts.unknown_key, 1);
        assert!(profiles.is_empty());
    }

    #[test]
    fn profiles_of_keys_gone_from_a_complete_account_are_forgotten() {
        let mut profiles = BTreeMap::new();
        ingest(&mut profiles, &known(&[KEY]), &[raw("e1", KEY)], now());
        assert!(gone(&profiles, &known(&[KEY])).is_empty());
        assert_eq!(gone(&profiles, &known(&[])), [(ACCOUNT.to_string(), KEY.to_string())]);
        let mut incomplete = known(&[]);
        incomplete.complete_accounts.clear();
        assert!(
            gone(&profiles, &incomplete).is_empty(),
            "an account read in part forgets nothing"
        );
    }
}

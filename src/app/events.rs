//! Event runs (`[events]`): the leader reads the events queue and re-audits the users whose
//! keys changed, seconds after CloudTrail reports it; the cron stays the safety net.
//!
//! A batch of messages is one small run: each message is parsed (`aws::eventbridge`) and
//! decided (`core::events::decide`); the changed users are read live and put in place of their
//! entries in the last full inventory (`Changed`, an `InventorySource` over the last run's
//! accounts), and `app::cycle::run` takes it from there: the same steps as a cron run (lock,
//! load, rules, publish, clock, save, act under the lease, the cap and the windows, journal),
//! with each new finding of a changed user first seen at its event's time.
//!
//! Messages: an ignored one (foreign event, failed call, unmanaged account) is deleted at once;
//! one that asked for a re-audit is deleted once that re-audit read every changed user and the
//! run ended cleanly; a malformed one is never deleted, so SQS's redrive policy moves it to the
//! dead-letter queue after `maxReceiveCount` receives. Nothing changes that the live read does
//! not confirm: an event only says whom to read and since when.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::app::daemon::{Last, Memory, Runs};
use crate::aws::sqs::{Message, Queue};
use crate::config::{Config, EventsSettings};
use crate::core::events::{self, Decision, Kind, Subject};
use crate::core::model::{AccountInventory, ReadError, ServiceError, Timestamp, User};
use crate::ports::{InventoryOptions, InventorySource, KeyActions};
use crate::server::http::Shared;

/// One batch of messages, sorted by what to do with them.
#[derive(Debug, Default)]
pub struct Sorted {
    /// Per account, the changed users and the latest event time of each.
    pub users: BTreeMap<String, BTreeMap<String, Timestamp>>,
    /// (account, user) whose user itself changed (created, deleted, tagged): read whole
    /// (GetUser too); the others only had keys change (their path and tags are known).
    pub whole: BTreeSet<(String, String)>,
    /// Per account, the key ids AWS Health named exposed (`rules.exposed_key`).
    pub exposed: BTreeMap<String, BTreeSet<String>>,
    /// Changes named only by a key id that no user of the last inventory has.
    pub unknown_keys: Vec<(String, String)>,
    /// Receipt handles to delete once the re-audit succeeded.
    pub after_run: Vec<String>,
    /// Receipt handles to delete now (ignored events).
    pub ignored: Vec<String>,
    /// `keywarden_events_received_total` labels, one per message.
    pub kinds: Vec<&'static str>,
    /// (message id, why) of the malformed ones, for the log.
    pub malformed: Vec<(String, String)>,
}

/// Sorts a batch: `managed` are the accounts this run reads, `base` the last inventory (to
/// find the user of a key named alone, as Health names exposed keys).
pub fn sort(messages: &[Message], managed: &BTreeSet<String>, base: &[AccountInventory]) -> Sorted {
    let mut out = Sorted::default();
    let mut changes = Vec::new();
    for m in messages {
        let decision = match crate::aws::eventbridge::parse(&m.body) {
            Ok(envelope) => events::decide(&envelope, managed),
            Err(why) => Decision::Malformed(why),
        };
        match decision {
            Decision::Changes(c) => {
                out.kinds.push(c.first().map_or("ignored", |c| c.kind.as_str()));
                out.after_run.push(m.receipt_handle.clone());
                changes.extend(c);
            }
            Decision::Ignored(why) => {
                tracing::debug!(message_id = %m.id, reason = %why, "event ignored");
                out.kinds.push("ignored");
                out.ignored.push(m.receipt_handle.clone());
            }
            Decision::Malformed(why) => {
                out.kinds.push("malformed");
                out.malformed.push((m.id.clone(), why));
            }
        }
    }
    for c in &changes {
        match (c.kind, &c.subject) {
            (Kind::User, Subject::User(u)) => {
                out.whole.insert((c.account_id.clone(), u.clone()));
            }
            (Kind::Health, Subject::Key(k)) => {
                out.exposed.entry(c.account_id.clone()).or_default().insert(k.clone());
            }
            _ => {}
        }
    }
    for ((account, subject), time) in events::batch(changes) {
        let user = match subject {
            Subject::User(u) => Some(u),
            Subject::Key(k) => user_of_key(base, &account, &k).or_else(|| {
                out.unknown_keys.push((account.clone(), k));
                None
            }),
        };
        if let Some(u) = user {
            let t = out.users.entry(account).or_default().entry(u).or_insert(time);
            *t = (*t).max(time);
        }
    }
    out
}

fn user_of_key(base: &[AccountInventory], account_id: &str, key: &str) -> Option<String> {
    base.iter()
        .filter(|a| a.account_id == account_id)
        .flat_map(|a| &a.users)
        .find(|u| u.keys.iter().any(|k| k.id == key))
        .map(|u| u.name.clone())
}

/// The last full inventory with the changed users read again: what an event run audits.
pub struct Changed<'a, F> {
    pub fleet: &'a F,
    pub base: &'a [AccountInventory],
    pub users: &'a BTreeMap<String, BTreeMap<String, Timestamp>>,
    pub whole: &'a BTreeSet<(String, String)>,
    pub exposed: &'a BTreeMap<String, BTreeSet<String>>,
    /// How many changed users could not be read (set by `inventory`).
    pub failed: std::sync::atomic::AtomicUsize,
}

impl<'a, F> Changed<'a, F> {
    pub fn new(fleet: &'a F, base: &'a [AccountInventory], sorted: &'a Sorted) -> Self {
        Changed {
            fleet,
            base,
            users: &sorted.users,
            whole: &sorted.whole,
            exposed: &sorted.exposed,
            failed: 0.into(),
        }
    }
}

impl<F: KeyActions + Sync> InventorySource for Changed<'_, F> {
    async fn inventory(&self, _: &InventoryOptions<'_>) -> Vec<AccountInventory> {
        let mut accounts = self.base.to_vec();
        for (account_id, users) in self.users {
            let Some(account) = accounts.iter_mut().find(|a| &a.account_id == account_id) else {
                continue;
            };
            // A Health event names the exposed key itself: of its user, that key alone.
            if let Some(keys) = self.exposed.get(account_id) {
                account.exposure.reported_keys.extend(keys.iter().cloned());
            }
            for name in users.keys() {
                let read = self.read(account, name).await;
                if read.is_err() {
                    self.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                replace_user(account, name, read);
            }
        }
        accounts
    }
}

impl<F: KeyActions + Sync> Changed<'_, F> {
    /// A user whose keys changed and who is in the last inventory: only the keys are read
    /// (ListAccessKeys, GetAccessKeyLastUsed per active key); anyone else whole.
    async fn read(&self, account: &AccountInventory, name: &str) -> Result<Option<User>, ReadError> {
        let known = account.users.iter().find(|u| u.name == name);
        match known {
            Some(u) if !self.whole.contains(&(account.account_id.clone(), name.to_string())) => {
                let keys = self.fleet.read_keys(&account.account_id, name).await?;
                Ok(keys.map(|keys| User { keys, ..u.clone() }))
            }
            _ => self.fleet.read_user(&account.account_id, name).await,
        }
    }
}

/// Puts a live read in place of a user's entry: a new or changed user, a deleted one gone, a
/// failed read the user's error (fail closed: no decision on that user).
pub fn replace_user(account: &mut AccountInventory, name: &str, read: Result<Option<User>, ReadError>) {
    account.users.retain(|u| u.name != name);
    account.errors.retain(|e| e.user.as_deref() != Some(name));
    match read {
        Ok(Some(user)) => {
            account.users.push(user);
            account.users.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(None) => {}
        Err(e) => account.errors.push(e),
    }
}

impl<F: KeyActions + Sync> KeyActions for Changed<'_, F> {
    async fn read_user(&self, account_id: &str, user: &str) -> Result<Option<User>, ReadError> {
        self.fleet.read_user(account_id, user).await
    }

    async fn deactivate(&self, account_id: &str, user: &str, access_key_id: &str) -> Result<(), ServiceError> {
        self.fleet.deactivate(account_id, user, access_key_id).await
    }

    async fn revoke_sessions(&self, account_id: &str, user: &str, before: Timestamp) -> Result<(), ServiceError> {
        self.fleet.revoke_sessions(account_id, user, before).await
    }
}

/// How long the consumer rests when it has nothing to do: no `[events]`, a follower, or a
/// queue that failed.
const IDLE: Duration = Duration::from_secs(5);

/// The leader's consumer of the events queue, for as long as the daemon runs (aborted at
/// stop). A follower does not receive: the messages wait in the queue for the leader, and a
/// handover loses none (what the old leader received and did not delete comes back after the
/// visibility timeout).
pub(crate) async fn consume(
    mut config_rx: watch::Receiver<Arc<Config>>,
    shared: Arc<Shared>,
    memory: Arc<Memory>,
    runs: Arc<Runs>,
    stop: Arc<AtomicBool>,
) {
    let mut queue: Option<(EventsSettings, Queue)> = None;
    while !stop.load(Ordering::Acquire) {
        let config = Arc::clone(&config_rx.borrow_and_update());
        let Some(settings) = config.events.clone() else {
            queue = None;
            let _ = tokio::time::timeout(IDLE, config_rx.changed()).await;
            continue;
        };
        if !memory.leader().leading() {
            tokio::time::sleep(IDLE).await;
            continue;
        }
        if queue.as_ref().is_none_or(|(s, _)| *s != settings) {
            let sdk = crate::aws::sdk_config(&config.aws).await;
            match Queue::new(
                &sdk,
                &settings.queue_url,
                settings.region.as_deref(),
                settings.endpoint_url.as_deref(),
            ) {
                Ok(q) => queue = Some((settings.clone(), q)),
                Err(e) => {
                    shared.metrics.event_receive_errors.inc();
                    tracing::error!(error = %e, "cannot use the events queue");
                    tokio::time::sleep(IDLE).await;
                    continue;
                }
            }
        }
        let Some((_, q)) = queue.as_ref() else { continue };
        if runs.lock().await.is_none() {
            // No full run yet: receive nothing that could not be handled (a message received
            // now would hide for its whole visibility timeout).
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let messages = match q.receive(settings.poll_wait).await {
            Ok(m) => m,
            Err(e) => {
                shared.metrics.event_receive_errors.inc();
                tracing::warn!(error = %e, "cannot receive from the events queue; the cron run is the safety net");
                tokio::time::sleep(IDLE).await;
                continue;
            }
        };
        if !messages.is_empty() {
            handle(&config, &shared, &memory, &runs, &stop, q, &messages).await;
        }
    }
}

/// One batch: counted, the ignored ones deleted, the rest re-audited in one event run and
/// deleted when it succeeded.
async fn handle(
    config: &Config,
    shared: &Shared,
    memory: &Memory,
    runs: &Runs,
    stop: &AtomicBool,
    queue: &Queue,
    messages: &[Message],
) {
    let mut last = runs.lock().await;
    let Some(base) = last.as_mut() else {
        // Not reached (`consume` waits for the first full run); if it were, the messages come
        // back after their visibility timeout.
        tracing::info!(messages = messages.len(), "events wait for the first full run");
        return;
    };
    let managed: BTreeSet<String> = base.fleet.sdks().iter().map(|(id, _)| id.to_string()).collect();
    let sorted = sort(messages, &managed, &base.accounts);
    for (kind, n) in count(&sorted.kinds) {
        shared.metrics.events_received.with_label_values(&[kind]).inc_by(n);
    }
    for (id, why) in &sorted.malformed {
        tracing::warn!(message_id = %id, reason = %why, "malformed event left for the dead-letter queue");
    }
    for (account, key) in &sorted.unknown_keys {
        tracing::info!(account_id = %account, access_key_id = %key, "an event names a key no user of the last run has; the next cron run reads it");
    }
    delete(queue, &sorted.ignored).await;
    if sorted.users.is_empty() {
        delete(queue, &sorted.after_run).await;
        return;
    }
    let ok = crate::app::daemon::guarded(shared, event_run(config, shared, memory, base, &sorted, stop)).await;
    if ok {
        delete(queue, &sorted.after_run).await;
        let now = chrono::Utc::now();
        for t in sorted.users.values().flat_map(|u| u.values()) {
            let lag = now.signed_duration_since(*t).num_milliseconds() as f64 / 1000.0;
            shared.metrics.event_lag.observe(lag.max(0.0));
        }
    } else {
        tracing::warn!(
            messages = sorted.after_run.len(),
            "the event run did not succeed; its messages come back after their visibility timeout"
        );
    }
}

async fn delete(queue: &Queue, receipts: &[String]) {
    if receipts.is_empty() {
        return;
    }
    match queue.delete(receipts).await {
        Ok(failed) if failed.is_empty() => {}
        Ok(failed) => tracing::warn!(
            failed = failed.len(),
            "some events were not deleted; they come back and are read again"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot delete events; they come back and are read again"),
    }
}

/// The event run: `app::cycle::run` over the last inventory with the changed users read
/// again, each new finding first seen at its event's time. True when every changed user was
/// read and the run ended cleanly.
async fn event_run(
    config: &Config,
    shared: &Shared,
    memory: &Memory,
    base: &mut Last,
    sorted: &Sorted,
    stop: &AtomicBool,
) -> bool {
    let started = Instant::now();
    base.observer.reset_skew();
    let changed = Changed::new(base.fleet.as_ref(), &base.accounts, sorted);
    let seen_at = |account: &str, user: &str| sorted.users.get(account).and_then(|u| u.get(user)).copied();
    let observer = Arc::clone(&base.observer);
    let (c, enforced) = crate::app::daemon::run_cycle(
        config,
        shared,
        memory,
        &changed,
        &observer,
        Some(&seen_at),
        // Rotations are the cron run's: an event run reads a few users, not every tagged one.
        None,
        stop,
        started,
    )
    .await;
    let read_all = changed.failed.load(Ordering::Relaxed) == 0;
    let acted_cleanly = c.acted_cleanly();
    tracing::info!(
        users = sorted.users.values().map(|u| u.len()).sum::<usize>(),
        read_all,
        seconds = started.elapsed().as_secs_f64(),
        "event run finished"
    );
    base.accounts = c.accounts;
    read_all && enforced && acted_cleanly
}

/// The kinds of one batch, counted.
pub fn count(kinds: &[&'static str]) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    for k in kinds {
        *out.entry(*k).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{AccessKey, KeyStatus};
    use chrono::TimeZone;

    fn t(minute: u32) -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 12, 4, 12, minute, 0).unwrap()
    }

    fn message(id: &str, body: &str) -> Message {
        Message {
            id: id.into(),
            receipt_handle: format!("r-{id}"),
            body: body.into(),
            receive_count: 1,
        }
    }

    fn trail(name: &str, user: &str, minute: u32, account: &str) -> String {
        serde_json::json!({
            "detail-type": "AWS API Call via CloudTrail", "source": "aws.iam",
            "detail": {"eventName": name, "eventSource": "iam.amazonaws.com",
                       "eventTime": format!("2026-12-04T12:{minute:02}:00Z"),
                       "requestParameters": {"userName": user}, "recipientAccountId": account}
        })
        .to_string()
    }

    fn user(name: &str, key: &str) -> User {
        User {
            name: name.into(),
            path: "/".into(),
            tags: vec![],
            keys: vec![AccessKey {
                id: key.into(),
                status: KeyStatus::Active,
                created: t(0),
                last_used: None,
            }],
        }
    }

    #[test]
    fn a_batch_is_sorted_into_users_to_read_ignored_and_malformed() {
        let managed: BTreeSet<String> = ["111111111111".to_string()].into();
        let base = vec![AccountInventory {
            account_id: "111111111111".into(),
            users: vec![user("carol", "AKIACAROL")],
            ..Default::default()
        }];
        let health = serde_json::json!({"detail-type": "AWS Health Event", "source": "aws.health",
            "account": "111111111111", "time": "2026-12-04T12:09:00Z",
            "detail": {"eventTypeCode": "AWS_RISK_CREDENTIALS_EXPOSED",
                       "affectedEntities": [{"entityValue": "AKIACAROL"}, {"entityValue": "AKIAGONE"}]}})
        .to_string();
        let batch = [
            message("1", &trail("CreateAccessKey", "alice", 5, "111111111111")),
            message("2", &trail("UpdateAccessKey", "alice", 3, "111111111111")),
            message("3", &trail("CreateAccessKey", "alice", 5, "111111111111")),
            message("4", &trail("CreateAccessKey", "bob", 1, "999999999999")),
            message("5", "{not json"),
            message("6", &health),
            message("7", &trail("TagUser", "dave", 2, "111111111111")),
        ];
        let s = sort(&batch, &managed, &base);
        let users = &s.users["111111111111"];
        assert_eq!(users.len(), 3, "{users:?}");
        assert_eq!(
            s.whole,
            [("111111111111".to_string(), "dave".to_string())].into(),
            "a user event reads the user whole; key events only the keys"
        );
        assert_eq!(
            users["alice"],
            t(5),
            "the duplicate and the out-of-order one: the latest"
        );
        assert_eq!(users["carol"], t(9), "Health's key found in the last inventory");
        assert_eq!(s.unknown_keys, [("111111111111".to_string(), "AKIAGONE".to_string())]);
        assert_eq!(s.after_run, ["r-1", "r-2", "r-3", "r-6", "r-7"]);
        assert_eq!(s.ignored, ["r-4"], "an unmanaged account's event");
        assert_eq!(s.malformed.len(), 1);
        let counted = count(&s.kinds);
        assert_eq!(counted["access_key"], 3);
        assert_eq!((counted["ignored"], counted["malformed"], counted["health"]), (1, 1, 1));
    }

    #[test]
    fn a_live_read_replaces_the_users_entry() {
        let mut a = AccountInventory {
            account_id: "1".into(),
            users: vec![user("alice", "AKIA1"), user("bob", "AKIA2")],
            errors: vec![ReadError {
                account_id: "1".into(),
                user: Some("carol".into()),
                operation: "ListAccessKeys".into(),
                message: "Throttling".into(),
                code: None,
            }],
            ..Default::default()
        };
        replace_user(&mut a, "alice", Ok(Some(user("alice", "AKIA3"))));
        assert_eq!(a.users.iter().find(|u| u.name == "alice").unwrap().keys[0].id, "AKIA3");
        replace_user(&mut a, "bob", Ok(None));
        assert!(a.users.iter().all(|u| u.name != "bob"), "deleted");
        replace_user(&mut a, "carol", Ok(Some(user("carol", "AKIA4"))));
        assert!(a.errors.is_empty(), "carol's earlier error is replaced by the read");
        let failed = ReadError {
            account_id: "1".into(),
            user: Some("alice".into()),
            operation: "ListAccessKeys".into(),
            message: "AccessDenied".into(),
            code: Some("AccessDenied".into()),
        };
        replace_user(&mut a, "alice", Err(failed));
        assert!(a.users.iter().all(|u| u.name != "alice"), "fail closed");
        assert_eq!(a.errors.len(), 1);
    }
}

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
//! An event is a hint, never an authority (anyone who may send to the queue can write one):
//! an event run acts only on the users its events name, after their live read, and all event
//! runs between two cron runs share one run's cap; an AWS Health exposure claim counts only when
//! the quarantine policies, read live, confirm it (else it is journaled and counted as
//! unconfirmed); no claim outlives its run (`absorb`).
//!
//! Messages: an ignored one (foreign event, failed call, unmanaged account, an SNS topic the
//! config does not name) is deleted at once; one that asked for a re-audit is deleted once every
//! user it named was read and handled (one user's failure keeps only its own messages), and the
//! run as a whole ended cleanly; a malformed one is never deleted, so SQS's redrive policy
//! moves it to the dead-letter queue after `maxReceiveCount` receives.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::app::cycle::{EventScope, Trigger};
use crate::app::harness::{Harness, Last};
use crate::app::internal_events::{EventHandled, EventReceiveFailed, EventsReceived, ExposuresUnconfirmed};
use crate::aws::sqs::{Message, Queue};
use crate::config::{Config, EventsSettings};
use crate::core::events::{self, Decision, Kind, Subject};
use crate::core::model::{AccountInventory, CredentialType, ReadError, ServiceError, Timestamp, User};
use crate::core::plan::OutcomeKind;
use crate::ports::{InventoryOptions, InventorySource, KeyActions};

/// One batch of messages, sorted by what to do with them.
#[derive(Debug, Default)]
pub struct Sorted {
    /// Per account, the changed users and the latest event time of each.
    pub users: BTreeMap<String, BTreeMap<String, Timestamp>>,
    /// (account, user) whose user itself changed (created, deleted, tagged) or whose other
    /// credentials did (a password, SSH key, service-specific credential, certificate): read whole
    /// (GetUser too); the others only had keys change (their path and tags are known).
    pub whole: BTreeSet<(String, String)>,
    /// Per account, the key ids AWS Health claimed exposed (`rules.exposed_key`): claims that
    /// a live read of the quarantine policies confirms, or not.
    pub exposed: BTreeMap<String, BTreeSet<String>>,
    /// Changes named only by a key id that no user of the last inventory has.
    pub unknown_keys: Vec<(String, String)>,
    /// The messages that asked for a re-audit, each with the users it named: deleted once
    /// every one of them was read and handled.
    pub pending: Vec<Pending>,
    /// Receipt handles to delete now (ignored events).
    pub ignored: Vec<String>,
    /// `keywarden_events_received_total` labels, one per message.
    pub kinds: Vec<&'static str>,
    /// (message id, why) of the malformed ones, for the log.
    pub malformed: Vec<(String, String)>,
}

/// A message that asked for a re-audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub receipt_handle: String,
    /// (account, user) it named; a Health claim also names its account (user ""), whose
    /// quarantine policies are read live.
    pub users: BTreeSet<(String, String)>,
}

/// Sorts a batch: `trusted` says which accounts this run reads and which SNS topics it
/// accepts, `base` is the last inventory (to find the user of a key named alone, as Health
/// names exposed keys).
pub fn sort(messages: &[Message], trusted: &events::Trusted<'_>, base: &[AccountInventory]) -> Sorted {
    let mut out = Sorted::default();
    let mut changes = Vec::new();
    for m in messages {
        // A message counts once, at its first receive: one SQS hands out again (a malformed
        // one waiting for its redrive, a re-audit that failed) is not another message.
        let first = m.receive_count <= 1;
        let mut kind = |k: &'static str| {
            if first {
                out.kinds.push(k);
            }
        };
        let decision = match crate::aws::eventbridge::parse(&m.body) {
            Ok(envelope) => events::decide(&envelope, trusted),
            Err(why) => Decision::Malformed(why),
        };
        match decision {
            Decision::Changes(c) => {
                kind(c.first().map_or("ignored", |c| c.kind.as_str()));
                let users = c.iter().flat_map(|c| named(&mut out, base, c)).collect();
                out.pending.push(Pending {
                    receipt_handle: m.receipt_handle.clone(),
                    users,
                });
                changes.extend(c);
            }
            Decision::Ignored(why) => {
                tracing::debug!(message_id = %m.id, reason = %why, "event ignored");
                kind("ignored");
                out.ignored.push(m.receipt_handle.clone());
            }
            Decision::Malformed(why) => {
                kind("malformed");
                out.malformed.push((m.id.clone(), why));
            }
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

/// The (account, user) pairs one change names, noting on the way which users change whole
/// and which keys Health claims exposed. A Health claim names its account's quarantine read
/// (user "") besides the key's user, so that its message waits for both reads.
fn named(out: &mut Sorted, base: &[AccountInventory], c: &events::Change) -> Vec<(String, String)> {
    let account = c.account_id.clone();
    match (c.kind, &c.subject) {
        (Kind::User | Kind::Credential, Subject::User(u)) => {
            out.whole.insert((account.clone(), u.clone()));
            vec![(account, u.clone())]
        }
        (_, Subject::User(u)) => vec![(account, u.clone())],
        (kind, Subject::Key(k)) => {
            let mut pairs: Vec<(String, String)> = user_of_key(base, &account, k)
                .map(|u| (account.clone(), u))
                .into_iter()
                .collect();
            if kind == Kind::Health {
                out.exposed.entry(account.clone()).or_default().insert(k.clone());
                pairs.push((account, String::new()));
            }
            pairs
        }
    }
}

fn user_of_key(base: &[AccountInventory], account_id: &str, key: &str) -> Option<String> {
    base.iter()
        .filter(|a| a.account_id == account_id)
        .flat_map(|a| &a.users)
        .find(|u| u.keys.iter().any(|k| k.id == key))
        .map(|u| u.name.clone())
}

/// The last full inventory with the changed users read again: what an event run audits.
/// Health's claims are checked against a live read of the quarantine policies, never taken
/// as they come.
pub struct Changed<'a, F> {
    pub fleet: &'a F,
    pub base: &'a [AccountInventory],
    pub users: &'a BTreeMap<String, BTreeMap<String, Timestamp>>,
    pub whole: &'a BTreeSet<(String, String)>,
    pub exposed: &'a BTreeMap<String, BTreeSet<String>>,
    /// (account, user) whose live read failed (user "": the account's quarantine read), set by
    /// `inventory`: each is that user's outcome alone.
    pub failed: std::sync::Mutex<BTreeSet<(String, String)>>,
}

impl<'a, F> Changed<'a, F> {
    pub fn new(fleet: &'a F, base: &'a [AccountInventory], sorted: &'a Sorted) -> Self {
        Changed {
            fleet,
            base,
            users: &sorted.users,
            whole: &sorted.whole,
            exposed: &sorted.exposed,
            failed: Default::default(),
        }
    }

    fn fail(&self, account_id: &str, user: &str) {
        if let Ok(mut f) = self.failed.lock() {
            f.insert((account_id.to_string(), user.to_string()));
        }
    }

    /// The (account, user) pairs whose read failed.
    pub fn failures(&self) -> BTreeSet<(String, String)> {
        self.failed.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

impl<F: KeyActions + Sync> InventorySource for Changed<'_, F> {
    async fn inventory(&self, opts: &InventoryOptions<'_>) -> Vec<AccountInventory> {
        // The base holds no claim: cron runs read none, and `absorb` takes none over.
        let mut accounts = self.base.to_vec();
        for (account_id, users) in self.users {
            let Some(account) = accounts.iter_mut().find(|a| &a.account_id == account_id) else {
                continue;
            };
            for name in users.keys() {
                let read = self.read(account, name, &opts.credential_kinds).await;
                if read.is_err() {
                    self.fail(account_id, name);
                }
                replace_user(account, name, read);
            }
        }
        for (account_id, keys) in self.exposed {
            let Some(account) = accounts.iter_mut().find(|a| &a.account_id == account_id) else {
                continue;
            };
            self.check_claims(account, keys).await;
        }
        accounts
    }
}

impl<F: KeyActions + Sync> Changed<'_, F> {
    /// Health's claims on `account`, checked against the quarantine policies read now. A
    /// claim on a key whose user could not be read is left for its message's next delivery
    /// (never called unconfirmed on a failed read), and a failed quarantine read leaves every
    /// claim of the account for then.
    async fn check_claims(&self, account: &mut AccountInventory, keys: &BTreeSet<String>) {
        let account_id = account.account_id.clone();
        match self.fleet.quarantined(&account_id).await {
            Ok(q) => {
                account.exposure.quarantined = q;
                let failed = self.failures();
                let unread = |k: &String| {
                    user_of_key(self.base, &account_id, k).is_some_and(|u| failed.contains(&(account_id.clone(), u)))
                };
                account
                    .exposure
                    .reported_keys
                    .extend(keys.iter().filter(|k| !unread(k)).cloned());
            }
            Err(e) => {
                tracing::warn!(account_id = %account_id, error = %e.message, "cannot read the quarantine policies to check an AWS Health claim; its message comes back");
                self.fail(&account_id, "");
                account.errors.push(e);
            }
        }
    }

    /// A user whose keys changed and who is in the last inventory: only the keys are read
    /// (ListAccessKeys, GetAccessKeyLastUsed per active key; its other credentials are the
    /// last inventory's); anyone else whole, with the other credentials the rules need (a
    /// user read without them would lose their findings' grace periods).
    async fn read(
        &self,
        account: &AccountInventory,
        name: &str,
        kinds: &[CredentialType],
    ) -> Result<Option<User>, ReadError> {
        let known = account.users.iter().find(|u| u.name == name);
        match known {
            Some(u) if !self.whole.contains(&(account.account_id.clone(), name.to_string())) => {
                let keys = self.fleet.read_keys(&account.account_id, name).await?;
                Ok(keys.map(|keys| User { keys, ..u.clone() }))
            }
            _ => self.fleet.read_user_with(&account.account_id, name, kinds).await,
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

/// What the next event run starts from: the last inventory with only this run's successful
/// live reads taken in (a user whose read failed keeps its earlier entry, so one unreadable
/// user does not mark every later event run incomplete), the quarantine policies where they
/// were read again, and no Health claim carried over.
pub fn absorb(
    base: &[AccountInventory],
    read: &[AccountInventory],
    sorted: &Sorted,
    failed: &BTreeSet<(String, String)>,
) -> Vec<AccountInventory> {
    let mut next = base.to_vec();
    for account in &mut next {
        let Some(live) = read.iter().find(|a| a.account_id == account.account_id) else {
            continue;
        };
        let id = account.account_id.clone();
        if sorted.exposed.contains_key(&id) && !failed.contains(&(id.clone(), String::new())) {
            account.exposure.quarantined = live.exposure.quarantined.clone();
        }
        for name in sorted.users.get(&id).into_iter().flat_map(|u| u.keys()) {
            if failed.contains(&(id.clone(), name.clone())) {
                continue;
            }
            let user = live.users.iter().find(|u| &u.name == name).cloned();
            replace_user(account, name, Ok(user));
        }
    }
    next
}

impl<F: KeyActions + Sync> KeyActions for Changed<'_, F> {
    async fn read_user(&self, account_id: &str, user: &str) -> Result<Option<User>, ReadError> {
        self.fleet.read_user(account_id, user).await
    }

    async fn read_user_with(
        &self,
        account_id: &str,
        user: &str,
        kinds: &[CredentialType],
    ) -> Result<Option<User>, ReadError> {
        self.fleet.read_user_with(account_id, user, kinds).await
    }

    async fn deactivate(&self, account_id: &str, user: &str, access_key_id: &str) -> Result<(), ServiceError> {
        self.fleet.deactivate(account_id, user, access_key_id).await
    }

    async fn set_credential_status(
        &self,
        account_id: &str,
        user: &str,
        credential: (CredentialType, &str),
        active: bool,
    ) -> Result<(), ServiceError> {
        self.fleet
            .set_credential_status(account_id, user, credential, active)
            .await
    }

    async fn delete_login_profile(
        &self,
        account_id: &str,
        user: &str,
    ) -> Result<crate::core::model::LoginProfile, ServiceError> {
        self.fleet.delete_login_profile(account_id, user).await
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
pub(crate) async fn consume(mut config_rx: watch::Receiver<Arc<Config>>, harness: Harness) {
    let mut queue: Option<(EventsSettings, Queue)> = None;
    while !harness.stop.load(Ordering::Acquire) {
        let config = Arc::clone(&config_rx.borrow_and_update());
        let Some(settings) = config.events.clone() else {
            queue = None;
            let _ = tokio::time::timeout(IDLE, config_rx.changed()).await;
            continue;
        };
        if !harness.memory.leader().leading() {
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
                    EventReceiveFailed { error: &e, setup: true }.emit(&harness.shared.metrics);
                    tokio::time::sleep(IDLE).await;
                    continue;
                }
            }
        }
        let Some((_, q)) = queue.as_ref() else { continue };
        if harness.runs.lock().await.is_none() {
            // No full run yet: receive nothing that could not be handled (a message received
            // now would hide for its whole visibility timeout).
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let messages = match q.receive(settings.poll_wait).await {
            Ok(m) => m,
            Err(e) => {
                EventReceiveFailed {
                    error: &e,
                    setup: false,
                }
                .emit(&harness.shared.metrics);
                tokio::time::sleep(IDLE).await;
                continue;
            }
        };
        if !messages.is_empty() {
            handle(&config_rx, &harness, q, &messages).await;
        }
    }
}

/// One batch: counted, the ignored ones deleted, the rest re-audited in one event run; each
/// message is deleted when every user it named was read and handled, and comes back after its
/// visibility timeout otherwise (one unreadable user delays only its own messages).
///
/// The run decides with the config in force once it holds the run lock, not the one the long
/// poll began with: an exemption added by SIGHUP while the poll waited binds these messages.
async fn handle(config: &watch::Receiver<Arc<Config>>, harness: &Harness, queue: &Queue, messages: &[Message]) {
    let mut last = harness.runs.lock().await;
    let config = Arc::clone(&config.borrow());
    let Some(base) = last.as_mut() else {
        // Not reached (`consume` waits for the first full run); if it were, the messages come
        // back after their visibility timeout.
        tracing::info!(messages = messages.len(), "events wait for the first full run");
        return;
    };
    let managed: BTreeSet<String> = base.fleet.sdks().iter().map(|(id, _)| id.to_string()).collect();
    let topics = config
        .events
        .as_ref()
        .map(|e| e.sns_topic_arns.clone())
        .unwrap_or_default();
    let trusted = events::Trusted {
        accounts: &managed,
        sns_topics: &topics,
    };
    let sorted = sort(messages, &trusted, &base.accounts);
    EventsReceived {
        counts: &count(&sorted.kinds),
    }
    .emit(&harness.shared.metrics);
    for (id, why) in &sorted.malformed {
        tracing::warn!(message_id = %id, reason = %why, "malformed event left for the dead-letter queue");
    }
    // A Health claim on such a key is checked (and journaled as unconfirmed) by the run itself.
    let claimed = |account: &String, key: &String| sorted.exposed.get(account).is_some_and(|k| k.contains(key));
    for (account, key) in sorted.unknown_keys.iter().filter(|(a, k)| !claimed(a, k)) {
        tracing::info!(account_id = %account, access_key_id = %key, "an event names a key no user of the last run has; the next cron run reads it");
    }
    delete(queue, &sorted.ignored).await;
    if sorted.users.is_empty() && sorted.exposed.is_empty() {
        let all: Vec<String> = sorted.pending.iter().map(|p| p.receipt_handle.clone()).collect();
        delete(queue, &all).await;
        return;
    }
    let run = harness.guarded(event_run(&config, harness, base, &sorted)).await;
    let handled = |pair: &(String, String)| run.as_ref().is_some_and(|failed| !failed.contains(pair));
    let done: Vec<String> = sorted
        .pending
        .iter()
        .filter(|p| p.users.iter().all(handled))
        .map(|p| p.receipt_handle.clone())
        .collect();
    delete(queue, &done).await;
    let back = sorted.pending.len() - done.len();
    if back > 0 {
        tracing::warn!(
            messages = back,
            "some users of this batch could not be read or handled; their messages come back after their visibility timeout"
        );
    }
    let now = chrono::Utc::now();
    for (account, users) in &sorted.users {
        for (user, t) in users {
            if handled(&(account.clone(), user.clone())) {
                let lag_seconds = now.signed_duration_since(*t).num_milliseconds() as f64 / 1000.0;
                EventHandled { lag_seconds }.emit(&harness.shared.metrics);
            }
        }
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
/// again, acting only on them and within what earlier event runs left of the cap, each new
/// finding first seen at its event's time. Returns the (account, user) pairs that were not
/// handled (a failed read, a failed action), or `None` when the run as a whole failed (state,
/// clock, journal, lease): then every message comes back.
async fn event_run(
    config: &Config,
    harness: &Harness,
    base: &mut Last,
    sorted: &Sorted,
) -> Option<BTreeSet<(String, String)>> {
    let started = Instant::now();
    base.observer.reset_skew();
    let changed = Changed::new(base.fleet.as_ref(), &base.accounts, sorted);
    let seen_at = |account: &str, user: &str| sorted.users.get(account).and_then(|u| u.get(user)).copied();
    let budget = config
        .enforcement
        .max_deactivations_per_run
        .saturating_sub(base.event_acted);
    let observer = Arc::clone(&base.observer);
    let trigger = Trigger::Event(EventScope {
        seen_at: &seen_at,
        budget,
    });
    let (c, enforced) = harness.run(config, &changed, &observer, trigger, started).await;
    let mut failed = changed.failures();
    for o in c.executed.outcomes.iter().filter(|o| o.kind == OutcomeKind::Error) {
        failed.insert((o.candidate.account_id.clone(), o.candidate.user.clone()));
    }
    base.event_acted += c
        .executed
        .outcomes
        .iter()
        .filter(|o| matches!(o.kind, OutcomeKind::Success | OutcomeKind::DryRun))
        .count();
    let whole_run_ok = enforced && c.executed.journal_error.is_none() && c.executed.lease_lost.is_none();
    if whole_run_ok {
        ExposuresUnconfirmed { claims: &c.unconfirmed }.emit(&harness.shared.metrics);
    }
    tracing::info!(
        users = sorted.users.values().map(|u| u.len()).sum::<usize>(),
        failed = failed.len(),
        deactivations_left = config
            .enforcement
            .max_deactivations_per_run
            .saturating_sub(base.event_acted),
        seconds = started.elapsed().as_secs_f64(),
        "event run finished"
    );
    base.accounts = absorb(&base.accounts, &c.accounts, sorted, &failed);
    whole_run_ok.then_some(failed)
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
            credentials: vec![],
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
        let s = sort(
            &batch,
            &events::Trusted {
                accounts: &managed,
                sns_topics: &[],
            },
            &base,
        );
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
        let pending: Vec<(&str, Vec<&str>)> = s
            .pending
            .iter()
            .map(|p| {
                (
                    p.receipt_handle.as_str(),
                    p.users.iter().map(|(_, u)| u.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            pending,
            [
                ("r-1", vec!["alice"]),
                ("r-2", vec!["alice"]),
                ("r-3", vec!["alice"]),
                ("r-6", vec!["", "carol"]),
                ("r-7", vec!["dave"])
            ],
            "each message waits for the users it names (Health: also its account's quarantine read)"
        );
        assert_eq!(
            s.exposed["111111111111"],
            ["AKIACAROL".to_string(), "AKIAGONE".to_string()].into(),
            "claims, checked live later"
        );
        assert_eq!(s.ignored, ["r-4"], "an unmanaged account's event");
        assert_eq!(s.malformed.len(), 1);
        let counted = count(&s.kinds);
        assert_eq!(counted["access_key"], 3);
        assert_eq!((counted["ignored"], counted["malformed"], counted["health"]), (1, 1, 1));
    }

    #[test]
    fn a_message_counts_once_however_often_it_is_received() {
        // A malformed message is never deleted: SQS hands it out again until its redrive
        // policy moves it. The counter counts messages, not receives.
        let trusted = events::Trusted {
            accounts: &BTreeSet::new(),
            sns_topics: &[],
        };
        let again = |n| Message {
            receive_count: n,
            ..message("m", "not json")
        };
        let first = sort(&[again(1)], &trusted, &[]);
        assert_eq!(count(&first.kinds).get("malformed"), Some(&1));
        let later = sort(&[again(2), again(5)], &trusted, &[]);
        assert_eq!(count(&later.kinds).get("malformed"), None, "{:?}", later.kinds);
        assert_eq!(later.malformed.len(), 2, "still logged at every receive");
    }

    /// ListAccessKeys of `user` in account "1", denied.
    fn denied(user: &str) -> ReadError {
        ReadError {
            account_id: "1".into(),
            user: Some(user.into()),
            operation: "ListAccessKeys".into(),
            message: "AccessDenied".into(),
            code: Some("AccessDenied".into()),
        }
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
        replace_user(&mut a, "alice", Err(denied("alice")));
        assert!(a.users.iter().all(|u| u.name != "alice"), "fail closed");
        assert_eq!(a.errors.len(), 1);
    }

    #[test]
    fn the_next_event_run_keeps_only_successful_live_reads_and_no_claims() {
        let base = vec![AccountInventory {
            account_id: "1".into(),
            users: vec![user("alice", "AKIA1"), user("ghost", "AKIA2")],
            ..Default::default()
        }];
        let mut read = base.clone();
        replace_user(&mut read[0], "alice", Ok(Some(user("alice", "AKIA3"))));
        replace_user(&mut read[0], "ghost", Err(denied("ghost")));
        read[0].exposure.reported_keys.insert("AKIA3".into());
        read[0]
            .exposure
            .quarantined
            .insert("alice".into(), "AWSCompromisedKeyQuarantineV3".into());
        let mut sorted = Sorted::default();
        sorted
            .users
            .insert("1".into(), [("alice".into(), t(1)), ("ghost".into(), t(1))].into());
        sorted.exposed.insert("1".into(), ["AKIA3".to_string()].into());
        let failed: BTreeSet<(String, String)> = [("1".to_string(), "ghost".to_string())].into();
        let next = absorb(&base, &read, &sorted, &failed);
        let a = &next[0];
        assert!(
            a.errors.is_empty(),
            "a failed read is that run's outcome, not the next run's"
        );
        let keys = |name: &str| a.users.iter().find(|u| u.name == name).map(|u| u.keys[0].id.clone());
        assert_eq!(keys("alice").as_deref(), Some("AKIA3"), "read live");
        assert_eq!(keys("ghost").as_deref(), Some("AKIA2"), "its earlier entry");
        assert!(a.exposure.reported_keys.is_empty(), "a claim never outlives its run");
        assert!(a.exposure.quarantined.contains_key("alice"), "the live quarantine read");
    }
}

//! The ports: the small traits the run is written against, so that it can be driven by AWS
//! and files in production and by in-memory fakes in unit tests. Implementations live at the
//! edges (`aws`, `state`, `sys`); the run (`app`) and the core only see these.

use std::future::Future;

pub use futures_util::future::BoxFuture;

use crate::core::history::State;
use crate::core::journal::JournalEntry;
use crate::core::model::{AccountInventory, CredentialType, ReadError, ServiceError, Timestamp, User};

/// Reads account inventories. The audit and the daemon depend on this trait, not on AWS.
///
/// An inventory names the access key the source signs with (`own_access_key_id`) in the
/// account it belongs to: that key is never deactivated.
pub trait InventorySource {
    fn inventory(&self, opts: &InventoryOptions<'_>) -> impl Future<Output = Vec<AccountInventory>> + Send;
}

/// How to read an account (`aws.inventory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InventoryMode {
    /// ListUsers, then per user ListAccessKeys and GetAccessKeyLastUsed: exact and live.
    Api,
    /// One credential report (up to 4 hours old), plus ListAccessKeys only for users whose
    /// key ids are needed. Actions still re-read the user live first.
    CredentialReport,
    /// The report when the account has at least `auto_min_users` users.
    Auto,
}

pub struct InventoryOptions<'a> {
    pub needs_tags: bool,
    /// Read which users carry AWS's quarantine policy (`rules.exposed_key`): one
    /// ListEntitiesForPolicy per policy and account, whatever the number of users.
    pub exposure: bool,
    pub mode: InventoryMode,
    pub auto_min_users: usize,
    /// Credential-report mode: whether this user's keys must be named (it has findings, or
    /// per-key metrics are on).
    pub wants_key_ids: &'a (dyn Fn(&str, &User) -> bool + Sync),
    /// Credential-report mode: the key ids of the last listings (`State::key_names`); a user
    /// whose slots they name is not listed again. `None`: list every user whose ids are wanted.
    pub key_names: Option<&'a State>,
    /// The kinds of credentials beyond access keys to read (`Rules::credential_kinds`).
    pub credential_kinds: Vec<CredentialType>,
    /// A daemon run between full refreshes: each user's other credentials as last read
    /// (`State::listing`), taken instead of listing them. `None`: read every kind live (a
    /// full refresh, `keywarden audit`).
    pub listings: Option<&'a State>,
}

/// Told about every HTTP attempt (retries included): operation name and outcome
/// (`success`, `throttled`, `client_error`, `server_error`, `transport_error`).
pub trait RequestObserver: Send + Sync + std::fmt::Debug {
    fn attempt(&self, operation: &str, outcome: &'static str);
    /// The `Date` of an answer, as seen against the local clock: local time minus AWS's, in
    /// seconds (positive: this host is ahead).
    fn clock_skew(&self, _seconds: f64) {}
}

/// The edge enforcement acts through (IAM in production, fakes in unit tests).
pub trait KeyActions {
    /// `Ok(None)`: the user does not exist (any more).
    fn read_user(&self, account_id: &str, user: &str) -> impl Future<Output = Result<Option<User>, ReadError>> + Send;
    /// [`KeyActions::read_user`] with the user's credentials of `kinds` beyond its access keys
    /// (what a finding about one of them is confirmed with).
    fn read_user_with(
        &self,
        account_id: &str,
        user: &str,
        kinds: &[CredentialType],
    ) -> impl Future<Output = Result<Option<User>, ReadError>> + Send {
        let unsupported = !kinds.is_empty();
        let read = self.read_user(account_id, user);
        let account_id = account_id.to_string();
        async move {
            if unsupported {
                return Err(ReadError {
                    account_id,
                    user: None,
                    operation: "ListSSHPublicKeys".into(),
                    message: "reading credentials other than access keys is not supported here".into(),
                    code: None,
                });
            }
            read.await
        }
    }
    fn deactivate(
        &self,
        account_id: &str,
        user: &str,
        access_key_id: &str,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send;
    /// Sets a credential other than an access key Inactive (UpdateSSHPublicKey,
    /// UpdateServiceSpecificCredential, UpdateSigningCertificate), or Active again
    /// (`keywarden reactivate`). A password has no status: refused.
    fn set_credential_status(
        &self,
        _account_id: &str,
        _user: &str,
        _credential: (CredentialType, &str),
        _active: bool,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send {
        async {
            Err(ServiceError::from(
                "changing credentials other than access keys is not supported here",
            ))
        }
    }
    /// DeleteLoginProfile (`rules.unused_password` with `action = "delete_login_profile"`),
    /// after a GetLoginProfile whose settings are returned for the journal.
    fn delete_login_profile(
        &self,
        _account_id: &str,
        _user: &str,
    ) -> impl Future<Output = Result<crate::core::model::LoginProfile, ServiceError>> + Send {
        async { Err(ServiceError::from("deleting login profiles is not supported here")) }
    }
    /// CreateLoginProfile with `password`, to be changed at first sign-in (`keywarden
    /// reactivate USER --password`).
    fn create_login_profile(
        &self,
        _account_id: &str,
        _user: &str,
        _password: &str,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send {
        async { Err(ServiceError::from("creating login profiles is not supported here")) }
    }
    /// Only the keys of a user whose other facts (path, tags) are known: cheaper where the
    /// edge can (no GetUser). `Ok(None)`: the user does not exist (any more).
    fn read_keys(
        &self,
        account_id: &str,
        user: &str,
    ) -> impl Future<Output = Result<Option<Vec<crate::core::model::AccessKey>>, ReadError>> + Send {
        let read = self.read_user(account_id, user);
        async move { read.await.map(|u| u.map(|u| u.keys)) }
    }
    /// Which users of the account carry AWS's quarantine policy now (user -> policy): what
    /// confirms an AWS Health exposure claim from the events queue.
    fn quarantined(
        &self,
        account_id: &str,
    ) -> impl Future<Output = Result<std::collections::BTreeMap<String, String>, ReadError>> + Send {
        let account_id = account_id.to_string();
        async move {
            Err(ReadError {
                account_id,
                user: None,
                operation: "ListEntitiesForPolicy".into(),
                message: "reading quarantine policies is not supported here".into(),
                code: None,
            })
        }
    }
    /// Sets the key Active again (`keywarden reactivate`). Runs never call it.
    fn activate(
        &self,
        _account_id: &str,
        _user: &str,
        _access_key_id: &str,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send {
        async { Err(ServiceError::from("activating keys is not supported here")) }
    }
    /// Denies the user's temporary credentials issued before `before` (an exposed key's
    /// sessions outlive its deactivation): the inline policy `keywarden-revoke-sessions`.
    fn revoke_sessions(
        &self,
        _account_id: &str,
        _user: &str,
        _before: Timestamp,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send {
        async { Err(ServiceError::from("revoking sessions is not supported here")) }
    }
    /// Removes what [`KeyActions::revoke_sessions`] put on the user (`keywarden reactivate`):
    /// `Ok(false)` when there was nothing to remove.
    fn restore_sessions(
        &self,
        _account_id: &str,
        _user: &str,
    ) -> impl Future<Output = Result<bool, ServiceError>> + Send {
        async { Err(ServiceError::from("restoring sessions is not supported here")) }
    }
}

/// A key CreateAccessKey just made; the secret is wiped from memory when this is dropped,
/// and `Debug` never shows it.
pub struct NewKey {
    pub access_key_id: String,
    pub secret_access_key: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NewKey({}, secret withheld)", self.access_key_id)
    }
}

/// The edge a rotation acts through (`keywarden rotate`, the daemon's automatic rotation):
/// IAM's CreateAccessKey and the hand-over to Secrets Manager (also of a reactivated
/// password's temporary value).
pub trait Rotator: Sync {
    fn create_key<'a>(&'a self, account_id: &'a str, user: &'a str) -> BoxFuture<'a, Result<NewKey, ServiceError>>;
    /// DeleteAccessKey, only ever of a key this rotation made and could not hand over (it was
    /// never given to anyone): the one delete keywarden makes.
    fn delete_new_key<'a>(
        &'a self,
        account_id: &'a str,
        user: &'a str,
        access_key_id: &'a str,
    ) -> BoxFuture<'a, Result<(), ServiceError>>;
    /// Stores `{"AccessKeyId", "SecretAccessKey"}` as the current value of the secret `name`
    /// in `account_id` (created, or a new version); returns the secret's ARN.
    fn store<'a>(
        &'a self,
        account_id: &'a str,
        name: &'a str,
        key: &'a NewKey,
    ) -> BoxFuture<'a, Result<String, ServiceError>>;
    /// Stores `{"UserName", "Password"}` (a temporary console password, `reactivate
    /// --password`) the same way; returns the secret's ARN.
    fn store_password<'a>(
        &'a self,
        account_id: &'a str,
        name: &'a str,
        user: &'a str,
        password: &'a zeroize::Zeroizing<String>,
    ) -> BoxFuture<'a, Result<String, ServiceError>>;
}

/// A state store failed: the message names what (file, table) and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Where the state lives between runs (a file today). One writer at a time: a run holds the
/// guard of [`StateStore::lock`] from before it loads until after its last save.
pub trait StateStore {
    type Guard: Send;
    fn lock(&self) -> impl Future<Output = Result<Self::Guard, StoreError>> + Send;
    /// `Ok(None)`: nothing stored yet. A store that cannot be read is an error, never an
    /// empty history (that would restart every grace period).
    fn load(&self) -> impl Future<Output = Result<Option<State>, StoreError>> + Send;
    /// All or nothing for a file; for a table, every change or an error (a change written
    /// before the error stays, and is a correct record on its own).
    fn save(&self, state: &State) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A key's last call in the usage evidence: (account, key id, time).
pub type LastCall = (String, String, Timestamp);

/// The usage evidence a run may hold due deactivations back with (`usage.hold_live_keys`):
/// the last call each usage profile shows, as (account, key id, time). Never a reason to act.
pub trait LastCalls: Sync {
    fn last_calls(&self) -> BoxFuture<'_, Result<Vec<LastCall>, StoreError>>;
}

/// No usage evidence (tests, commands that keep no profiles).
pub struct NoEvidence;

impl LastCalls for NoEvidence {
    fn last_calls(&self) -> BoxFuture<'_, Result<Vec<LastCall>, StoreError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
}

/// Where the usage profiles of access keys live between runs (`state::usage`). Writers never
/// lock each other out: every instance counts events into the same profiles, so a save is
/// conditional on the revision the profile was read at (optimistic concurrency), and a
/// writer that lost the race reads the profile again and counts its events into that.
pub trait UsageStore {
    /// Every profile kept. A store that cannot be read is an error, never "no profiles".
    fn profiles(&self) -> impl Future<Output = Result<Vec<crate::core::usage::profile::Profile>, StoreError>> + Send;
    /// The stored profiles of `keys` (account, key id): absent keys have none yet.
    fn read(
        &self,
        keys: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<crate::core::usage::profile::Profile>, StoreError>> + Send;
    /// Saves each profile whose stored revision is still the one it was read at (none stored:
    /// revision 0), moving its `revision` on, and forgets the keys of `forget`. Returns the
    /// keys whose save lost to another writer (nothing of those was written).
    fn save_all(
        &self,
        profiles: &mut [crate::core::usage::profile::Profile],
        forget: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;
}

/// CloudTrail's LookupEvents in one account and region (`aws::cloudtrail`): one page of the
/// events `access_key_id` signed, newest first, up to `end` (`None`: now).
pub trait EventLookup {
    fn lookup(
        &self,
        access_key_id: &str,
        end: Option<Timestamp>,
        next_token: Option<&str>,
    ) -> impl Future<Output = Result<crate::core::usage::event::LookupPage, ServiceError>> + Send;
}

/// What was read from the action journal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JournalRead {
    /// Oldest first.
    pub entries: Vec<JournalEntry>,
    /// Lines that could not be read (a torn last line after a crash), each with its place.
    pub skipped: Vec<String>,
}

/// The durable record of every action (`core::journal`): appended and on disk before the run
/// goes on, read by `history` and `reactivate`.
/// Object-safe (runs hold it as `&dyn`), hence the boxed futures.
pub trait ActionJournal: Sync {
    fn append<'a>(&'a self, entries: &'a [JournalEntry]) -> BoxFuture<'a, Result<(), StoreError>>;
    fn read(&self) -> BoxFuture<'_, Result<JournalRead, StoreError>>;
}

/// A journal in memory: for unit tests, and for runs that must not leave one behind.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    pub entries: std::sync::Mutex<Vec<JournalEntry>>,
    /// When set, every append fails with this message.
    pub fail: Option<String>,
}

impl MemoryJournal {
    fn append_now(&self, entries: &[JournalEntry]) -> Result<(), StoreError> {
        if let Some(m) = &self.fail {
            return Err(StoreError(m.clone()));
        }
        let mut all = self.entries.lock().map_err(|_| StoreError("poisoned".into()))?;
        all.extend_from_slice(entries);
        Ok(())
    }

    fn read_now(&self) -> Result<JournalRead, StoreError> {
        let all = self.entries.lock().map_err(|_| StoreError("poisoned".into()))?;
        Ok(JournalRead {
            entries: all.clone(),
            skipped: Vec::new(),
        })
    }
}

impl ActionJournal for MemoryJournal {
    fn append<'a>(&'a self, entries: &'a [JournalEntry]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(self.append_now(entries)))
    }

    fn read(&self) -> BoxFuture<'_, Result<JournalRead, StoreError>> {
        Box::pin(std::future::ready(self.read_now()))
    }
}

/// The write-ahead record of deactivations, kept in the state: `begin` is saved before
/// UpdateAccessKey is sent, `end` comes once its journal entry is written. A process killed in
/// between leaves the intent, and the next run journals what IAM shows (`plan::reconcile`).
pub trait IntentLog: Sync {
    fn begin<'a>(&'a self, entry: &'a JournalEntry) -> BoxFuture<'a, Result<(), StoreError>>;
    fn end<'a>(&'a self, account_id: &'a str, access_key_id: &'a str) -> BoxFuture<'a, ()>;
}

/// Keeps no intents (unit tests of the actions alone).
pub struct NoIntents;

impl IntentLog for NoIntents {
    fn begin<'a>(&'a self, _: &'a JournalEntry) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn end<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// Whether this instance may enforce: the holder of the leader lease (`state::lease`) when
/// several instances share a table; always, for the file store's single instance.
pub trait Leadership: Sync {
    /// At the start of a run: enforce this run, or only audit.
    fn leading(&self) -> bool;
    /// Right before each UpdateAccessKey: still the leader with time to spare, and the key not
    /// snoozed by an operator since the run loaded its state.
    fn may_act<'a>(&'a self, account_id: &'a str, access_key_id: &'a str) -> BoxFuture<'a, Result<(), Refusal>>;
}

/// Why [`Leadership::may_act`] said no.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// This key only: an operator snoozed it (`keywarden reactivate`) during the run.
    Snoozed(String),
    /// The whole run: the lease is lost, running out, or cannot be confirmed.
    NotLeader(String),
}

/// The only instance there is (the file store): always the leader.
pub struct SoleInstance;

impl Leadership for SoleInstance {
    fn leading(&self) -> bool {
        true
    }

    fn may_act<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The time, so the run can be tested at fixed instants.
pub trait Clock {
    fn now(&self) -> Timestamp;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}

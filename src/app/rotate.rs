//! Guided rotation: `keywarden rotate USER`, and the daemon's automatic rotation of users
//! tagged `keywarden:rotate = "secretsmanager"`.
//!
//! The order is the safety argument:
//! - a fresh read of the user decides whether it may be rotated (`core::rotation::rotatable`:
//!   not with two keys, not without an active key, never keywarden's own user); a refusal
//!   changes nothing;
//! - CreateAccessKey, then the hand-over to Secrets Manager; if the hand-over fails, the new
//!   key is deleted again (it was never given to anyone), so no unknown key is left behind;
//! - the journal names the old key, the new key and the secret's ARN, never the secret; the
//!   secret is wiped from memory when the hand-over is done (`ports::NewKey`).
//!
//! The old key is not touched here: it is now an ordinary `multiple_active_keys` finding, held
//! until the new key is used, then deactivated after the grace period by the usual runs.

use crate::core::journal::{JournalAction, JournalEntry, RunInfo};
use crate::core::model::{AccountInventory, Timestamp};
use crate::core::policy::Mode;
use crate::core::rotation::{self, Due};
use crate::ports::{ActionJournal, KeyActions, Leadership, Refusal as LeaseRefusal, Rotator};

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// Nothing was changed (exit 4).
    #[error("refused: {0}")]
    Refused(String),
    /// Something failed on the way (exit 1); the message says what was done and undone.
    #[error("{0}")]
    Failed(String),
}

impl RotateError {
    /// The `outcome` label of `keywarden_rotations_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            RotateError::Refused(_) => rotation::Refusal::OUTCOME,
            RotateError::Failed(_) => "error",
        }
    }
}

pub struct Request<'a> {
    pub account_id: &'a str,
    pub user: &'a str,
    pub reason: &'a str,
    /// The secret's name; `None`: `<secret_prefix><account_id>/<user>`.
    pub secret_id: Option<&'a str>,
    pub secret_prefix: &'a str,
    pub operator: &'a str,
    /// Dry-run journals "would rotate" and creates nothing.
    pub mode: Mode,
    /// The key keywarden signs with in that account.
    pub own_access_key_id: Option<&'a str>,
    pub now: Timestamp,
    pub run: &'a RunInfo,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub old_access_key_id: String,
    /// `None` in dry-run.
    pub new_access_key_id: Option<String>,
    pub secret_name: String,
    /// `None` in dry-run.
    pub secret_arn: Option<String>,
}

impl Rotated {
    /// The `outcome` label of `keywarden_rotations_total`.
    pub fn outcome(&self) -> &'static str {
        if self.new_access_key_id.is_some() {
            "success"
        } else {
            "dry_run"
        }
    }
}

/// One rotation, in the order the module doc gives.
pub async fn rotate(
    req: &Request<'_>,
    actions: &(impl KeyActions + Sync),
    rotator: &dyn Rotator,
    journal: &dyn ActionJournal,
) -> Result<Rotated, RotateError> {
    let user = actions
        .read_user(req.account_id, req.user)
        .await
        .map_err(|e| RotateError::Failed(format!("cannot read {}: {}: {}", req.user, e.operation, e.message)))?;
    let old = rotation::rotatable(user.as_ref(), req.own_access_key_id)
        .map_err(|r| RotateError::Refused(r.message(req.user)))?
        .id
        .clone();
    let secret_name = req
        .secret_id
        .map(str::to_string)
        .unwrap_or_else(|| rotation::secret_name(req.secret_prefix, req.account_id, req.user));
    let entry = JournalEntry {
        time: req.now,
        action: JournalAction::Rotate,
        mode: req.mode.as_str().to_string(),
        account_id: req.account_id.to_string(),
        user: req.user.to_string(),
        credential_type: crate::core::model::CredentialType::AccessKey,
        access_key_id: old.clone(),
        rules: Vec::new(),
        first_seen: None,
        deadline: None,
        outcome: "dry_run".into(),
        error: None,
        reason: Some(format!("{} (secret {secret_name})", req.reason)),
        operator: Some(req.operator.to_string()),
        new_access_key_id: None,
        secret_arn: None,
        login_profile: None,
        run: req.run.clone(),
    };
    let done = Rotated {
        old_access_key_id: old,
        new_access_key_id: None,
        secret_name,
        secret_arn: None,
    };
    if req.mode == Mode::DryRun {
        record(journal, &entry).await?;
        return Ok(done);
    }
    hand_over(req, rotator, journal, entry, done).await
}

/// CreateAccessKey, then the secret; the new key deleted again when the secret could not be
/// stored. Every outcome is journaled.
async fn hand_over(
    req: &Request<'_>,
    rotator: &dyn Rotator,
    journal: &dyn ActionJournal,
    mut entry: JournalEntry,
    mut done: Rotated,
) -> Result<Rotated, RotateError> {
    let failed = |mut entry: JournalEntry, why: String| async move {
        entry.outcome = "error".into();
        entry.error = Some(why.clone());
        record(journal, &entry).await?;
        Err::<Rotated, _>(RotateError::Failed(why))
    };
    let new = match rotator.create_key(req.account_id, req.user).await {
        Ok(k) => k,
        Err(e) => return failed(entry, format!("no new key was made: {e}")).await,
    };
    entry.new_access_key_id = Some(new.access_key_id.clone());
    let stored = rotator.store(req.account_id, &done.secret_name, &new).await;
    let new_id = new.access_key_id.clone();
    // The secret is wiped here, whatever happened to the hand-over.
    drop(new);
    let arn = match stored {
        Ok(arn) => arn,
        Err(e) => {
            let undone = rotator.delete_new_key(req.account_id, req.user, &new_id).await;
            let why = match undone {
                Ok(()) => format!("the new key could not be stored in Secrets Manager ({e}); it was deleted again, the user has the keys it had"),
                Err(d) => format!("the new key {new_id} could not be stored in Secrets Manager ({e}) and deleting it failed ({d}): delete it by hand, it was never handed out"),
            };
            return failed(entry, why).await;
        }
    };
    entry.outcome = "success".into();
    entry.secret_arn = Some(arn.clone());
    done.new_access_key_id = Some(new_id);
    done.secret_arn = Some(arn);
    record(journal, &entry).await?;
    Ok(done)
}

async fn record(journal: &dyn ActionJournal, entry: &JournalEntry) -> Result<(), RotateError> {
    journal.append(std::slice::from_ref(entry)).await.map_err(|e| {
        RotateError::Failed(format!(
            "{} of {} ({}): the journal could not be written: {e}",
            entry.action.as_str(),
            entry.user,
            entry.outcome
        ))
    })
}

/// What the daemon's automatic rotation needs besides the ports.
pub struct Auto<'a> {
    pub secret_prefix: &'a str,
    pub max_age: chrono::TimeDelta,
    pub auto_before: chrono::TimeDelta,
    pub mode: Mode,
    /// Rotations this run may still make (the cap, less the deactivations made).
    pub budget: usize,
    pub now: Timestamp,
    pub run: &'a RunInfo,
}

/// The daemon's rotations of tagged users whose key nears `max_age`, at most `budget`, each
/// at most once per key (a journal entry of the same mode, any outcome, names it). Returns the outcome label
/// of each attempt (`keywarden_rotations_total`).
pub async fn auto(
    a: &Auto<'_>,
    accounts: &[AccountInventory],
    actions: &(impl KeyActions + Sync),
    rotator: &dyn Rotator,
    journal: &dyn ActionJournal,
    leader: &dyn Leadership,
) -> Vec<&'static str> {
    // The journal is read only when some key is due at all.
    let candidates = rotation::due(accounts, a.max_age, a.auto_before, a.now, &|_| false);
    if candidates.is_empty() || a.budget == 0 {
        return Vec::new();
    }
    let journaled = match journal.read().await {
        Ok(read) => read.entries,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the journal; automatic rotations wait for the next run");
            return vec!["error"];
        }
    };
    // Once per key and mode: a dry-run's "would rotate" does not stop the first enforcing
    // run, and a failure is not retried on its own (the operator runs `keywarden rotate`).
    let rotated = |key: &str| {
        journaled
            .iter()
            .any(|e| e.action == JournalAction::Rotate && e.access_key_id == key && e.mode == a.mode.as_str())
    };
    let due = candidates.into_iter().filter(|d| !rotated(&d.access_key_id));
    let mut outcomes = Vec::new();
    for d in due.take(a.budget) {
        // Made under the lease, like a deactivation: confirmed right before each key.
        match leader.may_act(&d.account_id, &d.access_key_id).await {
            Ok(()) => {}
            Err(LeaseRefusal::Snoozed(why)) => {
                tracing::info!(account_id = %d.account_id, user = %d.user, reason = %why, "snoozed key: not rotated");
                continue;
            }
            Err(LeaseRefusal::NotLeader(why)) => {
                tracing::warn!(error = %why, "lease lost: automatic rotations wait for the next run");
                break;
            }
        }
        outcomes.push(one(a, &d, accounts, actions, rotator, journal).await);
    }
    outcomes
}

async fn one(
    a: &Auto<'_>,
    d: &Due,
    accounts: &[AccountInventory],
    actions: &(impl KeyActions + Sync),
    rotator: &dyn Rotator,
    journal: &dyn ActionJournal,
) -> &'static str {
    let own = accounts
        .iter()
        .find(|acc| acc.account_id == d.account_id)
        .and_then(|acc| acc.own_access_key_id.as_deref());
    let reason = format!(
        "automatic: {} nears rules.max_key_age.max_age (rotation.auto_before)",
        d.access_key_id
    );
    let req = Request {
        account_id: &d.account_id,
        user: &d.user,
        reason: &reason,
        secret_id: None,
        secret_prefix: a.secret_prefix,
        operator: "keywarden",
        mode: a.mode,
        own_access_key_id: own,
        now: a.now,
        run: a.run,
    };
    match rotate(&req, actions, rotator, journal).await {
        Ok(r) => {
            tracing::warn!(account_id = %d.account_id, user = %d.user, access_key_id = %r.old_access_key_id,
                new_access_key_id = r.new_access_key_id.as_deref().unwrap_or(""), secret = %r.secret_name,
                mode = a.mode.as_str(), "rotated access key (the old key goes once the new one is used)");
            r.outcome()
        }
        Err(e) => {
            tracing::error!(account_id = %d.account_id, user = %d.user, error = %e, "automatic rotation failed");
            e.outcome()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{AccessKey, KeyStatus, ReadError, ServiceError, User};
    use crate::ports::{BoxFuture, MemoryJournal, NewKey, SoleInstance};
    use chrono::{TimeDelta, TimeZone};
    use std::sync::Mutex;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn now() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
    }

    fn user(name: &str, keys: &[&str], tagged: bool) -> User {
        User {
            credentials: vec![],
            name: name.into(),
            path: "/".into(),
            tags: if tagged {
                vec![(rotation::ROTATE_TAG.into(), rotation::ROTATE_VALUE.into())]
            } else {
                vec![]
            },
            keys: keys
                .iter()
                .map(|id| AccessKey {
                    id: id.to_string(),
                    status: KeyStatus::Active,
                    created: now() - TimeDelta::days(85),
                    last_used: None,
                })
                .collect(),
        }
    }

    struct Fake {
        users: Vec<User>,
        store_fails: bool,
        log: Mutex<Vec<String>>,
    }

    impl KeyActions for Fake {
        async fn read_user(&self, _: &str, name: &str) -> Result<Option<User>, ReadError> {
            Ok(self.users.iter().find(|u| u.name == name).cloned())
        }
        async fn deactivate(&self, _: &str, _: &str, _: &str) -> Result<(), ServiceError> {
            unreachable!("a rotation never deactivates")
        }
    }

    impl Rotator for Fake {
        fn create_key<'a>(&'a self, _: &'a str, user: &'a str) -> BoxFuture<'a, Result<NewKey, ServiceError>> {
            self.log.lock().unwrap().push(format!("create {user}"));
            Box::pin(std::future::ready(Ok(NewKey {
                access_key_id: format!("NEW-{user}"),
                secret_access_key: zeroize::Zeroizing::new(SECRET.into()),
            })))
        }
        fn delete_new_key<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            id: &'a str,
        ) -> BoxFuture<'a, Result<(), ServiceError>> {
            self.log.lock().unwrap().push(format!("delete {id}"));
            Box::pin(std::future::ready(Ok(())))
        }
        fn store<'a>(
            &'a self,
            _: &'a str,
            name: &'a str,
            key: &'a NewKey,
        ) -> BoxFuture<'a, Result<String, ServiceError>> {
            self.log
                .lock()
                .unwrap()
                .push(format!("store {} in {name}", key.access_key_id));
            let answer = if self.store_fails {
                Err(ServiceError::from("AccessDeniedException: no"))
            } else {
                Ok(format!("arn:aws:secretsmanager:us-east-1:1:secret:{name}-AbCdEf"))
            };
            Box::pin(std::future::ready(answer))
        }
        fn store_password<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a str,
            _: &'a zeroize::Zeroizing<String>,
        ) -> BoxFuture<'a, Result<String, ServiceError>> {
            unreachable!("a rotation hands over keys only")
        }
    }

    fn fake(users: Vec<User>, store_fails: bool) -> Fake {
        Fake {
            users,
            store_fails,
            log: Mutex::new(Vec::new()),
        }
    }

    fn request<'a>(user: &'a str, mode: Mode, run: &'a RunInfo) -> Request<'a> {
        Request {
            account_id: "1",
            user,
            reason: "SEC-1",
            secret_id: None,
            secret_prefix: "keywarden/",
            operator: "alice",
            mode,
            own_access_key_id: None,
            now: now(),
            run,
        }
    }

    fn journaled(j: &MemoryJournal) -> Vec<JournalEntry> {
        j.entries.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn a_failed_hand_over_deletes_the_new_key_and_journals_no_secret() {
        let (f, j, run) = (
            fake(vec![user("app", &["OLD"], false)], true),
            MemoryJournal::default(),
            RunInfo::for_tests(),
        );
        let err = rotate(&request("app", Mode::Enforce, &run), &f, &f, &j)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RotateError::Failed(ref m) if m.contains("deleted again")),
            "{err}"
        );
        assert_eq!(
            *f.log.lock().unwrap(),
            ["create app", "store NEW-app in keywarden/1/app", "delete NEW-app"]
        );
        let e = &journaled(&j)[0];
        assert_eq!((e.outcome.as_str(), e.access_key_id.as_str()), ("error", "OLD"));
        assert_eq!(e.secret_arn, None);
        assert!(!format!("{e:?}").contains(SECRET));
    }

    #[tokio::test]
    async fn a_rotation_journals_both_keys_and_the_secret_arn_and_dry_run_makes_nothing() {
        let (f, j, run) = (
            fake(vec![user("app", &["OLD"], false)], false),
            MemoryJournal::default(),
            RunInfo::for_tests(),
        );
        let done = rotate(&request("app", Mode::Enforce, &run), &f, &f, &j).await.unwrap();
        assert_eq!(done.new_access_key_id.as_deref(), Some("NEW-app"));
        let e = &journaled(&j)[0];
        assert_eq!((e.action, e.outcome.as_str()), (JournalAction::Rotate, "success"));
        assert_eq!(e.new_access_key_id.as_deref(), Some("NEW-app"));
        assert!(e.secret_arn.as_deref().is_some_and(|a| a.contains("keywarden/1/app")));
        assert!(!format!("{e:?} {done:?}").contains(SECRET));

        let (f, j) = (
            fake(vec![user("app", &["OLD"], false)], false),
            MemoryJournal::default(),
        );
        let done = rotate(&request("app", Mode::DryRun, &run), &f, &f, &j).await.unwrap();
        assert_eq!((done.outcome(), f.log.lock().unwrap().len()), ("dry_run", 0));
        assert_eq!(journaled(&j)[0].outcome, "dry_run");
    }

    #[tokio::test]
    async fn a_refusal_makes_and_journals_nothing() {
        let (f, j, run) = (
            fake(vec![user("pair", &["A", "B"], false)], false),
            MemoryJournal::default(),
            RunInfo::for_tests(),
        );
        let err = rotate(&request("pair", Mode::Enforce, &run), &f, &f, &j)
            .await
            .unwrap_err();
        assert_eq!(err.outcome(), "refused");
        assert!(f.log.lock().unwrap().is_empty() && journaled(&j).is_empty());
    }

    #[tokio::test]
    async fn the_daemon_rotates_within_its_budget_and_once_per_key_and_mode() {
        let users = vec![
            user("a", &["KA"], true),
            user("b", &["KB"], true),
            user("c", &["KC"], false),
        ];
        let accounts = vec![AccountInventory {
            account_id: "1".into(),
            users: users.clone(),
            ..Default::default()
        }];
        let (f, j, run) = (fake(users, false), MemoryJournal::default(), RunInfo::for_tests());
        let auto_at = |mode, budget| Auto {
            secret_prefix: "keywarden/",
            max_age: TimeDelta::days(90),
            auto_before: TimeDelta::days(14),
            mode,
            budget,
            now: now(),
            run: &run,
        };
        let first = auto(&auto_at(Mode::DryRun, 1), &accounts, &f, &f, &j, &SoleInstance).await;
        assert_eq!(first, ["dry_run"], "the budget allows one");
        let second = auto(&auto_at(Mode::DryRun, 5), &accounts, &f, &f, &j, &SoleInstance).await;
        assert_eq!(second, ["dry_run"], "only the one not journaled yet");
        assert!(auto(&auto_at(Mode::DryRun, 5), &accounts, &f, &f, &j, &SoleInstance)
            .await
            .is_empty());
        let enforced = auto(&auto_at(Mode::Enforce, 5), &accounts, &f, &f, &j, &SoleInstance).await;
        assert_eq!(
            enforced,
            ["success", "success"],
            "a dry-run's note does not stop enforcing"
        );
        assert!(auto(&auto_at(Mode::Enforce, 5), &accounts, &f, &f, &j, &SoleInstance)
            .await
            .is_empty());
        assert!(
            !f.log.lock().unwrap().iter().any(|l| l.contains("create c")),
            "untagged"
        );
    }
}

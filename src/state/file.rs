//! The state file: when each finding was first seen, so grace periods survive restarts.
//!
//! Format (JSON): `{"schema_version": 1, "last_run": RFC3339, "findings": [{"account_id",
//! "user", "access_key_id", "rule", "first_seen"}], "failures": [{"account_id", "user",
//! "access_key_id", "attempts", "last_error", "last_attempt", "next_attempt"}]}` (`last_run`
//! and `failures` are optional, so files of earlier versions read as before). Written
//! atomically (temp file with mode 0600, fsync, rename, fsync of the directory). A missing
//! file means "no history"; a corrupt or unreadable one is an error, never silently treated
//! as empty, because that would restart every grace period.
//!
//! One writer: a run holds [`Lock`] (flock of `<state>.lock`) from before it reads the state
//! until after its last write, so `run --once` next to the daemon cannot interleave with it.

use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::history::{Entry, Failure, Snooze, State};
use crate::core::model::Timestamp;
use crate::core::policy::Rule;
use crate::ports::{StateStore, StoreError};
use crate::state::atomic::write_atomically;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {}: locked by another keywarden run (lock file {}); try again when it ends", path.display(), lock.display())]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("state file {}: cannot lock {}: {source}", path.display(), lock.display())]
    Lock {
        path: PathBuf,
        lock: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("state file {}: not valid keywarden state: {source}", path.display())]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("state file {}: schema version {found} is not supported (this keywarden reads {SCHEMA_VERSION})", path.display())]
    Version { path: PathBuf, found: u32 },
    #[error("state file {}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// The file's form of a finding's first sighting (the in-memory one is `core::history::Entry`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FindingDoc {
    pub(crate) account_id: String,
    pub(crate) user: String,
    pub(crate) access_key_id: String,
    /// `Rule::as_str`.
    pub(crate) rule: String,
    #[serde(with = "crate::sys::timefmt")]
    pub(crate) first_seen: Timestamp,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FailureDoc {
    pub(crate) account_id: String,
    pub(crate) user: String,
    pub(crate) access_key_id: String,
    pub(crate) attempts: u32,
    pub(crate) last_error: String,
    #[serde(with = "crate::sys::timefmt")]
    pub(crate) last_attempt: Timestamp,
    #[serde(with = "crate::sys::timefmt")]
    pub(crate) next_attempt: Timestamp,
}

impl TryFrom<FindingDoc> for Entry {
    type Error = String;

    fn try_from(d: FindingDoc) -> Result<Entry, String> {
        Ok(Entry {
            rule: Rule::parse(&d.rule).ok_or_else(|| format!("unknown rule {:?}", d.rule))?,
            account_id: d.account_id,
            user: d.user,
            access_key_id: d.access_key_id,
            first_seen: d.first_seen,
        })
    }
}

impl From<&Entry> for FindingDoc {
    fn from(e: &Entry) -> FindingDoc {
        FindingDoc {
            account_id: e.account_id.clone(),
            user: e.user.clone(),
            access_key_id: e.access_key_id.clone(),
            rule: e.rule.as_str().to_string(),
            first_seen: e.first_seen,
        }
    }
}

impl From<FailureDoc> for Failure {
    fn from(d: FailureDoc) -> Failure {
        Failure {
            account_id: d.account_id,
            user: d.user,
            access_key_id: d.access_key_id,
            attempts: d.attempts,
            last_error: d.last_error,
            last_attempt: d.last_attempt,
            next_attempt: d.next_attempt,
        }
    }
}

impl From<&Failure> for FailureDoc {
    fn from(f: &Failure) -> FailureDoc {
        FailureDoc {
            account_id: f.account_id.clone(),
            user: f.user.clone(),
            access_key_id: f.access_key_id.clone(),
            attempts: f.attempts,
            last_error: f.last_error.clone(),
            last_attempt: f.last_attempt,
            next_attempt: f.next_attempt,
        }
    }
}

/// A key reactivated by an operator, not deactivated again before `until`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SnoozeDoc {
    pub(crate) account_id: String,
    pub(crate) user: String,
    pub(crate) access_key_id: String,
    #[serde(with = "crate::sys::timefmt")]
    pub(crate) until: Timestamp,
    pub(crate) reason: String,
}

/// A dry-run decision already journaled (for the grace period that began at `first_seen`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DryRunDoc {
    pub(crate) account_id: String,
    pub(crate) access_key_id: String,
    #[serde(with = "crate::sys::timefmt")]
    pub(crate) first_seen: Timestamp,
}

/// A live-use hold already journaled (`usage.hold_live_keys`), by when it ends.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HoldDoc {
    pub(crate) account_id: String,
    pub(crate) access_key_id: String,
    #[serde(with = "crate::sys::timefmt")]
    pub(crate) until: Timestamp,
}

/// A user's key ids from its last listing (`core::history::KeyNames`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct KeyNamesDoc {
    pub(crate) account_id: String,
    pub(crate) user: String,
    pub(crate) keys: Vec<NamedKeyDoc>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct NamedKeyDoc {
    pub(crate) access_key_id: String,
    #[serde(with = "crate::sys::timefmt")]
    pub(crate) created: Timestamp,
}

/// A user's other credentials as last read (`core::history::Listing`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ListingDoc {
    pub(crate) account_id: String,
    pub(crate) user: String,
    pub(crate) kinds: Vec<String>,
    pub(crate) credentials: Vec<CredentialDoc>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CredentialDoc {
    pub(crate) credential_type: String,
    pub(crate) credential_id: String,
    pub(crate) status: String,
    #[serde(with = "crate::sys::timefmt")]
    pub(crate) created: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) service: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::sys::timefmt::option"
    )]
    pub(crate) expires: Option<Timestamp>,
}

impl From<&crate::core::history::Listing> for ListingDoc {
    fn from(l: &crate::core::history::Listing) -> ListingDoc {
        ListingDoc {
            account_id: l.account_id.clone(),
            user: l.user.clone(),
            kinds: l.kinds.iter().map(|k| k.as_str().to_string()).collect(),
            credentials: l
                .credentials
                .iter()
                .map(|c| CredentialDoc {
                    credential_type: c.kind.as_str().to_string(),
                    credential_id: c.id.clone(),
                    status: c.status.as_str().to_string(),
                    created: c.created,
                    service: c.service.clone(),
                    expires: c.expires,
                })
                .collect(),
        }
    }
}

impl TryFrom<ListingDoc> for crate::core::history::Listing {
    type Error = String;

    /// A name this version does not know is an error naming it, never a credential dropped.
    fn try_from(d: ListingDoc) -> Result<Self, String> {
        use crate::core::model::{CredentialStatus, CredentialType};
        let kind = |t: &str| CredentialType::parse(t).ok_or_else(|| format!("unknown credential_type {t:?}"));
        let kinds = d.kinds.iter().map(|k| kind(k)).collect::<Result<Vec<_>, _>>()?;
        let credentials = d
            .credentials
            .into_iter()
            .map(|c| {
                Ok(crate::core::model::Credential {
                    kind: kind(&c.credential_type)?,
                    status: CredentialStatus::parse(&c.status)
                        .ok_or_else(|| format!("unknown status {:?}", c.status))?,
                    id: c.credential_id,
                    created: c.created,
                    last_used: None,
                    service: c.service,
                    expires: c.expires,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(crate::core::history::Listing {
            account_id: d.account_id,
            user: d.user,
            kinds,
            credentials,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct File {
    pub(crate) schema_version: u32,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::sys::timefmt::option"
    )]
    pub(crate) last_run: Option<Timestamp>,
    pub(crate) findings: Vec<FindingDoc>,
    #[serde(default)]
    pub(crate) failures: Vec<FailureDoc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) snoozes: Vec<SnoozeDoc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) dry_run_journaled: Vec<DryRunDoc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) holds_journaled: Vec<HoldDoc>,
    /// Deactivations begun and not yet journaled, as journal lines (`State::begin_action`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) pending_deactivations: Vec<crate::state::journal::JournalDoc>,
    /// Key ids by user, so that a credential-report run lists only changed users. Older
    /// files have none: the next run lists every user once, as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) key_names: Vec<KeyNamesDoc>,
    /// Other credentials by user, as last read. Older files have none: they are read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) listings: Vec<ListingDoc>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) runs_since_full_read: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// `Ok(None)` when the file does not exist.
pub fn load(path: &Path) -> Result<Option<State>, StateError> {
    let bytes = match crate::sys::files::read_bounded(path, crate::sys::files::DATA_LIMIT) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    // Read the version first so a future schema gives a version error, not a parse error.
    #[derive(Deserialize)]
    struct Version {
        schema_version: u32,
    }
    let corrupt = |source| StateError::Corrupt {
        path: path.to_path_buf(),
        source,
    };
    let v: Version = serde_json::from_slice(&bytes).map_err(corrupt)?;
    if v.schema_version != SCHEMA_VERSION {
        return Err(StateError::Version {
            path: path.to_path_buf(),
            found: v.schema_version,
        });
    }
    let file: File = serde_json::from_slice(&bytes).map_err(corrupt)?;
    from_doc(file)
        .map(Some)
        .map_err(|m| corrupt(serde::de::Error::custom(m)))
}

/// The file's form -> the state (also the table's, item by item: `state::items`).
pub(crate) fn from_doc(file: File) -> Result<State, String> {
    let entries = file
        .findings
        .into_iter()
        .map(Entry::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    let mut state = State::from_entries(entries);
    for f in file.failures {
        state.set_failure(f.into());
    }
    for d in file.snoozes {
        state.set_snooze(Snooze {
            account_id: d.account_id,
            user: d.user,
            access_key_id: d.access_key_id,
            until: d.until,
            reason: d.reason,
        });
    }
    for d in file.dry_run_journaled {
        state.note_dry_run(&d.account_id, &d.access_key_id, d.first_seen);
    }
    for d in file.holds_journaled {
        state.note_hold(&d.account_id, &d.access_key_id, d.until);
    }
    for d in file.pending_deactivations {
        state.begin_action(crate::core::journal::JournalEntry::try_from(d)?);
    }
    for d in file.key_names {
        state.set_key_names(crate::core::history::KeyNames {
            account_id: d.account_id,
            user: d.user,
            keys: d.keys.into_iter().map(|k| (k.access_key_id, k.created)).collect(),
        });
    }
    for d in file.listings {
        state.set_listing(d.try_into()?);
    }
    state.runs_since_full_read = file.runs_since_full_read;
    state.last_run = file.last_run;
    Ok(state)
}

/// Replaces the file atomically: a crash leaves either the old or the new content.
pub fn save(path: &Path, state: &State) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let body = serde_json::to_vec_pretty(&to_doc(state)).map_err(|e| err(std::io::Error::other(e)))?;
    write_atomically(path, &body).map_err(err)
}

/// The state -> the file's form, every list sorted (a diff of two files shows what changed).
pub(crate) fn to_doc(state: &State) -> File {
    let mut findings: Vec<FindingDoc> = state.entries().map(FindingDoc::from).collect();
    findings
        .sort_by(|a, b| (&a.account_id, &a.access_key_id, &a.rule).cmp(&(&b.account_id, &b.access_key_id, &b.rule)));
    let mut failures: Vec<FailureDoc> = state.failures().map(FailureDoc::from).collect();
    failures.sort_by(|a, b| (&a.account_id, &a.access_key_id).cmp(&(&b.account_id, &b.access_key_id)));
    let mut snoozes: Vec<SnoozeDoc> = state
        .snoozes()
        .map(|s| SnoozeDoc {
            account_id: s.account_id.clone(),
            user: s.user.clone(),
            access_key_id: s.access_key_id.clone(),
            until: s.until,
            reason: s.reason.clone(),
        })
        .collect();
    snoozes.sort_by(|a, b| (&a.account_id, &a.access_key_id).cmp(&(&b.account_id, &b.access_key_id)));
    let mut dry_run_journaled: Vec<DryRunDoc> = state
        .dry_run_notes()
        .map(|(account_id, access_key_id, first_seen)| DryRunDoc {
            account_id: account_id.to_string(),
            access_key_id: access_key_id.to_string(),
            first_seen,
        })
        .collect();
    dry_run_journaled.sort_by(|a, b| (&a.account_id, &a.access_key_id).cmp(&(&b.account_id, &b.access_key_id)));
    let mut holds_journaled: Vec<HoldDoc> = state
        .hold_notes()
        .map(|(account_id, access_key_id, until)| HoldDoc {
            account_id: account_id.to_string(),
            access_key_id: access_key_id.to_string(),
            until,
        })
        .collect();
    holds_journaled.sort_by(|a, b| (&a.account_id, &a.access_key_id).cmp(&(&b.account_id, &b.access_key_id)));
    let mut pending_deactivations: Vec<crate::state::journal::JournalDoc> =
        state.intents().map(crate::state::journal::JournalDoc::from).collect();
    pending_deactivations.sort_by(|a, b| (&a.account_id, &a.access_key_id).cmp(&(&b.account_id, &b.access_key_id)));
    let mut key_names: Vec<KeyNamesDoc> = state
        .all_key_names()
        .map(|k| KeyNamesDoc {
            account_id: k.account_id.clone(),
            user: k.user.clone(),
            keys: k
                .keys
                .iter()
                .map(|(id, created)| NamedKeyDoc {
                    access_key_id: id.clone(),
                    created: *created,
                })
                .collect(),
        })
        .collect();
    key_names.sort_by(|a, b| (&a.account_id, &a.user).cmp(&(&b.account_id, &b.user)));
    let mut listings: Vec<ListingDoc> = state.all_listings().map(ListingDoc::from).collect();
    listings.sort_by(|a, b| (&a.account_id, &a.user).cmp(&(&b.account_id, &b.user)));
    File {
        schema_version: SCHEMA_VERSION,
        last_run: state.last_run,
        findings,
        failures,
        snoozes,
        dry_run_journaled,
        holds_journaled,
        pending_deactivations,
        key_names,
        listings,
        runs_since_full_read: state.runs_since_full_read,
    }
}

/// The state file behind the [`StateStore`] port; runs lock it for `lock_wait` at most.
pub struct FileStore {
    path: PathBuf,
    lock_wait: Duration,
}

impl FileStore {
    pub fn new(path: &Path, lock_wait: Duration) -> FileStore {
        FileStore {
            path: path.to_path_buf(),
            lock_wait,
        }
    }
}

impl StateStore for FileStore {
    type Guard = Lock;

    async fn lock(&self) -> Result<Lock, StoreError> {
        Lock::acquire(&self.path, self.lock_wait)
            .await
            .map_err(|e| StoreError(e.to_string()))
    }

    async fn load(&self) -> Result<Option<State>, StoreError> {
        load(&self.path).map_err(|e| StoreError(e.to_string()))
    }

    async fn save(&self, state: &State) -> Result<(), StoreError> {
        save(&self.path, state).map_err(|e| StoreError(e.to_string()))
    }
}

/// The exclusive lock of one state file, held for a whole run; released on drop (the kernel
/// also releases it when the process dies, so a crash never leaves it stuck).
#[derive(Debug)]
pub struct Lock {
    _file: std::fs::File,
}

impl Lock {
    /// Waits up to `wait` for the lock of `path` (the file `<path>.lock`, created with mode
    /// 0600 if missing).
    pub async fn acquire(path: &Path, wait: Duration) -> Result<Lock, StateError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match Lock::try_acquire(path)? {
                Some(lock) => return Ok(lock),
                None if tokio::time::Instant::now() >= deadline => {
                    return Err(StateError::Locked {
                        path: path.to_path_buf(),
                        lock: lock_path(path),
                    })
                }
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// `Ok(None)`: another process holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<Lock>, StateError> {
        let lock = lock_path(path);
        let io_err = |source| StateError::Lock {
            path: path.to_path_buf(),
            lock: lock.clone(),
            source,
        };
        // Never through a link planted at the lock's name.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&lock)
            .map_err(io_err)?;
        // SAFETY: flock on a descriptor owned by `file`, which outlives the call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Some(Lock { _file: file }));
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(io_err(e))
        }
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::FirstSeen;
    use chrono::TimeZone;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "keywarden-state-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip_and_missing_file() {
        let d = dir();
        let p = d.join("state.json");
        let _ = std::fs::remove_file(&p);
        assert_eq!(load(&p).unwrap(), None);
        let t = chrono::Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
        let s = State::from_entries([Entry {
            account_id: "1".into(),
            user: "alice".into(),
            access_key_id: "AKIA1".into(),
            rule: Rule::UnusedKey,
            first_seen: t,
        }]);
        save(&p, &s).unwrap();
        let back = load(&p).unwrap().unwrap();
        assert_eq!(back, s);
        assert_eq!(back.first_seen("1", "AKIA1", Rule::UnusedKey), Some(t));
        assert_eq!(back.first_seen("1", "AKIA1", Rule::MaxKeyAge), None);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn one_lock_holder_at_a_time() {
        let d = dir();
        let p = d.join("locked.json");
        let first = Lock::try_acquire(&p).unwrap().expect("free");
        assert!(Lock::try_acquire(&p).unwrap().is_none(), "held");
        drop(first);
        assert!(Lock::try_acquire(&p).unwrap().is_some(), "released on drop");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn corrupt_and_future_files_are_errors_naming_the_file() {
        let d = dir();
        let p = d.join("bad.json");
        std::fs::write(&p, b"{\"schema_version\": 1, \"findings\": [").unwrap();
        let e = load(&p).unwrap_err();
        assert!(matches!(e, StateError::Corrupt { .. }));
        assert!(e.to_string().contains("bad.json"), "{e}");
        std::fs::write(&p, b"{\"schema_version\": 9, \"findings\": []}").unwrap();
        assert!(matches!(load(&p).unwrap_err(), StateError::Version { found: 9, .. }));
        std::fs::remove_dir_all(&d).unwrap();
    }
}

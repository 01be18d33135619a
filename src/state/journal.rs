//! The action journal as a file of JSON lines (`state.journal_path`, next to the state file by
//! default), behind the `ActionJournal` port.
//!
//! - Appends are one `write` of whole lines to a file opened with `O_APPEND`, then `fsync`,
//!   before the run goes on to the next key: an action is on disk before the next one starts.
//! - A process killed mid-append leaves a torn last line. Reading skips it and reports it
//!   (never fatal); the next append first ends it with a newline, so it stays one bad line
//!   instead of corrupting the entry written after it.
//! - Size: entries older than `state.journal_retention` (400 days by default) are dropped by
//!   rewriting the file atomically, at most once per process and day, when the oldest entry
//!   has passed the retention.

use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

use crate::core::journal::{JournalAction, JournalEntry, RunInfo};
use crate::core::model::{CredentialType, Timestamp};
use crate::core::policy::Rule;
use crate::ports::{ActionJournal, BoxFuture, JournalRead, StoreError};

/// The line form of an entry: the field names docs/names.md documents (`history --format json`).
#[derive(Debug, Serialize, Deserialize)]
pub struct JournalDoc {
    #[serde(with = "crate::sys::timefmt")]
    pub time: Timestamp,
    pub action: String,
    pub mode: String,
    pub account_id: String,
    pub user: String,
    /// Absent in lines written before there were other kinds: `access_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    /// Access keys only (every line of older versions has it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    pub rules: Vec<String>,
    #[serde(default, with = "crate::sys::timefmt::option")]
    pub first_seen: Option<Timestamp>,
    #[serde(default, with = "crate::sys::timefmt::option")]
    pub deadline: Option<Timestamp>,
    pub outcome: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_arn: Option<String>,
    /// A login profile's deletion: the settings it had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_profile: Option<LoginProfileDoc>,
    pub run_id: String,
    pub host: String,
    pub version: String,
}

/// A deleted login profile's settings, as journaled.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginProfileDoc {
    #[serde(with = "crate::sys::timefmt")]
    pub created: Timestamp,
    pub password_reset_required: bool,
}

impl JournalDoc {
    /// The credential's id, whichever field carries it.
    pub fn id(&self) -> &str {
        self.credential_id
            .as_deref()
            .or(self.access_key_id.as_deref())
            .unwrap_or_default()
    }
}

impl From<&JournalEntry> for JournalDoc {
    fn from(e: &JournalEntry) -> JournalDoc {
        JournalDoc {
            time: e.time,
            action: e.action.as_str().to_string(),
            mode: e.mode.clone(),
            account_id: e.account_id.clone(),
            user: e.user.clone(),
            credential_type: Some(e.credential_type.as_str().to_string()),
            credential_id: Some(e.access_key_id.clone()),
            access_key_id: (e.credential_type == CredentialType::AccessKey).then(|| e.access_key_id.clone()),
            rules: e.rules.iter().map(|r| r.as_str().to_string()).collect(),
            first_seen: e.first_seen,
            deadline: e.deadline,
            outcome: e.outcome.clone(),
            error: e.error.clone(),
            reason: e.reason.clone(),
            operator: e.operator.clone(),
            new_access_key_id: e.new_access_key_id.clone(),
            secret_arn: e.secret_arn.clone(),
            login_profile: e.login_profile.map(|p| LoginProfileDoc {
                created: p.created,
                password_reset_required: p.password_reset_required,
            }),
            run_id: e.run.run_id.clone(),
            host: e.run.host.clone(),
            version: e.run.version.clone(),
        }
    }
}

impl TryFrom<JournalDoc> for JournalEntry {
    type Error = String;

    fn try_from(d: JournalDoc) -> Result<JournalEntry, String> {
        let action = JournalAction::parse(&d.action).ok_or_else(|| format!("unknown action {:?}", d.action))?;
        let rules = d
            .rules
            .iter()
            .map(|r| Rule::parse(r).ok_or_else(|| format!("unknown rule {r:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        let credential_type = match d.credential_type.as_deref() {
            None => CredentialType::AccessKey,
            Some(t) => CredentialType::parse(t).ok_or_else(|| format!("unknown credential_type {t:?}"))?,
        };
        let id = d
            .credential_id
            .or(d.access_key_id)
            .ok_or("neither credential_id nor access_key_id")?;
        Ok(JournalEntry {
            time: d.time,
            action,
            mode: d.mode,
            account_id: d.account_id,
            user: d.user,
            credential_type,
            access_key_id: id,
            rules,
            first_seen: d.first_seen,
            deadline: d.deadline,
            outcome: d.outcome,
            error: d.error,
            reason: d.reason,
            operator: d.operator,
            new_access_key_id: d.new_access_key_id,
            secret_arn: d.secret_arn,
            login_profile: d.login_profile.map(|p| crate::core::model::LoginProfile {
                created: p.created,
                password_reset_required: p.password_reset_required,
            }),
            run: RunInfo {
                run_id: d.run_id,
                host: d.host,
                version: d.version,
            },
        })
    }
}

pub fn to_line(e: &JournalEntry) -> String {
    // Serializing plain strings and numbers cannot fail.
    serde_json::to_string(&JournalDoc::from(e)).unwrap_or_default()
}

pub struct FileJournal {
    path: PathBuf,
    retention: TimeDelta,
    /// When retention was last applied by this process.
    compacted: Mutex<Option<Timestamp>>,
}

impl FileJournal {
    pub fn new(path: &Path, retention: TimeDelta) -> FileJournal {
        FileJournal {
            path: path.to_path_buf(),
            retention,
            compacted: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError(format!("action journal {}: {what}: {e}", self.path.display()))
    }

    fn append_lines(&self, lines: &str) -> std::io::Result<()> {
        // Never through a link: a link planted where the journal goes would have keywarden
        // append to whatever file it names.
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)?;
        let mut text = String::with_capacity(lines.len() + 1);
        // End a torn last line first, so the new entry starts on a line of its own.
        let len = f.seek(SeekFrom::End(0))?;
        if len > 0 {
            let mut last = [0u8; 1];
            f.seek(SeekFrom::End(-1))?;
            f.read_exact(&mut last)?;
            if last[0] != b'\n' {
                text.push('\n');
            }
        }
        text.push_str(lines);
        f.write_all(text.as_bytes())?;
        f.sync_data()
    }

    /// Drops entries older than the retention (once a day per process at most).
    fn apply_retention(&self, now: Timestamp) -> Result<(), StoreError> {
        let Ok(mut last) = self.compacted.lock() else {
            return Ok(());
        };
        if last.is_some_and(|t| now - t < TimeDelta::days(1)) {
            return Ok(());
        }
        *last = Some(now);
        let cutoff = now - self.retention;
        let oldest = match crate::sys::files::open_regular(&self.path) {
            Ok(f) => std::io::BufReader::new(f)
                .lines()
                .next()
                .and_then(Result::ok)
                .and_then(|l| serde_json::from_str::<JournalDoc>(&l).ok())
                .map(|d| d.time),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.error("cannot read", e)),
        };
        if oldest.is_none_or(|t| t >= cutoff) {
            return Ok(());
        }
        let text = crate::sys::files::read_text(&self.path, crate::sys::files::DATA_LIMIT)
            .map_err(|e| self.error("cannot read", e))?;
        let kept: String = text
            .lines()
            .filter(|l| serde_json::from_str::<JournalDoc>(l).map_or(true, |d| d.time >= cutoff))
            .flat_map(|l| [l, "\n"])
            .collect();
        crate::state::atomic::write_atomically(&self.path, kept.as_bytes()).map_err(|e| self.error("cannot rewrite", e))
    }
}

impl ActionJournal for FileJournal {
    fn append<'a>(&'a self, entries: &'a [JournalEntry]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(self.append_now(entries)))
    }

    fn read(&self) -> BoxFuture<'_, Result<JournalRead, StoreError>> {
        Box::pin(std::future::ready(self.read_now()))
    }
}

// Plain file I/O of a few lines, fsynced: done in place rather than on a blocking thread,
// like the state file's (a run acts on one key at a time anyway).
impl FileJournal {
    pub fn append_now(&self, entries: &[JournalEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        if let Some(now) = entries.iter().map(|e| e.time).max() {
            self.apply_retention(now)?;
        }
        let lines: String = entries.iter().flat_map(|e| [to_line(e), "\n".to_string()]).collect();
        self.append_lines(&lines).map_err(|e| self.error("cannot append", e))
    }

    pub fn read_now(&self) -> Result<JournalRead, StoreError> {
        let text = match crate::sys::files::read_bounded(&self.path, crate::sys::files::DATA_LIMIT) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(JournalRead::default()),
            Err(e) => return Err(self.error("cannot read", e)),
        };
        let mut read = JournalRead::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let parsed = serde_json::from_str::<JournalDoc>(line)
                .map_err(|e| e.to_string())
                .and_then(JournalEntry::try_from);
            match parsed {
                Ok(e) => read.entries.push(e),
                Err(e) => read
                    .skipped
                    .push(format!("{}: line {}: {e} (skipped)", self.path.display(), i + 1)),
            }
        }
        // File order is append order; a clock set back could disorder it, so sort by time.
        read.entries.sort_by_key(|e| e.time);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn entry(day: u32, key: &str) -> JournalEntry {
        let time = chrono::Utc.with_ymd_and_hms(2026, 1, day, 0, 0, 0).unwrap();
        crate::core::journal::sample_entry(time, "u", key)
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kw-journal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_journal_that_is_a_link_is_refused_not_appended_through() {
        let d = dir("link");
        let victim = d.join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let path = d.join("actions.jsonl");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let j = FileJournal::new(&path, TimeDelta::days(400));
        let e = j.append_now(&[entry(1, "AK1")]).unwrap_err();
        assert!(e.0.contains("actions.jsonl"), "{}", e.0);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    }

    #[test]
    fn entries_round_trip_and_a_torn_line_is_skipped_and_reported() {
        let d = dir("torn");
        let path = d.join("actions.jsonl");
        let j = FileJournal::new(&path, TimeDelta::days(400));
        j.append_now(&[entry(1, "AK1")]).unwrap();
        // kill -9 in the middle of the second append:
        let torn = &to_line(&entry(2, "AK2"))[..40];
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(torn.as_bytes())
            .unwrap();
        j.append_now(&[entry(3, "AK3")]).unwrap();
        let read = j.read_now().unwrap();
        let keys: Vec<&str> = read.entries.iter().map(|e| e.access_key_id.as_str()).collect();
        assert_eq!(keys, ["AK1", "AK3"]);
        assert_eq!(read.entries[0], entry(1, "AK1"));
        assert_eq!(read.skipped.len(), 1, "{:?}", read.skipped);
        assert!(read.skipped[0].contains("line 2"), "{:?}", read.skipped);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_missing_journal_is_empty_and_retention_drops_old_entries() {
        let d = dir("retention");
        let path = d.join("actions.jsonl");
        let j = FileJournal::new(&path, TimeDelta::days(10));
        assert_eq!(j.read_now().unwrap(), JournalRead::default());
        FileJournal::new(&path, TimeDelta::days(400))
            .append_now(&[entry(1, "AK1"), entry(5, "AK5")])
            .unwrap();
        j.append_now(&[entry(20, "AK20")]).unwrap();
        let keys: Vec<String> = j
            .read_now()
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.access_key_id)
            .collect();
        assert_eq!(keys, ["AK20"]);
    }
}

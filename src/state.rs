//! The state file: when each finding was first seen, so grace periods survive restarts.
//!
//! Format (JSON): `{"schema_version": 1, "findings": [{"account_id", "user", "access_key_id",
//! "rule", "first_seen"}]}`. Written atomically (temp file, fsync, rename, fsync of the
//! directory). A missing file means "no history"; a corrupt or unreadable one is an error,
//! never silently treated as empty, because that would restart every grace period.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::Timestamp;
use crate::rules::{FirstSeen, Rule};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("state file {}: not valid keywarden state: {source}", path.display())]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("state file {}: schema version {found} is not supported (this keywarden reads {SCHEMA_VERSION})", path.display())]
    Version { path: PathBuf, found: u32 },
    #[error("state file {}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub account_id: String,
    pub user: String,
    pub access_key_id: String,
    pub rule: Rule,
    #[serde(with = "crate::timefmt")]
    pub first_seen: Timestamp,
}

#[derive(Debug, Serialize, Deserialize)]
struct File {
    schema_version: u32,
    findings: Vec<Entry>,
}

type Key = (String, String, Rule);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    entries: HashMap<Key, Entry>,
}

impl State {
    pub fn from_entries(entries: impl IntoIterator<Item = Entry>) -> State {
        State {
            entries: entries
                .into_iter()
                .map(|e| ((e.account_id.clone(), e.access_key_id.clone(), e.rule), e))
                .collect(),
        }
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Drops every finding of one key (it was deactivated: none of them holds any more).
    pub fn forget_key(&mut self, account_id: &str, access_key_id: &str) {
        self.entries
            .retain(|(a, k, _), _| a != account_id || k != access_key_id);
    }
}

impl FirstSeen for State {
    fn first_seen(&self, account_id: &str, access_key_id: &str, rule: Rule) -> Option<Timestamp> {
        self.entries
            .get(&(account_id.to_string(), access_key_id.to_string(), rule))
            .map(|e| e.first_seen)
    }
}

/// `Ok(None)` when the file does not exist.
pub fn load(path: &Path) -> Result<Option<State>, StateError> {
    let bytes = match std::fs::read(path) {
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
    Ok(Some(State::from_entries(file.findings)))
}

/// Replaces the file atomically: a crash leaves either the old or the new content.
pub fn save(path: &Path, state: &State) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut findings: Vec<Entry> = state.entries.values().cloned().collect();
    findings.sort_by(|a, b| (&a.account_id, &a.access_key_id, a.rule).cmp(&(&b.account_id, &b.access_key_id, b.rule)));
    let body = serde_json::to_vec_pretty(&File {
        schema_version: SCHEMA_VERSION,
        findings,
    })
    .map_err(|e| err(std::io::Error::other(e)))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A fixed name: a run killed mid-write leaves at most this one file, which the next save
    // truncates and reuses (one keywarden per state file).
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
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

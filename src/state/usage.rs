//! Usage profiles kept between runs: `usage.json` next to the state file (the file backend,
//! one host), written atomically after every change, as aggregates only (never raw events).
//! The document ([`UsageDoc`]) is the same in every backend.
//!
//! Every save reads the file again and replaces only its own keys' profiles, under the lock
//! file `usage.json.lock`: the daemon and `keywarden usage --backfill` on one host never lose
//! each other's keys (the last save of one key wins).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::core::model::Timestamp;
use crate::core::usage::backfill::{Cursor, Progress};
use crate::core::usage::profile::{Counted, Profile};
use crate::ports::{StoreError, UsageStore};

const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct File {
    schema_version: u32,
    profiles: Vec<UsageDoc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CountedDoc {
    value: String,
    count: u64,
}

/// One profile as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UsageDoc {
    account_id: String,
    access_key_id: String,
    events: u64,
    first_event: Option<Timestamp>,
    last_event: Option<Timestamp>,
    last_source: Option<String>,
    sources: Vec<CountedDoc>,
    user_agents: Vec<CountedDoc>,
    regions: Vec<String>,
    actions: Vec<String>,
    actions_complete: bool,
    days: BTreeMap<NaiveDate, u32>,
    live_since: Option<Timestamp>,
    recent_ids: Vec<u32>,
    backfill_end: Option<Timestamp>,
    backfill_pages: u32,
    backfill: String,
    /// Moves on at every save (optimistic concurrency between writers).
    #[serde(default)]
    revision: u64,
}

fn counted(list: &[Counted]) -> Vec<CountedDoc> {
    list.iter()
        .map(|c| CountedDoc {
            value: c.value.to_string(),
            count: c.count,
        })
        .collect()
}

fn from_counted(list: Vec<CountedDoc>) -> Vec<Counted> {
    list.into_iter()
        .map(|c| Counted {
            value: crate::core::usage::names::intern(&c.value),
            count: c.count,
        })
        .collect()
}

impl From<&Profile> for UsageDoc {
    fn from(p: &Profile) -> UsageDoc {
        UsageDoc {
            account_id: p.account_id.clone(),
            access_key_id: p.access_key_id.clone(),
            events: p.events,
            first_event: p.first_event,
            last_event: p.last_event,
            last_source: p.last_source.as_deref().map(str::to_string),
            sources: counted(&p.sources),
            user_agents: counted(&p.user_agents),
            regions: p.regions.iter().map(str::to_string).collect(),
            actions: p.actions.iter().map(str::to_string).collect(),
            actions_complete: p.actions_complete,
            days: p.days.iter().copied().collect(),
            live_since: p.live_since,
            recent_ids: p.recent_ids.iter().copied().collect(),
            backfill_end: p.backfill.end,
            backfill_pages: p.backfill.pages,
            backfill: p.backfill.state.as_str().to_string(),
            revision: p.revision,
        }
    }
}

impl TryFrom<UsageDoc> for Profile {
    type Error = String;

    fn try_from(d: UsageDoc) -> Result<Profile, String> {
        let state = Progress::parse(&d.backfill).ok_or_else(|| {
            format!(
                "profile of {}: unknown backfill state {:?}",
                d.access_key_id, d.backfill
            )
        })?;
        Ok(Profile {
            account_id: d.account_id,
            access_key_id: d.access_key_id,
            events: d.events,
            first_event: d.first_event,
            last_event: d.last_event,
            last_source: d.last_source.as_deref().map(crate::core::usage::names::intern),
            sources: from_counted(d.sources),
            user_agents: from_counted(d.user_agents),
            regions: d.regions.iter().collect(),
            actions: d.actions.iter().collect(),
            actions_complete: d.actions_complete,
            days: d.days.into_iter().collect(),
            live_since: d.live_since,
            recent_ids: VecDeque::from(d.recent_ids),
            backfill: Cursor {
                end: d.backfill_end,
                pages: d.backfill_pages,
                state,
            },
            revision: d.revision,
        })
    }
}

/// A profile as the JSON document every backend stores.
pub(crate) fn to_doc(p: &Profile) -> String {
    // A document of strings, numbers and lists: serializing it cannot fail.
    serde_json::to_string(&UsageDoc::from(p)).unwrap_or_default()
}

/// A stored document back to a profile; the error says what is wrong with it.
pub(crate) fn from_doc(doc: &str) -> Result<Profile, String> {
    let d: UsageDoc = serde_json::from_str(doc).map_err(|e| e.to_string())?;
    Profile::try_from(d)
}

/// The usage file of the file backend.
pub struct FileUsage {
    path: PathBuf,
}

impl FileUsage {
    /// `usage.json` next to `state_path`.
    pub fn beside(state_path: &Path) -> FileUsage {
        FileUsage {
            path: state_path.with_file_name("usage.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every profile, read now (the daemon's publishing is not async).
    pub fn read_all(&self) -> Result<Vec<Profile>, StoreError> {
        let bytes = match crate::sys::files::read_bounded(&self.path, crate::sys::files::DATA_LIMIT) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError(format!("cannot read {}: {e}", self.path.display()))),
        };
        let corrupt = |m: String| {
            StoreError(format!(
                "{} is not a usage file keywarden can read: {m}",
                self.path.display()
            ))
        };
        let file: File = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if file.schema_version != SCHEMA_VERSION {
            return Err(corrupt(format!(
                "schema_version {} (this keywarden reads {SCHEMA_VERSION})",
                file.schema_version
            )));
        }
        file.profiles
            .into_iter()
            .map(Profile::try_from)
            .collect::<Result<_, _>>()
            .map_err(corrupt)
    }

    fn write(&self, profiles: &[Profile]) -> Result<(), StoreError> {
        let file = File {
            schema_version: SCHEMA_VERSION,
            profiles: profiles.iter().map(UsageDoc::from).collect(),
        };
        let body = serde_json::to_vec_pretty(&file).map_err(|e| StoreError(e.to_string()))?;
        crate::state::atomic::write_atomically(&self.path, &body)
            .map_err(|e| StoreError(format!("cannot write {}: {e}", self.path.display())))
    }
}

impl UsageStore for FileUsage {
    async fn profiles(&self) -> Result<Vec<Profile>, StoreError> {
        self.read_all()
    }

    async fn read(&self, keys: &[(String, String)]) -> Result<Vec<Profile>, StoreError> {
        let wanted: std::collections::BTreeSet<&(String, String)> = keys.iter().collect();
        Ok(self
            .read_all()?
            .into_iter()
            .filter(|p| wanted.contains(&(p.account_id.clone(), p.access_key_id.clone())))
            .collect())
    }

    async fn save_all(
        &self,
        profiles: &mut [Profile],
        forget: &[(String, String)],
    ) -> Result<Vec<(String, String)>, StoreError> {
        // Read, check, write under `usage.json.lock`: the daemon and `keywarden usage
        // --backfill` may save at once, and neither may lose the other's counts.
        let _one = crate::state::file::Lock::acquire(&self.path, std::time::Duration::from_secs(10))
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        let slot = |p: &Profile| (p.account_id.clone(), p.access_key_id.clone());
        let mut all: BTreeMap<(String, String), Profile> =
            self.read_all()?.into_iter().map(|p| (slot(&p), p)).collect();
        let mut lost = Vec::new();
        let mut saved = Vec::new();
        for (i, p) in profiles.iter().enumerate() {
            let stored = all.get(&slot(p)).map_or(0, |s| s.revision);
            if stored != p.revision {
                lost.push(slot(p));
                continue;
            }
            let mut next = p.clone();
            next.revision += 1;
            all.insert(slot(p), next);
            saved.push(i);
        }
        for gone in forget {
            all.remove(gone);
        }
        self.write(&all.into_values().collect::<Vec<_>>())?;
        for i in saved {
            profiles[i].revision += 1;
        }
        Ok(lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::usage::event::UsageEvent;
    use crate::core::usage::profile::Feed;

    #[tokio::test]
    async fn a_profile_survives_the_file_and_another_keys_save_keeps_it() {
        let dir = std::env::temp_dir().join(format!("kw-usage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = FileUsage::beside(&dir.join("state.json"));
        let mut p = Profile::new("123456789012", "AKIAIOSFODNN7EXAMPLE");
        let e = UsageEvent {
            event_id: "e1".into(),
            time: chrono::DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z")
                .unwrap()
                .into(),
            account_id: "123456789012".into(),
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            service: "s3".into(),
            action: "ListBuckets".into(),
            region: "us-east-1".into(),
            source: "198.51.100.7".into(),
            user_agent: "aws-cli/2.15.30".into(),
        };
        p.record(&e, Feed::Backfill);
        p.backfill.page_read(Some(e.time), false);
        let stale = p.clone();
        let mut both = [p, Profile::new("123456789012", "AKIAOTHER0000000000X")];
        assert!(store.save_all(&mut both, &[]).await.unwrap().is_empty());
        let [p, _] = both;
        assert_eq!(p.revision, 1);
        let back = store.profiles().await.unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0], p, "every field round-trips");
        // A copy read before that save lost the race: refused, nothing of it written.
        let mut late = [stale.clone()];
        late[0].events = 99;
        let lost = store.save_all(&mut late, &[]).await.unwrap();
        assert_eq!(lost, [("123456789012".to_string(), "AKIAIOSFODNN7EXAMPLE".to_string())]);
        assert_eq!(late[0].revision, 0);
        assert_eq!(store.read(&lost).await.unwrap(), std::slice::from_ref(&p));
        std::fs::write(store.path(), b"{\"schema_version\": 9, \"profiles\": []}").unwrap();
        let err = store.profiles().await.unwrap_err();
        assert!(
            err.0.contains("usage.json") && err.0.contains("schema_version 9"),
            "{}",
            err.0
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

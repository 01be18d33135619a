//! The state store behind the `StateStore` port and the action journal behind
//! `ActionJournal`, in one of two backends (`state.backend`):
//! - `file`: a JSON file, written atomically and locked for a whole run (`file`), and JSON
//!   lines appended and fsynced (`journal`); one instance.
//! - `dynamodb`: one table (`table`) holding the state item by item (`items`), the journal and
//!   the leader lease (`dynamodb`, `lease`); any number of instances, one of which enforces.
//!
//! `atomic` replaces a file whole (the state file, the journal's rewrite, the usage file).
//! `usage` keeps the usage profiles of access keys (`usage.json` beside the state file, or
//! `usage_table`: items in the state table, merged by conditional writes). [`Store`] is a
//! command's choice of backend; [`Memory`] the daemon's, made once at start.

mod atomic;
pub mod dynamodb;
pub mod file;
pub mod items;
pub mod journal;
pub mod lease;
mod memory;
pub mod table;
pub mod usage;
pub mod usage_table;

use std::sync::Arc;
use std::time::Duration;

pub use file::{load, save, FileStore, Lock, StateError};
pub(crate) use memory::Memory;

use crate::config::{Config, StateBackend};
use crate::core::history::State;
use crate::core::journal::JournalEntry;
use crate::ports::{ActionJournal, BoxFuture, JournalRead, RequestObserver, StateStore, StoreError, UsageStore};

/// The configured backend, as both ports.
pub enum Store {
    File(FileStore, journal::FileJournal),
    Table(dynamodb::DynamoStore),
}

impl Store {
    /// For commands (`history`, `reactivate`, `run --once` without a lease): a file store
    /// waits `lock_wait` for a running daemon's run; a table store is unfenced.
    pub async fn open(config: &Config, lock_wait: Duration, observer: Option<Arc<dyn RequestObserver>>) -> Store {
        match &config.backend {
            StateBackend::File => Store::file(config, lock_wait),
            StateBackend::DynamoDb(d) => {
                let table = Arc::new(table::Table::connect(&config.aws, d, observer).await);
                Store::Table(dynamodb::DynamoStore::new(table, None, config.journal_retention))
            }
        }
    }

    /// The journal file, when the backend is `file` and that file does not exist: a command
    /// that reads the journal says so, rather than "no actions" (a `--config` forgotten reads
    /// the default config's journal).
    pub fn missing_journal(&self) -> Option<std::path::PathBuf> {
        match self {
            Store::File(_, j) if !j.path().exists() => Some(j.path().to_path_buf()),
            _ => None,
        }
    }

    pub fn file(config: &Config, lock_wait: Duration) -> Store {
        Store::File(
            FileStore::new(&config.state_path, lock_wait),
            journal::FileJournal::new(&config.journal_path, config.journal_retention),
        )
    }
}

impl StateStore for Store {
    type Guard = Option<Lock>;

    async fn lock(&self) -> Result<Option<Lock>, StoreError> {
        match self {
            Store::File(f, _) => f.lock().await.map(Some),
            Store::Table(t) => t.lock().await.map(|()| None),
        }
    }

    async fn load(&self) -> Result<Option<State>, StoreError> {
        match self {
            Store::File(f, _) => f.load().await,
            Store::Table(t) => t.load().await,
        }
    }

    async fn save(&self, state: &State) -> Result<(), StoreError> {
        match self {
            Store::File(f, _) => f.save(state).await,
            Store::Table(t) => t.save(state).await,
        }
    }
}

impl ActionJournal for Store {
    fn append<'a>(&'a self, entries: &'a [JournalEntry]) -> BoxFuture<'a, Result<(), StoreError>> {
        match self {
            Store::File(_, j) => j.append(entries),
            Store::Table(t) => t.append(entries),
        }
    }

    fn read(&self) -> BoxFuture<'_, Result<JournalRead, StoreError>> {
        match self {
            Store::File(_, j) => j.read(),
            Store::Table(t) => t.read(),
        }
    }
}

/// Where the profiles live: beside the state file, or in the state table (`state.backend`).
pub enum Usage {
    File(usage::FileUsage),
    Table(usage_table::TableUsage),
}

impl Usage {
    /// For commands: the configured backend's profiles (the table connected anew).
    pub async fn open(config: &crate::config::Config) -> Usage {
        match &config.backend {
            crate::config::StateBackend::File => Usage::File(usage::FileUsage::beside(&config.state_path)),
            crate::config::StateBackend::DynamoDb(d) => {
                let table = crate::state::table::Table::connect(&config.aws, d, None).await;
                Usage::Table(usage_table::TableUsage::new(std::sync::Arc::new(table)))
            }
        }
    }
}

impl UsageStore for Usage {
    async fn profiles(&self) -> Result<Vec<crate::core::usage::profile::Profile>, StoreError> {
        match self {
            Usage::File(f) => f.profiles().await,
            Usage::Table(t) => t.profiles().await,
        }
    }

    async fn read(&self, keys: &[(String, String)]) -> Result<Vec<crate::core::usage::profile::Profile>, StoreError> {
        match self {
            Usage::File(f) => f.read(keys).await,
            Usage::Table(t) => t.read(keys).await,
        }
    }

    async fn save_all(
        &self,
        profiles: &mut [crate::core::usage::profile::Profile],
        forget: &[(String, String)],
    ) -> Result<Vec<(String, String)>, StoreError> {
        match self {
            Usage::File(f) => f.save_all(profiles, forget).await,
            Usage::Table(t) => t.save_all(profiles, forget).await,
        }
    }
}

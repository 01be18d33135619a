//! Where the daemon's memory lives, chosen once at start from `state.backend` (a reload does
//! not move it: `docs/two-hosts.md` says so): the state file, or the state table with this
//! instance's leader lease in it. Each run opens its [`Store`] here; the admin listener reads
//! the journal through it.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, StateBackend};
use crate::ports::{ActionJournal, Leadership, RequestObserver, SoleInstance};
use crate::state::dynamodb::DynamoStore;
use crate::state::journal::FileJournal;
use crate::state::lease::Lease;
use crate::state::table::Table;
use crate::state::Store;

/// How long a daemon run waits for another keywarden (e.g. `run --once` beside the daemon)
/// to release the state file before it gives up enforcing.
const LOCK_WAIT: Duration = Duration::from_secs(5);

pub(crate) enum Memory {
    File,
    /// The state table and this instance's leader lease in it.
    Table {
        table: Arc<Table>,
        lease: Arc<Lease>,
    },
}

impl Memory {
    /// The table's requests are counted by `observer` (the daemon's metrics).
    pub(crate) async fn open(config: &Config, observer: Arc<dyn RequestObserver>) -> Memory {
        match &config.backend {
            StateBackend::File => Memory::File,
            StateBackend::DynamoDb(d) => {
                let table = Arc::new(Table::connect(&config.aws, d, Some(observer)).await);
                let me = d
                    .instance_id
                    .clone()
                    .unwrap_or_else(|| format!("{}:{}", crate::sys::host::hostname(), std::process::id()));
                let lease = Arc::new(Lease::new(Arc::clone(&table), me, d.lease_duration));
                Memory::Table { table, lease }
            }
        }
    }

    /// A run's store: the file (locked for the run), or the table fenced by the lease.
    pub(crate) fn store(&self, config: &Config) -> Store {
        match self {
            Memory::File => Store::file(config, LOCK_WAIT),
            Memory::Table { table, lease } => Store::Table(DynamoStore::new(
                Arc::clone(table),
                Some(Arc::clone(lease)),
                config.journal_retention,
            )),
        }
    }

    /// The journal as `config` names it (the file's path may change on reload).
    pub(crate) fn journal(&self, config: &Config) -> Arc<dyn ActionJournal + Send> {
        match self {
            Memory::File => Arc::new(FileJournal::new(&config.journal_path, config.journal_retention)),
            Memory::Table { table, .. } => {
                Arc::new(DynamoStore::new(Arc::clone(table), None, config.journal_retention))
            }
        }
    }

    /// The usage profiles: beside the state file, or in the state table.
    pub(crate) fn usage(&self, config: &Config) -> crate::state::Usage {
        use crate::state::{usage::FileUsage, Usage};
        match self {
            Memory::File => Usage::File(FileUsage::beside(&config.state_path)),
            Memory::Table { table, .. } => Usage::Table(crate::state::usage_table::TableUsage::new(Arc::clone(table))),
        }
    }

    pub(crate) fn leader(&self) -> &dyn Leadership {
        match self {
            Memory::File => &SoleInstance,
            Memory::Table { lease, .. } => lease.as_ref(),
        }
    }

    pub(crate) fn lease(&self) -> Option<&Arc<Lease>> {
        match self {
            Memory::File => None,
            Memory::Table { lease, .. } => Some(lease),
        }
    }
}

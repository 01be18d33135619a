//! `keywarden state init` and `keywarden state import FILE`: set up the DynamoDB table of
//! `[state.dynamodb]`, and move a file state (and its journal) into it.
//!
//! Import refuses a table that already holds state: merging two histories could only be
//! done by picking one first-seen time over another, and the safe pick (the earlier) would
//! shorten grace periods. It is meant for the switch, before the daemons start on the table.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, StateBackend};
use crate::ports::{ActionJournal, StateStore};
use crate::state::dynamodb::DynamoStore;
use crate::state::journal::FileJournal;
use crate::state::table::Table;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The config does not name a table (exit 2).
    #[error("state.backend is \"file\"; set state.backend = \"dynamodb\" and [state.dynamodb] first")]
    NotATable,
    #[error("{0}")]
    Failed(String),
}

async fn table(config: &Config) -> Result<Arc<Table>, AdminError> {
    match &config.backend {
        StateBackend::File => Err(AdminError::NotATable),
        StateBackend::DynamoDb(d) => Ok(Arc::new(Table::connect(&config.aws, d, None).await)),
    }
}

/// Creates the table (or checks the one there); says what it did.
pub async fn init(config: &Config) -> Result<String, AdminError> {
    let t = table(config).await?;
    t.init(Duration::from_secs(120))
        .await
        .map_err(|e| AdminError::Failed(e.to_string()))
}

/// What an import moved.
#[derive(Debug)]
pub struct Imported {
    pub findings: usize,
    pub failures: usize,
    pub snoozes: usize,
    pub journal_entries: usize,
    pub journal_path: std::path::PathBuf,
}

/// Copies `file` (a state file) and its journal (`state.journal_path` when set, else
/// `actions.jsonl` beside `file`) into the table.
pub async fn import(config: &Config, file: &Path) -> Result<Imported, AdminError> {
    let failed = |e: &dyn std::fmt::Display| AdminError::Failed(e.to_string());
    let t = table(config).await?;
    let state = crate::state::load(file)
        .map_err(|e| failed(&e))?
        .ok_or_else(|| AdminError::Failed(format!("state file {}: does not exist", file.display())))?;
    let store = DynamoStore::new(t, None, config.journal_retention);
    if store.has_state().await.map_err(|e| failed(&e))? {
        return Err(AdminError::Failed(
            "the table already holds state; import is for a new table (nothing was written)".into(),
        ));
    }
    let journal_path = config
        .effective
        .state
        .journal_path
        .clone()
        .unwrap_or_else(|| file.with_file_name("actions.jsonl"));
    let journal = FileJournal::new(&journal_path, config.journal_retention)
        .read_now()
        .map_err(|e| failed(&e))?;
    for skipped in &journal.skipped {
        tracing::warn!("{skipped}");
    }
    store.save(&state).await.map_err(|e| failed(&e))?;
    store.append(&journal.entries).await.map_err(|e| failed(&e))?;
    Ok(Imported {
        findings: state.entries().count(),
        failures: state.failures().count(),
        snoozes: state.snoozes().count(),
        journal_entries: journal.entries.len(),
        journal_path,
    })
}

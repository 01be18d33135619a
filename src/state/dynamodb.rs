//! The state, the action journal and the leader lease in one DynamoDB table
//! (`state.backend = "dynamodb"`), so that a replaced host loses nothing and several instances
//! share one memory.
//!
//! Table: partition key `pk` (S), sort key `sk` (S), on-demand billing, TTL on `ttl`
//! (`keywarden state init`). Items:
//! - `pk = "state"`: the state, one item per finding, failure, snooze, dry-run note and the
//!   last run (`state::items`; the document in `doc`). A run reads them with one strongly
//!   consistent Query (paged by DynamoDB at 1 MB) and writes only the items that changed.
//! - `pk = "journal"`: one item per journal entry, `sk` = time, sequence and run id (so a
//!   Query gives time order), the line of `state::journal` in `doc`, and `ttl` =
//!   time + `state.journal_retention` (DynamoDB deletes expired items; reads skip them).
//! - `pk = "lease"`, `sk = "leader"`: the leader lease (`state::lease`).
//! - `pk = "usage"`: one item per usage profile (`state::usage_table`), written by every
//!   instance, unfenced, conditional on the revision read.
//!
//! Writes for enforcement are fenced: each TransactWriteItems (at most 100 items) carries a
//! ConditionCheck that the lease item still names this instance with its fence, so an instance
//! that lost the lease cannot write. A store opened without a lease (the `reactivate` and
//! `state import` commands) writes unfenced: it writes only the items it changed (a snooze), so
//! it cannot undo the leader's writes. Journal entries are never fenced: they record what
//! happened, and an action that happened must not go unrecorded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::TimeDelta;

use crate::core::history::State;
use crate::core::journal::JournalEntry;
use crate::ports::{ActionJournal, BoxFuture, JournalRead, StateStore, StoreError};
use crate::state::items::{self, Items};
use crate::state::journal::{to_line, JournalDoc};
use crate::state::lease::Lease;
use crate::state::table::{key, s, Item, Table};

/// The state and the journal in a [`Table`], behind the same ports as the files.
pub struct DynamoStore {
    table: Arc<Table>,
    /// Fences every state write when set (the daemon); `None` for commands.
    lease: Option<Arc<Lease>>,
    /// The items as last read or written: what a save compares against.
    known: Mutex<Items>,
    retention: TimeDelta,
    /// Orders journal entries of one instant.
    seq: AtomicU64,
}

impl DynamoStore {
    pub fn new(table: Arc<Table>, lease: Option<Arc<Lease>>, retention: TimeDelta) -> DynamoStore {
        DynamoStore {
            table,
            lease,
            known: Mutex::new(Items::new()),
            retention,
            seq: AtomicU64::new(0),
        }
    }

    /// Whether the table holds any state item (`state import` refuses to merge into one).
    pub async fn has_state(&self) -> Result<bool, StoreError> {
        let page = self
            .table
            .client
            .query()
            .table_name(&self.table.name)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s("state"))
            .consistent_read(true)
            .limit(1)
            .send()
            .await
            .map_err(|e| self.table.error("Query", &e))?;
        Ok(page.count > 0)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Items> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn load_items(&self) -> Result<Option<State>, StoreError> {
        let raw = self.table.query_all("state").await?;
        let mut items = Items::new();
        for item in &raw {
            let (Some(AttributeValue::S(sk)), Some(AttributeValue::S(doc))) = (item.get("sk"), item.get("doc")) else {
                return Err(self.table.invalid(format!("a state item without sk or doc: {item:?}")));
            };
            items.insert(sk.clone(), doc.clone());
        }
        let state = items::from_items(items.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| self.table.invalid(e))?;
        let empty = items.is_empty();
        *self.known() = items;
        Ok((!empty).then_some(state))
    }

    async fn save_items(&self, state: &State) -> Result<(), StoreError> {
        let new = items::to_items(state);
        let (puts, deletes) = items::diff(&self.known(), &new);
        if puts.is_empty() && deletes.is_empty() {
            return Ok(());
        }
        let check = match &self.lease {
            None => None,
            Some(lease) => Some(lease.fence_check().ok_or_else(|| {
                self.table
                    .invalid("not written: this instance does not hold the leader lease")
            })?),
        };
        self.table.write(puts, deletes, check.as_ref()).await?;
        *self.known() = new;
        Ok(())
    }

    fn journal_item(&self, e: &JournalEntry) -> Item {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let sk = format!("{}#{n:08}#{}", e.time.format("%Y-%m-%dT%H:%M:%S%.6fZ"), e.run.run_id);
        let expires = e.time.checked_add_signed(self.retention).unwrap_or(e.time);
        let mut item = key("journal", &sk);
        item.insert("doc".into(), s(&to_line(e)));
        item.insert("ttl".into(), AttributeValue::N(expires.timestamp().to_string()));
        item
    }

    async fn append_items(&self, entries: &[JournalEntry]) -> Result<(), StoreError> {
        for e in entries {
            self.table
                .client
                .put_item()
                .table_name(&self.table.name)
                .set_item(Some(self.journal_item(e)))
                .send()
                .await
                .map_err(|err| self.table.error("PutItem (journal)", &err))?;
        }
        Ok(())
    }

    async fn read_items(&self) -> Result<JournalRead, StoreError> {
        let now = chrono::Utc::now().timestamp();
        let mut read = JournalRead::default();
        for item in self.table.query_all("journal").await? {
            let sk = match item.get("sk") {
                Some(AttributeValue::S(v)) => v.as_str(),
                _ => "?",
            };
            // TTL deletion lags by up to days; an expired entry is gone as far as we are concerned.
            let expired = match item.get("ttl") {
                Some(AttributeValue::N(t)) => t.parse::<i64>().is_ok_and(|t| t < now),
                _ => false,
            };
            if expired {
                continue;
            }
            let parsed = match item.get("doc") {
                Some(AttributeValue::S(doc)) => serde_json::from_str::<JournalDoc>(doc)
                    .map_err(|e| e.to_string())
                    .and_then(JournalEntry::try_from),
                _ => Err("no doc attribute".to_string()),
            };
            match parsed {
                Ok(e) => read.entries.push(e),
                Err(e) => read.skipped.push(format!(
                    "DynamoDB table {}: journal item {sk}: {e} (skipped)",
                    self.table.name
                )),
            }
        }
        read.entries.sort_by_key(|e| e.time);
        Ok(read)
    }
}

impl StateStore for DynamoStore {
    /// The lease is the mutual exclusion between instances; within one, runs do not overlap.
    type Guard = ();

    async fn lock(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn load(&self) -> Result<Option<State>, StoreError> {
        self.load_items().await
    }

    async fn save(&self, state: &State) -> Result<(), StoreError> {
        self.save_items(state).await
    }
}

impl ActionJournal for DynamoStore {
    fn append<'a>(&'a self, entries: &'a [JournalEntry]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.append_items(entries))
    }

    fn read(&self) -> BoxFuture<'_, Result<JournalRead, StoreError>> {
        Box::pin(self.read_items())
    }
}

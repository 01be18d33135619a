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
//!
//! Writes for enforcement are fenced: each TransactWriteItems (at most 100 items) carries a
//! ConditionCheck that the lease item still names this instance with its fence, so an instance
//! that lost the lease cannot write. A store opened without a lease (the `reactivate` and
//! `state import` commands) writes unfenced: it writes only the items it changed (a snooze), so
//! it cannot undo the leader's writes. Journal entries are never fenced: they record what
//! happened, and an action that happened must not go unrecorded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use chrono::TimeDelta;

use crate::config::{AwsSettings, DynamoDbSettings};
use crate::core::history::State;
use crate::core::journal::JournalEntry;
use crate::ports::{ActionJournal, BoxFuture, JournalRead, RequestObserver, StateStore, StoreError};
use crate::state::items::{self, Items};
use crate::state::journal::{to_line, EntryDoc};
use crate::state::lease::Lease;

pub type Item = HashMap<String, AttributeValue>;

/// A TransactWriteItems takes at most 100 actions; one is the lease's ConditionCheck.
const WRITES_PER_TRANSACTION: usize = 99;

pub(crate) fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

pub(crate) fn key(pk: &str, sk: &str) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

/// One table and the client that reaches it.
#[derive(Debug)]
pub struct Table {
    pub(crate) client: Client,
    pub name: String,
}

impl Table {
    /// The SDK settings of `[aws]` (credentials, retries, timeouts), with the table's own
    /// region and endpoint.
    pub async fn connect(aws: &AwsSettings, d: &DynamoDbSettings, observer: Option<Arc<dyn RequestObserver>>) -> Table {
        let sdk = crate::aws::sdk_config(aws).await;
        let mut conf =
            aws_sdk_dynamodb::config::Builder::from(&sdk).retry_classifier(crate::aws::errors::NoRetryOnRefusal);
        if let Some(r) = &d.region {
            conf = conf.region(aws_sdk_dynamodb::config::Region::new(r.clone()));
        }
        if let Some(e) = &d.endpoint_url {
            conf = conf.endpoint_url(e);
        }
        if let Some(o) = observer {
            conf = conf.interceptor(crate::aws::sdk::CountAttempts(o));
        }
        Table {
            client: Client::from_conf(conf.build()),
            name: d.table.clone(),
        }
    }

    pub(crate) fn error<E>(
        &self,
        operation: &str,
        e: &aws_sdk_dynamodb::error::SdkError<E, aws_smithy_runtime_api::http::Response>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        StoreError(format!(
            "DynamoDB table {}: {operation}: {}",
            self.name,
            crate::aws::errors::describe_at(e, "DynamoDB's endpoint").message
        ))
    }

    /// A failed conditional write: (whether the condition failed, the error).
    pub(crate) fn conditional<E>(
        &self,
        operation: &str,
        e: &aws_sdk_dynamodb::error::SdkError<E, aws_smithy_runtime_api::http::Response>,
    ) -> (bool, StoreError)
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        (
            e.code() == Some("ConditionalCheckFailedException"),
            self.error(operation, e),
        )
    }

    pub(crate) fn invalid(&self, what: impl std::fmt::Display) -> StoreError {
        StoreError(format!("DynamoDB table {}: {what}", self.name))
    }

    /// Every item of one partition, strongly consistent, in sort key order.
    async fn query_all(&self, pk: &str) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.name)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.error("Query", &e))?;
            out.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    /// Writes in transactions of at most 100 actions, each with `check` (the lease's fence)
    /// when given. Not all-or-nothing across transactions: each item written is correct on its
    /// own (a first-seen time, a failure), and the caller keeps what it knows was written.
    async fn write(
        &self,
        puts: Vec<(String, String)>,
        deletes: Vec<String>,
        check: Option<&ConditionCheck>,
    ) -> Result<(), StoreError> {
        let mut actions: Vec<TransactWriteItem> = Vec::with_capacity(puts.len() + deletes.len());
        for (sk, doc) in puts {
            let mut item = key("state", &sk);
            item.insert("doc".into(), s(&doc));
            let put = Put::builder()
                .table_name(&self.name)
                .set_item(Some(item))
                .build()
                .map_err(|e| self.invalid(e))?;
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        for sk in deletes {
            let del = Delete::builder()
                .table_name(&self.name)
                .set_key(Some(key("state", &sk)))
                .build()
                .map_err(|e| self.invalid(e))?;
            actions.push(TransactWriteItem::builder().delete(del).build());
        }
        for chunk in actions.chunks(WRITES_PER_TRANSACTION) {
            let mut items: Vec<TransactWriteItem> = chunk.to_vec();
            if let Some(c) = check {
                items.push(TransactWriteItem::builder().condition_check(c.clone()).build());
            }
            self.client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
                .map_err(|e| {
                    if e.code() == Some("TransactionCanceledException") && check.is_some() {
                        self.invalid("the write was refused: this instance no longer holds the leader lease")
                    } else {
                        self.error("TransactWriteItems", &e)
                    }
                })?;
        }
        Ok(())
    }

    /// `keywarden state init`: creates the table (on-demand, `pk`/`sk`), waits until it is
    /// active and turns TTL on. Idempotent: an existing table is checked, not recreated.
    pub async fn init(&self, wait: Duration) -> Result<String, StoreError> {
        let mut said = self.create().await?;
        self.wait_until_active(wait).await?;
        said.push_str(self.enable_ttl().await?);
        Ok(said)
    }

    /// CreateTable; a table that exists already is fine (checked next).
    async fn create(&self) -> Result<String, StoreError> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let schema = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
        let created = self
            .client
            .create_table()
            .table_name(&self.name)
            .attribute_definitions(attr("pk").map_err(|e| self.invalid(e))?)
            .attribute_definitions(attr("sk").map_err(|e| self.invalid(e))?)
            .key_schema(schema("pk", KeyType::Hash).map_err(|e| self.invalid(e))?)
            .key_schema(schema("sk", KeyType::Range).map_err(|e| self.invalid(e))?)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => Ok(format!("created table {}", self.name)),
            Err(e) if e.code() == Some("ResourceInUseException") => Ok(format!("table {} exists", self.name)),
            Err(e) => Err(self.error("CreateTable", &e)),
        }
    }

    /// Polls DescribeTable until the table is active, refusing one with another key schema.
    async fn wait_until_active(&self, wait: Duration) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let d = self
                .client
                .describe_table()
                .table_name(&self.name)
                .send()
                .await
                .map_err(|e| self.error("DescribeTable", &e))?;
            let t = d.table.ok_or_else(|| self.invalid("DescribeTable returned no table"))?;
            let keys: Vec<(String, String)> = t
                .key_schema()
                .iter()
                .map(|k| (k.attribute_name().to_string(), k.key_type().as_str().to_string()))
                .collect();
            let expected = [
                ("pk".to_string(), "HASH".to_string()),
                ("sk".to_string(), "RANGE".to_string()),
            ];
            if keys != expected {
                return Err(self.invalid(format!(
                    "exists with key schema {keys:?}, not pk (HASH) + sk (RANGE); use another table name"
                )));
            }
            if t.table_status == Some(TableStatus::Active) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.invalid("not active after waiting; run `keywarden state init` again"));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Turns TTL on attribute `ttl` on unless it is already; says which.
    async fn enable_ttl(&self) -> Result<&'static str, StoreError> {
        let ttl = self
            .client
            .describe_time_to_live()
            .table_name(&self.name)
            .send()
            .await
            .map_err(|e| self.error("DescribeTimeToLive", &e))?;
        let on = ttl.time_to_live_description.is_some_and(|d| {
            matches!(
                d.time_to_live_status,
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            ) && d.attribute_name.as_deref() == Some("ttl")
        });
        if on {
            return Ok("; TTL on attribute ttl already enabled");
        }
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name("ttl")
            .build()
            .map_err(|e| self.invalid(e))?;
        self.client
            .update_time_to_live()
            .table_name(&self.name)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(|e| self.error("UpdateTimeToLive", &e))?;
        Ok("; TTL on attribute ttl enabled")
    }
}

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
                Some(AttributeValue::S(doc)) => serde_json::from_str::<EntryDoc>(doc)
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

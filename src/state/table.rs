//! The DynamoDB table that holds the state, the journal and the lease (`state::dynamodb` for
//! the first two, `state::lease` for the last): its client, its items' keys, creation
//! (`keywarden state init`), and fenced transactional writes. Both users sit above it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;

use crate::config::{AwsSettings, DynamoDbSettings};
use crate::ports::{RequestObserver, StoreError};

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
    pub(crate) async fn query_all(&self, pk: &str) -> Result<Vec<Item>, StoreError> {
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
    pub(crate) async fn write(
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

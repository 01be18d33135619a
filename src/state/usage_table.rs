//! Usage profiles in the state table (`state.backend = "dynamodb"`), shared by every instance:
//! one item per profile, `pk = "usage"`, `sk = "<account>#<access key>"`, the profile's
//! document (the usage file's, `state::usage`) in `doc` and its revision in `rev`.
//!
//! Every instance counts usage events, none under the leader lease, so profiles merge by
//! optimistic concurrency: a PutItem conditional on the revision the profile was read at
//! (`attribute_not_exists(pk)` for a new one). The writer that loses reads the profile again
//! and counts its events into that (`app::usage_events`). Not DynamoDB counters (ADD): a
//! profile is a bounded aggregate (the top 16 addresses, the last 64 event ids, 30 days) that
//! only a read-modify-write keeps exact and free of double counts; and not the lease's fence:
//! ingestion must not need a leader.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::core::usage::profile::Profile;
use crate::ports::{StoreError, UsageStore};
use crate::state::table::{key, s, Item, Table};

const PK: &str = "usage";

/// The profiles in the state table.
pub struct TableUsage {
    table: Arc<Table>,
}

impl TableUsage {
    pub fn new(table: Arc<Table>) -> TableUsage {
        TableUsage { table }
    }

    fn sk(account_id: &str, access_key_id: &str) -> String {
        format!("{account_id}#{access_key_id}")
    }

    /// An item as read: its document, with the item's revision (the one conditions check).
    fn profile(&self, item: &Item) -> Result<Profile, StoreError> {
        let sk = item.get("sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let doc = item
            .get("doc")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| self.table.invalid(format!("usage item {sk:?} has no document")))?;
        let mut p =
            crate::state::usage::from_doc(doc).map_err(|e| self.table.invalid(format!("usage item {sk:?}: {e}")))?;
        p.revision = item
            .get("rev")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| self.table.invalid(format!("usage item {sk:?} has no revision")))?;
        Ok(p)
    }

    /// Writes `p` at its next revision if the stored one is still `p.revision`; `Ok(false)`:
    /// another writer saved first.
    async fn put_if_unchanged(&self, p: &Profile) -> Result<bool, StoreError> {
        let mut next = p.clone();
        next.revision += 1;
        let mut item = key(PK, &Self::sk(&p.account_id, &p.access_key_id));
        item.insert("doc".into(), s(&crate::state::usage::to_doc(&next)));
        item.insert("rev".into(), AttributeValue::N(next.revision.to_string()));
        let put = self
            .table
            .client
            .put_item()
            .table_name(&self.table.name)
            .set_item(Some(item));
        let put = if p.revision == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("rev = :rev")
                .expression_attribute_values(":rev", AttributeValue::N(p.revision.to_string()))
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) => match self.table.conditional("PutItem", &e) {
                (true, _) => Ok(false),
                (false, err) => Err(err),
            },
        }
    }
}

impl UsageStore for TableUsage {
    async fn profiles(&self) -> Result<Vec<Profile>, StoreError> {
        self.table
            .query_all(PK)
            .await?
            .iter()
            .map(|item| self.profile(item))
            .collect()
    }

    async fn read(&self, keys: &[(String, String)]) -> Result<Vec<Profile>, StoreError> {
        let mut out = Vec::new();
        for (account_id, access_key_id) in keys {
            let got = self
                .table
                .client
                .get_item()
                .table_name(&self.table.name)
                .set_key(Some(key(PK, &Self::sk(account_id, access_key_id))))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| self.table.error("GetItem", &e))?;
            if let Some(item) = got.item {
                out.push(self.profile(&item)?);
            }
        }
        Ok(out)
    }

    async fn save_all(
        &self,
        profiles: &mut [Profile],
        forget: &[(String, String)],
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut lost = Vec::new();
        for p in profiles.iter_mut() {
            if self.put_if_unchanged(p).await? {
                p.revision += 1;
            } else {
                lost.push((p.account_id.clone(), p.access_key_id.clone()));
            }
        }
        for (account_id, access_key_id) in forget {
            self.table
                .client
                .delete_item()
                .table_name(&self.table.name)
                .set_key(Some(key(PK, &Self::sk(account_id, access_key_id))))
                .send()
                .await
                .map_err(|e| self.table.error("DeleteItem", &e))?;
        }
        Ok(lost)
    }
}

//! The leader lease in the state table (item `pk = "lease"`, `sk = "leader"`): the table side
//! of `core::lease`, which decides; here are the conditional writes that carry it out, and
//! the [`Leadership`] port the run asks.
//!
//! - take (empty table): PutItem if `attribute_not_exists(pk)`, fence 1;
//! - take (abandoned or released): UpdateItem raising the fence, if `rvn` is still the one
//!   watched;
//! - renew: UpdateItem of `rvn`, if `holder` and `fence` are still ours;
//! - release (clean stop): `released = true`, if still ours;
//! - before each UpdateAccessKey: the local validity (more than the margin left), then one
//!   consistent TransactGetItems of the lease and the key's snooze: still ours with our
//!   fence, and the key not snoozed by `keywarden reactivate` since the run loaded its state.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Get, ReturnValue, TransactGetItem};

use crate::core::lease::{Record, Step, Tracker};
use crate::ports::{BoxFuture, Leadership, Refusal, StoreError};
use crate::state::items;
use crate::state::table::{key, s, Item, Table};

const PK: &str = "lease";
const SK: &str = "leader";

/// What a tick changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    Acquired,
    Lost,
}

pub struct Lease {
    table: Arc<Table>,
    me: String,
    tracker: Mutex<Tracker>,
}

impl Lease {
    /// The margin is a third of the lease: renewals come every third, so a healthy leader
    /// always has two thirds left, and one more renewal may fail before it stops acting.
    pub fn new(table: Arc<Table>, me: String, duration: Duration) -> Lease {
        Lease {
            table,
            me,
            tracker: Mutex::new(Tracker::new(duration, duration / 3)),
        }
    }

    pub fn instance_id(&self) -> &str {
        &self.me
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn tick_every(&self) -> Duration {
        self.tracker().tick_every()
    }

    /// Held at all (the `keywarden_leader` gauge).
    pub fn is_leader(&self) -> bool {
        self.tracker().held_fence().is_some()
    }

    /// The condition every fenced write carries, while the lease is held.
    pub fn fence_check(&self) -> Option<ConditionCheck> {
        let fence = self.tracker().held_fence()?;
        ConditionCheck::builder()
            .table_name(&self.table.name)
            .set_key(Some(key(PK, SK)))
            .condition_expression("#h = :me AND #f = :f")
            .expression_attribute_names("#h", "holder")
            .expression_attribute_names("#f", "fence")
            .expression_attribute_values(":me", s(&self.me))
            .expression_attribute_values(":f", AttributeValue::N(fence.to_string()))
            .build()
            .ok()
    }

    async fn read(&self) -> Result<Option<Record>, StoreError> {
        let got = self
            .table
            .client
            .get_item()
            .table_name(&self.table.name)
            .set_key(Some(key(PK, SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.table.error("GetItem (lease)", &e))?;
        Ok(got.item.as_ref().map(record))
    }

    /// One step of the protocol; call every [`Lease::tick_every`].
    pub async fn tick(&self) -> Result<Change, StoreError> {
        let holding = self.tracker().held_fence().is_some();
        let current = if holding { None } else { self.read().await? };
        let step = self.tracker().step(current.as_ref(), Instant::now());
        let rvn = uuid::Uuid::new_v4().to_string();
        let sent = Instant::now();
        let result = match &step {
            Step::Wait => return Ok(Change::None),
            Step::Take { expect: None } => self.create(&rvn).await,
            Step::Take { expect: Some(seen) } => self.take_over(seen, &rvn).await,
            Step::Renew { fence } => self.renew(*fence, &rvn).await,
        };
        self.settle(result, &step, sent)
    }

    /// Takes a lease nobody ever held: the item is written only if it does not exist.
    async fn create(&self, rvn: &str) -> Result<Option<u64>, (bool, StoreError)> {
        let mut item = key(PK, SK);
        item.insert("holder".into(), s(&self.me));
        item.insert("rvn".into(), s(rvn));
        item.insert("fence".into(), AttributeValue::N("1".into()));
        item.insert("released".into(), AttributeValue::Bool(false));
        self.table
            .client
            .put_item()
            .table_name(&self.table.name)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map(|_| Some(1))
            .map_err(|e| self.table.conditional("PutItem (lease)", &e))
    }

    /// Takes an abandoned (or released) lease, conditional on the rvn watched for a whole
    /// lease being still there; the fence goes up.
    async fn take_over(&self, seen: &str, rvn: &str) -> Result<Option<u64>, (bool, StoreError)> {
        self.lease_update(rvn)
            .update_expression("SET #h = :me, #r = :rvn, #rel = :no ADD #f :one")
            .condition_expression("#r = :seen")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":seen", s(seen))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map(|out| out.attributes.as_ref().map(record).map(|r| r.fence))
            .map_err(|e| self.table.conditional("UpdateItem (lease)", &e))
    }

    /// Renews ours: a new rvn, conditional on holder and fence (and not released).
    async fn renew(&self, fence: u64, rvn: &str) -> Result<Option<u64>, (bool, StoreError)> {
        self.lease_update(rvn)
            .update_expression("SET #r = :rvn")
            .condition_expression("#h = :me AND #f = :f AND #rel = :no")
            .expression_attribute_values(":f", AttributeValue::N(fence.to_string()))
            .send()
            .await
            .map(|_| Some(fence))
            .map_err(|e| self.table.conditional("UpdateItem (lease)", &e))
    }

    /// An UpdateItem of the lease item with the names and values a take-over and a renewal
    /// both use (`#h #r #rel #f`, `:me :rvn :no`).
    fn lease_update(&self, rvn: &str) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.table
            .client
            .update_item()
            .table_name(&self.table.name)
            .set_key(Some(key(PK, SK)))
            .expression_attribute_names("#h", "holder")
            .expression_attribute_names("#r", "rvn")
            .expression_attribute_names("#rel", "released")
            .expression_attribute_names("#f", "fence")
            .expression_attribute_values(":me", s(&self.me))
            .expression_attribute_values(":rvn", s(rvn))
            .expression_attribute_values(":no", AttributeValue::Bool(false))
    }

    /// What a step's answer means for the tracker: `Err((true, _))` is a refused condition
    /// (another instance holds or just took it), `Err((false, _))` a failed request.
    fn settle(
        &self,
        result: Result<Option<u64>, (bool, StoreError)>,
        step: &Step,
        sent: Instant,
    ) -> Result<Change, StoreError> {
        let renewing = matches!(step, Step::Renew { .. });
        let mut t = self.tracker();
        match result {
            Ok(Some(fence)) => {
                t.holds(fence, sent);
                Ok(if renewing { Change::None } else { Change::Acquired })
            }
            Ok(None) => Err(self.table.invalid("the lease update returned no fence")),
            // Another instance took it (or won the race to take it).
            Err((true, _)) if renewing => {
                t.lost();
                Ok(Change::Lost)
            }
            Err((true, _)) => Ok(Change::None),
            // A failed renewal ends the lease only once it can no longer be counted valid.
            Err((false, _)) if renewing && t.renewal_failed(Instant::now()) => Ok(Change::Lost),
            Err((false, e)) => Err(e),
        }
    }

    /// A tick abandoned before its answer came: as a failed renewal (the lease runs out by
    /// itself unless a later renewal succeeds).
    /// True when that was the end of a lease held.
    pub fn tick_timed_out(&self) -> bool {
        self.tracker().renewal_failed(Instant::now())
    }

    /// Gives the lease up (a clean stop), so another instance takes over at its next tick
    /// instead of a whole lease later.
    pub async fn release(&self) -> Result<(), StoreError> {
        let Some(fence) = self.tracker().held_fence() else {
            return Ok(());
        };
        self.tracker().lost();
        self.table
            .client
            .update_item()
            .table_name(&self.table.name)
            .set_key(Some(key(PK, SK)))
            .update_expression("SET #rel = :yes")
            .condition_expression("#h = :me AND #f = :f")
            .expression_attribute_names("#h", "holder")
            .expression_attribute_names("#f", "fence")
            .expression_attribute_names("#rel", "released")
            .expression_attribute_values(":me", s(&self.me))
            .expression_attribute_values(":f", AttributeValue::N(fence.to_string()))
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.table.error("UpdateItem (lease release)", &e))
    }

    async fn confirm(&self, account_id: &str, access_key_id: &str) -> Result<(), Refusal> {
        let Some(fence) = self.tracker().fence(Instant::now()) else {
            return Err(Refusal::NotLeader(
                "the leader lease is not held with time to spare".into(),
            ));
        };
        let get = |sk: String, pk: &str| {
            Get::builder()
                .table_name(&self.table.name)
                .set_key(Some(key(pk, &sk)))
                .build()
                .map(|g| TransactGetItem::builder().get(g).build())
        };
        let gets = [
            get(SK.to_string(), PK),
            get(items::snooze_key(account_id, access_key_id), "state"),
        ]
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Refusal::NotLeader(format!("cannot build the lease check: {e}")))?;
        let out = self
            .table
            .client
            .transact_get_items()
            .set_transact_items(Some(gets))
            .send()
            .await
            .map_err(|e| {
                Refusal::NotLeader(format!(
                    "cannot confirm the leader lease: {}",
                    self.table.error("TransactGetItems", &e)
                ))
            })?;
        let responses = out.responses.unwrap_or_default();
        let lease = responses.first().and_then(|r| r.item.as_ref()).map(record);
        match lease {
            Some(r) if r.holder == self.me && r.fence == fence && !r.released => {}
            other => {
                self.tracker().lost();
                return Err(Refusal::NotLeader(format!(
                    "the lease item shows {other:?}, not this instance ({}) with fence {fence}",
                    self.me
                )));
            }
        }
        let snooze = responses
            .get(1)
            .and_then(|r| r.item.as_ref())
            .and_then(|i| match i.get("doc") {
                Some(AttributeValue::S(doc)) => {
                    items::from_items([(items::snooze_key(account_id, access_key_id).as_str(), doc.as_str())]).ok()
                }
                _ => None,
            });
        if let Some(state) = snooze {
            if let Some(sn) = state.snooze(account_id, access_key_id, chrono::Utc::now()) {
                return Err(Refusal::Snoozed(format!(
                    "snoozed by an operator until {} during this run: {}",
                    crate::sys::timefmt::format(&sn.until),
                    sn.reason
                )));
            }
        }
        Ok(())
    }
}

fn record(item: &Item) -> Record {
    let text = |k: &str| match item.get(k) {
        Some(AttributeValue::S(v)) => v.clone(),
        _ => String::new(),
    };
    Record {
        holder: text("holder"),
        rvn: text("rvn"),
        fence: match item.get("fence") {
            Some(AttributeValue::N(n)) => n.parse().unwrap_or(0),
            _ => 0,
        },
        released: matches!(item.get("released"), Some(AttributeValue::Bool(true))),
    }
}

impl Leadership for Lease {
    fn leading(&self) -> bool {
        self.tracker().fence(Instant::now()).is_some()
    }

    fn may_act<'a>(&'a self, account_id: &'a str, access_key_id: &'a str) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(self.confirm(account_id, access_key_id))
    }
}

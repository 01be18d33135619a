//! `keywarden usage [USER | ACCESS_KEY_ID] [--backfill]`: what uses each active access key and
//! what should replace it. Reads the accounts' active keys (every key named, in any inventory
//! mode), the profiles kept (`ports::UsageStore`) and, with `--backfill`, CloudTrail's
//! LookupEvents first (`app::backfill`), in `usage.region` of each account.
//!
//! A failed read is said and makes the command fail: a key left out, or a backfill that
//! stopped early, never looks like a complete answer.

use std::collections::{BTreeMap, BTreeSet};

use crate::app::backfill::{Backfill, Tally, LOOKUPS_PER_SECOND, MAX_REQUESTS_PER_RUN};
use crate::aws::accounts::Fleet;
use crate::aws::cloudtrail::Trail;
use crate::aws::ratelimit::TokenBucket;
use crate::config::Config;
use crate::core::model::{AccountInventory, Timestamp};
use crate::core::usage::profile::{by_key, ByKey, Profile};
use crate::core::usage::summary::{summarize, KeyUsage};
use crate::ports::{BoxFuture, InventorySource, LastCall, LastCalls, StoreError, UsageStore};

/// What `keywarden usage` found.
#[derive(Debug, Default)]
pub struct UsageRun {
    /// One per active key selected, by account, user and key id.
    pub keys: Vec<(String, KeyUsage)>,
    /// What the backfill did (all zero without `--backfill`).
    pub tally: Tally,
    /// Reads that failed, in the service's words.
    pub errors: Vec<String>,
}

/// Whether a key of `user` is selected by `target` (a user name or an access key id).
fn selected(target: Option<&str>, user: &str, key_id: &str) -> bool {
    target.is_none_or(|t| t == user || t == key_id)
}

/// The usage of the active keys `target` selects, backfilled first when asked.
pub async fn usage(
    config: &Config,
    fleet: &Fleet,
    store: &impl UsageStore,
    target: Option<&str>,
    backfill: bool,
    now: Timestamp,
) -> UsageRun {
    let mut run = UsageRun::default();
    let every = |_: &str, _: &crate::core::model::User| true;
    let mut opts = crate::app::audit::inventory_options(config, &every, None, None);
    opts.credential_kinds = Vec::new();
    opts.exposure = false;
    let accounts = fleet.inventory(&opts).await;
    let mut kept = match store.profiles().await {
        Ok(all) => by_key(all),
        Err(e) => {
            run.errors.push(e.0);
            ByKey::new()
        }
    };
    let mut remaining = MAX_REQUESTS_PER_RUN;
    for account in &accounts {
        run.errors.extend(account.errors.iter().map(|e| {
            let user = e.user.as_deref().map(|u| format!(", user {u}")).unwrap_or_default();
            format!("account {}{user}: {}: {}", e.account_id, e.operation, e.message)
        }));
        let ids: Vec<&str> = active_keys(account)
            .filter(|(user, key)| selected(target, user, key))
            .map(|(_, key)| key)
            .collect();
        if backfill && !ids.is_empty() {
            remaining = backfill_account(
                config,
                fleet,
                store,
                &account.account_id,
                &ids,
                &mut kept,
                remaining,
                now,
                &mut run,
            )
            .await;
        }
    }
    run.keys = view(&accounts, &kept, target, now);
    run
}

/// The active keys of `account`: (user, key id).
fn active_keys(account: &AccountInventory) -> impl Iterator<Item = (&str, &str)> {
    account.users.iter().flat_map(|u| {
        u.keys
            .iter()
            .filter(|k| k.is_active())
            .map(move |k| (u.name.as_str(), k.id.as_str()))
    })
}

/// The active key ids of each account, for the leader's backfill after a run (the ids only:
/// the run's inventory stays with the run).
pub fn active_key_ids(accounts: &[AccountInventory]) -> Vec<(String, Vec<String>)> {
    accounts
        .iter()
        .map(|a| {
            (
                a.account_id.clone(),
                active_keys(a).map(|(_, k)| k.to_string()).collect(),
            )
        })
        .collect()
}

/// The usage of every active key of `accounts` that `target` selects, from the profiles kept.
pub fn view(
    accounts: &[AccountInventory],
    kept: &ByKey,
    target: Option<&str>,
    now: Timestamp,
) -> Vec<(String, KeyUsage)> {
    accounts
        .iter()
        .flat_map(|a| {
            active_keys(a)
                .filter(|(user, key)| selected(target, user, key))
                .map(move |(user, key)| {
                    let profile = kept.get(&(a.account_id.clone(), key.to_string()));
                    (a.account_id.clone(), summarize(&a.account_id, user, key, profile, now))
                })
        })
        .collect()
}

/// The usage of every active key of the last audit, for the daemon to publish, from the
/// profiles `kept` (read at the start of the run). Unreadable profiles are said in the log, and
/// every key then shows `unknown`, never a verdict made up.
pub fn published(
    accounts: &[AccountInventory],
    kept: &Result<Vec<Profile>, StoreError>,
    now: Timestamp,
) -> Vec<(String, KeyUsage)> {
    let kept = match kept {
        Ok(all) => by_key(all.clone()),
        Err(e) => {
            tracing::warn!(error = %e.0, "usage profiles cannot be read; every key's workload shows as unknown");
            ByKey::new()
        }
    };
    view(accounts, &kept, None, now)
}

/// The usage profiles as evidence for holds (`usage.hold_live_keys`), as read at the start of
/// a run: each profile's last call. The rules read only this, never a profile.
pub struct Evidence<'a>(pub &'a Result<Vec<Profile>, StoreError>);

impl LastCalls for Evidence<'_> {
    fn last_calls(&self) -> BoxFuture<'_, Result<Vec<LastCall>, StoreError>> {
        let calls = self.0.as_ref().map_err(Clone::clone).map(|all| {
            all.iter()
                .filter_map(|p| Some((p.account_id.clone(), p.access_key_id.clone(), p.last_event?)))
                .collect()
        });
        Box::pin(std::future::ready(calls))
    }
}

/// Forgets the profiles of keys gone from the accounts `accounts` read in full (after a
/// leader's cron run: the inventory is fresh there).
pub async fn forget_gone(
    store: &impl UsageStore,
    accounts: &[AccountInventory],
) -> Result<usize, crate::ports::StoreError> {
    let known = Known::of(accounts);
    let profiles = crate::core::usage::profile::by_key(store.profiles().await?);
    let forget = gone(&profiles, &known);
    if !forget.is_empty() {
        store.save_all(&mut [], &forget).await?;
    }
    Ok(forget.len())
}

/// The keys of the last full run, by (account, key id), and the accounts read in full.
pub struct Known {
    pub keys: BTreeSet<(String, String)>,
    pub complete_accounts: BTreeSet<String>,
}

impl Known {
    pub fn of(accounts: &[AccountInventory]) -> Known {
        let keys = accounts
            .iter()
            .flat_map(|a| {
                a.users
                    .iter()
                    .flat_map(move |u| u.keys.iter().map(move |k| (a.account_id.clone(), k.id.clone())))
            })
            .collect();
        let complete_accounts = accounts
            .iter()
            .filter(|a| a.errors.is_empty())
            .map(|a| a.account_id.clone())
            .collect();
        Known {
            keys,
            complete_accounts,
        }
    }
}

/// The profiles of keys gone from accounts read in full.
pub fn gone(profiles: &BTreeMap<(String, String), Profile>, known: &Known) -> Vec<(String, String)> {
    profiles
        .keys()
        .filter(|slot| known.complete_accounts.contains(&slot.0) && !known.keys.contains(*slot))
        .cloned()
        .collect()
}

/// LookupEvents requests of the leader's background backfill after one cron run (about a
/// minute at the pace): the rest waits for the next run, where the backfill resumes.
pub const BACKGROUND_REQUESTS: u32 = 100;

/// The leader's background backfill (`usage.backfill`), after a cron run: the keys of
/// `keys` (from [`active_key_ids`]) whose backfill is not finished, within
/// [`BACKGROUND_REQUESTS`].
pub async fn background(
    config: &Config,
    fleet: &Fleet,
    store: &impl UsageStore,
    keys: &[(String, Vec<String>)],
    now: Timestamp,
) -> UsageRun {
    let mut run = UsageRun::default();
    let mut kept = match store.profiles().await {
        Ok(all) => by_key(all),
        Err(e) => {
            run.errors.push(e.0);
            return run;
        }
    };
    let mut remaining = BACKGROUND_REQUESTS;
    for (account_id, ids) in keys {
        let unfinished = |id: &&str| {
            kept.get(&(account_id.clone(), id.to_string()))
                .is_none_or(|p| !p.backfill.state.finished())
        };
        let ids: Vec<&str> = ids.iter().map(String::as_str).filter(unfinished).collect();
        if ids.is_empty() || remaining == 0 {
            continue;
        }
        remaining = backfill_account(
            config, fleet, store, account_id, &ids, &mut kept, remaining, now, &mut run,
        )
        .await;
    }
    run
}

/// Backfills `keys` of one account; returns the requests the run may still send.
#[allow(clippy::too_many_arguments)] // one account's share of one run: every part is the run's
async fn backfill_account(
    config: &Config,
    fleet: &Fleet,
    store: &impl UsageStore,
    account_id: &str,
    keys: &[&str],
    kept: &mut ByKey,
    budget: u32,
    now: Timestamp,
    run: &mut UsageRun,
) -> u32 {
    let Some(sdk) = fleet
        .sdks()
        .into_iter()
        .find(|(id, _)| *id == account_id)
        .map(|(_, sdk)| sdk)
    else {
        run.errors
            .push(format!("account {account_id}: no client to read CloudTrail with"));
        return budget;
    };
    let trail = match Trail::new(
        sdk,
        config.usage.region.as_deref(),
        config.usage.cloudtrail_endpoint_url.as_deref(),
    ) {
        Ok(t) => t,
        Err(e) => {
            run.errors.push(format!("account {account_id}: {e}"));
            return budget;
        }
    };
    let pace = TokenBucket::new(LOOKUPS_PER_SECOND, 1.0);
    let mut b = Backfill {
        lookup: &trail,
        store,
        pace: &pace,
        budget,
        now,
        tally: std::mem::take(&mut run.tally),
    };
    for key in keys {
        let slot = (account_id.to_string(), key.to_string());
        let profile = kept.entry(slot).or_insert_with(|| Profile::new(account_id, key));
        if let Err(e) = b.key(profile).await {
            run.errors
                .push(format!("account {account_id}, CloudTrail in {}: {e}", trail.region()));
        }
    }
    run.tally = b.tally;
    b.budget
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_a_user_name_or_a_key_id() {
        assert!(selected(None, "alice", "AKIA1"));
        assert!(selected(Some("alice"), "alice", "AKIA1"));
        assert!(selected(Some("AKIA1"), "alice", "AKIA1"));
        assert!(!selected(Some("bob"), "alice", "AKIA1"));
    }
}

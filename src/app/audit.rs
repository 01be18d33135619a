//! One read-only audit: state (read only) + inventory + rules -> report. Never writes state
//! and never changes a key.

use crate::config::Config;
use crate::core::history::State;
use crate::core::model::{AccountInventory, Timestamp, User};
use crate::core::report::Report;
use crate::core::rules::{self, FirstSeen, NoHistory};
use crate::ports::{InventoryOptions, InventorySource, LastCall, LastCalls, StateStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    State(#[from] StoreError),
}

/// What one audit saw and concluded. The inventories stay available for per-key metrics.
pub struct AuditRun {
    pub accounts: Vec<AccountInventory>,
    pub report: Report,
    /// The usage evidence could not be read (`usage.hold_live_keys`): nothing shows as held.
    pub evidence_error: Option<StoreError>,
}

/// `now` is the evaluation instant: the real time, or `--at`. First-seen times come from the
/// state store (read, never locked or written) when it holds any; otherwise a finding counts
/// as first seen at `now`.
pub async fn audit(
    config: &Config,
    source: &impl InventorySource,
    store: &impl StateStore,
    evidence: &dyn LastCalls,
    now: Timestamp,
) -> Result<AuditRun, AuditError> {
    let history = store.load().await?;
    let (calls, evidence_error) = last_calls(config, evidence).await;
    let wants = |account_id: &str, user: &User| has_findings(config, account_id, user, now);
    let mut accounts = source
        .inventory(&inventory_options(config, &wants, history.as_ref(), None))
        .await;
    attach_last_calls(&mut accounts, &calls);
    let first_seen: &dyn FirstSeen = match &history {
        Some(s) => s,
        None => &NoHistory,
    };
    let report = evaluate(config, &accounts, first_seen, now);
    Ok(AuditRun {
        accounts,
        report,
        evidence_error,
    })
}

/// Every key's last call that usage evidence shows, when `usage.hold_live_keys` asks for
/// them. Unreadable evidence holds nothing: decisions are the live read's, and evidence may
/// only delay them.
pub async fn last_calls(config: &Config, evidence: &dyn LastCalls) -> (Vec<LastCall>, Option<StoreError>) {
    if config.policy.hold_live.is_none() {
        return (Vec::new(), None);
    }
    match evidence.last_calls().await {
        Ok(calls) => (calls, None),
        Err(e) => (Vec::new(), Some(e)),
    }
}

/// Gives each account the last calls of its keys (`AccountInventory::last_calls`).
pub fn attach_last_calls(accounts: &mut [AccountInventory], calls: &[LastCall]) {
    let index: std::collections::HashMap<String, usize> = accounts
        .iter()
        .enumerate()
        .map(|(i, a)| (a.account_id.clone(), i))
        .collect();
    for (account_id, key, at) in calls {
        if let Some(&i) = index.get(account_id) {
            accounts[i].last_calls.insert(key.clone(), *at);
        }
    }
}

/// `key_names`: the state whose key ids may name report slots; `listings`: the state whose
/// remembered credentials stand in for listing them (a daemon run between full refreshes;
/// never `keywarden audit`, which a person runs to see IAM as it is now).
pub fn inventory_options<'a>(
    config: &Config,
    wants_key_ids: &'a (dyn Fn(&str, &User) -> bool + Sync),
    key_names: Option<&'a State>,
    listings: Option<&'a State>,
) -> InventoryOptions<'a> {
    InventoryOptions {
        needs_tags: config.needs_tags(),
        exposure: config.policy.rules.exposed_key.enabled,
        mode: config.aws.inventory,
        auto_min_users: config.aws.credential_report_min_users,
        wants_key_ids,
        key_names,
        credential_kinds: config.policy.rules.credential_kinds(),
        listings,
    }
}

/// Whether any rule holds for this user at `now` (exemptions aside: tags are not read yet).
/// In credential-report mode only such users get their key ids read.
/// With automatic rotation, a key nearing `max_age` counts too (the user's tags and key ids
/// decide whether it is rotated).
pub fn has_findings(config: &Config, account_id: &str, user: &User, now: Timestamp) -> bool {
    let (max_age, before) = (config.policy.rules.max_key_age.threshold, config.rotation.auto_before);
    let nearing = user
        .keys
        .iter()
        .any(|k| crate::core::rotation::nearing(k, max_age, before, now));
    let inv = AccountInventory {
        account_id: account_id.to_string(),
        users: vec![user.clone()],
        ..Default::default()
    };
    nearing || !rules::evaluate(&inv, &config.policy, &NoHistory, now).is_empty()
}

/// The rules over every account, as a report.
pub fn evaluate(config: &Config, accounts: &[AccountInventory], history: &dyn FirstSeen, now: Timestamp) -> Report {
    let findings = accounts
        .iter()
        .flat_map(|a| rules::evaluate(a, &config.policy, history, now))
        .collect();
    let mut report = Report::build(now, config.enforcement.mode, accounts, findings);
    report.count_tag_exemptions(accounts, &config.policy.tag_exemptions);
    report
}

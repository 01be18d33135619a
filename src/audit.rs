//! One read-only audit: state (read only) + inventory + rules -> report. Never writes state
//! and never changes a key.

use crate::aws::InventorySource;
use crate::config::Config;
use crate::model::{AccountInventory, Timestamp};
use crate::report::Report;
use crate::rules::{self, FirstSeen, NoHistory};
use crate::state::{self, StateError};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    State(#[from] StateError),
}

/// What one audit saw and concluded. The inventories stay available for per-key metrics.
pub struct AuditRun {
    pub accounts: Vec<AccountInventory>,
    pub report: Report,
}

/// `now` is the evaluation instant: the real time, or `--at`. First-seen times come from the
/// state file when it exists; otherwise a finding counts as first seen at `now`.
pub async fn audit(config: &Config, source: &impl InventorySource, now: Timestamp) -> Result<AuditRun, AuditError> {
    let history = state::load(&config.state_path)?;
    let accounts = source.inventory(config.policy.needs_tags()).await;
    let first_seen: &dyn FirstSeen = match &history {
        Some(s) => s,
        None => &NoHistory,
    };
    let report = evaluate(config, &accounts, first_seen, now);
    Ok(AuditRun { accounts, report })
}

/// The rules over every account, as a report.
pub fn evaluate(config: &Config, accounts: &[AccountInventory], history: &dyn FirstSeen, now: Timestamp) -> Report {
    let findings = accounts
        .iter()
        .flat_map(|a| rules::evaluate(a, &config.policy, history, now))
        .collect();
    Report::build(now, config.enforcement.mode, accounts, findings)
}

//! One read-only audit: state (read only) + inventory + rules -> report. Never writes state
//! and never changes a key.

use crate::aws::InventorySource;
use crate::config::Config;
use crate::model::Timestamp;
use crate::report::Report;
use crate::rules::{self, FirstSeen, NoHistory};
use crate::state::{self, StateError};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    State(#[from] StateError),
}

/// `now` is the evaluation instant: the real time, or `--at`. First-seen times come from the
/// state file when it exists; otherwise a finding counts as first seen at `now`.
pub async fn audit(
    config: &Config,
    source: &impl InventorySource,
    now: Timestamp,
) -> Result<Report, AuditError> {
    let history = state::load(&config.state_path)?;
    let accounts = source.inventory(config.policy.needs_tags()).await;
    let first_seen: &dyn FirstSeen = match &history {
        Some(s) => s,
        None => &NoHistory,
    };
    let findings = accounts
        .iter()
        .flat_map(|a| rules::evaluate(a, &config.policy, first_seen, now))
        .collect();
    Ok(Report::build(
        now,
        config.enforcement.mode,
        &accounts,
        findings,
    ))
}

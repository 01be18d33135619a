//! `[export.security_hub]`: after each run, the leader brings Security Hub in line with the
//! report, account by account (each account imports its own findings, with the credentials
//! the run reads it with, into its hub in the configured region).
//!
//! Per account: list keywarden's active findings there (`GetFindings`), then import, in
//! batches of at most 100, every finding that is new, changed, or last updated a day ago or
//! more ([`REFRESH`]), and archive every active one that stopped holding (key rotated,
//! deactivated, deleted, or exempted). Archiving needs a complete read of the account: after a
//! failed read a missing finding proves nothing, so nothing is archived there that run. An
//! export failure is counted and logged and never touches the audit or enforcement.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::TimeDelta;
use serde_json::Value;

use crate::aws::securityhub::{HubError, SecurityHub, MAX_BATCH};
use crate::config::{Config, SecurityHubSettings};
use crate::core::model::Timestamp;
use crate::core::report::Report;
use crate::output::asff;
use crate::ports::RequestObserver;

/// An unchanged finding is re-imported once it was last updated this long ago, so that
/// Security Hub never shows a live finding as stale (its own controls refresh daily too).
pub const REFRESH: TimeDelta = TimeDelta::days(1);

/// What one export did.
#[derive(Debug, Default, PartialEq)]
pub struct Exported {
    /// Findings imported as ACTIVE (new, changed or refreshed).
    pub active: usize,
    pub archived: usize,
    /// Failed calls and refused findings, one line each.
    pub errors: Vec<String>,
}

/// The imports one account needs.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub import: Vec<Value>,
    pub archive: Vec<Value>,
}

/// Pure: what to send, given what the report says (`desired`) and what the hub holds
/// (`active`). `settled`: the account was read completely, so a finding missing from the
/// report has stopped holding.
pub fn changes(desired: Vec<Value>, active: &[Value], now: &Timestamp, settled: bool) -> Changes {
    let id = |v: &Value| v["Id"].as_str().unwrap_or_default().to_string();
    let wanted: HashSet<String> = desired.iter().map(id).collect();
    // An account can hold thousands: looked up by id, not searched per finding.
    let held_by_id: HashMap<String, &Value> = active.iter().map(|a| (id(a), a)).collect();
    let stale = |held: &Value| {
        held["UpdatedAt"]
            .as_str()
            .and_then(|t| crate::sys::timefmt::parse(t).ok())
            .is_none_or(|t| now.signed_duration_since(t) >= REFRESH)
    };
    let import = desired
        .into_iter()
        .filter_map(|mut d| match held_by_id.get(&id(&d)).copied() {
            None => Some(d),
            Some(held) => {
                keep_first_seen(&mut d, held);
                let changed = asff::first_difference(&d, held);
                if let Some(k) = changed {
                    tracing::debug!(id = %d["Id"], field = %k, now = %d[k], before = %held[k], "finding changed");
                }
                (changed.is_some() || stale(held)).then_some(d)
            }
        })
        .collect();
    let archive = if settled {
        active
            .iter()
            .filter(|a| !wanted.contains(&id(a)))
            .map(|a| asff::archived(a, now))
            .collect()
    } else {
        Vec::new()
    };
    Changes { import, archive }
}

/// The state records first-seen times only of findings that lead to a deactivation; a finding
/// keywarden only reports is "first seen" at every run. The hub's copy knows better: the
/// earlier of the two times stands, so such a finding does not change every run.
fn keep_first_seen(desired: &mut Value, held: &Value) {
    let earlier = |a: &Value, b: &Value| -> Option<Value> {
        let t = |v: &Value| v.as_str().and_then(|s| crate::sys::timefmt::parse(s).ok());
        match (t(a), t(b)) {
            (Some(x), Some(y)) if y < x => Some(b.clone()),
            _ => None,
        }
    };
    for key in ["CreatedAt", "FirstObservedAt"] {
        if let Some(v) = earlier(&desired[key], &held[key]) {
            desired[key] = v;
        }
    }
    let field = "keywarden/FirstSeen";
    if let Some(v) = earlier(&desired["ProductFields"][field], &held["ProductFields"][field]) {
        desired["ProductFields"][field] = v;
    }
}

/// Brings every connected account's hub in line with `report`.
pub async fn security_hub(
    config: &Config,
    settings: &SecurityHubSettings,
    accounts: &[(&str, &aws_config::SdkConfig)],
    report: &Report,
    observer: Option<Arc<dyn RequestObserver>>,
) -> Exported {
    let mut out = Exported::default();
    let connector = SecurityHub::connector();
    for (done, (account, sdk)) in accounts.iter().enumerate() {
        let hub = match SecurityHub::new(Arc::clone(&connector), sdk, settings, &config.aws, observer.clone()) {
            Ok(h) => h,
            Err(e) => {
                out.errors.push(format!("account {account}: {e}"));
                continue;
            }
        };
        let region = hub.region().to_string();
        let active = match hub
            .active(&asff::product_arn(&region, account), asff::GENERATOR_ID)
            .await
        {
            Ok(a) => a,
            Err(e @ HubError::Transport { .. }) => {
                // The endpoint is the same for every account: after its retries failed, the
                // rest would only wait as long again each, and hold up the next run.
                let left = accounts.len() - done;
                out.errors.push(format!(
                    "account {account}: {e}; Security Hub is unreachable, {left} account(s) not exported this run"
                ));
                break;
            }
            Err(e) => {
                out.errors.push(format!("account {account}: {e}"));
                continue;
            }
        };
        let desired = report
            .findings
            .iter()
            .filter(|f| &f.account_id == account && !f.exempt)
            .map(|f| asff::finding(report, f, &region))
            .collect();
        let settled = !report.errors.iter().any(|e| &e.account_id == account);
        let ch = changes(desired, &active, &report.evaluated_at, settled);
        let all: Vec<Value> = ch.import.into_iter().chain(ch.archive).collect();
        for batch in all.chunks(MAX_BATCH) {
            match hub.import(batch).await {
                Ok(refused) => {
                    let refused_ids: HashSet<&str> = refused.iter().map(|r| r.id.as_str()).collect();
                    for f in batch
                        .iter()
                        .filter(|f| !refused_ids.contains(f["Id"].as_str().unwrap_or_default()))
                    {
                        if f["RecordState"] == "ARCHIVED" {
                            out.archived += 1;
                        } else {
                            out.active += 1;
                        }
                    }
                    for r in refused {
                        out.errors.push(format!(
                            "account {account}: finding {} refused: {}: {}",
                            r.id, r.code, r.message
                        ));
                    }
                }
                Err(e) => out.errors.push(format!("account {account}: {e}")),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> Timestamp {
        crate::sys::timefmt::parse(s).expect("time")
    }

    fn f(id: &str, title: &str, updated: &str) -> Value {
        json!({"Id": id, "Title": title, "UpdatedAt": updated, "LastObservedAt": updated,
               "Compliance": {"Status": "FAILED", "RelatedRequirements": ["CIS-v1.4.0:1.12"]}})
    }

    #[test]
    fn only_new_changed_and_day_old_findings_are_imported() {
        let now = at("2026-12-02T12:00:00Z");
        let held = vec![
            f("same", "t", "2026-12-02T06:00:00Z"),
            f("changed", "old title", "2026-12-02T06:00:00Z"),
            f("day-old", "t", "2026-12-01T11:00:00Z"),
        ];
        let mut held_with_hub_fields = held.clone();
        held_with_hub_fields[0]["ProductName"] = json!("Default");
        let desired = vec![
            f("same", "t", "2026-12-02T12:00:00Z"),
            f("changed", "new title", "2026-12-02T12:00:00Z"),
            f("day-old", "t", "2026-12-02T12:00:00Z"),
            f("new", "t", "2026-12-02T12:00:00Z"),
        ];
        let ch = changes(desired, &held_with_hub_fields, &now, true);
        let ids: Vec<&str> = ch.import.iter().map(|v| v["Id"].as_str().unwrap_or("")).collect();
        assert_eq!(ids, ["changed", "day-old", "new"]);
        assert!(ch.archive.is_empty());
    }

    #[test]
    fn a_report_only_finding_keeps_the_first_seen_time_the_hub_has() {
        let now = at("2026-12-02T12:00:00Z");
        let mut held = f("aging", "t", "2026-12-02T06:00:00Z");
        held["CreatedAt"] = json!("2026-11-01T00:00:00Z");
        held["ProductFields"] = json!({"keywarden/FirstSeen": "2026-11-01T00:00:00Z"});
        let mut desired = f("aging", "t", "2026-12-02T12:00:00Z");
        desired["CreatedAt"] = json!("2026-12-02T12:00:00Z");
        desired["ProductFields"] = json!({"keywarden/FirstSeen": "2026-12-02T12:00:00Z"});
        assert!(changes(vec![desired.clone()], std::slice::from_ref(&held), &now, true)
            .import
            .is_empty());
        // A real change still goes, with the hub's first-seen time.
        desired["Title"] = json!("other");
        let ch = changes(vec![desired], &[held], &now, true);
        assert_eq!(ch.import[0]["CreatedAt"], "2026-11-01T00:00:00Z");
        assert_eq!(
            ch.import[0]["ProductFields"]["keywarden/FirstSeen"],
            "2026-11-01T00:00:00Z"
        );
    }

    #[test]
    fn a_finding_that_stopped_holding_is_archived_and_passed_only_after_a_complete_read() {
        let now = at("2026-12-02T12:00:00Z");
        let held = vec![
            f("rotated", "t", "2026-12-02T06:00:00Z"),
            f("kept", "t", "2026-12-02T06:00:00Z"),
        ];
        let desired = vec![f("kept", "t", "2026-12-02T12:00:00Z")];
        let ch = changes(desired.clone(), &held, &now, true);
        assert!(ch.import.is_empty());
        assert_eq!(ch.archive.len(), 1);
        let a = &ch.archive[0];
        assert_eq!(a["Id"], "rotated");
        assert_eq!(a["RecordState"], "ARCHIVED");
        assert_eq!(a["Compliance"]["Status"], "PASSED");
        assert_eq!(a["Compliance"]["RelatedRequirements"], json!(["CIS-v1.4.0:1.12"]));
        assert_eq!(a["UpdatedAt"], crate::sys::timefmt::format(&now));
        // The account's read failed: nothing is archived on partial data.
        assert!(changes(desired, &held, &now, false).archive.is_empty());
    }
}

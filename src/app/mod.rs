//! Running keywarden over the ports, one module per job:
//! - `audit`: a read-only audit;
//! - `execute`: acting on a plan (fresh re-read, decide again, act, read back);
//! - `cycle`: one audit + enforcement cycle, cron- or event-triggered (`cycle::Trigger`);
//! - `harness`: how the daemon runs a cycle (one context value, a panic ends only the run);
//! - `internal_events`: what happened in the daemon, each with its log line and metrics;
//! - `daemon`: the loop around them (start, listener, schedule, reload, signals, lease, stop);
//! - `events`: event runs from the events queue;
//! - `reactivate`: undoing a deactivation; `reactivate_password`: giving a console password
//!   back after its deletion; `rotate`: guided and automatic rotation;
//! - `export`: the findings' export to Security Hub;
//! - `check_access`: the permissions a config needs, put to the policy simulator;
//! - `state_admin`: `state init` and `state import`;
//! - `usage`: `keywarden usage`; `backfill`: usage profiles from CloudTrail's LookupEvents;
//!   `usage_events`: the usage queue's consumer (every instance).

pub mod audit;
pub mod backfill;
pub mod check_access;
pub mod cycle;
pub mod daemon;
pub mod events;
pub mod execute;
pub mod export;
pub mod harness;
pub mod internal_events;
pub mod reactivate;
pub mod reactivate_password;
pub mod rotate;
pub mod state_admin;
pub mod usage;
pub mod usage_events;

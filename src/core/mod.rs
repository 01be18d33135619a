//! The pure core, one module per idea: what was read (`model`), what the operator decided
//! (`policy`), who owns a user and which tag exemptions hold (`owners`), what breaks the rules
//! (`rules`), what to do about it (`plan`), what is remembered (`history`), what was done
//! (`journal`), the summary of a run (`report`), guided rotation (`rotation`), what a queued
//! event means (`events`), the leader lease's steps (`lease`), which actions a config needs
//! (`access`), the benchmark controls of each rule (`controls`), the partition of a region
//! (`arn`), whether the clock can be trusted (`clock`), when enforcement may act (`windows`)
//! and every long-lived credential kind of a user with the checks of the non-key kinds
//! (`credentials`), and what uses each access key and what should replace it (`usage`).
//! No I/O, no clock, no async runtime, no AWS types, no wire format; it imports nothing outside
//! `core` (`tests/architecture.rs` checks).

pub mod access;
pub mod arn;
pub mod clock;
pub mod controls;
pub mod credentials;
pub mod events;
pub mod history;
pub mod journal;
pub mod lease;
pub mod model;
pub mod owners;
pub mod plan;
pub mod policy;
pub mod report;
pub mod rotation;
pub mod rules;
pub mod usage;
pub mod windows;

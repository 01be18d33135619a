//! The pure core: what was read (`model`), what the operator decided (`policy`), who owns a user and
//! which tag exemptions hold (`owners`), what breaks the rules (`rules`), what to do about it (`plan`), guided rotation (`rotation`), what is remembered (`history`),
//! what was done (`journal`), the partition of a region (`arn`), whether
//! the clock can be trusted (`clock`), when enforcement may act (`windows`) and the summary of a run (`report`). No I/O, no clock,
//! no async runtime, no AWS types, no wire format; it imports nothing outside `core`
//! (`tests/architecture.rs` checks).

pub mod access;
pub mod arn;
pub mod clock;
pub mod controls;
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
pub mod windows;

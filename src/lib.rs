//! keywarden: keeps AWS IAM access keys in line with CIS AWS Foundations 1.12-1.14.
//!
//! Layers (see ARCHITECTURE.md): `config` (raw -> validated), `model` + `rules` + `report`
//! (the pure core), `aws`, `accounts` and `state` (edges), `audit` (wires one read-only run).

pub mod accounts;
pub mod audit;
pub mod aws;
pub mod clock;
pub mod config;
pub mod credential_report;
pub mod daemon;
pub mod enforce;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod ratelimit;
pub mod report;
pub mod rules;
pub mod state;
pub mod timefmt;
pub mod web;

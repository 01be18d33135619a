//! keywarden: keeps AWS IAM access keys in line with CIS AWS Foundations 1.12-1.14.
//!
//! The folders are the architecture (ARCHITECTURE.md): `core` decides (pure: no I/O, no
//! clock, no wire format), `ports` are the traits the run is written against, `app` runs audits
//! and enforcement over them, and the edges implement them or present results: `aws`, `state`,
//! `config`, `server`, `output`, `sys`.

pub mod app;
pub mod aws;
pub mod cli;
pub mod config;
pub mod core;
pub mod output;
pub mod ports;
pub mod server;
pub mod state;
pub mod sys;

//! keywarden's integration tests, one binary with a module per subject (ripgrep's layout):
//! linking the AWS SDK into one test binary instead of one per file saves minutes of link time
//! and gigabytes of target directory. `common` is the harness every module shares: moto on a
//! free loopback port, an IAM client to seed it, and the real `keywarden` binary.
//!
//! Modules named `*_moto` run the binary against moto over HTTP; the others test the command
//! line, the packaging, the generated docs and the source tree's shape.

mod common;

mod accounts_moto;
mod architecture;
mod audit_moto;
mod check_access_moto;
mod config_cli;
mod crash_moto;
mod credentials_moto;
mod daemon_moto;
mod demo;
mod docs;
mod enforce_moto;
mod events_moto;
mod exposed_moto;
mod faults_moto;
mod formats_moto;
mod generated_docs;
mod hostile_cli;
mod incremental_moto;
mod journal_moto;
mod journald;
mod lease_moto;
mod owners_moto;
mod packaging;
mod password_moto;
mod properties;
mod reactivate_moto;
mod rotate_moto;
mod safety_moto;
mod securityhub_moto;
mod service_credentials_moto;
mod usage_moto;
mod user_credential_rules_moto;
mod user_credentials_moto;
mod web_tls;
mod windows_moto;

//! Running keywarden over the ports: a read-only audit (`audit`), acting on a plan
//! (`execute`), one audit + enforcement cycle (`cycle`), the daemon around it (`daemon`), and
//! undoing a deactivation (`reactivate`), and the findings' export to Security Hub (`export`).

pub mod audit;
pub mod check_access;
pub mod cycle;
pub mod daemon;
pub mod events;
pub mod execute;
pub mod export;
pub mod reactivate;
pub mod rotate;
pub mod state_admin;

//! Running keywarden over the ports: a read-only audit (`audit`), acting on a plan
//! (`execute`), one audit + enforcement cycle (`cycle`) and the daemon around it (`daemon`).

pub mod audit;
pub mod cycle;
pub mod daemon;
pub mod execute;

//! The forms of the report (and of the action journal, `history`, and of `keywarden usage`,
//! `usage`): JSON for scripts and the API, tables for people, and the sentences the acting commands say (`sentences`).

pub mod access;
pub mod asff;
pub mod csv;
pub mod history;
pub mod json;
pub mod ocsf;
pub mod sentences;
pub mod table;
pub mod usage;

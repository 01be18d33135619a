//! The state store behind the `StateStore` port: a JSON file, written atomically and locked
//! for a whole run (`file`); and the action journal behind `ActionJournal`, JSON lines
//! appended and fsynced (`journal`).

pub mod file;
pub mod journal;

pub use file::{load, save, FileStore, Lock, StateError};

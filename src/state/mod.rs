//! The state store behind the `StateStore` port: a JSON file, written atomically and locked
//! for a whole run (`file`).

pub mod file;

pub use file::{load, save, FileStore, Lock, StateError};

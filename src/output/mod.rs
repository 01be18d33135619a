//! The forms of the report: JSON for scripts and the API, the table for people.

pub mod json;
pub mod table;

//! The forms of the action journal: a JSON array (the line format of the journal, field names
//! as docs/names.md lists them) and a table for people.

use std::fmt::Write;

use crate::core::journal::JournalEntry;
use crate::state::journal::JournalDoc;

pub fn to_json(entries: &[&JournalEntry]) -> String {
    let docs: Vec<JournalDoc> = entries.iter().map(|e| JournalDoc::from(*e)).collect();
    // Plain strings and numbers: serializing cannot fail.
    serde_json::to_string_pretty(&docs).unwrap_or_else(|_| "[]".into())
}

pub fn to_table(entries: &[&JournalEntry]) -> String {
    if entries.is_empty() {
        return "No actions.\n".into();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<19} {:<16} {:<13} {:<16} {:<20} WHY",
        "TIME (UTC)", "ACTION", "OUTCOME", "USER", "ACCESS KEY"
    );
    for e in entries {
        let why = match (&e.reason, &e.operator, &e.error) {
            (Some(reason), operator, _) => format!("{reason} (by {})", operator.as_deref().unwrap_or("?")),
            (None, _, Some(error)) => error.clone(),
            _ => e.rules.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","),
        };
        let action = match e.mode.as_str() {
            "dry-run" => format!("{} (dry)", e.action.as_str()),
            _ => e.action.as_str().to_string(),
        };
        let _ = writeln!(
            out,
            "{:<19} {:<16} {:<13} {:<16} {:<20} {}",
            e.time.format("%Y-%m-%d %H:%M:%S"),
            action,
            e.outcome,
            e.user,
            e.access_key_id,
            why
        );
    }
    out
}

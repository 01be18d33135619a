//! `audit --format csv`: one row per finding with every field of the JSON report's findings,
//! in the same order, for auditors' spreadsheets. RFC 4180: CRLF line ends, fields quoted when
//! they hold a comma, quote or line break. Lists (`controls`) are joined with `;`, nulls are
//! empty, booleans `true`/`false`, times RFC 3339 as in the JSON.

use crate::core::report::Report;

/// The JSON finding's fields, in its order (a unit test keeps the two the same).
pub const FIELDS: [&str; 24] = [
    "account_id",
    "user",
    "credential_type",
    "credential_id",
    "access_key_id",
    "rule",
    "controls",
    "created",
    "last_used",
    "exempt",
    "exemption_reason",
    "exemption_source",
    "tag_exemption_problem",
    "expired_exemption",
    "owner",
    "action",
    "first_seen",
    "deactivate_after",
    "own_credentials",
    "held",
    "kept_access_key_id",
    "waiting_for_window",
    // Not in the JSON finding: the report's, repeated so that a row stands on its own.
    "evaluated_at",
    "mode",
];

fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(";"),
        other => other.to_string(),
    }
}

impl Report {
    pub fn to_csv(&self) -> String {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(Vec::new());
        let evaluated_at = crate::sys::timefmt::format(&self.evaluated_at);
        // Writing to a Vec cannot fail.
        let _ = w.write_record(FIELDS);
        for f in crate::output::json::finding_values(self) {
            let row: Vec<String> = FIELDS
                .iter()
                .map(|k| match *k {
                    "evaluated_at" => evaluated_at.clone(),
                    "mode" => self.mode.clone(),
                    k => cell(&f[k]),
                })
                .collect();
            let _ = w.write_record(&row);
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }
}

//! The IAM credential report (CSV): any bytes are a report or an error, never a panic. A
//! report that parses has distinct users with names IAM can give, and every row's slots in
//! order; the date check never panics either.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use keywarden::aws::credential_report::{check_dates, parse};
    if let Ok(report) = parse(data) {
        let mut users = std::collections::BTreeSet::new();
        for row in &report.rows {
            assert!(users.insert(row.user.clone()), "user {} twice", row.user);
            assert!(!row.user.is_empty() && row.user.len() <= 64);
            assert!(row.slots.len() <= 2);
        }
        let _ = check_dates(&report, chrono::Utc::now());
    }
});

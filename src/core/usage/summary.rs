//! What `keywarden usage` says about one key: its profile (or none yet), the verdict on what
//! uses it, and what should replace it. The rendering is `output::usage`'s.

use chrono::TimeDelta;

use crate::core::model::Timestamp;
use crate::core::usage::profile::Profile;
use crate::core::usage::replacement::{replacement, Replacement};
use crate::core::usage::workload::{classify, Verdict};

/// The window of the "calls in 30 days" count.
pub const RECENT: TimeDelta = TimeDelta::days(30);

/// One key's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    pub user: String,
    /// The profile (an empty one when no event was seen yet).
    pub profile: Profile,
    pub verdict: Verdict,
    pub replacement: Replacement,
    /// Calls in the last [`RECENT`].
    pub recent_events: u64,
}

/// The usage of `access_key_id` of `user` at `now`, from its profile if there is one.
pub fn summarize(
    account_id: &str,
    user: &str,
    access_key_id: &str,
    profile: Option<&Profile>,
    now: Timestamp,
) -> KeyUsage {
    let profile = profile
        .cloned()
        .unwrap_or_else(|| Profile::new(account_id, access_key_id));
    let verdict = classify(&profile);
    let replacement = replacement(&profile, &verdict);
    KeyUsage {
        user: user.to_string(),
        recent_events: profile.events_within(RECENT, now),
        profile,
        verdict,
        replacement,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::usage::workload::Workload;

    #[test]
    fn a_key_without_a_profile_is_unknown_with_nothing_to_replace_it_yet() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .into();
        let u = summarize("123456789012", "alice", "AKIAIOSFODNN7EXAMPLE", None, now);
        assert_eq!((u.verdict.workload, u.recent_events), (Workload::Unknown, 0));
        assert_eq!(u.profile.access_key_id, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(u.replacement.kind.as_str(), "none");
    }
}

//! Durations in the config: humantime strings, bounded so that date arithmetic on them never
//! nears chrono's limits.

use std::time::Duration;

use chrono::TimeDelta;

/// The longest duration any setting takes: 100 years (humantime's `100y`). Bounding every
/// duration here is what keeps date arithmetic on them (first seen + grace, now - max age)
/// far from chrono's limits.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// A humantime duration within [`MAX_DURATION`], or the message saying why not.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?}: {e} (use e.g. \"90d\", \"12h\", \"30s\")"))?;
    if d > MAX_DURATION {
        return Err(format!(
            "duration {s:?} is longer than 100 years (the most any setting takes)"
        ));
    }
    Ok(d)
}

/// A validated duration as the core's type (saturating: the bound keeps it far from overflow).
pub(super) fn to_delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

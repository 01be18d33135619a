//! Whether the local clock can be trusted to act on: pure, the instants are passed in.
//!
//! Grace periods, deadlines and backoffs are all local-clock arithmetic. A host whose clock is
//! minutes off AWS's (a broken NTP, a VM resumed from suspend), or that went backwards since
//! the last run, would deactivate early or restart grace periods; such a run audits and
//! publishes as usual but deactivates nothing.

use chrono::TimeDelta;

use crate::core::model::Timestamp;

/// Further apart than this, the local clock and AWS's disagree (SigV4 itself rejects
/// requests more than 5 minutes off, so AWS answering at all bounds the usual case).
pub const MAX_SKEW: TimeDelta = TimeDelta::minutes(5);

#[derive(Debug, Clone, PartialEq)]
pub enum ClockProblem {
    /// Local time minus the `Date` of AWS's answers, in seconds.
    Skewed { seconds: f64 },
    /// `now` is before the last run recorded in the state.
    WentBackwards { last_run: Timestamp, now: Timestamp },
}

impl std::fmt::Display for ClockProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClockProblem::Skewed { seconds } => write!(
                f,
                "the local clock is {:.0} s {} AWS's (more than {} s apart)",
                seconds.abs(),
                if *seconds > 0.0 { "ahead of" } else { "behind" },
                MAX_SKEW.num_seconds()
            ),
            ClockProblem::WentBackwards { last_run, now } => write!(
                f,
                "the local clock went backwards: it is {} but the last run was at {}",
                now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                last_run.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        }
    }
}

/// `skew`: the largest local-minus-AWS difference seen this run (`None`: no answer had a
/// `Date`). `last_run`: the local time of the previous run, from the state.
pub fn check(now: Timestamp, last_run: Option<Timestamp>, skew: Option<f64>) -> Result<(), ClockProblem> {
    if let Some(seconds) = skew {
        if seconds.abs() > MAX_SKEW.num_seconds() as f64 {
            return Err(ClockProblem::Skewed { seconds });
        }
    }
    match last_run {
        Some(last_run) if now < last_run => Err(ClockProblem::WentBackwards { last_run, now }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn five_minutes_either_way_is_fine_more_is_not() {
        assert_eq!(check(t0(), None, None), Ok(()));
        assert_eq!(check(t0(), None, Some(300.0)), Ok(()));
        assert_eq!(check(t0(), None, Some(-300.0)), Ok(()));
        assert_eq!(
            check(t0(), None, Some(301.0)),
            Err(ClockProblem::Skewed { seconds: 301.0 })
        );
        let e = check(t0(), None, Some(-900.0)).unwrap_err();
        assert!(e.to_string().contains("900 s behind"), "{e}");
    }

    #[test]
    fn a_clock_before_the_last_run_went_backwards() {
        let later = t0() + TimeDelta::seconds(1);
        assert_eq!(check(later, Some(t0()), Some(0.0)), Ok(()));
        assert_eq!(check(t0(), Some(t0()), None), Ok(()));
        assert!(matches!(
            check(t0(), Some(later), None),
            Err(ClockProblem::WentBackwards { .. })
        ));
    }
}

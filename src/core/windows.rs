//! Enforcement windows: when keywarden may deactivate keys (`enforcement.windows` in
//! `enforcement.timezone`), so that someone is around when a key goes dark.
//!
//! A window is `DAYS HH:MM-HH:MM`: DAYS is a day (`Mon`), a range (`Mon-Fri`, `Fri-Mon` wraps)
//! or a list (`Sat,Sun`); the end is exclusive and may be `24:00`; a window whose end is not
//! after its start runs past midnight into the next day (`Fri 22:00-02:00` is Friday night).
//! Local times follow the zone's rules: on a day that skips an hour (DST starts) the skipped
//! local minutes never occur, and on a day that repeats one both occurrences are inside a
//! window that contains that local time. No windows: any time.

use chrono::{Datelike, TimeDelta, Timelike};
use chrono_tz::Tz;

use crate::core::model::Timestamp;

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Monday first.
    days: [bool; 7],
    /// Minutes after local midnight.
    start: u32,
    /// Exclusive; 1440 is midnight at the end of the day. `end <= start`: past midnight.
    end: u32,
}

impl Window {
    pub fn parse(s: &str) -> Result<Window, String> {
        let bad = |why: &str| format!("{s:?} is not a window ({why}; e.g. \"Mon-Fri 09:00-16:00\")");
        let (days, times) = s.trim().split_once(' ').ok_or_else(|| bad("DAYS HH:MM-HH:MM"))?;
        let (start, end) = times.trim().split_once('-').ok_or_else(|| bad("no time range"))?;
        let start = minutes(start)
            .filter(|m| *m < 1440)
            .ok_or_else(|| bad("bad start time"))?;
        let end = minutes(end).ok_or_else(|| bad("bad end time"))?;
        if start == end {
            return Err(bad("the window is empty"));
        }
        let mut set = [false; 7];
        for part in days.split(',') {
            let (from, to) = part.split_once('-').unwrap_or((part, part));
            let (from, to) = (
                day(from).ok_or_else(|| bad("unknown day"))?,
                day(to).ok_or_else(|| bad("unknown day"))?,
            );
            let mut d = from;
            loop {
                set[d] = true;
                if d == to {
                    break;
                }
                d = (d + 1) % 7;
            }
        }
        Ok(Window { days: set, start, end })
    }

    /// Whether local weekday `wd` (Monday 0) at `minute` is inside.
    fn contains(&self, wd: usize, minute: u32) -> bool {
        if self.end > self.start {
            self.days[wd] && minute >= self.start && minute < self.end
        } else {
            // Past midnight: the evening of a listed day, or the early hours after it.
            (self.days[wd] && minute >= self.start) || (self.days[(wd + 6) % 7] && minute < self.end)
        }
    }
}

fn minutes(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(1440),
        (h, m) if h < 24 && m < 60 => Some(h * 60 + m),
        _ => None,
    }
}

fn day(s: &str) -> Option<usize> {
    DAY_NAMES.iter().position(|d| d.eq_ignore_ascii_case(s.trim()))
}

/// A window as the config writes it: every day named (`Mon,Tue,Wed 09:00-16:00`), which
/// [`Window::parse`] reads back to the same window.
impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let days: Vec<&str> = DAY_NAMES
            .iter()
            .zip(self.days)
            .filter(|(_, on)| *on)
            .map(|(d, _)| *d)
            .collect();
        let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{} {}-{}", days.join(","), hm(self.start), hm(self.end))
    }
}

/// The windows and their zone. Empty: enforcement at any time.
#[derive(Debug, Clone, PartialEq)]
pub struct Windows {
    pub list: Vec<Window>,
    pub tz: Tz,
}

impl Default for Windows {
    fn default() -> Windows {
        Windows {
            list: Vec::new(),
            tz: Tz::UTC,
        }
    }
}

impl Windows {
    pub fn is_always_open(&self) -> bool {
        self.list.is_empty()
    }

    pub fn is_open(&self, t: Timestamp) -> bool {
        if self.list.is_empty() {
            return true;
        }
        let local = t.with_timezone(&self.tz);
        let wd = local.weekday().num_days_from_monday() as usize;
        let minute = local.hour() * 60 + local.minute();
        self.list.iter().any(|w| w.contains(wd, minute))
    }

    /// The first instant at or after `t` inside a window (to the minute); `None` when no
    /// window ever opens within two weeks (e.g. only a local time the zone skips).
    pub fn next_open(&self, t: Timestamp) -> Option<Timestamp> {
        if self.is_open(t) {
            return Some(t);
        }
        // Step over whole minutes in UTC: local time then follows the zone's rules through
        // every DST change, skipped and repeated hours included.
        let mut m = t.with_second(0)?.with_nanosecond(0)? + TimeDelta::minutes(1);
        for _ in 0..(14 * 1440) {
            if self.is_open(m) {
                return Some(m);
            }
            m += TimeDelta::minutes(1);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_window_prints_as_it_parses() {
        for text in ["Mon-Fri 09:00-16:00", "Sat 22:00-02:00", "Sun,Wed 00:00-24:00"] {
            let w = Window::parse(text).unwrap();
            assert_eq!(Window::parse(&w.to_string()), Ok(w.clone()), "{text} -> {w}");
        }
        assert_eq!(
            Window::parse("Fri-Mon 09:00-10:00").unwrap().to_string(),
            "Mon,Fri,Sat,Sun 09:00-10:00"
        );
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Timestamp {
        chrono::Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }
    fn windows(list: &[&str], tz: Tz) -> Windows {
        Windows {
            list: list.iter().map(|w| Window::parse(w).unwrap()).collect(),
            tz,
        }
    }

    #[test]
    fn parses_days_ranges_lists_and_times() {
        let w = Window::parse("Mon-Fri 09:00-16:00").unwrap();
        assert_eq!(w.days, [true, true, true, true, true, false, false]);
        assert_eq!((w.start, w.end), (540, 960));
        assert_eq!(
            Window::parse("Sat,Sun 10:00-24:00").unwrap().days,
            [false, false, false, false, false, true, true]
        );
        assert_eq!(
            Window::parse("Fri-Mon 00:00-01:00").unwrap().days,
            [true, false, false, false, true, true, true]
        );
        for bad in [
            "Mon",
            "Mon 09:00",
            "Funday 09:00-10:00",
            "Mon 9:00-10:00",
            "Mon 09:00-24:01",
            "Mon 24:00-01:00",
            "Mon 10:00-10:00",
            "Mon 09:60-10:00",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn business_hours_in_a_zone_across_both_dst_changes() {
        let w = windows(&["Mon-Fri 09:00-16:00"], chrono_tz::Europe::Berlin);
        // Friday 2026-03-27, CET (UTC+1): 09:00 local is 08:00 UTC.
        assert!(!w.is_open(utc(2026, 3, 27, 7, 59)));
        assert!(w.is_open(utc(2026, 3, 27, 8, 0)));
        assert!(w.is_open(utc(2026, 3, 27, 14, 59)));
        assert!(!w.is_open(utc(2026, 3, 27, 15, 0)), "the end is exclusive");
        // Clocks go forward on Sunday 2026-03-29: Monday 09:00 CEST is 07:00 UTC.
        assert_eq!(w.next_open(utc(2026, 3, 27, 15, 0)), Some(utc(2026, 3, 30, 7, 0)));
        // And back on Sunday 2026-10-25: Monday 09:00 CET is 08:00 UTC again.
        assert_eq!(w.next_open(utc(2026, 10, 23, 20, 0)), Some(utc(2026, 10, 26, 8, 0)));
        assert!(!w.is_open(utc(2026, 10, 26, 7, 30)));
    }

    #[test]
    fn a_window_past_midnight_belongs_to_the_day_it_starts() {
        let w = windows(&["Fri 22:00-02:00"], Tz::UTC);
        assert!(w.is_open(utc(2026, 12, 4, 22, 0)), "Friday evening");
        assert!(w.is_open(utc(2026, 12, 5, 1, 59)), "Saturday early hours");
        assert!(!w.is_open(utc(2026, 12, 5, 2, 0)));
        assert!(
            !w.is_open(utc(2026, 12, 4, 1, 0)),
            "not Friday's early hours (Thursday night)"
        );
        assert_eq!(w.next_open(utc(2026, 12, 5, 3, 0)), Some(utc(2026, 12, 11, 22, 0)));
    }

    #[test]
    fn skipped_and_repeated_local_hours() {
        // 02:00-03:00 does not exist in Berlin on 2026-03-29: that Sunday never opens.
        let w = windows(&["Sun 02:00-03:00"], chrono_tz::Europe::Berlin);
        assert_eq!(w.next_open(utc(2026, 3, 29, 0, 0)), Some(utc(2026, 4, 5, 0, 0)));
        // 02:00-03:00 happens twice on 2026-10-25: both are inside (00:00-02:00 UTC).
        assert!(w.is_open(utc(2026, 10, 25, 0, 30)));
        assert!(w.is_open(utc(2026, 10, 25, 1, 30)));
        assert!(!w.is_open(utc(2026, 10, 25, 2, 0)));
    }

    #[test]
    fn no_windows_is_any_time_and_next_open_keeps_the_instant() {
        let any = Windows::default();
        assert!(any.is_open(utc(2026, 12, 1, 3, 0)));
        let w = windows(&["Mon-Fri 09:00-16:00"], Tz::UTC);
        let inside = utc(2026, 12, 1, 10, 0) + TimeDelta::seconds(17);
        assert_eq!(w.next_open(inside), Some(inside));
    }
}

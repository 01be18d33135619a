//! The backfill of a key's profile from CloudTrail's LookupEvents, as decisions: where the
//! next page ends, and what a page read changes. LookupEvents answers newest first, 50 events
//! a page, over the last 90 days; the backfill reads backwards from where the live feed began
//! (or from its own start) and keeps its place in the profile after every page, so a restart
//! resumes where it stopped instead of reading again. A key is read for at most
//! [`MAX_PAGES_PER_KEY`] pages ([`MAX_PAGES_PER_KEY`] x 50 events): a busier key's profile
//! says it is partial.

use crate::core::model::Timestamp;

/// LookupEvents' largest page.
pub const PAGE_SIZE: u32 = 50;
/// Pages read for one key, over all runs: 5,000 events.
pub const MAX_PAGES_PER_KEY: u32 = 100;

/// Where a key's backfill stands (kept in its profile).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The oldest event time read so far: the next page ends there (inclusive: the events of
    /// that second come again and count once, by their ids).
    pub end: Option<Timestamp>,
    pub pages: u32,
    pub state: Progress,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Progress {
    #[default]
    NotStarted,
    Reading,
    /// Every event LookupEvents holds was read.
    Done,
    /// Stopped at [`MAX_PAGES_PER_KEY`]: older events were left.
    Partial,
}

impl Progress {
    pub fn as_str(self) -> &'static str {
        match self {
            Progress::NotStarted => "not_started",
            Progress::Reading => "reading",
            Progress::Done => "done",
            Progress::Partial => "partial",
        }
    }

    pub fn parse(s: &str) -> Option<Progress> {
        [
            Progress::NotStarted,
            Progress::Reading,
            Progress::Done,
            Progress::Partial,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }

    pub fn finished(self) -> bool {
        matches!(self, Progress::Done | Progress::Partial)
    }
}

impl Cursor {
    /// Where the next page ends: `Some(None)` from now, `Some(Some(t))` up to `t`, `None`
    /// when the backfill is finished. `live_since`: when the profile's live feed began.
    pub fn next_end(&self, live_since: Option<Timestamp>) -> Option<Option<Timestamp>> {
        if self.state.finished() {
            return None;
        }
        Some(self.end.or(live_since))
    }

    /// Records a page read: its oldest event time, and whether LookupEvents has more.
    pub fn page_read(&mut self, oldest: Option<Timestamp>, more: bool) {
        page_read(self, oldest, more)
    }
}

fn page_read(c: &mut Cursor, oldest: Option<Timestamp>, more: bool) {
    c.pages += 1;
    if let Some(t) = oldest {
        c.end = Some(c.end.map_or(t, |e| e.min(t)));
    }
    c.state = if !more {
        Progress::Done
    } else if c.pages >= MAX_PAGES_PER_KEY {
        Progress::Partial
    } else {
        Progress::Reading
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32) -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 11, 1, h, 0, 0).unwrap()
    }

    #[test]
    fn a_backfill_reads_backwards_from_the_live_start_and_resumes_where_it_stopped() {
        let mut c = Cursor::default();
        assert_eq!(c.next_end(None), Some(None), "no live feed: from now");
        assert_eq!(c.next_end(Some(t(20))), Some(Some(t(20))));
        c.page_read(Some(t(12)), true);
        assert_eq!(
            (c.next_end(Some(t(20))), c.state),
            (Some(Some(t(12))), Progress::Reading)
        );
        // A page whose events are all newer than the place kept does not move it forward.
        c.page_read(Some(t(15)), true);
        assert_eq!(c.next_end(None), Some(Some(t(12))));
        c.page_read(None, false);
        assert_eq!((c.next_end(None), c.state, c.pages), (None, Progress::Done, 3));
    }

    #[test]
    fn a_busy_key_stops_at_the_bound_and_says_it_is_partial() {
        let mut c = Cursor::default();
        for _ in 0..MAX_PAGES_PER_KEY {
            assert!(c.next_end(None).is_some());
            c.page_read(Some(t(1)), true);
        }
        assert_eq!((c.next_end(None), c.state), (None, Progress::Partial));
        assert_eq!(Progress::parse("partial"), Some(Progress::Partial));
    }
}

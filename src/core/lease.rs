//! The leader lease, as decisions on what the table shows: which instance may enforce when
//! several share one state table. The protocol is the AWS DynamoDB lock client's, so that it
//! needs no synchronized clocks:
//!
//! - The lease item holds `holder`, `rvn` (a fresh value at every renewal) and `fence` (a
//!   counter raised at every change of holder).
//! - The holder renews every third of `duration`, conditional on still being the holder with
//!   its fence. Its lease is good until `duration` after it *sent* its last successful renewal
//!   (by its own monotonic clock); it acts only while more than `margin` of that is left.
//! - Another instance takes the lease only after seeing the same `rvn` for a whole `duration`
//!   by its own clock (so the holder stopped renewing at least that long ago, and its own
//!   validity has run out), or at once when the holder released it. Taking is conditional on
//!   that `rvn`, so of several contenders exactly one wins; it raises the fence, and every state
//!   write of the old holder is conditional on the old fence and fails from then on.
//!
//! Instants are passed in, so the whole protocol is unit-tested with made-up times; the table
//! calls are `state::lease`'s.

use std::time::{Duration, Instant};

/// The lease item as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub holder: String,
    pub rvn: String,
    pub fence: u64,
    /// Given up by its holder (clean stop): free to take at once.
    pub released: bool,
}

/// What to do at a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write the lease as ours, conditional on the item being absent (`expect: None`) or still
    /// showing `expect` as its rvn.
    Take { expect: Option<String> },
    /// Renew ours, conditional on holder and fence.
    Renew { fence: u64 },
    /// Someone else holds it, and it is not (yet) seen as abandoned.
    Wait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    fence: u64,
    /// By this host's monotonic clock.
    valid_until: Instant,
}

/// One instance's view of the lease.
#[derive(Debug)]
pub struct Tracker {
    duration: Duration,
    margin: Duration,
    held: Option<Held>,
    /// The other holder's rvn and when it was first seen unchanged.
    watching: Option<(String, Instant)>,
}

impl Tracker {
    /// `margin`: how much validity must be left to start an action (the longest an
    /// UpdateAccessKey may take to land).
    pub fn new(duration: Duration, margin: Duration) -> Tracker {
        Tracker {
            duration,
            margin,
            held: None,
            watching: None,
        }
    }

    /// How often to tick: renewals come every third of the lease, so two may fail before it
    /// runs short.
    pub fn tick_every(&self) -> Duration {
        self.duration / 3
    }

    /// While holding: renew (no read needed). Otherwise decide on what the table shows.
    pub fn step(&mut self, record: Option<&Record>, now: Instant) -> Step {
        if let Some(h) = self.held {
            return Step::Renew { fence: h.fence };
        }
        let Some(r) = record else {
            self.watching = None;
            return Step::Take { expect: None };
        };
        if r.released {
            return Step::Take {
                expect: Some(r.rvn.clone()),
            };
        }
        match &self.watching {
            Some((rvn, since)) if *rvn == r.rvn => {
                if now.saturating_duration_since(*since) >= self.duration {
                    Step::Take {
                        expect: Some(r.rvn.clone()),
                    }
                } else {
                    Step::Wait
                }
            }
            _ => {
                self.watching = Some((r.rvn.clone(), now));
                Step::Wait
            }
        }
    }

    /// A take or renewal succeeded; `sent` is when its request was sent.
    pub fn holds(&mut self, fence: u64, sent: Instant) {
        self.held = Some(Held {
            fence,
            valid_until: sent + self.duration,
        });
        self.watching = None;
    }

    /// A conditional write found another holder (or a raised fence): the lease is gone.
    pub fn lost(&mut self) {
        self.held = None;
        self.watching = None;
    }

    /// A renewal failed for another reason (throttled, unreachable): keep what is held; it
    /// runs out by itself. True when it has run out (counted as lost).
    pub fn renewal_failed(&mut self, now: Instant) -> bool {
        match self.held {
            Some(h) if now >= h.valid_until => {
                self.lost();
                true
            }
            _ => false,
        }
    }

    /// The fence, when the lease is held with more than the margin left at `now`.
    pub fn fence(&self, now: Instant) -> Option<u64> {
        self.held
            .filter(|h| h.valid_until.saturating_duration_since(now) > self.margin)
            .map(|h| h.fence)
    }

    /// Held at all (even if running short): for the `keywarden_leader` gauge and release.
    pub fn held_fence(&self) -> Option<u64> {
        self.held.map(|h| h.fence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(30);
    const M: Duration = Duration::from_secs(10);

    fn rec(holder: &str, rvn: &str, fence: u64) -> Record {
        Record {
            holder: holder.into(),
            rvn: rvn.into(),
            fence,
            released: false,
        }
    }

    #[test]
    fn an_empty_table_is_taken_at_once() {
        let mut t = Tracker::new(D, M);
        assert_eq!(t.step(None, Instant::now()), Step::Take { expect: None });
    }

    #[test]
    fn a_held_lease_is_taken_only_after_its_rvn_stood_still_a_whole_duration() {
        let t0 = Instant::now();
        let mut t = Tracker::new(D, M);
        let r = rec("a", "r1", 4);
        assert_eq!(t.step(Some(&r), t0), Step::Wait);
        assert_eq!(t.step(Some(&r), t0 + D - Duration::from_millis(1)), Step::Wait);
        assert_eq!(
            t.step(Some(&r), t0 + D),
            Step::Take {
                expect: Some("r1".into())
            }
        );
    }

    #[test]
    fn a_renewal_seen_restarts_the_wait() {
        let t0 = Instant::now();
        let mut t = Tracker::new(D, M);
        assert_eq!(t.step(Some(&rec("a", "r1", 4)), t0), Step::Wait);
        assert_eq!(
            t.step(Some(&rec("a", "r2", 4)), t0 + Duration::from_secs(20)),
            Step::Wait
        );
        assert_eq!(
            t.step(Some(&rec("a", "r2", 4)), t0 + Duration::from_secs(40)),
            Step::Wait
        );
        assert!(matches!(
            t.step(Some(&rec("a", "r2", 4)), t0 + Duration::from_secs(50)),
            Step::Take { .. }
        ));
    }

    #[test]
    fn a_released_lease_is_taken_at_once_conditional_on_its_rvn() {
        let mut r = rec("a", "r9", 4);
        r.released = true;
        assert_eq!(
            Tracker::new(D, M).step(Some(&r), Instant::now()),
            Step::Take {
                expect: Some("r9".into())
            }
        );
    }

    #[test]
    fn the_holder_acts_only_with_more_than_the_margin_left() {
        let sent = Instant::now();
        let mut t = Tracker::new(D, M);
        t.holds(7, sent);
        assert_eq!(t.step(None, sent), Step::Renew { fence: 7 });
        assert_eq!(t.fence(sent + Duration::from_secs(19)), Some(7));
        assert_eq!(t.fence(sent + D - M), None, "the margin is kept");
        assert_eq!(t.fence(sent + Duration::from_secs(3600)), None, "paused past the lease");
        assert_eq!(t.held_fence(), Some(7));
    }

    #[test]
    fn the_holder_gives_up_before_a_contender_can_take_over() {
        // The contender sees the holder's last rvn no earlier than the holder sent it.
        let sent = Instant::now();
        let mut holder = Tracker::new(D, M);
        holder.holds(1, sent);
        let mut other = Tracker::new(D, M);
        let r = rec("h", "r1", 1);
        let seen = sent + Duration::from_millis(5);
        assert_eq!(other.step(Some(&r), seen), Step::Wait);
        let takeover = seen + D;
        assert!(matches!(other.step(Some(&r), takeover), Step::Take { .. }));
        assert_eq!(holder.fence(takeover), None);
        assert_eq!(holder.fence(takeover - M), None, "stopped a margin before");
    }

    #[test]
    fn failed_renewals_keep_the_lease_until_it_runs_out() {
        let sent = Instant::now();
        let mut t = Tracker::new(D, M);
        t.holds(3, sent);
        assert!(!t.renewal_failed(sent + Duration::from_secs(10)));
        assert_eq!(t.fence(sent + Duration::from_secs(10)), Some(3));
        assert!(t.renewal_failed(sent + D));
        assert_eq!(t.held_fence(), None);
        assert_eq!(t.step(Some(&rec("x", "r", 3)), sent + D), Step::Wait);
    }

    #[test]
    fn a_lost_lease_is_watched_again_from_scratch() {
        let t0 = Instant::now();
        let mut t = Tracker::new(D, M);
        t.holds(3, t0);
        t.lost();
        assert_eq!(t.fence(t0), None);
        assert_eq!(t.step(Some(&rec("b", "r5", 4)), t0), Step::Wait);
    }
}

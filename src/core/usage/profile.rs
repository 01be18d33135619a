//! The usage profile of one access key: what called with it, from where, calling what, and
//! when, as aggregates of a bounded size whatever the traffic. Never raw events: a profile
//! holds at most [`SOURCES`] addresses, [`USER_AGENTS`] user agents, [`SERVICES`] services,
//! [`REGIONS`] regions, [`ACTIONS`] actions, [`DAYS`] daily counts and the hashes of the last
//! [`REMEMBERED_IDS`] event ids.
//!
//! Counting once. An event reaches a profile from the usage queue (live) or from CloudTrail's
//! LookupEvents (backfill). The two never overlap: backfill stops where the live feed began
//! (`live_since`, the time of the first live event), so an event can come from both only if
//! it is older than that and arrived live out of order; then, as for a redelivered message,
//! the remembered event ids catch it. Beyond the last [`REMEMBERED_IDS`] events of a key, a
//! redelivery counts twice: counts are evidence for a person, never a decision's input.
//!
//! The address and user-agent lists keep the most frequent values with the space-saving
//! algorithm: exact until more different values were seen than the list holds, then the new
//! value takes the place of the least counted one and inherits its count (an overestimate,
//! never an underestimate, of a value that stays).

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use chrono::{NaiveDate, TimeDelta};

use crate::core::model::Timestamp;
use crate::core::usage::backfill::Cursor;
use crate::core::usage::event::UsageEvent;
use crate::core::usage::names::{intern, NameSet};

pub const SOURCES: usize = 16;
pub const USER_AGENTS: usize = 8;
pub const SERVICES: usize = 32;
pub const REGIONS: usize = 32;
pub const ACTIONS: usize = 256;
pub const DAYS: usize = 30;
pub const REMEMBERED_IDS: usize = 64;

/// An event id as [`Profile::recent_ids`] keeps it: FNV-1a folded to 32 bits (a false
/// "seen" needs a collision with one of 64 ids: about one event in 67 million).
pub fn id_hash(event_id: &str) -> u32 {
    let h = fnv1a(event_id.as_bytes());
    (h ^ (h >> 32)) as u32
}

/// Profiles by (account, key id).
pub type ByKey = std::collections::BTreeMap<(String, String), Profile>;

/// `profiles` by (account, key id).
pub fn by_key(profiles: Vec<Profile>) -> ByKey {
    profiles
        .into_iter()
        .map(|p| ((p.account_id.clone(), p.access_key_id.clone()), p))
        .collect()
}

/// A value and how often it was seen. The value is shared ([`intern`]): many keys are called
/// by the same user agents from the same addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub value: Arc<str>,
    pub count: u64,
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// The usage queue.
    Live,
    /// CloudTrail LookupEvents.
    Backfill,
}

/// What recording an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Counted.
    New,
    /// Seen before (its id is remembered), or a backfilled event the live feed covers.
    Duplicate,
}

/// The usage profile of one key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Profile {
    pub account_id: String,
    pub access_key_id: String,
    /// Every event counted, ever.
    pub events: u64,
    pub first_event: Option<Timestamp>,
    pub last_event: Option<Timestamp>,
    /// The address of the newest event.
    pub last_source: Option<Arc<str>>,
    /// Most counted first.
    pub sources: Vec<Counted>,
    pub user_agents: Vec<Counted>,
    pub regions: NameSet,
    /// `service:Action` (the services are their prefixes: [`Profile::services`]).
    pub actions: NameSet,
    /// False once an action was left out at the bound: a policy of these actions is then
    /// incomplete and says so.
    pub actions_complete: bool,
    /// Events per UTC day, the [`DAYS`] newest days that saw events, oldest first.
    pub days: Vec<(NaiveDate, u32)>,
    /// When the live feed began: backfill reads only before it.
    pub live_since: Option<Timestamp>,
    /// Hashes of the last event ids counted ([`id_hash`], stable across processes).
    pub recent_ids: VecDeque<u32>,
    /// Where the backfill from LookupEvents stands.
    pub backfill: Cursor,
    /// The stored revision this copy was read at (0: never stored): a save of an older copy
    /// than the store holds is refused (`ports::UsageStore::save_all`).
    pub revision: u64,
}

impl Profile {
    pub fn new(account_id: &str, access_key_id: &str) -> Profile {
        Profile {
            account_id: account_id.to_string(),
            access_key_id: access_key_id.to_string(),
            actions_complete: true,
            ..Profile::default()
        }
    }

    /// Counts `e` into the profile unless it was counted before.
    pub fn record(&mut self, e: &UsageEvent, feed: Feed) -> Recorded {
        let id = id_hash(&e.event_id);
        let covered = feed == Feed::Backfill && self.live_since.is_some_and(|since| e.time >= since);
        if covered || self.recent_ids.contains(&id) {
            return Recorded::Duplicate;
        }
        if self.recent_ids.len() == REMEMBERED_IDS {
            self.recent_ids.pop_front();
        }
        self.recent_ids.push_back(id);
        if feed == Feed::Live && self.live_since.is_none_or(|since| e.time < since) {
            self.live_since = Some(e.time);
        }
        self.events += 1;
        self.first_event = Some(self.first_event.map_or(e.time, |t| t.min(e.time)));
        if self.last_event.is_none_or(|t| e.time >= t) {
            self.last_event = Some(e.time);
            if self.last_source.as_deref() != Some(e.source.as_str()) {
                self.last_source = Some(intern(&e.source));
            }
        }
        top(&mut self.sources, &e.source, SOURCES);
        top(&mut self.user_agents, &e.user_agent, USER_AGENTS);
        self.regions.insert(&e.region, REGIONS);
        self.count_action(&e.service, &e.action);
        self.count_day(e.time.date_naive());
        Recorded::New
    }

    /// Events in the `window` up to `now` (by whole UTC days, today included).
    pub fn events_within(&self, window: TimeDelta, now: Timestamp) -> u64 {
        let from = (now - window).date_naive();
        self.days
            .iter()
            .filter(|(d, _)| *d >= from)
            .map(|(_, n)| u64::from(*n))
            .sum()
    }

    /// The services called (the actions' prefixes).
    pub fn services(&self) -> BTreeSet<&str> {
        self.actions.iter().filter_map(|a| a.split(':').next()).collect()
    }

    /// The most counted user agent (ties: the first seen of the most counted).
    pub fn main_user_agent(&self) -> Option<&str> {
        self.user_agents.first().map(|c| &*c.value)
    }

    /// Adds `service:action` unless it is there (the common case, found without allocating),
    /// within the bounds on actions and services; a call left out makes the actions incomplete.
    fn count_action(&mut self, service: &str, action: &str) {
        let mut service_seen = false;
        for a in self.actions.iter() {
            let Some((s, act)) = a.split_once(':') else { continue };
            if s == service {
                if act == action {
                    return;
                }
                service_seen = true;
            }
        }
        let room = service_seen || self.services().len() < SERVICES;
        if !(room && self.actions.insert(&format!("{service}:{action}"), ACTIONS)) {
            self.actions_complete = false;
        }
    }

    fn count_day(&mut self, day: NaiveDate) {
        match self.days.binary_search_by_key(&day, |(d, _)| *d) {
            Ok(i) => self.days[i].1 = self.days[i].1.saturating_add(1),
            Err(i) => {
                if self.days.len() == DAYS {
                    if i == 0 {
                        return; // older than every day kept: counted in `events`, not by day
                    }
                    self.days.remove(0);
                    self.days.insert(i - 1, (day, 1));
                } else {
                    self.days.insert(i, (day, 1));
                }
            }
        }
    }
}

/// Space-saving top-`bound` count of `value` in `list` (most counted first).
fn top(list: &mut Vec<Counted>, value: &str, bound: usize) {
    let at = match list.iter().position(|c| &*c.value == value) {
        Some(i) => {
            list[i].count += 1;
            i
        }
        None if list.len() < bound => {
            // Grown one at a time: a list of 12 takes 12 places, not 16.
            list.reserve_exact(1);
            list.push(Counted {
                value: intern(value),
                count: 1,
            });
            list.len() - 1
        }
        None => {
            // The list is sorted, so its last entry is the least counted.
            let last = list.len() - 1;
            list[last] = Counted {
                value: intern(value),
                count: list[last].count + 1,
            };
            last
        }
    };
    // One step of insertion sort keeps the list sorted: only `at` grew.
    let mut i = at;
    while i > 0 && list[i - 1].count < list[i].count {
        list.swap(i - 1, i);
        i -= 1;
    }
}

/// FNV-1a, 64 bits: a stable hash (the state outlives the process, so no random seed).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(day: u32, hour: u32) -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    fn ev(id: usize, time: Timestamp, source: &str, action: &str) -> UsageEvent {
        UsageEvent {
            event_id: format!("id-{id}"),
            time,
            account_id: "123456789012".into(),
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            service: "s3".into(),
            action: action.into(),
            region: "eu-west-1".into(),
            source: source.into(),
            user_agent: "aws-cli/2.15.30".into(),
        }
    }

    #[test]
    fn an_event_id_seen_twice_counts_once() {
        let mut p = Profile::new("123456789012", "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(
            p.record(&ev(1, t(1, 0), "198.51.100.7", "GetObject"), Feed::Live),
            Recorded::New
        );
        assert_eq!(
            p.record(&ev(1, t(1, 0), "198.51.100.7", "GetObject"), Feed::Live),
            Recorded::Duplicate
        );
        assert_eq!(
            p.record(&ev(1, t(1, 0), "198.51.100.7", "GetObject"), Feed::Backfill),
            Recorded::Duplicate
        );
        assert_eq!((p.events, p.sources[0].count), (1, 1));
    }

    #[test]
    fn backfill_counts_only_before_the_live_feed_began() {
        let mut p = Profile::new("123456789012", "AKIAIOSFODNN7EXAMPLE");
        p.record(&ev(1, t(10, 0), "198.51.100.7", "GetObject"), Feed::Live);
        // The same call, read back from CloudTrail under another id than the queue's copy
        // is impossible; an event at or after the live start is the live feed's to count.
        assert_eq!(
            p.record(&ev(2, t(10, 0), "a", "GetObject"), Feed::Backfill),
            Recorded::Duplicate
        );
        assert_eq!(
            p.record(&ev(3, t(9, 23), "198.51.100.7", "PutObject"), Feed::Backfill),
            Recorded::New
        );
        assert_eq!(p.events, 2);
        assert_eq!((p.first_event, p.last_event), (Some(t(9, 23)), Some(t(10, 0))));
        assert_eq!(p.last_source.as_deref(), Some("198.51.100.7"));
        assert_eq!(p.actions.iter().collect::<Vec<_>>(), ["s3:GetObject", "s3:PutObject"]);
    }

    #[test]
    fn out_of_order_events_keep_the_newest_as_last() {
        let mut p = Profile::new("a", "k");
        p.record(&ev(1, t(5, 0), "192.0.2.1", "A"), Feed::Live);
        p.record(&ev(2, t(3, 0), "192.0.2.2", "A"), Feed::Live);
        assert_eq!(
            (p.last_event, p.last_source.as_deref()),
            (Some(t(5, 0)), Some("192.0.2.1"))
        );
        assert_eq!((p.first_event, p.live_since), (Some(t(3, 0)), Some(t(3, 0))));
    }

    #[test]
    fn the_profile_stays_bounded_whatever_the_traffic() {
        let mut p = Profile::new("a", "k");
        for i in 0..10_000 {
            let mut e = ev(
                i,
                t(1 + (i % 30) as u32, 0),
                &format!("10.0.{}.{}", i / 256 % 256, i % 256),
                &format!("A{i}"),
            );
            e.user_agent = format!("agent/{i}");
            e.region = format!("r{i}");
            e.service = format!("s{}", i % 100);
            p.record(&e, Feed::Live);
        }
        assert_eq!(p.events, 10_000);
        assert_eq!(
            (
                p.sources.len(),
                p.user_agents.len(),
                p.services().len(),
                p.regions.len(),
                p.actions.len()
            ),
            (SOURCES, USER_AGENTS, SERVICES, REGIONS, ACTIONS)
        );
        assert!(!p.actions_complete, "a dropped action is said");
        assert_eq!((p.days.len(), p.recent_ids.len()), (DAYS, REMEMBERED_IDS));
    }

    #[test]
    fn the_most_frequent_address_stays_on_top_of_a_flood_of_one_off_addresses() {
        let mut p = Profile::new("a", "k");
        for i in 0..5_000 {
            p.record(&ev(2 * i, t(2, 0), "203.0.113.9", "A"), Feed::Live);
            p.record(
                &ev(2 * i + 1, t(2, 0), &format!("10.1.{}.{}", i / 256, i % 256), "A"),
                Feed::Live,
            );
        }
        assert_eq!(
            p.sources[0],
            Counted {
                value: "203.0.113.9".into(),
                count: 5_000
            }
        );
        assert!(p.sources.windows(2).all(|w| w[0].count >= w[1].count), "sorted");
    }

    #[test]
    fn events_within_counts_by_day_and_old_days_fall_out() {
        let mut p = Profile::new("a", "k");
        for day in 1..=30 {
            p.record(&ev(day as usize, t(day, 12), "192.0.2.1", "A"), Feed::Live);
        }
        assert_eq!(p.events_within(TimeDelta::days(7), t(30, 13)), 8, "days 23..=30");
        let before = p.days.clone();
        // An event older than every day kept counts, but not by day.
        let mut old = Profile {
            days: before.clone(),
            ..p.clone()
        };
        old.record(&ev(100, t(1, 0) - TimeDelta::days(1), "192.0.2.1", "A"), Feed::Live);
        assert_eq!((old.days.clone(), old.events), (before, 31));
    }
}

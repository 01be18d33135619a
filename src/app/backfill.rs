//! The backfill of usage profiles from CloudTrail's LookupEvents (`keywarden usage
//! --backfill`): every key whose backfill is not finished is read back, newest first.
//!
//! It keeps CloudTrail's limit of 2 LookupEvents requests per second per account and region
//! (paced here at 1.8; a `ThrottlingException` anyway is waited out and counted,
//! never an error), at most [`MAX_REQUESTS_PER_RUN`] requests per run and
//! `core::usage::backfill::MAX_PAGES_PER_KEY` pages per key. Its place is saved after every
//! page, so an interrupted backfill resumes where it stopped. A failed request stops that
//! key's backfill with the service's words, keeps what was read, and makes the command fail:
//! a partial read never looks like a finished one.

use std::time::Duration;

use crate::aws::ratelimit::TokenBucket;
use crate::core::model::{ServiceError, Timestamp};
use crate::core::usage::event::admit;
use crate::core::usage::profile::{Feed, Profile, Recorded};
use crate::ports::{EventLookup, StoreError, UsageStore};

/// LookupEvents requests per second, per account and region: under CloudTrail's documented
/// limit of 2, so that two requests the network brings closer together do not cross it.
pub const LOOKUPS_PER_SECOND: f64 = 1.8;
/// Requests of one backfill run (10 minutes at the limit), throttled ones included.
pub const MAX_REQUESTS_PER_RUN: u32 = 1_200;
/// How long a throttled request waits before it is sent again.
pub const THROTTLE_WAIT: Duration = Duration::from_secs(1);

/// What a backfill did, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub requests: u32,
    pub throttled: u32,
    pub recorded: u64,
    pub duplicates: u64,
    /// Rejected by `core::usage::event::admit`, or unreadable.
    pub malformed: u64,
    /// Admitted, but signed by another key or in another account than the one asked for.
    pub unknown_key: u64,
}

/// Why a key's backfill stopped early.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("{access_key_id}: {source}")]
    Lookup {
        access_key_id: String,
        source: ServiceError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One account's backfill: its lookup (one region), pace and budget.
pub struct Backfill<'a, L, S> {
    pub lookup: &'a L,
    pub store: &'a S,
    pub pace: &'a TokenBucket,
    /// Requests this run may still send.
    pub budget: u32,
    pub now: Timestamp,
    pub tally: Tally,
}

impl<L: EventLookup, S: UsageStore> Backfill<'_, L, S> {
    /// Reads `profile`'s key back through CloudTrail until its backfill is finished or the
    /// run's budget is spent, saving the profile after every page.
    pub async fn key(&mut self, profile: &mut Profile) -> Result<(), BackfillError> {
        let mut token: Option<String> = None;
        let mut query_end = None;
        while let Some(next_end) = profile.backfill.next_end(profile.live_since) {
            if self.budget == 0 {
                return Ok(());
            }
            // A next token continues the query it came from, which must be asked the same.
            if token.is_none() {
                query_end = next_end;
            }
            self.pace.acquire().await;
            self.budget -= 1;
            self.tally.requests += 1;
            let page = match self
                .lookup
                .lookup(&profile.access_key_id, query_end, token.as_deref())
                .await
            {
                Ok(page) => page,
                Err(e) if e.is(crate::aws::cloudtrail::THROTTLED) => {
                    self.tally.throttled += 1;
                    tokio::time::sleep(THROTTLE_WAIT).await;
                    continue;
                }
                Err(source) => {
                    return Err(BackfillError::Lookup {
                        access_key_id: profile.access_key_id.clone(),
                        source,
                    })
                }
            };
            self.tally.malformed += page.unreadable as u64;
            let mut oldest: Option<Timestamp> = None;
            for raw in &page.events {
                match admit(raw, self.now) {
                    Ok(e) if e.access_key_id != profile.access_key_id || e.account_id != profile.account_id => {
                        self.tally.unknown_key += 1;
                    }
                    Ok(e) => {
                        oldest = Some(oldest.map_or(e.time, |o| o.min(e.time)));
                        match profile.record(&e, Feed::Backfill) {
                            Recorded::New => self.tally.recorded += 1,
                            Recorded::Duplicate => self.tally.duplicates += 1,
                        }
                    }
                    Err(_) => self.tally.malformed += 1,
                }
            }
            profile.backfill.page_read(oldest, page.next_token.is_some());
            token = page.next_token;
            if !self
                .store
                .save_all(std::slice::from_mut(profile), &[])
                .await?
                .is_empty()
            {
                // Another writer (the live feed) saved this key first: take its profile and
                // read on from its cursor; the page's events count once, by their ids.
                let slot = [(profile.account_id.clone(), profile.access_key_id.clone())];
                let fresh = self.store.read(&slot).await?.into_iter().next();
                *profile = fresh.unwrap_or_else(|| Profile::new(&slot[0].0, &slot[0].1));
                token = None;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::usage::backfill::Progress;
    use crate::core::usage::event::{LookupPage, RawEvent};
    use std::sync::Mutex;

    fn now() -> Timestamp {
        chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .into()
    }

    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";

    fn raw(i: usize, key: &str) -> RawEvent {
        RawEvent {
            event_id: Some(format!("e{i}")),
            time: Some(now() - chrono::TimeDelta::hours(i as i64)),
            account_id: Some("123456789012".into()),
            access_key_id: Some(key.into()),
            event_source: Some("s3.amazonaws.com".into()),
            event_name: Some("ListBuckets".into()),
            region: Some("us-east-1".into()),
            source: Some("198.51.100.7".into()),
            user_agent: Some("aws-cli/2.15.30".into()),
        }
    }

    /// Pages of `per_page` from `events` (newest first); `throttle`: how many requests are
    /// answered ThrottlingException first; `fail_at`: the request answered AccessDenied.
    struct Trail {
        events: Vec<RawEvent>,
        per_page: usize,
        throttle: Mutex<u32>,
        fail_at: Option<u32>,
        asked: Mutex<Vec<(Option<Timestamp>, Option<String>)>>,
    }

    impl EventLookup for Trail {
        async fn lookup(
            &self,
            _: &str,
            end: Option<Timestamp>,
            token: Option<&str>,
        ) -> Result<LookupPage, ServiceError> {
            let n = {
                let mut asked = self.asked.lock().unwrap();
                asked.push((end, token.map(str::to_string)));
                asked.len() as u32
            };
            {
                let mut t = self.throttle.lock().unwrap();
                if *t > 0 {
                    *t -= 1;
                    return Err(ServiceError {
                        code: Some("ThrottlingException".into()),
                        message: "Rate exceeded".into(),
                    });
                }
            }
            if self.fail_at == Some(n) {
                return Err(ServiceError {
                    code: Some("AccessDeniedException".into()),
                    message: "no".into(),
                });
            }
            let within: Vec<&RawEvent> = self
                .events
                .iter()
                .filter(|e| end.is_none_or(|end| e.time.unwrap() <= end))
                .collect();
            let from: usize = token.map_or(0, |t| t.parse().unwrap());
            let page: Vec<RawEvent> = within
                .iter()
                .skip(from)
                .take(self.per_page)
                .map(|e| (*e).clone())
                .collect();
            let more = from + self.per_page < within.len();
            Ok(LookupPage {
                events: page,
                unreadable: 0,
                next_token: more.then(|| (from + self.per_page).to_string()),
            })
        }
    }

    #[derive(Default)]
    struct Store(Mutex<Vec<Profile>>);

    impl UsageStore for Store {
        async fn profiles(&self) -> Result<Vec<Profile>, StoreError> {
            Ok(self.0.lock().unwrap().clone())
        }
        async fn read(&self, keys: &[(String, String)]) -> Result<Vec<Profile>, StoreError> {
            let saved = self.0.lock().unwrap();
            let last = |k: &(String, String)| {
                saved
                    .iter()
                    .rev()
                    .find(|p| (&p.account_id, &p.access_key_id) == (&k.0, &k.1))
                    .cloned()
            };
            Ok(keys.iter().filter_map(last).collect())
        }
        /// Every save in order; none loses.
        async fn save_all(
            &self,
            all: &mut [Profile],
            _: &[(String, String)],
        ) -> Result<Vec<(String, String)>, StoreError> {
            for p in all.iter_mut() {
                p.revision += 1;
                self.0.lock().unwrap().push(p.clone());
            }
            Ok(Vec::new())
        }
    }

    fn trail(n: usize, per_page: usize) -> Trail {
        Trail {
            events: (0..n).map(|i| raw(i, KEY)).collect(),
            per_page,
            throttle: Mutex::new(0),
            fail_at: None,
            asked: Mutex::new(Vec::new()),
        }
    }

    async fn run(t: &Trail, store: &Store, p: &mut Profile, budget: u32) -> (Result<(), BackfillError>, Tally) {
        let pace = TokenBucket::new(LOOKUPS_PER_SECOND, 1.0);
        let mut b = Backfill {
            lookup: t,
            store,
            pace: &pace,
            budget,
            now: now(),
            tally: Tally::default(),
        };
        let r = b.key(p).await;
        (r, b.tally)
    }

    #[tokio::test(start_paused = true)]
    async fn every_page_is_read_at_the_pace_and_throttling_is_waited_out() {
        let mut t = trail(120, 50);
        t.throttle = Mutex::new(2);
        let store = Store::default();
        let mut p = Profile::new("123456789012", KEY);
        let started = tokio::time::Instant::now();
        let (r, tally) = run(&t, &store, &mut p, 100).await;
        r.unwrap();
        assert_eq!((tally.requests, tally.throttled, tally.recorded), (5, 2, 120));
        assert_eq!((p.events, p.backfill.state), (120, Progress::Done));
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "5 requests at 2/s plus waits"
        );
        let asked = t.asked.lock().unwrap();
        assert!(
            asked[3..].iter().all(|(end, _)| *end == asked[2].0),
            "a token continues its query"
        );
        assert_eq!(store.0.lock().unwrap().len(), 3, "saved after every page");
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_out_of_budget_or_stopped_by_an_error_resumes_where_it_stopped_without_counting_twice() {
        let t = trail(120, 50);
        let store = Store::default();
        let mut p = Profile::new("123456789012", KEY);
        let (r, tally) = run(&t, &store, &mut p, 1).await;
        r.unwrap();
        assert_eq!((tally.recorded, p.backfill.state), (50, Progress::Reading));
        // The next run starts a new query at the oldest time read: that second's event comes
        // again and counts once.
        let mut failing = trail(120, 50);
        failing.fail_at = Some(2);
        let (r, tally) = run(&failing, &store, &mut p, 100).await;
        assert!(matches!(r, Err(BackfillError::Lookup { .. })), "{r:?}");
        assert_eq!((tally.recorded, tally.duplicates), (49, 1));
        let (r, tally) = run(&trail(120, 50), &store, &mut p, 100).await;
        r.unwrap();
        assert_eq!(p.events, 120, "every event once");
        assert_eq!(p.backfill.state, Progress::Done);
        assert!(tally.duplicates >= 1);
    }

    #[tokio::test(start_paused = true)]
    async fn events_of_another_key_and_malformed_ones_change_nothing() {
        let mut t = trail(3, 50);
        t.events.push(raw(4, "AKIAOTHER0000000000X"));
        let mut bad = raw(5, KEY);
        bad.event_name = Some("<script>".into());
        t.events.push(bad);
        let store = Store::default();
        let mut p = Profile::new("123456789012", KEY);
        let (r, tally) = run(&t, &store, &mut p, 10).await;
        r.unwrap();
        assert_eq!((tally.recorded, tally.unknown_key, tally.malformed), (3, 1, 1));
        assert_eq!(p.events, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_backfill_sends_nothing() {
        let t = trail(3, 50);
        let store = Store::default();
        let mut p = Profile::new("123456789012", KEY);
        run(&t, &store, &mut p, 10).await.0.unwrap();
        let (_, tally) = run(&t, &store, &mut p, 10).await;
        assert_eq!(tally.requests, 0);
    }
}

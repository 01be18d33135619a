//! Usage profiles of long-term access keys: what uses each key, from where, calling what, and
//! what should replace it. Pure: the edges read CloudTrail (the usage queue, LookupEvents) and
//! keep profiles in the state; this decides what an event is worth (`event`), what a profile
//! holds (`profile`, its name sets compact in `names`), where its backfill from LookupEvents stands (`backfill`), what kind of workload the evidence shows (`workload`), what should
//! replace the key (`replacement`) and a least-privilege policy of the actions seen
//! (`least_privilege`), and what `keywarden usage` says about one key (`summary`).
//!
//! Usage evidence decides nothing by itself: a profile is advice for a person, and at most
//! (with `hold_live_keys`) a reason to hold a due deactivation for a bounded time.

pub mod backfill;
pub mod event;
pub mod least_privilege;
pub mod names;
pub mod profile;
pub mod replacement;
pub mod summary;
pub mod workload;

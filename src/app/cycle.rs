//! One audit + enforcement cycle over the ports: lock the store, load what is remembered, read
//! the inventory, evaluate, publish, check the clock, save the new first-seen times, act on
//! the due keys, save what the actions changed.
//!
//! The order is the safety argument, and the unit tests below check it with in-memory fakes:
//! - the store is locked and loaded first; an unusable store means audit and publish, never
//!   enforce;
//! - nothing is acted on with an untrusted clock (AWS's `Date`, the last run's time);
//! - the new first-seen times are saved before any key is touched, and a failed save means no
//!   key is touched;
//! - a key is forgotten only after a deactivation confirmed by a read-back;
//! - at most the cap of keys is deactivated; failures back off.
//!
//! Metrics and logs are the caller's (`harness`, through `internal_events`): this returns what
//! happened.

use std::sync::atomic::AtomicBool;

use crate::app::audit;
use crate::app::execute::{self, Executed};
use crate::config::Config;
use crate::core::clock::{self, ClockProblem};
use crate::core::history::State;
use crate::core::journal::JournalEntry;
use crate::core::journal::RunInfo;
use crate::core::model::{AccountInventory, Timestamp, UnconfirmedExposure, User};
use crate::core::plan::{self, OutcomeKind};
use crate::core::report::Report;
use crate::ports::{
    ActionJournal, BoxFuture, Clock, IntentLog, InventorySource, KeyActions, LastCall, LastCalls, Leadership, Rotator,
    StateStore, StoreError,
};

/// Why a cycle enforced nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Skipped {
    /// The store could not be locked or read: grace periods are never reset silently.
    State(StoreError),
    /// The clock disagrees with AWS's or went backwards.
    Clock(ClockProblem),
    /// The new first-seen times could not be saved, so nothing may be acted on.
    Save(StoreError),
    /// Another instance holds the leader lease: this one audits and publishes, and neither
    /// writes the state nor acts (not an error).
    NotLeader,
}

/// What one cycle saw and did.
pub struct Cycle {
    pub accounts: Vec<AccountInventory>,
    pub report: Report,
    /// `None`: enforcement ran (in the configured mode).
    pub skipped: Option<Skipped>,
    pub executed: Executed,
    /// The state as saved at the end (for the failure gauges); `None` when enforcement was
    /// skipped.
    pub state: Option<State>,
    /// The save after the actions failed (the actions themselves stand).
    pub final_save_error: Option<StoreError>,
    /// The outcome of each automatic rotation (`keywarden_rotations_total`).
    pub rotations: Vec<&'static str>,
    /// (account, claim) of each AWS Health exposure claim no live read confirmed: reported
    /// and journaled (when enforcement runs), never acted on.
    pub unconfirmed: Vec<(String, UnconfirmedExposure)>,
    /// The usage evidence could not be read (`usage.hold_live_keys`): nothing was held.
    pub evidence_error: Option<StoreError>,
}

impl Cycle {
    /// Every read and every action succeeded.
    pub fn ok(&self) -> bool {
        self.report.complete && self.skipped.as_ref().is_none_or(|s| *s == Skipped::NotLeader) && self.acted_cleanly()
    }

    /// Every action taken was journaled and none failed (reads aside).
    pub fn acted_cleanly(&self) -> bool {
        self.executed.journal_error.is_none() && !self.executed.outcomes.iter().any(|o| o.kind == OutcomeKind::Error)
    }
}

/// When a changed user (`account_id`, `user`) changed, for an event run.
pub type SeenAt<'a> = dyn Fn(&str, &str) -> Option<Timestamp> + Sync + 'a;

/// What started a run, and so what it may act on.
#[derive(Clone, Copy)]
pub enum Trigger<'a> {
    /// A cron tick (or the daemon's first run, or `--once`): every due key within the cap,
    /// and the automatic rotations through `rotator` (`None`: none this run).
    Cron { rotator: Option<&'a dyn Rotator> },
    /// A batch from the events queue: a hint, never an authority.
    Event(EventScope<'a>),
}

/// An event run's limits: it acts only on the users its events named, after their live
/// read, and only within what earlier event runs left of the cap since the last cron run, so
/// that queue volume, real or forged, never sets the rate of deactivations.
#[derive(Clone, Copy)]
pub struct EventScope<'a> {
    /// When each named user's change happened (`account_id`, `user`); `None` for a user the
    /// events did not name. A new finding of a named user is first seen then
    /// (`core::events::first_seen`), not now.
    pub seen_at: &'a SeenAt<'a>,
    /// Deactivations (or dry-run "would deactivate"s) this run may still make.
    pub budget: usize,
}

/// The ports one cycle runs over.
pub struct Ports<'a, F, S, C> {
    pub fleet: &'a F,
    pub store: &'a S,
    pub clock: &'a C,
    /// The largest skew between the local clock and AWS's `Date` seen while reading.
    pub skew: &'a (dyn Fn() -> Option<f64> + Sync),
    pub journal: &'a dyn ActionJournal,
    pub run: &'a RunInfo,
    pub leader: &'a dyn Leadership,
    pub trigger: Trigger<'a>,
    /// The usage evidence, read only with `usage.hold_live_keys`.
    pub evidence: &'a dyn LastCalls,
}

impl<F, S, C> Ports<'_, F, S, C> {
    fn event(&self) -> Option<&EventScope<'_>> {
        match &self.trigger {
            Trigger::Event(scope) => Some(scope),
            Trigger::Cron { .. } => None,
        }
    }
}

/// Runs one cycle. `audited` is called once the audit is evaluated, before anything is
/// enforced, so the metrics and the report are published even while enforcement runs.
///
/// The steps, in their safety order: lock and load the state ([`load`]), read and evaluate
/// ([`audit_accounts`]), publish, then [`enforce`]: leadership, clock, settle intents, save
/// first-seen times, act, save outcomes. A cron tick and any other trigger of a run go
/// through these same steps.
pub async fn run<F, S, C>(
    config: &Config,
    ports: Ports<'_, F, S, C>,
    audited: &(dyn Fn(&[AccountInventory], &Report) + Sync),
    stop: &AtomicBool,
) -> Cycle
where
    F: InventorySource + KeyActions + Sync,
    S: StateStore + Sync,
    C: Clock + Sync,
{
    // Decided once per run: a lease lost later stops the actions (`may_act`), and the
    // store's fenced writes refuse the saves.
    let leading = ports.leader.leading();
    let guard = ports.store.lock().await;
    let history = load(&guard, ports.store).await;
    let now = ports.clock.now();
    let (last_calls, evidence_error) = audit::last_calls(config, ports.evidence).await;
    let mut audit = audit_accounts(config, ports.fleet, history.as_ref().ok(), &last_calls, now).await;
    let history = match (history, ports.event()) {
        (Ok(h), Some(scope)) => {
            let h = backdate(h, &audit.report, scope.seen_at, now);
            audit.report = audit::evaluate(config, &audit.accounts, &h, now);
            Ok(h)
        }
        (h, _) => h,
    };
    failpoint_panic();
    audited(&audit.accounts, &audit.report);

    let unconfirmed = unconfirmed_exposures(&audit.accounts);
    let mut cycle = Cycle {
        accounts: audit.accounts,
        report: audit.report,
        skipped: None,
        executed: Executed::default(),
        state: None,
        final_save_error: None,
        rotations: Vec::new(),
        unconfirmed,
        evidence_error,
    };
    let enforced = async {
        let history = history.map_err(Skipped::State)?;
        if !leading {
            return Err(Skipped::NotLeader);
        }
        // An event run reads only its events' users: never a full refresh.
        let full_read = audit.full_read && ports.event().is_none();
        enforce(config, &ports, history, full_read, now, stop, &mut cycle).await
    };
    if let Err(skipped) = enforced.await {
        cycle.skipped = Some(skipped);
    }
    drop(guard);
    cycle
}

/// The state, once the store is locked: an unusable store is an error, never an empty history
/// (that would restart grace periods).
async fn load<S: StateStore>(guard: &Result<S::Guard, StoreError>, store: &S) -> Result<State, StoreError> {
    match guard {
        Err(e) => Err(e.clone()),
        Ok(_) => store.load().await.map(Option::unwrap_or_default),
    }
}

/// An event run's history: each new finding of a changed user first seen at its event's time
/// (within the last run and now), so its deadline counts from the change, not the read.
fn backdate(mut history: State, report: &Report, seen_at: &SeenAt, now: Timestamp) -> State {
    use crate::core::rules::FirstSeen;
    for f in &report.findings {
        if history.first_seen(&f.account_id, &f.access_key_id, f.rule).is_some() {
            continue;
        }
        if let Some(t) = seen_at(&f.account_id, &f.user) {
            history.first_seen_at(crate::core::history::Entry {
                account_id: f.account_id.clone(),
                user: f.user.clone(),
                access_key_id: f.access_key_id.clone(),
                rule: f.rule,
                first_seen: crate::core::events::first_seen(t, history.last_run, now),
            });
        }
    }
    history
}

/// What the read and the rules gave.
struct Audited {
    accounts: Vec<AccountInventory>,
    report: Report,
    /// Every user's keys were listed (no remembered key ids were used).
    full_read: bool,
}

/// Reads the inventory and evaluates the rules against the state (or none, when it is
/// unreadable: first-seen is then now, and nothing is enforced).
async fn audit_accounts<F: InventorySource>(
    config: &Config,
    fleet: &F,
    history: Option<&State>,
    last_calls: &[LastCall],
    now: Timestamp,
) -> Audited {
    // Key ids of users without findings are needed only for series of every key.
    let per_key = config.metrics_per_key == crate::config::PerKey::All;
    let wants = |account_id: &str, user: &User| per_key || audit::has_findings(config, account_id, user, now);
    // Key ids known from earlier listings spare a ListAccessKeys per unchanged user, and the
    // other credentials known from them a List call per user and kind, except every
    // `aws.full_refresh_every` runs (and without a readable state).
    let full_read = history.is_none_or(|h| h.runs_since_full_read.saturating_add(1) >= config.aws.full_refresh_every);
    let key_names = if full_read { None } else { history };
    let mut accounts = fleet
        .inventory(&audit::inventory_options(config, &wants, key_names, key_names))
        .await;
    audit::attach_last_calls(&mut accounts, last_calls);
    let empty = State::default();
    let report = audit::evaluate(config, &accounts, history.unwrap_or(&empty), now);
    Audited {
        accounts,
        report,
        full_read,
    }
}

/// The leader's part of a run, on a usable state: nothing is acted on with an untrusted clock
/// or before the new first-seen times are saved.
async fn enforce<F, S, C>(
    config: &Config,
    ports: &Ports<'_, F, S, C>,
    mut history: State,
    full_read: bool,
    now: Timestamp,
    stop: &AtomicBool,
    cycle: &mut Cycle,
) -> Result<(), Skipped>
where
    F: KeyActions + Sync,
    S: StateStore + Sync,
    C: Clock + Sync,
{
    clock::check(now, history.last_run, (ports.skew)()).map_err(Skipped::Clock)?;
    settle_intents(&mut history, &cycle.accounts, ports.journal).await?;
    journal_unconfirmed(config, ports, &cycle.unconfirmed, now).await?;
    let mut next = plan::next_state(&history, &cycle.report.findings, &cycle.accounts, now);
    journal_live_holds(config, ports, cycle, &mut next, now).await?;
    next.remember_key_names(&history, &cycle.accounts, full_read, now);
    let kinds = config.policy.rules.credential_kinds();
    next.remember_listings(&history, &cycle.accounts, |a| {
        crate::core::history::remembered_kinds(&kinds, a.credential_report_generated.is_some())
    });
    ports.store.save(&next).await.map_err(Skipped::Save)?;
    let (executed, mut next) = act(config, ports, next, &cycle.report, &cycle.accounts, now, stop).await;
    cycle.executed = executed;
    cycle.rotations = rotate_tagged(config, ports, &cycle.accounts, &cycle.executed, now).await;
    if plan::record_outcomes(&mut next, &cycle.executed.outcomes, now) {
        cycle.final_save_error = ports.store.save(&next).await.err();
    }
    cycle.state = Some(next);
    Ok(())
}

/// A process stopped between a deactivation and its journal entry: journal what IAM now shows
/// for each such intent before anything else is decided.
async fn settle_intents(
    history: &mut State,
    accounts: &[AccountInventory],
    journal: &dyn ActionJournal,
) -> Result<(), Skipped> {
    if history.intents().next().is_none() {
        return Ok(());
    }
    let journaled = journal.read().await.map_err(Skipped::State)?;
    let late = plan::reconcile(history, accounts, &journaled.entries);
    journal.append(&late).await.map_err(Skipped::Save)?;
    for e in &late {
        tracing::warn!(account_id = %e.account_id, user = %e.user, access_key_id = %e.access_key_id, outcome = %e.outcome, "journaled a deactivation whose process stopped before recording it");
    }
    Ok(())
}

/// The exposure claims nothing confirmed, of every account (only event runs have claims).
fn unconfirmed_exposures(accounts: &[AccountInventory]) -> Vec<(String, UnconfirmedExposure)> {
    accounts
        .iter()
        .flat_map(|a| {
            a.exposure
                .unconfirmed(&a.users)
                .into_iter()
                .map(|c| (a.account_id.clone(), c))
        })
        .collect()
}

/// Journals each unconfirmed exposure claim (`report_exposure`, outcome `unconfirmed`)
/// before anything is acted on: a claim that changed nothing is still on record.
async fn journal_unconfirmed<F, S, C>(
    config: &Config,
    ports: &Ports<'_, F, S, C>,
    claims: &[(String, UnconfirmedExposure)],
    now: Timestamp,
) -> Result<(), Skipped> {
    let entries: Vec<JournalEntry> = claims
        .iter()
        .map(|(account, c)| JournalEntry::unconfirmed_exposure(account, c, config.enforcement.mode, ports.run, now))
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    ports.journal.append(&entries).await.map_err(Skipped::Save)
}

/// Journals each new live-use hold (`usage.hold_live_keys`, outcome `held`) and remembers
/// it in `next`, so that a hold is on record once, before the run acts on anything.
async fn journal_live_holds<F, S, C>(
    config: &Config,
    ports: &Ports<'_, F, S, C>,
    cycle: &Cycle,
    next: &mut State,
    now: Timestamp,
) -> Result<(), Skipped> {
    let holds = plan::new_live_holds(&cycle.report.findings, &cycle.accounts, next);
    if holds.is_empty() {
        return Ok(());
    }
    let entries: Vec<JournalEntry> = holds
        .iter()
        .map(|h| JournalEntry::live_hold(h, config.enforcement.mode, ports.run, now))
        .collect();
    ports.journal.append(&entries).await.map_err(Skipped::Save)?;
    for h in &holds {
        next.note_hold(&h.account_id, &h.access_key_id, h.until);
    }
    Ok(())
}

/// The daemon's rotations of tagged users (`rotation.auto_before`), after the deactivations:
/// within what the cap left, only inside an enforcement window, and not after the lease or
/// the journal failed this run.
async fn rotate_tagged<F, S, C>(
    config: &Config,
    ports: &Ports<'_, F, S, C>,
    accounts: &[AccountInventory],
    executed: &Executed,
    now: Timestamp,
) -> Vec<&'static str>
where
    F: KeyActions + Sync,
{
    let Trigger::Cron { rotator: Some(rotator) } = ports.trigger else {
        return Vec::new();
    };
    if !config.auto_rotation()
        || !config.policy.windows.is_open(now)
        || executed.lease_lost.is_some()
        || executed.journal_error.is_some()
    {
        return Vec::new();
    }
    let acted = executed
        .outcomes
        .iter()
        .filter(|o| matches!(o.kind, OutcomeKind::Success | OutcomeKind::DryRun))
        .count();
    let auto = crate::app::rotate::Auto {
        secret_prefix: &config.rotation.secret_prefix,
        max_age: config.policy.rules.max_key_age.threshold,
        auto_before: config.rotation.auto_before,
        mode: config.enforcement.mode,
        budget: config.enforcement.max_deactivations_per_run.saturating_sub(acted),
        now,
        run: ports.run,
    };
    crate::app::rotate::auto(&auto, accounts, ports.fleet, rotator, ports.journal, ports.leader).await
}

/// Acts on the due keys of the report through `execute`; returns what was done and the
/// state with the intents it recorded on the way.
async fn act<F, S, C>(
    config: &Config,
    ports: &Ports<'_, F, S, C>,
    saved: State,
    report: &Report,
    accounts: &[AccountInventory],
    now: Timestamp,
    stop: &AtomicBool,
) -> (Executed, State)
where
    F: KeyActions + Sync,
    S: StateStore + Sync,
    C: Clock + Sync,
{
    let mut due = plan::plan(&report.findings, now);
    let mut cap = config.enforcement.max_deactivations_per_run;
    if let Some(scope) = ports.event() {
        // Other users' due keys wait for the cron run: an event vouches for nobody else.
        due.retain(|c| (scope.seen_at)(&c.account_id, &c.user).is_some());
        cap = cap.min(scope.budget);
    }
    // Key ids are unique across AWS: the one the inventories name is the one to spare.
    let own = accounts.iter().find_map(|a| a.own_access_key_id.clone());
    // Lookups (backoffs, dry-run notes) read the state as saved; intents go to the recorder's.
    let snapshot = saved.clone();
    let recorder = Recorder {
        store: ports.store,
        state: tokio::sync::Mutex::new(saved),
    };
    let ctx = execute::Context {
        policy: &config.policy,
        state: &snapshot,
        now,
        clock: ports.clock,
        mode: config.enforcement.mode,
        cap,
        own_access_key_id: own.as_deref(),
        stop,
        journal: ports.journal,
        run: ports.run,
        leader: ports.leader,
        intents: &recorder,
    };
    let executed = execute::execute(&due, &ctx, ports.fleet).await;
    (executed, recorder.state.into_inner())
}

/// Keeps the intents in the run's state and saves it before each deactivation is sent.
struct Recorder<'a, S> {
    store: &'a S,
    state: tokio::sync::Mutex<State>,
}

impl<S: StateStore + Sync> IntentLog for Recorder<'_, S> {
    fn begin<'a>(&'a self, entry: &'a JournalEntry) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut state = self.state.lock().await;
            state.begin_action(entry.clone());
            self.store.save(&state).await
        })
    }

    fn end<'a>(&'a self, account_id: &'a str, access_key_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.state.lock().await.end_action(account_id, access_key_id) })
    }
}

/// Test hook of debug builds: `KEYWARDEN_FAILPOINT_PANIC_RUNS=N` makes the first N runs of the
/// process panic where a bug in the rules would (the panic this guards against was a date
/// overflow in them), before anything is published or written. Release builds have no such
/// hook.
fn failpoint_panic() {
    #[cfg(debug_assertions)]
    {
        use std::sync::atomic::{AtomicU32, Ordering};
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let n: u32 = std::env::var("KEYWARDEN_FAILPOINT_PANIC_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if RUNS.fetch_add(1, Ordering::Relaxed) < n {
            panic!("failpoint KEYWARDEN_FAILPOINT_PANIC_RUNS");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{AccessKey, KeyStatus, ReadError, ServiceError, Timestamp};
    use crate::core::policy::Rule;
    use crate::core::rules::FirstSeen;
    use crate::ports::InventoryOptions;
    use chrono::{TimeDelta, TimeZone};
    use std::sync::Mutex;

    fn t0() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
    }

    /// Everything the fakes did, in order: `save`, `read u`, `deactivate K`, ...
    type Log = Mutex<Vec<String>>;

    /// IAM in memory: users with idle keys; updates of `denied` keys fail.
    struct Fleet<'a> {
        users: Mutex<Vec<User>>,
        denied: Vec<&'static str>,
        /// An account-level read error: the inventory is incomplete for these users.
        unreadable: Vec<&'static str>,
        log: &'a Log,
    }

    impl InventorySource for Fleet<'_> {
        async fn inventory(&self, _: &InventoryOptions<'_>) -> Vec<AccountInventory> {
            let users = self.users.lock().unwrap().clone();
            let (bad, good): (Vec<User>, Vec<User>) = users
                .into_iter()
                .partition(|u| self.unreadable.contains(&u.name.as_str()));
            vec![AccountInventory {
                account_id: "1".into(),
                users: good,
                root_access_keys_present: Some(false),
                errors: bad
                    .iter()
                    .map(|u| ReadError {
                        account_id: "1".into(),
                        user: Some(u.name.clone()),
                        operation: "ListAccessKeys".into(),
                        message: "Throttling".into(),
                        code: None,
                    })
                    .collect(),
                ..Default::default()
            }]
        }
    }

    impl KeyActions for Fleet<'_> {
        async fn read_user(&self, _: &str, name: &str) -> Result<Option<User>, ReadError> {
            self.log.lock().unwrap().push(format!("read {name}"));
            Ok(self.users.lock().unwrap().iter().find(|u| u.name == name).cloned())
        }

        async fn deactivate(&self, _: &str, _: &str, id: &str) -> Result<(), ServiceError> {
            self.log.lock().unwrap().push(format!("deactivate {id}"));
            if self.denied.contains(&id) {
                return Err(ServiceError {
                    code: Some("AccessDenied".into()),
                    message: "AccessDenied".into(),
                });
            }
            for u in self.users.lock().unwrap().iter_mut() {
                for k in u.keys.iter_mut().filter(|k| k.id == id) {
                    k.status = KeyStatus::Inactive;
                }
            }
            Ok(())
        }
    }

    #[derive(Default)]
    struct Store<'a> {
        state: Mutex<Option<State>>,
        load_error: bool,
        save_error: bool,
        log: Option<&'a Log>,
    }

    impl StateStore for Store<'_> {
        type Guard = ();

        async fn lock(&self) -> Result<(), StoreError> {
            Ok(())
        }

        async fn load(&self) -> Result<Option<State>, StoreError> {
            if self.load_error {
                return Err(StoreError("state file x: not valid keywarden state".into()));
            }
            Ok(self.state.lock().unwrap().clone())
        }

        async fn save(&self, state: &State) -> Result<(), StoreError> {
            if let Some(log) = self.log {
                log.lock().unwrap().push("save".into());
            }
            if self.save_error {
                return Err(StoreError("state file x: cannot write".into()));
            }
            *self.state.lock().unwrap() = Some(state.clone());
            Ok(())
        }
    }

    struct Fixed(Timestamp);

    impl Clock for Fixed {
        fn now(&self) -> Timestamp {
            self.0
        }
    }

    fn idle(name: &str) -> User {
        User {
            credentials: vec![],
            name: name.into(),
            path: "/".into(),
            tags: vec![],
            keys: vec![AccessKey {
                id: name.to_uppercase(),
                status: KeyStatus::Active,
                created: t0() - TimeDelta::days(60),
                last_used: None,
            }],
        }
    }

    fn fleet<'a>(names: &[&str], log: &'a Log) -> Fleet<'a> {
        Fleet {
            users: Mutex::new(names.iter().map(|n| idle(n)).collect()),
            denied: vec![],
            unreadable: vec![],
            log,
        }
    }

    /// An enforcing config with a zero grace period and a cap of `cap`.
    fn config(cap: usize) -> Config {
        let dir = std::env::temp_dir().join(format!(
            "keywarden-cycle-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.toml");
        std::fs::write(
            &path,
            format!(
                "[enforcement]\nmode = \"enforce\"\ngrace_period = \"0s\"\nmax_deactivations_per_run = {cap}\n\
                 [metrics]\nper_key = false\n"
            ),
        )
        .unwrap();
        let c = crate::config::load(&path, true).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        c
    }

    async fn cycle<F: InventorySource + KeyActions + Sync>(config: &Config, fleet: &F, store: &Store<'_>) -> Cycle {
        cycle_led(config, fleet, store, &crate::ports::SoleInstance).await
    }

    async fn cycle_led<F: InventorySource + KeyActions + Sync>(
        config: &Config,
        fleet: &F,
        store: &Store<'_>,
        leader: &dyn Leadership,
    ) -> Cycle {
        let stop = AtomicBool::new(false);
        let ports = Ports {
            fleet,
            store,
            clock: &Fixed(t0()),
            skew: &|| Some(0.4),
            journal: &crate::ports::MemoryJournal::default(),
            run: &RunInfo::for_tests(),
            leader,
            trigger: Trigger::Cron { rotator: None },
            evidence: &crate::ports::NoEvidence,
        };
        run(config, ports, &|_, _| {}, &stop).await
    }

    /// A lease as the run sees it: leading at the start or not; `may_act` answers from a list,
    /// one answer per key (then "lost").
    struct Lease {
        leading: bool,
        answers: Mutex<Vec<Result<(), crate::ports::Refusal>>>,
    }

    impl Leadership for Lease {
        fn leading(&self) -> bool {
            self.leading
        }

        fn may_act<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> crate::ports::BoxFuture<'a, Result<(), crate::ports::Refusal>> {
            let mut a = self.answers.lock().unwrap();
            let next = if a.is_empty() {
                Err(crate::ports::Refusal::NotLeader("lost".into()))
            } else {
                a.remove(0)
            };
            Box::pin(std::future::ready(next))
        }
    }

    fn keys(s: &State) -> Vec<String> {
        let mut k: Vec<String> = s.entries().map(|e| e.access_key_id.clone()).collect();
        k.sort();
        k.dedup();
        k
    }

    #[tokio::test]
    async fn first_seen_times_are_saved_before_any_key_is_touched() {
        let log = Log::default();
        let f = fleet(&["a", "b"], &log);
        let store = Store {
            log: Some(&log),
            ..Store::default()
        };
        let c = cycle(&config(25), &f, &store).await;
        assert!(c.ok());
        let log = log.lock().unwrap();
        let first_save = log.iter().position(|e| e == "save").expect("saved");
        let first_act = log.iter().position(|e| e.starts_with("deactivate")).expect("acted");
        assert!(first_save < first_act, "{log:?}");
    }

    #[tokio::test]
    async fn a_key_is_forgotten_only_after_a_confirmed_deactivation() {
        let log = Log::default();
        let mut f = fleet(&["ok", "denied"], &log);
        f.denied = vec!["DENIED"];
        let store = Store::default();
        let c = cycle(&config(25), &f, &store).await;
        assert!(!c.ok(), "a failed deactivation is an error of the run");
        let saved = store.state.lock().unwrap().clone().expect("saved");
        assert_eq!(keys(&saved), ["DENIED"], "only the confirmed key is forgotten");
        assert_eq!(saved.failure("1", "DENIED").map(|f| f.attempts), Some(1));
        assert_eq!(
            saved.first_seen("1", "DENIED", Rule::UnusedKey),
            Some(t0()),
            "the failed key keeps its first-seen time"
        );
    }

    #[tokio::test]
    async fn the_cap_bounds_deactivations_per_run() {
        let log = Log::default();
        let f = fleet(&["a", "b", "c"], &log);
        let store = Store::default();
        let c = cycle(&config(2), &f, &store).await;
        let done = successes(&c);
        assert_eq!(done, 2);
        assert_eq!(c.executed.held_back.get("1"), Some(&1));
        assert_eq!(keys(&store.state.lock().unwrap().clone().unwrap()).len(), 1);
    }

    #[tokio::test]
    async fn an_unusable_store_turns_enforcement_off() {
        for (load_error, save_error) in [(true, false), (false, true)] {
            let log = Log::default();
            let f = fleet(&["a"], &log);
            let store = Store {
                load_error,
                save_error,
                ..Store::default()
            };
            let c = cycle(&config(25), &f, &store).await;
            assert!(
                matches!(c.skipped, Some(Skipped::State(_)) | Some(Skipped::Save(_))),
                "{:?}",
                c.skipped
            );
            assert!(log.lock().unwrap().is_empty(), "nothing read or touched for acting");
            assert_eq!(c.report.findings.len(), 1, "the audit is still published");
        }
    }

    #[tokio::test]
    async fn a_follower_audits_but_neither_writes_nor_acts() {
        let log = Log::default();
        let f = fleet(&["a", "b"], &log);
        let store = Store {
            log: Some(&log),
            ..Store::default()
        };
        let lease = Lease {
            leading: false,
            answers: Mutex::new(vec![]),
        };
        let c = cycle_led(&config(25), &f, &store, &lease).await;
        assert_eq!(c.skipped, Some(Skipped::NotLeader));
        assert!(c.ok(), "following is not an error");
        assert_eq!(c.report.findings.len(), 2, "the audit is published");
        assert!(log.lock().unwrap().is_empty(), "no save, no read, no action: {log:?}");
    }

    #[tokio::test]
    async fn a_lease_lost_mid_run_stops_before_the_next_key_and_a_snooze_spares_its_key() {
        let log = Log::default();
        let f = fleet(&["a", "b", "c"], &log);
        let store = Store::default();
        let lease = Lease {
            leading: true,
            answers: Mutex::new(vec![
                Err(crate::ports::Refusal::Snoozed("snoozed by an operator".into())),
                Ok(()),
            ]),
        };
        let c = cycle_led(&config(25), &f, &store, &lease).await;
        let kinds: Vec<OutcomeKind> = c.executed.outcomes.iter().map(|o| o.kind).collect();
        assert_eq!(kinds, [OutcomeKind::NoLongerDue, OutcomeKind::Success]);
        assert_eq!(c.executed.lease_lost.as_deref(), Some("lost"));
        let acted: Vec<String> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.starts_with("deactivate"))
            .cloned()
            .collect();
        assert_eq!(acted.len(), 1, "only the key confirmed by the lease: {acted:?}");
    }

    #[tokio::test]
    async fn an_untrusted_clock_decides_nothing() {
        let log = Log::default();
        let f = fleet(&["a"], &log);
        let store = Store::default();
        let stop = AtomicBool::new(false);
        let ports = Ports {
            fleet: &f,
            store: &store,
            clock: &Fixed(t0()),
            skew: &|| Some(-900.0),
            journal: &crate::ports::MemoryJournal::default(),
            run: &RunInfo::for_tests(),
            leader: &crate::ports::SoleInstance,
            trigger: Trigger::Cron { rotator: None },
            evidence: &crate::ports::NoEvidence,
        };
        let c = run(&config(25), ports, &|_, _| {}, &stop).await;
        assert!(matches!(c.skipped, Some(Skipped::Clock(_))));
        assert!(log.lock().unwrap().is_empty());
        assert!(store.state.lock().unwrap().is_none(), "nothing recorded");
    }

    #[tokio::test]
    async fn an_unreadable_user_keeps_its_history_and_is_not_acted_on() {
        let log = Log::default();
        let mut f = fleet(&["a", "flaky"], &log);
        f.unreadable = vec!["flaky"];
        let earlier = t0() - TimeDelta::days(3);
        let store = Store::default();
        let old = State::from_entries([crate::core::history::Entry {
            account_id: "1".into(),
            user: "flaky".into(),
            access_key_id: "FLAKY".into(),
            rule: Rule::UnusedKey,
            first_seen: earlier,
        }]);
        *store.state.lock().unwrap() = Some(old);
        let c = cycle(&config(25), &f, &store).await;
        assert!(!c.ok(), "an incomplete audit is not a clean run");
        assert!(!log
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains("FLAKY") || e.contains("flaky")));
        let saved = store.state.lock().unwrap().clone().unwrap();
        assert_eq!(saved.first_seen("1", "FLAKY", Rule::UnusedKey), Some(earlier));
    }

    // The steps one by one, as any trigger of a run goes through them.

    #[tokio::test]
    async fn the_load_step_of_a_store_that_cannot_be_locked_is_an_error_not_an_empty_history() {
        let store = Store::default();
        *store.state.lock().unwrap() = Some(State::default());
        let locked: Result<(), StoreError> = Err(StoreError("state file x: locked by pid 7".into()));
        assert_eq!(
            load(&locked, &store).await,
            Err(StoreError("state file x: locked by pid 7".into()))
        );
        assert_eq!(load(&Ok(()), &store).await, Ok(State::default()));
        let unreadable = Store {
            load_error: true,
            ..Store::default()
        };
        assert!(load(&Ok(()), &unreadable).await.is_err());
    }

    #[tokio::test]
    async fn the_audit_step_lists_every_key_without_a_state_and_every_full_refresh_every_runs() {
        let log = Log::default();
        let f = fleet(&["a"], &log);
        let c = config(25);
        let mut history = State::default();
        assert!(
            audit_accounts(&c, &f, None, &[], t0()).await.full_read,
            "no state: list everything"
        );
        history.runs_since_full_read = 0;
        let a = audit_accounts(&c, &f, Some(&history), &[], t0()).await;
        assert!(!a.full_read, "the run after a full read uses the remembered key ids");
        assert_eq!(a.report.findings.len(), 1, "and still evaluates");
        history.runs_since_full_read = c.aws.full_refresh_every - 1;
        assert!(audit_accounts(&c, &f, Some(&history), &[], t0()).await.full_read);
    }

    fn intent_of(user: &str) -> JournalEntry {
        let c = crate::core::plan::Candidate {
            credential_type: crate::core::model::CredentialType::AccessKey,
            account_id: "1".into(),
            user: user.into(),
            access_key_id: user.to_uppercase(),
            rules: vec![Rule::UnusedKey],
            first_seen: t0(),
            deadline: t0(),
            owner: "team".into(),
        };
        JournalEntry::intent(&c, &RunInfo::for_tests(), t0())
    }

    #[tokio::test]
    async fn the_settle_step_journals_what_iam_shows_for_an_intent_and_reads_no_journal_without_one() {
        let log = Log::default();
        let f = fleet(&["a"], &log);
        let accounts = f
            .inventory(&audit::inventory_options(&config(25), &|_, _| true, None, None))
            .await;
        let failing = crate::ports::MemoryJournal {
            fail: Some("journal x: read-only file system".into()),
            ..Default::default()
        };
        let mut clean = State::default();
        assert_eq!(
            settle_intents(&mut clean, &accounts, &failing).await,
            Ok(()),
            "nothing to settle"
        );

        let mut history = State::default();
        history.begin_action(intent_of("a"));
        let journal = crate::ports::MemoryJournal::default();
        f.deactivate("1", "a", "A").await.unwrap();
        let accounts = f
            .inventory(&audit::inventory_options(&config(25), &|_, _| true, None, None))
            .await;
        assert_eq!(settle_intents(&mut history, &accounts, &journal).await, Ok(()));
        let entries = journal.entries.lock().unwrap().clone();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(
            (entries[0].access_key_id.as_str(), entries[0].outcome.as_str()),
            ("A", "success")
        );
        assert_eq!(history.intents().count(), 0, "settled");

        let mut again = State::default();
        again.begin_action(intent_of("a"));
        assert!(matches!(
            settle_intents(&mut again, &accounts, &failing).await,
            Err(Skipped::Save(_))
        ));
    }

    /// How many deactivations of the cycle succeeded.
    fn successes(c: &Cycle) -> usize {
        c.executed
            .outcomes
            .iter()
            .filter(|o| o.kind == OutcomeKind::Success)
            .count()
    }

    /// An event run with a cap of 25, of which `budget` is left, naming whom `seen_at` names.
    async fn event_cycle(f: &Fleet<'_>, store: &Store<'_>, seen_at: &SeenAt<'_>, budget: usize) -> Cycle {
        let stop = AtomicBool::new(false);
        let ports = Ports {
            fleet: f,
            store,
            clock: &Fixed(t0()),
            skew: &|| Some(0.4),
            journal: &crate::ports::MemoryJournal::default(),
            run: &RunInfo::for_tests(),
            leader: &crate::ports::SoleInstance,
            trigger: Trigger::Event(EventScope { seen_at, budget }),
            evidence: &crate::ports::NoEvidence,
        };
        run(&config(25), ports, &|_, _| {}, &stop).await
    }

    #[tokio::test]
    async fn an_event_runs_new_finding_is_first_seen_at_the_event_time_never_before_the_last_run() {
        let log = Log::default();
        let f = fleet(&["a", "b", "c"], &log);
        let store = Store::default();
        let last_run = t0() - TimeDelta::hours(3);
        let mut earlier = State::default();
        earlier.last_run = Some(last_run);
        *store.state.lock().unwrap() = Some(earlier);
        let seen_at = |_: &str, user: &str| match user {
            "a" => Some(t0() - TimeDelta::hours(1)),
            "b" => Some(t0() - TimeDelta::days(2)),
            _ => None,
        };
        let c = event_cycle(&f, &store, &seen_at, usize::MAX).await;
        let first_seen = |user: &str| {
            c.report
                .findings
                .iter()
                .find(|x| x.user == user)
                .map(|x| x.first_seen)
                .expect("a finding")
        };
        assert_eq!(first_seen("a"), t0() - TimeDelta::hours(1), "the event's time");
        assert_eq!(
            first_seen("b"),
            last_run,
            "an event older than the last run: the last run"
        );
        assert_eq!(first_seen("c"), t0(), "a user without an event: now");
        let mut acted: Vec<&str> = c.executed.outcomes.iter().map(|o| o.candidate.user.as_str()).collect();
        acted.sort_unstable();
        assert_eq!(acted, ["a", "b"], "c is due too, but no event named c: the cron run's");
    }

    #[tokio::test]
    async fn an_event_run_never_counts_as_a_full_refresh() {
        // An event run reads only the users its events name: were it to restart the count,
        // a steady stream of events would put every full refresh off.
        let log = Log::default();
        let f = fleet(&["a"], &log);
        let store = Store::default();
        let every = config(25).aws.full_refresh_every;
        let mut earlier = State::default();
        earlier.last_run = Some(t0() - TimeDelta::hours(1));
        earlier.runs_since_full_read = every - 1;
        *store.state.lock().unwrap() = Some(earlier);
        event_cycle(&f, &store, &|_: &str, _: &str| None, usize::MAX).await;
        let saved = store.state.lock().unwrap().clone().expect("saved");
        assert_eq!(saved.runs_since_full_read, every, "still due at the next cron run");
    }

    #[tokio::test]
    async fn event_runs_act_within_the_budget_the_cron_run_left() {
        let log = Log::default();
        let f = fleet(&["a", "b", "c"], &log);
        let store = Store::default();
        let c = event_cycle(&f, &store, &|_, _| Some(t0()), 1).await;
        let done = successes(&c);
        assert_eq!(done, 1, "a cap of 25, of which earlier event runs left 1");
        assert_eq!(c.executed.held_back.values().sum::<usize>(), 2);
    }
    /// Usage evidence in memory: each key's last call, or a read failure.
    struct Calls(Result<Vec<LastCall>, StoreError>);

    impl LastCalls for Calls {
        fn last_calls(&self) -> BoxFuture<'_, Result<Vec<LastCall>, StoreError>> {
            Box::pin(std::future::ready(self.0.clone()))
        }
    }

    /// Holds on (a 24h live window), a one-day grace period; idle user `a`'s `unused_key`
    /// first seen 36 hours ago: due since 12 hours ago, held at most until 12 hours ahead.
    async fn held_run(
        store: &Store<'_>,
        fleet: &Fleet<'_>,
        journal: &crate::ports::MemoryJournal,
        calls: &Calls,
    ) -> Cycle {
        let dir = std::env::temp_dir().join(format!(
            "keywarden-hold-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.toml");
        std::fs::write(
            &path,
            "[enforcement]\nmode = \"enforce\"\ngrace_period = \"1d\"\n[usage]\nenabled = true\nhold_live_keys = true\n[metrics]\nper_key = false\n",
        )
        .unwrap();
        let config = crate::config::load(&path, true).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let stop = AtomicBool::new(false);
        let ports = Ports {
            fleet,
            store,
            clock: &Fixed(t0()),
            skew: &|| Some(0.4),
            journal,
            run: &RunInfo::for_tests(),
            leader: &crate::ports::SoleInstance,
            trigger: Trigger::Cron { rotator: None },
            evidence: calls,
        };
        run(&config, ports, &|_, _| {}, &stop).await
    }

    fn seen_36h_ago() -> Store<'static> {
        let entry = crate::core::history::Entry {
            account_id: "1".into(),
            user: "a".into(),
            access_key_id: "A".into(),
            rule: Rule::UnusedKey,
            first_seen: t0() - TimeDelta::hours(36),
        };
        Store {
            state: Mutex::new(Some(State::from_entries([entry]))),
            ..Store::default()
        }
    }

    #[tokio::test]
    async fn a_key_in_live_use_is_held_and_journaled_once_then_acted_on_without_evidence() {
        let log = Log::default();
        let f = fleet(&["a"], &log);
        let store = seen_36h_ago();
        let journal = crate::ports::MemoryJournal::default();
        let live = Calls(Ok(vec![("1".into(), "A".into(), t0() - TimeDelta::hours(1))]));
        for _ in 0..2 {
            let c = held_run(&store, &f, &journal, &live).await;
            assert_eq!(c.report.summary.live_holds, 1);
            assert!(c.executed.outcomes.is_empty());
        }
        assert!(!log.lock().unwrap().iter().any(|l| l.starts_with("deactivate")));
        let entries = journal.entries.lock().unwrap().clone();
        assert_eq!(entries.len(), 1, "one hold, journaled once: {entries:?}");
        assert_eq!(
            (entries[0].outcome.as_str(), entries[0].deadline),
            ("held", Some(t0() + TimeDelta::hours(12)))
        );
        // The evidence is gone (or unreadable): the live read decides alone.
        let unreadable = Calls(Err(StoreError("usage.json: not valid".into())));
        let c = held_run(&store, &f, &journal, &unreadable).await;
        assert!(c.evidence_error.is_some());
        assert_eq!(log.lock().unwrap().iter().filter(|l| *l == "deactivate A").count(), 1);
    }
}

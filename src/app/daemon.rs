//! `keywarden run`: the long-lived service.
//!
//! One task owns the loop: cron ticks (tokio-cron-scheduler), SIGHUP (reload), SIGTERM/SIGINT
//! (stop) and the systemd watchdog. Audits run in their own task on an `Arc<Config>` snapshot,
//! so a reload never changes a run in progress; a tick that fires while an audit runs is
//! skipped and counted. The HTTP listener serves what the last completed audit published.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_cron_scheduler::{Job, JobScheduler};
use uuid::Uuid;

use crate::app::cycle::{Cycle, Skipped};
use crate::aws::accounts::Fleet;
use crate::config::StateBackend;
use crate::config::{self, Config};
use crate::core::model::AccountInventory;
use crate::core::report::Report;
use crate::ports::{InventorySource, KeyActions, Leadership, SoleInstance};
use crate::ports::{RequestObserver, SystemClock};
use crate::server::http::SharedJournal;
use crate::server::http::{Server, Shared};
use crate::server::metrics::Metrics;
use crate::state::dynamodb::{DynamoStore, Table};
use crate::state::lease::{Change, Lease};
use crate::state::Store;
use crate::sys::notify::Notifier;

pub struct Options {
    pub config_path: PathBuf,
    /// The file was named explicitly and must exist on reload too.
    pub config_required: bool,
    pub once: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("scheduler: {0}")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),
    #[error("cannot install signal handlers: {0}")]
    Signal(std::io::Error),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// How long an in-flight run may take to finish on SIGTERM before it is abandoned. Enforcement
/// checks the stop flag between keys, so a run normally ends well before this.
const STOP_GRACE: Duration = Duration::from_secs(6);

fn unix_now() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

/// How long a run waits for another keywarden (e.g. `run --once` beside the daemon) to
/// release the state file before it gives up enforcing.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// This run's view of its requests: counted in the metrics, and the clock skew seen in the
/// answers' `Date` (the largest either way) for the clock check before enforcing.
#[derive(Debug)]
pub(crate) struct RunObserver {
    metrics: Arc<Metrics>,
    skew: Mutex<Option<f64>>,
}

impl RequestObserver for RunObserver {
    fn attempt(&self, operation: &str, outcome: &'static str) {
        self.metrics.attempt(operation, outcome);
    }

    fn clock_skew(&self, seconds: f64) {
        let mut s = self.skew.lock().unwrap_or_else(|p| p.into_inner());
        if s.is_none_or(|old| seconds.abs() > old.abs()) {
            *s = Some(seconds);
        }
    }
}

impl RunObserver {
    pub(crate) fn skew(&self) -> Option<f64> {
        *self.skew.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new run on the same clients (an event run): only its own answers count.
    pub(crate) fn reset_skew(&self) {
        *self.skew.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// What the last full run connected and read: the clients of its accounts and their
/// inventory, which event runs reuse (they read only the changed users).
pub(crate) struct Last {
    pub(crate) fleet: Arc<Fleet>,
    pub(crate) observer: Arc<RunObserver>,
    pub(crate) accounts: Vec<AccountInventory>,
    /// Deactivations (or dry-run "would deactivate"s) the event runs since this cron run
    /// made: together they stay within one run's cap.
    pub(crate) event_acted: usize,
}

/// One run at a time, cron or event, and the last full run's clients and inventory.
pub(crate) type Runs = tokio::sync::Mutex<Option<Last>>;

/// One cycle that cannot take the daemon down: a panic inside ends this run only. It is logged
/// and counted (`keywarden_audit_runs_total{outcome="panic"}`); the state file is replaced
/// whole or not at all, so the half-done run leaves either the old or a complete new state,
/// and the lock is released as the run unwinds.
pub(crate) async fn guarded_cycle(
    config: Arc<Config>,
    shared: Arc<Shared>,
    memory: Arc<Memory>,
    runs: Arc<Runs>,
    stop: Arc<AtomicBool>,
) -> bool {
    guarded(&shared, cycle(config, Arc::clone(&shared), memory, runs, stop)).await
}

/// Runs a run's future so that a panic ends only that run (logged, counted, ready again).
/// `T::default()` is what a panicked run returns (false; no event handled).
pub(crate) async fn guarded<T: Default>(shared: &Shared, run: impl std::future::Future<Output = T>) -> T {
    match AssertUnwindSafe(run).catch_unwind().await {
        Ok(ok) => ok,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(error = %message, "the run panicked and was ended; the next run starts afresh");
            shared.metrics.audit_runs.with_label_values(&["panic"]).inc();
            shared.metrics.audit_success.set(0);
            shared.ready.set_ready();
            T::default()
        }
    }
}

/// Where the daemon's memory lives: chosen at start from `state.backend` (a reload does not
/// move it; the README says so).
pub enum Memory {
    File,
    /// The state table and this instance's leader lease in it.
    Table {
        table: Arc<Table>,
        lease: Arc<Lease>,
    },
}

impl Memory {
    pub async fn open(config: &Config, metrics: &Arc<Metrics>) -> Memory {
        match &config.backend {
            StateBackend::File => Memory::File,
            StateBackend::DynamoDb(d) => {
                let observer = Arc::new(RunObserver {
                    metrics: Arc::clone(metrics),
                    skew: Mutex::new(None),
                });
                let table = Arc::new(Table::connect(&config.aws, d, Some(observer as Arc<dyn RequestObserver>)).await);
                let me = d
                    .instance_id
                    .clone()
                    .unwrap_or_else(|| format!("{}:{}", crate::sys::host::hostname(), std::process::id()));
                let lease = Arc::new(Lease::new(Arc::clone(&table), me, d.lease_duration));
                Memory::Table { table, lease }
            }
        }
    }

    pub(crate) fn store(&self, config: &Config) -> Store {
        match self {
            Memory::File => Store::file(config, LOCK_WAIT),
            Memory::Table { table, lease } => Store::Table(DynamoStore::new(
                Arc::clone(table),
                Some(Arc::clone(lease)),
                config.journal_retention,
            )),
        }
    }

    fn journal(&self, config: &Config) -> SharedJournal {
        match self {
            Memory::File => Arc::new(crate::state::journal::FileJournal::new(
                &config.journal_path,
                config.journal_retention,
            )),
            Memory::Table { table, .. } => {
                Arc::new(DynamoStore::new(Arc::clone(table), None, config.journal_retention))
            }
        }
    }

    pub(crate) fn leader(&self) -> &dyn Leadership {
        match self {
            Memory::File => &SoleInstance,
            Memory::Table { lease, .. } => lease.as_ref(),
        }
    }

    fn lease(&self) -> Option<&Arc<Lease>> {
        match self {
            Memory::File => None,
            Memory::Table { lease, .. } => Some(lease),
        }
    }
}

/// One step of the lease protocol, with its metrics and logs.
async fn tick_lease(lease: &Lease, metrics: &Metrics) {
    match lease.tick().await {
        Ok(Change::Acquired) => {
            metrics.lease_acquisitions.inc();
            tracing::info!(
                instance_id = lease.instance_id(),
                "took the leader lease; this instance enforces"
            );
        }
        Ok(Change::Lost) => {
            metrics.lease_losses.inc();
            tracing::warn!(
                instance_id = lease.instance_id(),
                "lost the leader lease; this instance only audits"
            );
        }
        Ok(Change::None) => {}
        Err(e) => {
            metrics.lease_errors.inc();
            tracing::warn!(instance_id = lease.instance_id(), error = %e, "lease check failed; a lease held runs out unless renewed");
        }
    }
}

/// Keeps the lease for as long as the daemon runs (aborted at shutdown, then released).
///
/// A tick may not outlast its period (a slow table must not stall the protocol: an unanswered
/// renewal counts as failed, and the lease runs out by itself). `keywarden_leader` does not
/// wait for a tick: each scrape reads the lease (`Metrics::read_leader_from`), so it drops the
/// moment the lease runs short, and two instances never both show 1 across a handover.
async fn lease_loop(lease: Arc<Lease>, metrics: Arc<Metrics>) {
    loop {
        tokio::time::sleep(lease.tick_every()).await;
        if tokio::time::timeout(lease.tick_every(), tick_lease(&lease, &metrics))
            .await
            .is_err()
        {
            metrics.lease_errors.inc();
            if lease.tick_timed_out() {
                metrics.lease_losses.inc();
            }
            tracing::warn!(
                instance_id = lease.instance_id(),
                "lease check timed out; a lease held runs out unless renewed"
            );
        }
    }
}

/// One audit + enforcement cycle against AWS and the state store (`app::cycle` over the
/// production ports), with its metrics and logs. Returns true when every read and every action
/// succeeded. It waits for an event run in progress, and leaves its clients and inventory to
/// the next ones.
pub(crate) async fn cycle(
    config: Arc<Config>,
    shared: Arc<Shared>,
    memory: Arc<Memory>,
    runs: Arc<Runs>,
    stop: Arc<AtomicBool>,
) -> bool {
    let mut last = runs.lock().await;
    let metrics = Arc::clone(&shared.metrics);
    let started = Instant::now();
    let observer = Arc::new(RunObserver {
        metrics: Arc::clone(&metrics),
        skew: Mutex::new(None),
    });
    let fleet = Arc::new(Fleet::connect(&config.aws, Some(observer.clone() as Arc<dyn RequestObserver>)).await);
    let rotator = crate::aws::accounts::FleetRotator {
        fleet: fleet.as_ref(),
        settings: &config.rotation,
    };
    let (c, ran) = run_cycle(
        &config,
        &shared,
        &memory,
        fleet.as_ref(),
        &observer,
        crate::app::cycle::Trigger::Cron {
            rotator: Some(&rotator),
        },
        &stop,
        started,
    )
    .await;
    if ran && c.skipped.is_none() {
        if let Some(hub) = &config.security_hub {
            let observer = Some(observer.clone() as Arc<dyn RequestObserver>);
            let exported = crate::app::export::security_hub(&config, hub, &fleet.sdks(), &c.report, observer).await;
            publish_export(&metrics, "security_hub", &exported);
        }
    }
    let ok = ran && c.ok();
    *last = Some(Last {
        fleet,
        observer,
        accounts: c.accounts,
        event_acted: 0,
    });
    ok
}

/// `app::cycle::run` over the production ports on `fleet`, published as it goes (the audit
/// before anything is enforced) and settled: what a cron run and an event run share. The bool
/// says whether enforcement could run (`settle`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_cycle<F: InventorySource + KeyActions + Sync>(
    config: &Config,
    shared: &Shared,
    memory: &Memory,
    fleet: &F,
    observer: &RunObserver,
    trigger: crate::app::cycle::Trigger<'_>,
    stop: &AtomicBool,
    started: Instant,
) -> (Cycle, bool) {
    let store = memory.store(config);
    let run = crate::sys::host::run_info();
    let audited =
        |accounts: &[AccountInventory], report: &Report| publish_audit(shared, config, accounts, report, started);
    let ports = crate::app::cycle::Ports {
        fleet,
        store: &store,
        clock: &SystemClock,
        skew: &|| observer.skew(),
        journal: &store,
        run: &run,
        leader: memory.leader(),
        trigger,
    };
    let c = crate::app::cycle::run(config, ports, &audited, stop).await;
    for outcome in &c.rotations {
        shared.metrics.rotations.with_label_values(&[outcome]).inc();
    }
    let ran = settle(&shared.metrics, config, &c, observer);
    (c, ran)
}

/// A cycle's enforcement outcome as metrics and logs. False when enforcement could not run
/// (state, clock or save); true after it ran, or when the lease is another's.
pub(crate) fn settle(metrics: &Metrics, config: &Config, c: &Cycle, observer: &RunObserver) -> bool {
    match &c.skipped {
        Some(Skipped::State(e)) => {
            metrics.state_ok.set(0);
            tracing::error!(error = %e, "enforcement is off until the state file can be used (grace periods are never reset silently)");
            return false;
        }
        Some(Skipped::Clock(problem)) => {
            metrics.clock_skew.set(observer.skew().unwrap_or(0.0));
            metrics.clock_ok.set(0);
            tracing::error!(error = %problem, "the clock cannot be trusted; this run audits and publishes but deactivates nothing and records nothing");
            return false;
        }
        Some(Skipped::Save(e)) => {
            metrics.state_ok.set(0);
            tracing::error!(error = %e, "cannot record first-seen times; enforcement is skipped this run");
            return false;
        }
        Some(Skipped::NotLeader) => {
            metrics.state_ok.set(1);
            // Enforcement's gauges are the leader's to export (an instance that led before
            // would otherwise keep its last values, and the alerts take the max over instances).
            metrics.deactivation_failing_keys.reset();
            metrics.deactivations_held_back.reset();
            metrics.export_success.reset();
            tracing::debug!(
                "another instance holds the leader lease; this one audited and published, and enforces nothing"
            );
            return true;
        }
        None => {}
    }
    metrics.clock_skew.set(observer.skew().unwrap_or(0.0));
    metrics.clock_ok.set(1);
    metrics.state_ok.set(1);
    publish_enforcement(metrics, c, config.enforcement.max_deactivations_per_run);
    if let Some(e) = &c.final_save_error {
        tracing::error!(error = %e, "cannot update the state after deactivations");
    }
    true
}

/// The export's counters and log; its failure is the export's alone (the run stays good).
fn publish_export(metrics: &Metrics, destination: &str, e: &crate::app::export::Exported) {
    let count = |state: &str, n: usize| {
        metrics
            .export_findings
            .with_label_values(&[destination, state])
            .inc_by(n as u64)
    };
    count("ACTIVE", e.active);
    count("ARCHIVED", e.archived);
    metrics
        .export_errors
        .with_label_values(&[destination])
        .inc_by(e.errors.len() as u64);
    metrics
        .export_success
        .with_label_values(&[destination])
        .set(i64::from(e.errors.is_empty()));
    for err in &e.errors {
        tracing::warn!(destination, error = %err, "export failed; the audit and enforcement are not affected");
    }
    tracing::info!(
        destination,
        active = e.active,
        archived = e.archived,
        errors = e.errors.len(),
        "findings exported"
    );
}

/// The audit's metrics, log and report, published before anything is enforced.
pub(crate) fn publish_audit(
    shared: &Shared,
    config: &Config,
    accounts: &[AccountInventory],
    report: &Report,
    started: Instant,
) {
    let metrics = &shared.metrics;
    let elapsed = started.elapsed().as_secs_f64();
    metrics.audit_duration.set(elapsed);
    log_audit(report, accounts.len(), elapsed);
    metrics.publish_audit(accounts, report, &config.policy.owners, config.metrics_per_key);
    if let Ok(mut slot) = shared.report_json.write() {
        *slot = Some(report.to_json().into());
    }
    metrics.audit_success.set(i64::from(report.complete));
    if report.complete {
        metrics.audit_last_success.set(unix_now());
        metrics.audit_runs.with_label_values(&["success"]).inc();
    } else {
        metrics.audit_runs.with_label_values(&["failed"]).inc();
    }
    let read = report.accounts.iter().filter(|a| !a.read_nothing()).count();
    metrics.audit_accounts_read.set(read as i64);
    match report.failure_headline() {
        Some(why) if report.read_nothing() => shared.ready.set_read_nothing(why),
        _ => shared.ready.set_ready(),
    }
}

/// Decisions, the cap's leftovers and the failing keys, as metrics and log events.
fn publish_enforcement(metrics: &Metrics, c: &Cycle, cap: usize) {
    metrics.deactivations_held_back.reset();
    for (account, n) in &c.executed.held_back {
        metrics
            .deactivations_held_back
            .with_label_values(&[account, "cap"])
            .set(*n as i64);
        tracing::warn!(account_id = %account, held_back = n, cap, "deactivation cap reached; the rest wait for the next run");
    }
    for a in c.report.accounts.iter().filter(|a| a.window_waits > 0) {
        metrics
            .deactivations_held_back
            .with_label_values(&[&a.account_id, "window"])
            .set(a.window_waits as i64);
        tracing::info!(account_id = %a.account_id, held_back = a.window_waits, "outside every enforcement window; due keys wait for the next one");
    }
    for o in &c.executed.outcomes {
        if let Some(label) = o.kind.label() {
            let rule = o.candidate.rules.first().map(|r| r.as_str()).unwrap_or("");
            metrics
                .deactivations
                .with_label_values(&[&o.candidate.account_id, rule, label])
                .inc();
        }
    }
    if let Some(state) = &c.state {
        metrics.publish_failures(state);
    }
}

/// A large audit's transient buffers (SDK responses, the inventory) are freed by then, but
/// glibc keeps freed memory mapped; give it back so RSS reflects what the daemon holds.
fn release_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions; it only releases free heap pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn log_audit(r: &crate::core::report::Report, accounts: usize, elapsed: f64) {
    for e in &r.errors {
        tracing::warn!(
            account_id = %e.account_id,
            user = e.user.as_deref().unwrap_or(""),
            operation = %e.operation,
            error = %e.message,
            "read failed; nothing is decided for this user"
        );
    }
    for f in r.findings.iter().filter(|f| f.own_credentials) {
        tracing::warn!(
            account_id = %f.account_id,
            user = %f.user,
            access_key_id = %f.access_key_id,
            owner = %f.owner,
            rule = %f.rule,
            own_credentials = true,
            "keywarden's own access key breaks a rule; it is never deactivated by keywarden: rotate it"
        );
    }
    for f in r.findings.iter().filter(|f| f.held.is_some() && !f.exempt) {
        tracing::info!(
            account_id = %f.account_id,
            user = %f.user,
            access_key_id = %f.access_key_id,
            kept_access_key_id = f.kept_access_key_id.as_deref().unwrap_or(""),
            owner = %f.owner,
            rule = %f.rule,
            held = f.held.map(|h| h.as_str()).unwrap_or(""),
            "deactivation held: this key was used and the kept key has not been used since; it is deactivated once the kept key has been used"
        );
    }
    for f in r.findings.iter().filter(|f| !f.exempt) {
        tracing::debug!(
            account_id = %f.account_id,
            user = %f.user,
            access_key_id = %f.access_key_id,
            owner = %f.owner,
            rule = %f.rule,
            action = f.action.as_str(),
            "finding"
        );
    }
    // Once per user (not per finding): a self-service exemption that is not honoured.
    let mut reported = std::collections::BTreeSet::new();
    for f in &r.findings {
        let Some(problem) = &f.tag_exemption_problem else {
            continue;
        };
        if reported.insert((&f.account_id, &f.user)) {
            tracing::warn!(
                account_id = %f.account_id,
                user = %f.user,
                owner = %f.owner,
                error = %problem,
                "exemption tags not honoured"
            );
        }
    }
    tracing::info!(
        duration_seconds = elapsed,
        accounts,
        users = r.summary.users,
        access_keys = r.summary.access_keys,
        findings = r.findings.len(),
        violations = r.summary.violations,
        complete = r.complete,
        "audit finished"
    );
}

async fn add_job(
    sched: &JobScheduler,
    cron: &str,
    tz: chrono_tz::Tz,
    ticks: mpsc::Sender<()>,
) -> Result<Uuid, DaemonError> {
    let job = Job::new_async_tz(cron, tz, move |_, _| {
        let ticks = ticks.clone();
        Box::pin(async move {
            // Full channel: a tick is already waiting, which is as good as this one.
            let _ = ticks.try_send(());
        })
    })?;
    Ok(sched.add(job).await?)
}

struct Listener {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

async fn listen(addr: SocketAddr, shared: &Arc<Shared>) -> Result<Listener, DaemonError> {
    let server = Server::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind { addr, source })?;
    let bound = server.local_addr().unwrap_or(addr);
    tracing::info!(listen = %bound, "serving /metrics");
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(server.serve(Arc::clone(shared), stop_rx));
    Ok(Listener { addr, stop, task })
}

impl Listener {
    async fn close(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

struct Daemon {
    opts: Options,
    config: Arc<Config>,
    /// The config as the events consumer sees it (sent again at each reload).
    config_tx: watch::Sender<Arc<Config>>,
    /// One run at a time, and the last full run's clients and inventory for event runs.
    runs: Arc<Runs>,
    shared: Arc<Shared>,
    notifier: Notifier,
    sched: JobScheduler,
    job: Uuid,
    ticks: mpsc::Sender<()>,
    listener: Option<Listener>,
    memory: Arc<Memory>,
}

impl Daemon {
    fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    async fn reload(&mut self) {
        self.notifier.reloading();
        match self.try_reload().await {
            Ok(()) => {
                self.metrics().config_reload_ok.set(1);
                self.metrics().config_reload_ts.set(unix_now());
                tracing::info!(config = %self.opts.config_path.display(), "configuration reloaded");
            }
            Err(e) => {
                self.metrics().config_reload_ok.set(0);
                tracing::error!(config = %self.opts.config_path.display(), error = %e, "reload failed; still running on the previous configuration");
            }
        }
        self.notifier.ready();
    }

    /// All or nothing: the new config is swapped in only once its listener is bound and its
    /// schedule is installed.
    async fn try_reload(&mut self) -> Result<(), String> {
        let new = config::load(&self.opts.config_path, self.opts.config_required).map_err(|e| e.to_string())?;
        let new_listener = if Some(new.metrics_listen) != self.listener.as_ref().map(|l| l.addr) {
            Some(
                listen(new.metrics_listen, &self.shared)
                    .await
                    .map_err(|e| e.to_string())?,
            )
        } else {
            None
        };
        if new.schedule.cron != self.config.schedule.cron || new.schedule.timezone != self.config.schedule.timezone {
            let job = match add_job(
                &self.sched,
                &new.schedule.cron,
                new.schedule.timezone,
                self.ticks.clone(),
            )
            .await
            {
                Ok(j) => j,
                Err(e) => {
                    if let Some(l) = new_listener {
                        l.close().await;
                    }
                    return Err(e.to_string());
                }
            };
            if let Err(e) = self.sched.remove(&self.job).await {
                tracing::warn!(error = %e, "cannot remove the previous schedule");
            }
            self.job = job;
            tracing::info!(cron = %new.schedule.cron, "schedule changed");
        }
        if let Some(l) = new_listener {
            if let Some(old) = self.listener.replace(l) {
                old.close().await;
            }
        }
        // New connections use the new certificate and users; open ones finish as they began.
        self.shared.set_web(Arc::clone(&new.metrics_web));
        self.shared.liveness.set_max_run(new.schedule.max_run_duration);
        if new.backend != self.config.backend {
            tracing::warn!("state.backend and [state.dynamodb] take effect at the next start; this process keeps its state where it is");
        }
        self.shared.set_journal(self.memory.journal(&new));
        self.config = Arc::new(new);
        // The events consumer takes the new `[events]` at its next poll.
        self.config_tx.send_replace(Arc::clone(&self.config));
        Ok(())
    }
}

impl Daemon {
    /// Stops new runs, lets the one in progress finish between keys (or abandons it after
    /// `STOP_GRACE`), then closes the listener.
    async fn shut_down(&mut self, stop: &AtomicBool, inflight: Option<JoinHandle<()>>) {
        tracing::info!("stopping");
        stop.store(true, Ordering::Release);
        self.notifier.stopping();
        if let Err(e) = self.sched.shutdown().await {
            tracing::warn!(error = %e, "scheduler shutdown");
        }
        if let Some(mut h) = inflight {
            if !h.is_finished() && tokio::time::timeout(STOP_GRACE, &mut h).await.is_err() {
                // Between awaits: at worst an UpdateAccessKey was sent and not yet read back, which
                // the next run's fresh read sees; the state file is only ever replaced whole.
                tracing::warn!("abandoning the run in progress");
                h.abort();
            }
        }
        if let Some(l) = self.listener.take() {
            l.close().await;
        }
    }
}

/// Runs until SIGTERM/SIGINT (exit code 0), or one cycle with `once` (0 if complete, else 1).
///
/// The composition root, as its steps: wire the shared parts, take the lease, install the
/// signal handlers, listen and schedule, serve until a stop signal, stop.
pub async fn run(config: Config, opts: Options) -> Result<i32, DaemonError> {
    let (shared, memory) = wire(&config).await?;
    let config = Arc::new(config);
    let stop = Arc::new(AtomicBool::new(false));
    if opts.once {
        return Ok(run_once(config, shared, memory, stop).await);
    }
    // Before the first run, so that a run on start finds a free lease already taken.
    if let Some(lease) = memory.lease() {
        tick_lease(lease, &shared.metrics).await;
    }
    let lease_task = memory.lease().map(|lease| {
        let (lease, metrics) = (Arc::clone(lease), Arc::clone(&shared.metrics));
        tokio::spawn(async move { lease_loop(lease, metrics).await })
    });
    let signals = Signals::install()?;
    let (mut d, tick_rx) = Daemon::start(opts, config, shared, memory).await?;
    // The events queue's consumer (idle without `[events]`, and on followers).
    let events_task = tokio::spawn(crate::app::events::consume(
        d.config_tx.subscribe(),
        Arc::clone(&d.shared),
        Arc::clone(&d.memory),
        Arc::clone(&d.runs),
        Arc::clone(&stop),
    ));
    let inflight = d.serve(signals, tick_rx, &stop).await;
    d.shut_down(&stop, inflight).await;
    events_task.abort();
    if let Some(task) = lease_task {
        task.abort();
    }
    if let Some(lease) = d.memory.lease() {
        // The run is over: hand over now instead of a whole lease later.
        release_lease(lease).await;
    }
    Ok(0)
}

/// The parts every run and endpoint share: the metrics, what the endpoints serve, the state
/// store and journal (and the lease, whose view `keywarden_leader` reads at each scrape).
async fn wire(config: &Config) -> Result<(Arc<Shared>, Arc<Memory>), DaemonError> {
    let metrics = Arc::new(Metrics::new()?);
    metrics.config_reload_ok.set(1);
    metrics.config_reload_ts.set(unix_now());
    let shared = Arc::new(Shared::new(metrics, Arc::clone(&config.metrics_web)));
    shared.liveness.set_max_run(config.schedule.max_run_duration);
    let memory = Arc::new(Memory::open(config, &shared.metrics).await);
    shared.set_journal(memory.journal(config));
    let leadership: Arc<dyn Leadership + Send> = match memory.lease() {
        Some(lease) => Arc::clone(lease) as Arc<dyn Leadership + Send>,
        None => Arc::new(SoleInstance),
    };
    shared.metrics.read_leader_from(leadership);
    Ok((shared, memory))
}

/// `run --once`: one try at the lease (a free or released one is taken, a held one left to
/// its holder), one cycle, the lease released. 0 if the cycle was clean, else 1.
async fn run_once(config: Arc<Config>, shared: Arc<Shared>, memory: Arc<Memory>, stop: Arc<AtomicBool>) -> i32 {
    if let Some(lease) = memory.lease() {
        tick_lease(lease, &shared.metrics).await;
    }
    let runs = Arc::new(tokio::sync::Mutex::new(None));
    let ok = guarded_cycle(config, shared, Arc::clone(&memory), runs, stop).await;
    if let Some(lease) = memory.lease() {
        release_lease(lease).await;
    }
    if ok {
        0
    } else {
        1
    }
}

async fn release_lease(lease: &Lease) {
    match lease.release().await {
        Ok(()) => tracing::info!(instance_id = lease.instance_id(), "released the leader lease"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot release the leader lease; another instance takes it when it runs out")
        }
    }
}

/// The signals the loop answers: SIGHUP reloads, SIGTERM and SIGINT stop.
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, DaemonError> {
        let on = |kind| signal(kind).map_err(DaemonError::Signal);
        Ok(Signals {
            hup: on(SignalKind::hangup())?,
            term: on(SignalKind::terminate())?,
            int: on(SignalKind::interrupt())?,
        })
    }
}

impl Daemon {
    /// Binds the listener, installs the schedule (and the tick on start) and tells systemd
    /// the service is ready.
    async fn start(
        opts: Options,
        config: Arc<Config>,
        shared: Arc<Shared>,
        memory: Arc<Memory>,
    ) -> Result<(Daemon, mpsc::Receiver<()>), DaemonError> {
        let listener = listen(config.metrics_listen, &shared).await?;
        let (ticks, tick_rx) = mpsc::channel::<()>(1);
        let sched = JobScheduler::new().await?;
        let job = add_job(&sched, &config.schedule.cron, config.schedule.timezone, ticks.clone()).await?;
        sched.start().await?;
        if config.schedule.run_on_start {
            let _ = ticks.try_send(());
        }
        let (config_tx, _) = watch::channel(Arc::clone(&config));
        let d = Daemon {
            opts,
            config_tx,
            runs: Arc::new(tokio::sync::Mutex::new(None)),
            config,
            shared,
            notifier: Notifier::from_env(),
            sched,
            job,
            ticks,
            listener: Some(listener),
            memory,
        };
        d.notifier.ready();
        tracing::info!(cron = %d.config.schedule.cron, mode = d.config.enforcement.mode.as_str(), "keywarden started");
        Ok((d, tick_rx))
    }

    /// The loop: a tick starts a run (or is skipped while one runs), SIGHUP reloads, the
    /// watchdog is fed while no run is stuck; ends at SIGTERM/SIGINT with the run in progress.
    async fn serve(
        &mut self,
        mut signals: Signals,
        mut tick_rx: mpsc::Receiver<()>,
        stop: &Arc<AtomicBool>,
    ) -> Option<JoinHandle<()>> {
        let running = Arc::new(AtomicBool::new(false));
        let mut inflight: Option<JoinHandle<()>> = None;
        let mut watchdog = Notifier::watchdog_interval().map(tokio::time::interval);
        loop {
            let watchdog_tick = async {
                match watchdog.as_mut() {
                    Some(i) => {
                        i.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(()) = tick_rx.recv() => {
                    if let Some(run) = self.start_run(&running, stop) {
                        inflight = Some(run);
                    }
                }
                _ = signals.hup.recv() => self.reload().await,
                _ = signals.term.recv() => break,
                _ = signals.int.recv() => break,
                _ = watchdog_tick => self.feed_watchdog(),
            }
        }
        inflight
    }

    /// A run in its own task on this moment's config, unless one is still running (then the
    /// tick is skipped and counted).
    fn start_run(&self, running: &Arc<AtomicBool>, stop: &Arc<AtomicBool>) -> Option<JoinHandle<()>> {
        if running.swap(true, Ordering::AcqRel) {
            self.metrics().audit_skipped.inc();
            tracing::warn!("the previous audit is still running; this scheduled run is skipped");
            return None;
        }
        let (config, shared, running, stop) = (
            Arc::clone(&self.config),
            Arc::clone(&self.shared),
            Arc::clone(running),
            Arc::clone(stop),
        );
        let (memory, runs) = (Arc::clone(&self.memory), Arc::clone(&self.runs));
        shared.liveness.run_started(Instant::now());
        Some(tokio::spawn(async move {
            guarded_cycle(config, Arc::clone(&shared), memory, runs, stop).await;
            shared.liveness.run_finished();
            release_memory();
            running.store(false, Ordering::Release);
        }))
    }

    fn feed_watchdog(&self) {
        match self.shared.liveness.check(Instant::now()) {
            Ok(()) => self.notifier.watchdog(),
            // A stuck run: let systemd's watchdog restart the service.
            Err(running) => tracing::error!(
                running_seconds = running.as_secs(),
                "a run has been going for longer than schedule.max_run_duration; no longer reporting to the watchdog"
            ),
        }
    }
}

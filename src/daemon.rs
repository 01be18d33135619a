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

use crate::aws::InventorySource as _;
use crate::aws::RequestObserver;
use crate::config::{self, Config};
use crate::enforce;
use crate::http::{Server, Shared};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::state::{self, State};

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
struct RunObserver {
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
    fn skew(&self) -> Option<f64> {
        *self.skew.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Test hook of debug builds: `KEYWARDEN_FAILPOINT_PANIC_RUNS=N` makes the first N runs of the
/// process panic where a bug in the rules would (the panic this guards against was a date
/// overflow in them), before anything is published or written. Release builds have no such hook.
fn failpoint_panic() {
    #[cfg(debug_assertions)]
    {
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n: u32 = std::env::var("KEYWARDEN_FAILPOINT_PANIC_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if RUNS.fetch_add(1, Ordering::Relaxed) < n {
            panic!("failpoint KEYWARDEN_FAILPOINT_PANIC_RUNS");
        }
    }
}

/// One cycle that cannot take the daemon down: a panic inside ends this run only. It is logged
/// and counted (`keywarden_audit_runs_total{outcome="panic"}`); the state file is replaced
/// whole or not at all, so the half-done run leaves either the old or a complete new state,
/// and the lock is released as the run unwinds.
pub async fn guarded_cycle(config: Arc<Config>, shared: Arc<Shared>, stop: Arc<AtomicBool>) -> bool {
    match AssertUnwindSafe(cycle(config, Arc::clone(&shared), stop))
        .catch_unwind()
        .await
    {
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
            false
        }
    }
}

/// One audit + enforcement cycle. Returns true when every read and every action succeeded.
///
/// Order matters for safety: the state file is locked and read first (unusable: audit and
/// publish, but never enforce), the clock is checked against AWS's and the last run's, the
/// new first-seen times are saved before anything is acted on, and each deactivation is
/// decided again on fresh data (see `enforce`).
pub async fn cycle(config: Arc<Config>, shared: Arc<Shared>, stop: Arc<AtomicBool>) -> bool {
    let metrics = Arc::clone(&shared.metrics);
    let started = Instant::now();
    let lock = state::Lock::acquire(&config.state_path, LOCK_WAIT).await;
    let observer = Arc::new(RunObserver {
        metrics: Arc::clone(&metrics),
        skew: Mutex::new(None),
    });
    let iam = crate::accounts::Fleet::connect(&config.aws, Some(observer.clone() as Arc<dyn RequestObserver>)).await;

    let (history, state_error) = match &lock {
        Err(e) => (State::default(), Some(e.to_string())),
        Ok(_) => match state::load(&config.state_path) {
            Ok(s) => (s.unwrap_or_default(), None),
            Err(e) => (State::default(), Some(e.to_string())),
        },
    };
    let now = chrono::Utc::now();
    let per_key = config.metrics_per_key;
    let wants = |account_id: &str, user: &crate::model::User| {
        per_key || crate::audit::has_findings(&config, account_id, user, now)
    };
    let accounts = iam.inventory(&crate::audit::inventory_options(&config, &wants)).await;
    let report = crate::audit::evaluate(&config, &accounts, &history, now);
    failpoint_panic();
    let elapsed = started.elapsed().as_secs_f64();
    metrics.audit_duration.set(elapsed);
    log_audit(&report, accounts.len(), elapsed);
    metrics.publish_audit(&accounts, &report, config.metrics_per_key);
    if let Ok(mut slot) = shared.report_json.write() {
        *slot = Some(report.to_json().into());
    }
    let complete = report.complete;
    metrics.audit_success.set(i64::from(complete));
    if complete {
        metrics.audit_last_success.set(unix_now());
        metrics.audit_runs.with_label_values(&["success"]).inc();
    } else {
        metrics.audit_runs.with_label_values(&["failed"]).inc();
    }
    shared.ready.set_ready();

    if let Some(e) = state_error {
        metrics.state_ok.set(0);
        tracing::error!(error = %e, "enforcement is off until the state file can be used (grace periods are never reset silently)");
        return false;
    }
    let skew = observer.skew();
    metrics.clock_skew.set(skew.unwrap_or(0.0));
    if let Err(problem) = crate::clock::check(now, history.last_run, skew) {
        metrics.clock_ok.set(0);
        tracing::error!(error = %problem, "the clock cannot be trusted; this run audits and publishes but deactivates nothing and records nothing");
        return false;
    }
    metrics.clock_ok.set(1);
    let mut next = enforce::next_state(&history, &report.findings, &accounts, now);
    if let Err(e) = state::save(&config.state_path, &next) {
        metrics.state_ok.set(0);
        tracing::error!(error = %e, "cannot record first-seen times; enforcement is skipped this run");
        return false;
    }
    metrics.state_ok.set(1);

    let due = enforce::plan(&report.findings, now);
    let own = iam.own_key().map(|o| o.access_key_id.clone());
    let cap = config.enforcement.max_deactivations_per_run;
    let executed = {
        let ctx = enforce::Context {
            policy: &config.policy,
            history: &next,
            failures: &next,
            now,
            mode: config.enforcement.mode,
            cap,
            own_access_key_id: own.as_deref(),
            stop: &stop,
        };
        enforce::execute(&due, &ctx, &iam).await
    };
    metrics.deactivations_held_back.reset();
    for (account, n) in &executed.held_back {
        metrics
            .deactivations_held_back
            .with_label_values(&[account])
            .set(*n as i64);
        tracing::warn!(account_id = %account, held_back = n, cap, "deactivation cap reached; the rest wait for the next run");
    }
    let mut errors = 0;
    for o in &executed.outcomes {
        let c = &o.candidate;
        if let Some(label) = o.kind.label() {
            let rule = c.rules.first().map(|r| r.as_str()).unwrap_or("");
            metrics
                .deactivations
                .with_label_values(&[&c.account_id, rule, label])
                .inc();
        }
        if o.kind == enforce::OutcomeKind::Error {
            errors += 1;
        }
    }
    let changed = executed.outcomes.iter().any(|o| {
        matches!(
            o.kind,
            enforce::OutcomeKind::Success | enforce::OutcomeKind::Error | enforce::OutcomeKind::NoLongerDue
        )
    });
    enforce::record_outcomes(&mut next, &executed.outcomes, now);
    metrics.publish_failures(&next);
    if changed {
        if let Err(e) = state::save(&config.state_path, &next) {
            tracing::error!(error = %e, "cannot update the state file after deactivations");
        }
    }
    drop(lock);
    complete && errors == 0
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

fn log_audit(r: &crate::report::Report, accounts: usize, elapsed: f64) {
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
            rule = %f.rule,
            action = f.action.as_str(),
            "finding"
        );
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

async fn add_job(sched: &JobScheduler, cron: &str, ticks: mpsc::Sender<()>) -> Result<Uuid, DaemonError> {
    let job = Job::new_async(cron, move |_, _| {
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
    shared: Arc<Shared>,
    notifier: Notifier,
    sched: JobScheduler,
    job: Uuid,
    ticks: mpsc::Sender<()>,
    listener: Option<Listener>,
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
        if new.schedule.cron != self.config.schedule.cron {
            let job = match add_job(&self.sched, &new.schedule.cron, self.ticks.clone()).await {
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
        self.config = Arc::new(new);
        Ok(())
    }
}

/// Runs until SIGTERM/SIGINT (exit code 0), or one cycle with `once` (0 if complete, else 1).
pub async fn run(config: Config, opts: Options) -> Result<i32, DaemonError> {
    let metrics = Arc::new(Metrics::new()?);
    metrics.config_reload_ok.set(1);
    metrics.config_reload_ts.set(unix_now());
    let shared = Arc::new(Shared::new(metrics, Arc::clone(&config.metrics_web)));
    shared.liveness.set_max_run(config.schedule.max_run_duration);
    let config = Arc::new(config);
    let stop = Arc::new(AtomicBool::new(false));
    if opts.once {
        let ok = guarded_cycle(config, shared, stop).await;
        return Ok(if ok { 0 } else { 1 });
    }

    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;

    let listener = listen(config.metrics_listen, &shared).await?;
    let (ticks, mut tick_rx) = mpsc::channel::<()>(1);
    let sched = JobScheduler::new().await?;
    let job = add_job(&sched, &config.schedule.cron, ticks.clone()).await?;
    sched.start().await?;
    if config.schedule.run_on_start {
        let _ = ticks.try_send(());
    }
    let mut d = Daemon {
        opts,
        config,
        shared,
        notifier: Notifier::from_env(),
        sched,
        job,
        ticks,
        listener: Some(listener),
    };
    d.notifier.ready();
    tracing::info!(cron = %d.config.schedule.cron, mode = d.config.enforcement.mode.as_str(), "keywarden started");

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
                if running.swap(true, Ordering::AcqRel) {
                    d.metrics().audit_skipped.inc();
                    tracing::warn!("the previous audit is still running; this scheduled run is skipped");
                    continue;
                }
                let (config, shared, running, stop) = (Arc::clone(&d.config), Arc::clone(&d.shared), Arc::clone(&running), Arc::clone(&stop));
                shared.liveness.run_started(Instant::now());
                inflight = Some(tokio::spawn(async move {
                    guarded_cycle(config, Arc::clone(&shared), stop).await;
                    shared.liveness.run_finished();
                    release_memory();
                    running.store(false, Ordering::Release);
                }));
            }
            _ = hup.recv() => d.reload().await,
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = watchdog_tick => match d.shared.liveness.check(Instant::now()) {
                Ok(()) => d.notifier.watchdog(),
                // A stuck run: let systemd's watchdog restart the service.
                Err(running) => tracing::error!(running_seconds = running.as_secs(), "a run has been going for longer than schedule.max_run_duration; no longer reporting to the watchdog"),
            },
        }
    }

    tracing::info!("stopping");
    stop.store(true, Ordering::Release);
    d.notifier.stopping();
    if let Err(e) = d.sched.shutdown().await {
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
    if let Some(l) = d.listener.take() {
        l.close().await;
    }
    Ok(0)
}

//! `keywarden run`: the long-lived service.
//!
//! One task owns the loop: cron ticks (tokio-cron-scheduler), SIGHUP (reload), SIGTERM/SIGINT
//! (stop) and the systemd watchdog. Audits run in their own task on an `Arc<Config>` snapshot,
//! so a reload never changes a run in progress; a tick that fires while an audit runs is
//! skipped and counted. The HTTP listener serves what the last completed audit published.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

impl RequestObserver for Metrics {
    fn attempt(&self, operation: &str, outcome: &'static str) {
        self.iam_requests.with_label_values(&[operation, outcome]).inc();
    }
}

/// One audit + enforcement cycle. Returns true when every read and every action succeeded.
///
/// Order matters for safety: the state file is read first (unusable: audit and publish, but
/// never enforce), the new first-seen times are saved before anything is acted on, and each
/// deactivation is decided again on fresh data (see `enforce`).
pub async fn cycle(config: Arc<Config>, shared: Arc<Shared>, stop: Arc<AtomicBool>) -> bool {
    let metrics = Arc::clone(&shared.metrics);
    let started = Instant::now();
    let observer: Arc<dyn RequestObserver> = metrics.clone();
    let iam = crate::accounts::Fleet::connect(&config.aws, Some(observer)).await;

    let (history, state_error) = match state::load(&config.state_path) {
        Ok(s) => (s.unwrap_or_default(), None),
        Err(e) => (State::default(), Some(e.to_string())),
    };
    let now = chrono::Utc::now();
    let per_key = config.metrics_per_key;
    let wants = |account_id: &str, user: &crate::model::User| {
        per_key || crate::audit::has_findings(&config, account_id, user, now)
    };
    let accounts = iam.inventory(&crate::audit::inventory_options(&config, &wants)).await;
    let report = crate::audit::evaluate(&config, &accounts, &history, now);
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
        tracing::error!(error = %e, "enforcement is off until the state file is fixed (grace periods are never reset silently)");
        return false;
    }
    let mut next = enforce::next_state(&history, &report.findings, &accounts);
    if let Err(e) = state::save(&config.state_path, &next) {
        metrics.state_ok.set(0);
        tracing::error!(error = %e, "cannot record first-seen times; enforcement is skipped this run");
        return false;
    }
    metrics.state_ok.set(1);

    let plan = enforce::plan(&report.findings, now, config.enforcement.max_deactivations_per_run);
    metrics.deactivations_held_back.reset();
    for (account, n) in &plan.held_back {
        metrics
            .deactivations_held_back
            .with_label_values(&[account])
            .set(*n as i64);
        tracing::warn!(account_id = %account, held_back = n, cap = config.enforcement.max_deactivations_per_run, "deactivation cap reached; the rest wait for the next run");
    }
    let ctx = enforce::Context {
        policy: &config.policy,
        history: &next,
        now,
        mode: config.enforcement.mode,
        stop: &stop,
    };
    let outcomes = enforce::execute(&plan, &ctx, &iam).await;
    let mut errors = 0;
    let mut deactivated = 0;
    for o in &outcomes {
        let c = &o.candidate;
        if let Some(label) = o.kind.label() {
            let rule = c.rules.first().map(|r| r.as_str()).unwrap_or("");
            metrics
                .deactivations
                .with_label_values(&[&c.account_id, rule, label])
                .inc();
        }
        match o.kind {
            enforce::OutcomeKind::Error => errors += 1,
            enforce::OutcomeKind::Success => {
                // A deactivated key's findings no longer hold; forget them now, not next run.
                next.forget_key(&c.account_id, &c.access_key_id);
                deactivated += 1;
            }
            _ => {}
        }
    }
    if deactivated > 0 {
        if let Err(e) = state::save(&config.state_path, &next) {
            tracing::error!(error = %e, "cannot update the state file after deactivations");
        }
    }
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
    let config = Arc::new(config);
    let stop = Arc::new(AtomicBool::new(false));
    if opts.once {
        let ok = cycle(config, shared, stop).await;
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
                inflight = Some(tokio::spawn(async move {
                    cycle(config, shared, stop).await;
                    release_memory();
                    running.store(false, Ordering::Release);
                }));
            }
            _ = hup.recv() => d.reload().await,
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = watchdog_tick => d.notifier.watchdog(),
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

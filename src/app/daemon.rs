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

use crate::app::harness::{Harness, RunObserver};
use crate::app::internal_events::{ConfigLoaded, LeaseStep, TickSkipped};
use crate::config::{self, Config};
use crate::ports::{Leadership, RequestObserver, SoleInstance};
use crate::server::http::{Server, Shared};
use crate::server::metrics::Metrics;
use crate::state::lease::{Change, Lease};
use crate::state::Memory;
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

/// One step of the lease protocol, with its metrics and logs.
async fn tick_lease(lease: &Lease, metrics: &Metrics) {
    let instance_id = lease.instance_id();
    let step = match lease.tick().await {
        Ok(Change::Acquired) => LeaseStep::Acquired { instance_id },
        Ok(Change::Lost) => LeaseStep::Lost { instance_id },
        Ok(Change::None) => return,
        Err(e) => LeaseStep::CheckFailed {
            instance_id,
            error: e.to_string(),
        },
    };
    step.emit(metrics);
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
            LeaseStep::TimedOut {
                instance_id: lease.instance_id(),
                lost: lease.tick_timed_out(),
            }
            .emit(&metrics);
        }
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
    /// What every run shares: the endpoints' view, the state, the last full run, the stop flag.
    harness: Harness,
    notifier: Notifier,
    sched: JobScheduler,
    job: Uuid,
    ticks: mpsc::Sender<()>,
    listener: Option<Listener>,
}

impl Daemon {
    fn shared(&self) -> &Arc<Shared> {
        &self.harness.shared
    }

    async fn reload(&mut self) {
        self.notifier.reloading();
        let result = self.try_reload().await;
        ConfigLoaded {
            reloaded: Some(&self.opts.config_path),
            error: result.as_ref().err().map(String::as_str),
        }
        .emit(&self.shared().metrics);
        self.notifier.ready();
    }

    /// All or nothing: the new config is swapped in only once its listener is bound and its
    /// schedule is installed.
    async fn try_reload(&mut self) -> Result<(), String> {
        // Off the loop task: whatever the file turned into, the loop keeps answering signals.
        let (path, required) = (self.opts.config_path.clone(), self.opts.config_required);
        let new = tokio::task::spawn_blocking(move || config::load(&path, required))
            .await
            .map_err(|e| format!("loading the config stopped: {e}"))?
            .map_err(|e| e.to_string())?;
        let new_listener = if Some(new.metrics_listen) != self.listener.as_ref().map(|l| l.addr) {
            Some(
                listen(new.metrics_listen, self.shared())
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
        self.shared().set_web(Arc::clone(&new.metrics_web));
        self.shared().liveness.set_max_run(new.schedule.max_run_duration);
        if new.backend != self.config.backend {
            tracing::warn!("state.backend and [state.dynamodb] take effect at the next start; this process keeps its state where it is");
        }
        self.shared().set_journal(self.harness.memory.journal(&new));
        self.config = Arc::new(new);
        // The events consumer takes the new `[events]` at its next poll.
        self.config_tx.send_replace(Arc::clone(&self.config));
        Ok(())
    }
}

impl Daemon {
    /// Stops new runs, lets the one in progress finish between keys (or abandons it after
    /// `STOP_GRACE`), then closes the listener.
    async fn shut_down(&mut self, inflight: Option<JoinHandle<()>>) {
        tracing::info!("stopping");
        self.harness.stop.store(true, Ordering::Release);
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
    let harness = wire(&config).await?;
    let config = Arc::new(config);
    if opts.once {
        return Ok(run_once(config, &harness).await);
    }
    let (shared, memory) = (&harness.shared, &harness.memory);
    // Before the first run, so that a run on start finds a free lease already taken.
    if let Some(lease) = memory.lease() {
        tick_lease(lease, &shared.metrics).await;
    }
    let lease_task = memory.lease().map(|lease| {
        let (lease, metrics) = (Arc::clone(lease), Arc::clone(&shared.metrics));
        tokio::spawn(async move { lease_loop(lease, metrics).await })
    });
    let signals = Signals::install()?;
    let (mut d, tick_rx) = Daemon::start(opts, config, harness.clone()).await?;
    // The events queue's consumer (idle without `[events]`, and on followers).
    let events_task = tokio::spawn(crate::app::events::consume(d.config_tx.subscribe(), harness.clone()));
    // The usage queue's consumer (idle without [usage]; on every instance).
    let usage_task = tokio::spawn(crate::app::usage_events::consume(
        d.config_tx.subscribe(),
        harness.clone(),
    ));
    let inflight = d.serve(signals, tick_rx).await;
    d.shut_down(inflight).await;
    events_task.abort();
    usage_task.abort();
    if let Some(task) = lease_task {
        task.abort();
    }
    if let Some(lease) = harness.memory.lease() {
        // The run is over: hand over now instead of a whole lease later.
        release_lease(lease).await;
    }
    Ok(0)
}

/// The parts every run and endpoint share: the metrics, what the endpoints serve, the state
/// store and journal (and the lease, whose view `keywarden_leader` reads at each scrape).
async fn wire(config: &Config) -> Result<Harness, DaemonError> {
    let metrics = Arc::new(Metrics::new()?);
    ConfigLoaded {
        reloaded: None,
        error: None,
    }
    .emit(&metrics);
    let shared = Arc::new(Shared::new(metrics, Arc::clone(&config.metrics_web)));
    shared.liveness.set_max_run(config.schedule.max_run_duration);
    let observer = Arc::new(RunObserver::new(&shared.metrics)) as Arc<dyn RequestObserver>;
    let memory = Arc::new(Memory::open(config, observer).await);
    shared.set_journal(memory.journal(config));
    let leadership: Arc<dyn Leadership + Send> = match memory.lease() {
        Some(lease) => Arc::clone(lease) as Arc<dyn Leadership + Send>,
        None => Arc::new(SoleInstance),
    };
    shared.metrics.read_leader_from(leadership);
    Ok(Harness::new(shared, memory, Arc::new(AtomicBool::new(false))))
}

/// `run --once`: one try at the lease (a free or released one is taken, a held one left to
/// its holder), one cycle, the lease released. 0 if the cycle was clean, else 1.
async fn run_once(config: Arc<Config>, harness: &Harness) -> i32 {
    if let Some(lease) = harness.memory.lease() {
        tick_lease(lease, &harness.shared.metrics).await;
    }
    let ok = harness.guarded_cron_run(|| config).await;
    if let Some(lease) = harness.memory.lease() {
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
        harness: Harness,
    ) -> Result<(Daemon, mpsc::Receiver<()>), DaemonError> {
        let listener = listen(config.metrics_listen, &harness.shared).await?;
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
            config,
            harness,
            notifier: Notifier::from_env(),
            sched,
            job,
            ticks,
            listener: Some(listener),
        };
        d.notifier.ready();
        tracing::info!(cron = %d.config.schedule.cron, mode = d.config.enforcement.mode.as_str(), "keywarden started");
        Ok((d, tick_rx))
    }

    /// The loop: a tick starts a run (or is skipped while one runs), SIGHUP reloads, the
    /// watchdog is fed while no run is stuck; ends at SIGTERM/SIGINT with the run in progress.
    async fn serve(&mut self, mut signals: Signals, mut tick_rx: mpsc::Receiver<()>) -> Option<JoinHandle<()>> {
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
                    if let Some(run) = self.start_run(&running) {
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

    /// A run in its own task on the config in force when it takes the run lock, unless one is
    /// still running (then the tick is skipped and counted).
    fn start_run(&self, running: &Arc<AtomicBool>) -> Option<JoinHandle<()>> {
        if running.swap(true, Ordering::AcqRel) {
            TickSkipped.emit(&self.shared().metrics);
            return None;
        }
        let (current, harness, running) = (self.config_tx.subscribe(), self.harness.clone(), Arc::clone(running));
        harness.shared.liveness.run_started(Instant::now());
        Some(tokio::spawn(async move {
            harness.guarded_cron_run(|| Arc::clone(&current.borrow())).await;
            harness.shared.liveness.run_finished();
            release_memory();
            running.store(false, Ordering::Release);
        }))
    }

    fn feed_watchdog(&self) {
        match self.shared().liveness.check(Instant::now()) {
            Ok(()) => self.notifier.watchdog(),
            // A stuck run: let systemd's watchdog restart the service.
            Err(running) => tracing::error!(
                running_seconds = running.as_secs(),
                "a run has been going for longer than schedule.max_run_duration; no longer reporting to the watchdog"
            ),
        }
    }
}

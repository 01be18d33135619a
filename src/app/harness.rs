//! The run harness: how the daemon runs one cycle, cron or event, over the production ports.
//!
//! A [`Harness`] is the one value every run needs (what the endpoints serve, where the state
//! lives, the last full run's clients and inventory, the stop flag); the config is passed per
//! run, because a reload swaps it between runs and never during one. A run is [`guarded`]: a
//! panic ends that run only. Its audit is published before anything is enforced, and its
//! enforcement outcome settled, through `app::internal_events`.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::FutureExt;

use crate::app::cycle::{Cycle, Ports, Skipped, Trigger};
use crate::app::internal_events::{
    AuditFinished, Enforced, EnforcementSkipped, ExportFinished, Rotated, RunPanicked, UsageBackfilled,
    UsageProfilesForgotten,
};
use crate::aws::accounts::{Fleet, FleetRotator};
use crate::config::Config;
use crate::core::model::AccountInventory;
use crate::core::report::Report;
use crate::ports::{InventorySource, KeyActions, RequestObserver, SystemClock};
use crate::server::http::Shared;
use crate::server::metrics::Metrics;
use crate::state::Memory;

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
    pub(crate) fn new(metrics: &Arc<Metrics>) -> RunObserver {
        RunObserver {
            metrics: Arc::clone(metrics),
            skew: Mutex::new(None),
        }
    }

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

/// What every run of the daemon shares; cheap to clone (each part is shared).
#[derive(Clone)]
pub(crate) struct Harness {
    pub(crate) shared: Arc<Shared>,
    pub(crate) memory: Arc<Memory>,
    pub(crate) runs: Arc<Runs>,
    pub(crate) stop: Arc<AtomicBool>,
}

impl Harness {
    pub(crate) fn new(shared: Arc<Shared>, memory: Arc<Memory>, stop: Arc<AtomicBool>) -> Harness {
        Harness {
            shared,
            memory,
            runs: Arc::new(tokio::sync::Mutex::new(None)),
            stop,
        }
    }

    fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// One cron cycle that cannot take the daemon down: a panic inside ends this run only. It
    /// is logged and counted (`keywarden_audit_runs_total{outcome="panic"}`); the state file is
    /// replaced whole or not at all, so the half-done run leaves either the old or a complete
    /// new state, and the lock is released as the run unwinds.
    ///
    /// `config` gives the config in force once the run holds the run lock: a reload while it
    /// waited (for an event run) binds it, as it binds every run that starts after it.
    pub(crate) async fn guarded_cron_run(&self, config: impl FnOnce() -> Arc<Config>) -> bool {
        self.guarded(self.cron_run(config)).await
    }

    /// Runs a run's future so that a panic ends only that run (logged, counted, ready again).
    /// `T::default()` is what a panicked run returns (false; no event handled).
    pub(crate) async fn guarded<T: Default>(&self, run: impl std::future::Future<Output = T>) -> T {
        match AssertUnwindSafe(run).catch_unwind().await {
            Ok(ok) => ok,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                RunPanicked { message: &message }.emit(self.metrics());
                self.shared.ready.set_ready();
                T::default()
            }
        }
    }

    /// One audit + enforcement cycle against AWS and the state store, the findings exported
    /// after it. Returns true when every read and every action succeeded. It waits for an
    /// event run in progress, and leaves its clients and inventory to the next ones.
    async fn cron_run(&self, config: impl FnOnce() -> Arc<Config>) -> bool {
        let mut last = self.runs.lock().await;
        let config = config();
        let started = Instant::now();
        let observer = Arc::new(RunObserver::new(&self.shared.metrics));
        let fleet = Arc::new(Fleet::connect(&config.aws, Some(observer.clone() as Arc<dyn RequestObserver>)).await);
        let rotator = FleetRotator {
            fleet: fleet.as_ref(),
            settings: &config.rotation,
        };
        let trigger = Trigger::Cron {
            rotator: Some(&rotator),
        };
        let (c, ran) = self.run(&config, fleet.as_ref(), &observer, trigger, started).await;
        if ran && c.skipped.is_none() {
            if let Some(hub) = &config.security_hub {
                let observer = Some(observer.clone() as Arc<dyn RequestObserver>);
                let exported = crate::app::export::security_hub(&config, hub, &fleet.sdks(), &c.report, observer).await;
                ExportFinished {
                    destination: "security_hub",
                    exported: &exported,
                }
                .emit(self.metrics());
            }
        }
        let ok = ran && c.ok();
        let leading = ran && c.skipped.is_none() && config.usage.enabled;
        let backfill = (leading && config.usage.backfill)
            .then(|| (Arc::clone(&fleet), crate::app::usage::active_key_ids(&c.accounts)));
        if leading {
            let forgotten = crate::app::usage::forget_gone(&self.memory.usage(&config), &c.accounts).await;
            UsageProfilesForgotten { forgotten: &forgotten }.emit();
        }
        *last = Some(Last {
            fleet,
            observer,
            accounts: c.accounts,
            event_acted: 0,
        });
        // The leader's usage backfill, bounded, after the run and outside its lock: event
        // runs do not wait for it.
        drop(last);
        if let Some((fleet, keys)) = backfill {
            let store = self.memory.usage(&config);
            let done = crate::app::usage::background(&config, &fleet, &store, &keys, chrono::Utc::now()).await;
            UsageBackfilled {
                requests: done.tally.requests,
                throttled: done.tally.throttled,
                recorded: done.tally.recorded,
                errors: &done.errors,
            }
            .emit(self.metrics());
        }
        ok
    }

    /// `app::cycle::run` over the production ports on `fleet`, published as it goes (the audit
    /// before anything is enforced) and settled: what a cron run and an event run share. The
    /// bool says whether enforcement could run (`settle`).
    pub(crate) async fn run<F: InventorySource + KeyActions + Sync>(
        &self,
        config: &Config,
        fleet: &F,
        observer: &RunObserver,
        trigger: Trigger<'_>,
        started: Instant,
    ) -> (Cycle, bool) {
        let store = self.memory.store(config);
        let run = crate::sys::host::run_info();
        // The usage profiles, read once: published with the audit, and the evidence of holds.
        let kept = crate::ports::UsageStore::profiles(&self.memory.usage(config)).await;
        let evidence = crate::app::usage::Evidence(&kept);
        let audited = |accounts: &[AccountInventory], report: &Report| {
            self.publish_audit(config, accounts, report, &kept, started)
        };
        let ports = Ports {
            fleet,
            store: &store,
            clock: &SystemClock,
            skew: &|| observer.skew(),
            journal: &store,
            run: &run,
            leader: self.memory.leader(),
            trigger,
            evidence: &evidence,
        };
        let c = crate::app::cycle::run(config, ports, &audited, &self.stop).await;
        Rotated { outcomes: &c.rotations }.emit(self.metrics());
        let ran = settle(self.metrics(), config, &c, observer);
        (c, ran)
    }

    /// The audit's page, report and readiness, then its metrics and log, published before
    /// anything is enforced (the counters last: whoever waits for them finds the page written).
    fn publish_audit(
        &self,
        config: &Config,
        accounts: &[AccountInventory],
        report: &Report,
        kept: &Result<Vec<crate::core::usage::profile::Profile>, crate::ports::StoreError>,
        started: Instant,
    ) {
        // The audit's duration, not the publishing's.
        let seconds = started.elapsed().as_secs_f64();
        let shared = &self.shared;
        shared
            .metrics
            .publish_audit(accounts, report, &config.policy.owners, config.metrics_per_key);
        // What uses each key: in the report's findings, on /api/v1/usage, by workload in the
        // metrics. From the profiles kept, never from AWS.
        let usage = crate::app::usage::published(accounts, kept, report.evaluated_at);
        shared.metrics.publish_workloads(&usage);
        if let Ok(mut slot) = shared.usage_json.write() {
            *slot = Some(crate::output::usage::to_json(&usage).into());
        }
        if let Ok(mut slot) = shared.report_json.write() {
            *slot = Some(report.to_json_with_usage(&usage).into());
        }
        AuditFinished {
            report,
            accounts: accounts.len(),
            seconds,
        }
        .emit(&shared.metrics);
        match report.failure_headline() {
            Some(why) if report.read_nothing() => shared.ready.set_read_nothing(why),
            _ => shared.ready.set_ready(),
        }
    }
}

/// A cycle's enforcement outcome as metrics and logs. False when enforcement could not run
/// (state, clock or save); true after it ran, or when the lease is another's.
pub(crate) fn settle(metrics: &Metrics, config: &Config, c: &Cycle, observer: &RunObserver) -> bool {
    let skew_seconds = observer.skew().unwrap_or(0.0);
    if let Some(why) = &c.skipped {
        EnforcementSkipped { why, skew_seconds }.emit(metrics);
        return *why == Skipped::NotLeader;
    }
    Enforced {
        cycle: c,
        cap: config.enforcement.max_deactivations_per_run,
        skew_seconds,
    }
    .emit(metrics);
    true
}

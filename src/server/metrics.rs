//! Prometheus metrics: the live process metrics in a long-lived registry (counters, reload,
//! lease, events and audit status), each written through a method named for what happened,
//! and the audit page (`server::audit_page`), rendered after them on `/metrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use hyper::body::Bytes;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::config::PerKey;
use crate::core::model::AccountInventory;
use crate::core::owners::Owners;
use crate::core::report::Report;
use crate::ports::Leadership;

pub struct Metrics {
    registry: Registry,
    audit_last_success: Gauge,
    audit_duration: Gauge,
    audit_success: IntGauge,
    audit_accounts_read: IntGauge,
    audit_skipped: IntCounter,
    audit_runs: IntCounterVec,
    iam_requests: IntCounterVec,
    deactivations: IntCounterVec,
    config_reload_ok: IntGauge,
    config_reload_ts: Gauge,
    deactivations_held_back: IntGaugeVec,
    state_ok: IntGauge,
    clock_skew: Gauge,
    clock_ok: IntGauge,
    deactivation_failing_keys: IntGaugeVec,
    /// Set only from `leadership`, at each scrape.
    leader: IntGauge,
    lease_acquisitions: IntCounter,
    lease_losses: IntCounter,
    lease_errors: IntCounter,
    export_findings: IntCounterVec,
    export_errors: IntCounterVec,
    export_success: IntGaugeVec,
    events_received: IntCounterVec,
    usage_events: IntCounterVec,
    keys_by_workload: IntGaugeVec,
    usage_backfill_requests: IntCounterVec,
    usage_receive_errors: IntCounter,
    usage_backfill_errors: IntCounter,
    event_lag: Histogram,
    event_receive_errors: IntCounter,
    unconfirmed_exposures: IntCounter,
    rotations: IntCounterVec,
    /// Where `keywarden_leader` is read at each scrape (the lease, when there is one): a gauge
    /// set by a task could be a moment stale, and two instances would both show 1 across a
    /// handover.
    leadership: OnceLock<Arc<dyn Leadership + Send>>,
    audit_page: RwLock<Bytes>,
}

/// `keywarden_audit_runs_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Success,
    Failed,
    Panic,
}

impl RunOutcome {
    fn label(self) -> &'static str {
        match self {
            RunOutcome::Success => "success",
            RunOutcome::Failed => "failed",
            RunOutcome::Panic => "panic",
        }
    }
}

/// `keywarden_deactivations_held_back{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldBack {
    /// `enforcement.max_deactivations_per_run` was reached.
    Cap,
    /// Outside every enforcement window.
    Window,
    /// Usage evidence shows the key in live use (`usage.hold_live_keys`).
    LiveUse,
}

impl HeldBack {
    fn label(self) -> &'static str {
        match self {
            HeldBack::Cap => "cap",
            HeldBack::Window => "window",
            HeldBack::LiveUse => "live_use",
        }
    }
}

/// The lease counters' events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEvent {
    Acquired,
    Lost,
    CheckFailed,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

/// Registers a collector and hands it back, so each metric is declared in one place.
fn reg<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> Result<C, prometheus::Error> {
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    /// Declares every process metric (name, help, labels) and registers it. It is long
    /// because it is the one list of them: split up, a metric would be declared in one place
    /// and registered in another.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let build_info = IntGaugeVec::new(
            opts("keywarden_build_info", "keywarden build, value 1"),
            &["version", "revision"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("BUILT_FROM_COMMIT")])
            .set(1);
        reg(&registry, build_info)?;
        let m = Metrics {
            audit_last_success: reg(
                &registry,
                Gauge::with_opts(opts(
                    "keywarden_audit_last_success_timestamp_seconds",
                    "Unix time the last complete audit finished",
                ))?,
            )?,
            audit_duration: reg(
                &registry,
                Gauge::with_opts(opts("keywarden_audit_duration_seconds", "Duration of the last audit"))?,
            )?,
            audit_success: reg(
                &registry,
                IntGauge::with_opts(opts(
                    "keywarden_audit_success",
                    "1 if the last audit read every account and user completely, else 0",
                ))?,
            )?,
            audit_accounts_read: reg(
                &registry,
                IntGauge::with_opts(opts(
                    "keywarden_audit_accounts_read",
                    "Accounts the last audit could read (0: it read nothing, e.g. no credentials or an endpoint that refuses; /-/ready is then 503)",
                ))?,
            )?,
            audit_skipped: reg(
                &registry,
                IntCounter::with_opts(opts(
                    "keywarden_audit_skipped_total",
                    "Scheduled audits skipped because the previous one was still running",
                ))?,
            )?,
            audit_runs: reg(
                &registry,
                IntCounterVec::new(
                    opts(
                        "keywarden_audit_runs_total",
                        "Audits run, by outcome (success, incomplete, error)",
                    ),
                    &["outcome"],
                )?,
            )?,
            iam_requests: reg(
                &registry,
                IntCounterVec::new(
                    opts(
                        "keywarden_iam_requests_total",
                        "AWS request attempts (IAM, STS, Organizations, and DynamoDB for the state table), by operation and outcome",
                    ),
                    &["operation", "outcome"],
                )?,
            )?,
            deactivations: reg(
                &registry,
                IntCounterVec::new(
                    opts(
                        "keywarden_deactivations_total",
                        "Deactivation decisions, by outcome (success, error, dry_run)",
                    ),
                    &["account_id", "rule", "outcome"],
                )?,
            )?,
            config_reload_ok: reg(
                &registry,
                IntGauge::with_opts(opts(
                    "keywarden_config_last_reload_successful",
                    "1 if the last configuration load succeeded, else 0",
                ))?,
            )?,
            config_reload_ts: reg(
                &registry,
                Gauge::with_opts(opts(
                    "keywarden_config_last_reload_success_timestamp_seconds",
                    "Unix time of the last successful configuration load",
                ))?,
            )?,
            leader: reg(
                &registry,
                IntGauge::with_opts(opts(
                    "keywarden_leader",
                    "1 while this instance may enforce (holds the leader lease, or uses the file store), else 0",
                ))?,
            )?,
            lease_acquisitions: reg(
                &registry,
                IntCounter::with_opts(opts(
                    "keywarden_lease_acquisitions_total",
                    "Times this instance took the leader lease",
                ))?,
            )?,
            lease_losses: reg(
                &registry,
                IntCounter::with_opts(opts(
                    "keywarden_lease_losses_total",
                    "Times this instance lost the leader lease (taken over, or not renewed in time)",
                ))?,
            )?,
            lease_errors: reg(
                &registry,
                IntCounter::with_opts(opts(
                    "keywarden_lease_errors_total",
                    "Lease reads or renewals that failed (throttled, unreachable table)",
                ))?,
            )?,
            export_findings: reg(
                &registry,
                IntCounterVec::new(
                    opts(
                        "keywarden_export_findings_total",
                        "Findings imported by the export, by destination and record state (ACTIVE: new, changed or refreshed; ARCHIVED: stopped holding)",
                    ),
                    &["destination", "record_state"],
                )?,
            )?,
            export_errors: reg(
                &registry,
                IntCounterVec::new(
                    opts(
                        "keywarden_export_errors_total",
                        "Failed export calls and refused findings, by destination",
                    ),
                    &["destination"],
                )?,
            )?,
            export_success: reg(
                &registry,
                IntGaugeVec::new(
                    opts(
                        "keywarden_export_success",
                        "1 if the leader's last export to the destination had no error, else 0 (absent on followers)",
                    ),
                    &["destination"],
                )?,
            )?,
            events_received: reg(
                &registry,
                IntCounterVec::new(
                    opts(
                        "keywarden_events_received_total",
                        "Messages read from the events queue, by kind (access_key, user, health, ignored, malformed)",
                    ),
                    &["kind"],
                )?,
            )?,
            usage_events: reg(
                &registry,
                IntCounterVec::new(
                    opts(
                        "keywarden_usage_events_total",
                        "Messages read from the usage queue, by outcome (recorded, duplicate, unknown_key, malformed)",
                    ),
                    &["outcome"],
                )?,
            )?,
            keys_by_workload: reg(
                &registry,
                IntGaugeVec::new(
                    opts(
                        "keywarden_access_keys_by_workload",
                        "Active access keys by what their usage profile says uses them (unknown: no profile yet)",
                    ),
                    &["account_id", "workload"],
                )?,
            )?,
            usage_backfill_requests: reg(
                &registry,
                IntCounterVec::new(
                    opts(
                        "keywarden_usage_backfill_requests_total",
                        "LookupEvents requests of the leader's usage backfill, by outcome (answered, throttled)",
                    ),
                    &["outcome"],
                )?,
            )?,
            usage_backfill_errors: reg(
                &registry,
                IntCounter::with_opts(opts(
                    "keywarden_usage_backfill_errors_total",
                    "Background usage backfills that stopped on a failed read (they resume after the next run)",
                ))?,
            )?,
            usage_receive_errors: reg(
                &registry,
                IntCounter::with_opts(opts(
                    "keywarden_usage_receive_errors_total",
                    "Usage queue batches that could not be received or kept (they come back)",
                ))?,
            )?,
            event_lag: reg(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "keywarden_event_lag_seconds",
                        "From a change's CloudTrail event time to its re-audit published",
                    )
                    .buckets(vec![0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0]),
                )?,
            )?,
            event_receive_errors: reg(
                &registry,
                IntCounter::with_opts(opts(
                    "keywarden_event_receive_errors_total",
                    "ReceiveMessage calls on the events queue that failed",
                ))?,
            )?,
            unconfirmed_exposures: reg(
                &registry,
                IntCounter::with_opts(opts(
                    "keywarden_unconfirmed_exposures_total",
                    "AWS Health exposure claims from the events queue that no live read confirmed (no quarantine policy on the user): reported and journaled, nothing changed",
                ))?,
            )?,
            rotations: reg(
                &registry,
                IntCounterVec::new(
                    opts(
                        "keywarden_rotations_total",
                        "Automatic rotations of tagged users (rotation.auto_before), by outcome (success, dry_run, error, refused)",
                    ),
                    &["outcome"],
                )?,
            )?,
            deactivations_held_back: reg(
                &registry,
                IntGaugeVec::new(
                    opts(
                        "keywarden_deactivations_held_back",
                        "Deactivations past their grace period left for later: reason=\"cap\" (enforcement.max_deactivations_per_run), \"window\" (outside enforcement.windows) or \"live_use\" (usage.hold_live_keys)",
                    ),
                    &["account_id", "reason"],
                )?,
            )?,
            state_ok: reg(
                &registry,
                IntGauge::with_opts(opts(
                    "keywarden_state_ok",
                    "1 if the state file was read and written at the last run; 0 disables enforcement",
                ))?,
            )?,
            clock_skew: reg(
                &registry,
                Gauge::with_opts(opts(
                    "keywarden_clock_skew_seconds",
                    "Local time minus the Date of AWS's answers at the last run (largest either way)",
                ))?,
            )?,
            clock_ok: reg(
                &registry,
                IntGauge::with_opts(opts(
                    "keywarden_clock_ok",
                    "1 if the clock agreed with AWS's and did not go backwards at the last run; 0 disables enforcement",
                ))?,
            )?,
            deactivation_failing_keys: reg(
                &registry,
                IntGaugeVec::new(
                    opts(
                        "keywarden_deactivation_failing_keys",
                        "Due keys whose deactivation failed and is retried with backoff",
                    ),
                    &["account_id"],
                )?,
            )?,
            leadership: OnceLock::new(),
            audit_page: RwLock::new(Bytes::new()),
            registry,
        };
        m.clock_ok.set(1);
        for kind in crate::core::events::KINDS {
            m.events_received.with_label_values(&[kind]);
        }
        for outcome in ["recorded", "duplicate", "unknown_key", "malformed"] {
            m.usage_events.with_label_values(&[outcome]);
        }
        for outcome in ["answered", "throttled"] {
            m.usage_backfill_requests.with_label_values(&[outcome]);
        }
        for outcome in ["success", "dry_run", "error", "refused"] {
            m.rotations.with_label_values(&[outcome]);
        }
        Ok(m)
    }

    /// The whole `/metrics` page, as chunks: the live registry, then the audit page (shared,
    /// not copied, so a scrape of a large account costs no large allocation).
    pub fn render(&self) -> Vec<Bytes> {
        if let Some(l) = self.leadership.get() {
            self.leader.set(i64::from(l.leading()));
        }
        let page = self.audit_page.read().map(|p| p.clone()).unwrap_or_default();
        vec![Bytes::from(encode(&self.registry)), page]
    }

    /// From now on `keywarden_leader` is what `source` says at the moment of each scrape.
    pub fn read_leader_from(&self, source: Arc<dyn Leadership + Send>) {
        self.leader.set(i64::from(source.leading()));
        let _ = self.leadership.set(source);
    }

    /// One IAM or STS request attempt (see `aws::RequestObserver`).
    pub fn attempt(&self, operation: &str, outcome: &'static str) {
        self.iam_requests.with_label_values(&[operation, outcome]).inc();
    }

    // -----------------------------------------------------------------------------------------
    // What happened, as metrics: one method per event, its label values declared here beside
    // the families they belong to (`app::internal_events` pairs each with its log line).

    /// A run ended: its audit's outcome, or a panic (`keywarden_audit_runs_total{outcome}`).
    /// `keywarden_audit_success` is derived here only: 1 after a complete audit, else 0.
    pub fn run_ended(&self, outcome: RunOutcome) {
        self.audit_success.set(i64::from(outcome == RunOutcome::Success));
        self.audit_runs.with_label_values(&[outcome.label()]).inc();
    }

    /// An audit was published: its duration, completeness and the accounts it could read.
    pub fn audit_finished(&self, seconds: f64, complete: bool, accounts_read: usize, now_unix: f64) {
        self.audit_duration.set(seconds);
        if complete {
            self.audit_last_success.set(now_unix);
        }
        self.run_ended(if complete {
            RunOutcome::Success
        } else {
            RunOutcome::Failed
        });
        self.audit_accounts_read.set(accounts_read as i64);
    }

    /// A scheduled tick found the previous run still going.
    pub fn tick_skipped(&self) {
        self.audit_skipped.inc();
    }

    /// The config was (re)loaded, or a reload failed and the old one stays.
    pub fn config_loaded(&self, ok: bool, now_unix: f64) {
        self.config_reload_ok.set(i64::from(ok));
        if ok {
            self.config_reload_ts.set(now_unix);
        }
    }

    /// The state (file or table) could not be read or saved: enforcement is off this run.
    pub fn state_unusable(&self) {
        self.state_ok.set(0);
    }

    /// The clock disagreed with AWS's or went backwards: enforcement is off this run.
    pub fn clock_untrusted(&self, skew_seconds: f64) {
        self.clock_skew.set(skew_seconds);
        self.clock_ok.set(0);
    }

    /// Another instance holds the lease: enforcement's gauges are the leader's to export (an
    /// instance that led before would otherwise keep its last values, and the alerts take the
    /// max over instances).
    pub fn following(&self) {
        self.state_ok.set(1);
        self.deactivation_failing_keys.reset();
        self.deactivations_held_back.reset();
        self.export_success.reset();
    }

    /// Enforcement ran: state and clock were good; the held-back gauges start over.
    pub fn enforcing(&self, skew_seconds: f64) {
        self.clock_skew.set(skew_seconds);
        self.clock_ok.set(1);
        self.state_ok.set(1);
        self.deactivations_held_back.reset();
    }

    /// Due keys of an account left for later, by why.
    pub fn held_back(&self, account_id: &str, why: HeldBack, n: usize) {
        self.deactivations_held_back
            .with_label_values(&[account_id, why.label()])
            .set(n as i64);
    }

    /// One deactivation decided (`outcome`: `core::plan::OutcomeKind::label`).
    pub fn deactivation(&self, account_id: &str, rule: &str, outcome: &str) {
        self.deactivations.with_label_values(&[account_id, rule, outcome]).inc();
    }

    /// One automatic rotation's outcome (`success`, `dry_run`, `error`, `refused`).
    pub fn rotation(&self, outcome: &str) {
        self.rotations.with_label_values(&[outcome]).inc();
    }

    /// An export's counts; its success gauge says whether it had no error.
    pub fn exported(&self, destination: &str, active: usize, archived: usize, errors: usize) {
        let count = |state: &str, n: usize| {
            self.export_findings
                .with_label_values(&[destination, state])
                .inc_by(n as u64)
        };
        count("ACTIVE", active);
        count("ARCHIVED", archived);
        self.export_errors
            .with_label_values(&[destination])
            .inc_by(errors as u64);
        self.export_success
            .with_label_values(&[destination])
            .set(i64::from(errors == 0));
    }

    /// The leader lease changed hands here, or a check of it failed.
    pub fn lease(&self, what: LeaseEvent) {
        match what {
            LeaseEvent::Acquired => self.lease_acquisitions.inc(),
            LeaseEvent::Lost => self.lease_losses.inc(),
            LeaseEvent::CheckFailed => self.lease_errors.inc(),
        }
    }

    /// Messages of one batch of the events queue, by kind (`core::events::KINDS`).
    pub fn events_received(&self, kind: &str, n: u64) {
        self.events_received.with_label_values(&[kind]).inc_by(n);
    }

    /// Messages of one batch of the usage queue, by outcome.
    pub fn usage_events(&self, outcome: &str, n: u64) {
        self.usage_events.with_label_values(&[outcome]).inc_by(n);
    }

    /// Active keys by workload, as of the last audit (replaces the last audit's series).
    pub fn publish_workloads(&self, usage: &[(String, crate::core::usage::summary::KeyUsage)]) {
        let mut counts: std::collections::BTreeMap<(&str, &str), i64> = std::collections::BTreeMap::new();
        for (account, u) in usage {
            *counts
                .entry((account.as_str(), u.verdict.workload.as_str()))
                .or_insert(0) += 1;
        }
        self.keys_by_workload.reset();
        for ((account, workload), n) in counts {
            self.keys_by_workload.with_label_values(&[account, workload]).set(n);
        }
    }

    /// One background backfill: its requests (throttled ones included) and whether it failed.
    pub fn usage_backfilled(&self, requests: u32, throttled: u32, failed: bool) {
        let answered = requests.saturating_sub(throttled);
        self.usage_backfill_requests
            .with_label_values(&["answered"])
            .inc_by(u64::from(answered));
        self.usage_backfill_requests
            .with_label_values(&["throttled"])
            .inc_by(u64::from(throttled));
        if failed {
            self.usage_backfill_errors.inc();
        }
    }

    /// A usage batch could not be received or kept.
    pub fn usage_receive_failed(&self) {
        self.usage_receive_errors.inc();
    }

    /// The events queue could not be reached or read.
    pub fn event_receive_failed(&self) {
        self.event_receive_errors.inc();
    }

    /// From an event's time to its user handled.
    pub fn event_handled(&self, lag_seconds: f64) {
        self.event_lag.observe(lag_seconds.max(0.0));
    }

    /// Exposure claims no live read confirmed.
    pub fn exposures_unconfirmed(&self, n: usize) {
        self.unconfirmed_exposures.inc_by(n as u64);
    }

    /// Keys whose deactivation failed and waits for its backoff, per account.
    pub fn failing_keys(&self, state: &crate::core::history::State) {
        let mut per_account: BTreeMap<&str, i64> = BTreeMap::new();
        for f in state.failures() {
            *per_account.entry(f.account_id.as_str()).or_default() += 1;
        }
        self.deactivation_failing_keys.reset();
        for (account, n) in per_account {
            self.deactivation_failing_keys.with_label_values(&[account]).set(n);
        }
    }

    /// Replaces the audit page with the gauges of this audit.
    pub fn publish_audit(&self, accounts: &[AccountInventory], report: &Report, owners: &Owners, per_key: PerKey) {
        let page = Bytes::from(crate::server::audit_page::write(accounts, report, owners, per_key));
        if let Ok(mut slot) = self.audit_page.write() {
            *slot = page;
        }
    }
}

fn encode(registry: &Registry) -> String {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buf) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Switch(std::sync::atomic::AtomicBool);

    impl Leadership for Switch {
        fn leading(&self) -> bool {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
        fn may_act<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> crate::ports::BoxFuture<'a, Result<(), crate::ports::Refusal>> {
            Box::pin(std::future::ready(Ok(())))
        }
    }

    fn leader_line(m: &Metrics) -> String {
        let page: Vec<u8> = m.render().concat();
        String::from_utf8(page)
            .expect("utf-8")
            .lines()
            .find(|l| l.starts_with("keywarden_leader "))
            .expect("keywarden_leader on the page")
            .to_string()
    }

    #[test]
    fn the_leader_gauge_is_read_at_each_scrape() {
        let m = Metrics::new().expect("registry");
        let lease = Arc::new(Switch(std::sync::atomic::AtomicBool::new(true)));
        m.read_leader_from(Arc::clone(&lease) as Arc<dyn Leadership + Send>);
        assert_eq!(leader_line(&m), "keywarden_leader 1");
        // Nothing sets the gauge in between: the lease ran out, and the next scrape says so.
        lease.0.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(leader_line(&m), "keywarden_leader 0");
    }
}

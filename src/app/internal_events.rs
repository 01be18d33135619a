//! What happened inside the daemon, one type per thing (vector's `internal_events` are the
//! model): each `emit` writes its log line and its metrics together, so that an operator who
//! reads one finds the other, and a label value is never written far from its family
//! (`server::metrics` declares both and takes them through one method per event).
//!
//! The harness, the daemon loop and the events consumer build these; nothing else in `app`
//! writes a metric.

use std::collections::BTreeSet;

use crate::app::cycle::{Cycle, Skipped};
use crate::app::export::Exported;
use crate::core::model::UnconfirmedExposure;
use crate::core::report::Report;
use crate::server::metrics::{HeldBack, LeaseEvent, Metrics, RunOutcome};

fn unix_now() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

/// A run panicked and was ended; the daemon goes on.
pub struct RunPanicked<'a> {
    pub message: &'a str,
}

impl RunPanicked<'_> {
    pub fn emit(self, metrics: &Metrics) {
        tracing::error!(error = %self.message, "the run panicked and was ended; the next run starts afresh");
        metrics.run_ended(RunOutcome::Panic);
    }
}

/// An audit was published (before anything is enforced).
pub struct AuditFinished<'a> {
    pub report: &'a Report,
    pub accounts: usize,
    pub seconds: f64,
}

impl AuditFinished<'_> {
    pub fn emit(self, metrics: &Metrics) {
        let r = self.report;
        log_read_failures(r);
        log_findings(r);
        tracing::info!(
            duration_seconds = self.seconds,
            accounts = self.accounts,
            users = r.summary.users,
            access_keys = r.summary.access_keys,
            findings = r.findings.len(),
            violations = r.summary.violations,
            complete = r.complete,
            "audit finished"
        );
        let read = r.accounts.iter().filter(|a| !a.read_nothing()).count();
        metrics.audit_finished(self.seconds, r.complete, read, unix_now());
    }
}

fn log_read_failures(r: &Report) {
    for e in &r.errors {
        tracing::warn!(
            account_id = %e.account_id,
            user = e.user.as_deref().unwrap_or(""),
            operation = %e.operation,
            error = %e.message,
            "read failed; nothing is decided for this user"
        );
    }
}

fn log_findings(r: &Report) {
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
    let mut reported = BTreeSet::new();
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
}

/// Enforcement did not run this time (state, clock, save), or another instance holds the lease.
pub struct EnforcementSkipped<'a> {
    pub why: &'a Skipped,
    pub skew_seconds: f64,
}

impl EnforcementSkipped<'_> {
    pub fn emit(self, metrics: &Metrics) {
        match self.why {
            Skipped::State(e) => {
                metrics.state_unusable();
                tracing::error!(error = %e, "enforcement is off until the state file can be used (grace periods are never reset silently)");
            }
            Skipped::Clock(problem) => {
                metrics.clock_untrusted(self.skew_seconds);
                tracing::error!(error = %problem, "the clock cannot be trusted; this run audits and publishes but deactivates nothing and records nothing");
            }
            Skipped::Save(e) => {
                metrics.state_unusable();
                tracing::error!(error = %e, "cannot record first-seen times; enforcement is skipped this run");
            }
            Skipped::NotLeader => {
                metrics.following();
                tracing::debug!(
                    "another instance holds the leader lease; this one audited and published, and enforces nothing"
                );
            }
        }
    }
}

/// Enforcement ran: its decisions, the cap's and the windows' leftovers, the failing keys.
pub struct Enforced<'a> {
    pub cycle: &'a Cycle,
    pub cap: usize,
    pub skew_seconds: f64,
}

impl Enforced<'_> {
    pub fn emit(self, metrics: &Metrics) {
        let c = self.cycle;
        metrics.enforcing(self.skew_seconds);
        for (account, n) in &c.executed.held_back {
            metrics.held_back(account, HeldBack::Cap, *n);
            tracing::warn!(account_id = %account, held_back = n, cap = self.cap, "deactivation cap reached; the rest wait for the next run");
        }
        for a in c.report.accounts.iter().filter(|a| a.window_waits > 0) {
            metrics.held_back(&a.account_id, HeldBack::Window, a.window_waits);
            tracing::info!(account_id = %a.account_id, held_back = a.window_waits, "outside every enforcement window; due keys wait for the next one");
        }
        for a in c.report.accounts.iter().filter(|a| a.live_holds > 0) {
            metrics.held_back(&a.account_id, HeldBack::LiveUse, a.live_holds);
            tracing::info!(account_id = %a.account_id, held_back = a.live_holds, "due keys in live use are held (usage.hold_live_keys), each for at most one more grace period");
        }
        if let Some(e) = &c.evidence_error {
            tracing::warn!(error = %e.0, "usage profiles cannot be read: no due key is held for live use this run");
        }
        for o in &c.executed.outcomes {
            if let Some(label) = o.kind.label() {
                let rule = o.candidate.rules.first().map(|r| r.as_str()).unwrap_or("");
                metrics.deactivation(&o.candidate.account_id, rule, label);
            }
        }
        if let Some(state) = &c.state {
            metrics.failing_keys(state);
        }
        if let Some(e) = &c.final_save_error {
            tracing::error!(error = %e, "cannot update the state after deactivations");
        }
    }
}

/// Automatic rotations of one run, by outcome.
pub struct Rotated<'a> {
    pub outcomes: &'a [&'static str],
}

impl Rotated<'_> {
    pub fn emit(self, metrics: &Metrics) {
        for outcome in self.outcomes {
            metrics.rotation(outcome);
        }
    }
}

/// The findings were exported; an export's failure is its own (the run stays good).
pub struct ExportFinished<'a> {
    pub destination: &'a str,
    pub exported: &'a Exported,
}

impl ExportFinished<'_> {
    pub fn emit(self, metrics: &Metrics) {
        let (destination, e) = (self.destination, self.exported);
        metrics.exported(destination, e.active, e.archived, e.errors.len());
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
}

/// A step of the leader lease protocol that changed something, or failed.
pub enum LeaseStep<'a> {
    Acquired {
        instance_id: &'a str,
    },
    Lost {
        instance_id: &'a str,
    },
    CheckFailed {
        instance_id: &'a str,
        error: String,
    },
    /// The check did not answer within its period; `lost` when the lease ran out meanwhile.
    TimedOut {
        instance_id: &'a str,
        lost: bool,
    },
}

impl LeaseStep<'_> {
    pub fn emit(self, metrics: &Metrics) {
        match self {
            LeaseStep::Acquired { instance_id } => {
                metrics.lease(LeaseEvent::Acquired);
                tracing::info!(instance_id, "took the leader lease; this instance enforces");
            }
            LeaseStep::Lost { instance_id } => {
                metrics.lease(LeaseEvent::Lost);
                tracing::warn!(instance_id, "lost the leader lease; this instance only audits");
            }
            LeaseStep::CheckFailed { instance_id, error } => {
                metrics.lease(LeaseEvent::CheckFailed);
                tracing::warn!(instance_id, error = %error, "lease check failed; a lease held runs out unless renewed");
            }
            LeaseStep::TimedOut { instance_id, lost } => {
                metrics.lease(LeaseEvent::CheckFailed);
                if lost {
                    metrics.lease(LeaseEvent::Lost);
                }
                tracing::warn!(
                    instance_id,
                    "lease check timed out; a lease held runs out unless renewed"
                );
            }
        }
    }
}

/// The configuration was loaded at start or reloaded on SIGHUP, or a reload failed.
pub struct ConfigLoaded<'a> {
    /// The file reloaded (`None` at start: `keywarden started` says it, nothing more to log).
    pub reloaded: Option<&'a std::path::Path>,
    /// The reload's error; the previous configuration stays.
    pub error: Option<&'a str>,
}

impl ConfigLoaded<'_> {
    pub fn emit(self, metrics: &Metrics) {
        metrics.config_loaded(self.error.is_none(), unix_now());
        let Some(path) = self.reloaded else { return };
        match self.error {
            None => tracing::info!(config = %path.display(), "configuration reloaded"),
            Some(e) => {
                tracing::error!(config = %path.display(), error = %e, "reload failed; still running on the previous configuration")
            }
        }
    }
}

/// A scheduled tick came while the previous run was still going.
pub struct TickSkipped;

impl TickSkipped {
    pub fn emit(self, metrics: &Metrics) {
        metrics.tick_skipped();
        tracing::warn!("the previous audit is still running; this scheduled run is skipped");
    }
}

/// One batch from the events queue, counted by kind.
pub struct EventsReceived<'a> {
    pub counts: &'a std::collections::BTreeMap<&'static str, u64>,
}

impl EventsReceived<'_> {
    pub fn emit(self, metrics: &Metrics) {
        for (kind, n) in self.counts {
            metrics.events_received(kind, *n);
        }
    }
}

/// One batch from the usage queue, counted by outcome.
pub struct UsageEventsReceived {
    /// Messages by outcome (`recorded`, `duplicate`, `unknown_key`, `malformed`).
    pub counts: [(&'static str, u64); 4],
}

impl UsageEventsReceived {
    pub fn emit(self, metrics: &Metrics) {
        for (outcome, n) in self.counts {
            metrics.usage_events(outcome, n);
        }
        let n = |name: &str| self.counts.iter().find(|(o, _)| *o == name).map_or(0, |(_, n)| *n);
        tracing::debug!(
            recorded = n("recorded"),
            duplicate = n("duplicate"),
            unknown_key = n("unknown_key"),
            malformed = n("malformed"),
            "usage events counted"
        );
    }
}

/// After a leader's cron run: the usage profiles of keys gone from IAM were forgotten.
pub struct UsageProfilesForgotten<'a> {
    pub forgotten: &'a Result<usize, crate::ports::StoreError>,
}

impl UsageProfilesForgotten<'_> {
    pub fn emit(self) {
        match self.forgotten {
            Ok(0) => {}
            Ok(n) => tracing::info!(forgotten = n, "usage profiles of keys gone from IAM forgotten"),
            Err(e) => tracing::warn!(error = %e.0, "usage profiles of keys gone from IAM could not be forgotten"),
        }
    }
}

/// The leader's background backfill of usage profiles after a cron run (`usage.backfill`).
pub struct UsageBackfilled<'a> {
    pub requests: u32,
    pub throttled: u32,
    pub recorded: u64,
    /// Reads that failed, in the service's words (the backfill resumes at the next run).
    pub errors: &'a [String],
}

impl UsageBackfilled<'_> {
    pub fn emit(self, metrics: &Metrics) {
        metrics.usage_backfilled(self.requests, self.throttled, !self.errors.is_empty());
        for e in self.errors {
            tracing::warn!(error = %e, "usage backfill stopped for now; it resumes after the next run");
        }
        tracing::info!(
            requests = self.requests,
            throttled = self.throttled,
            recorded = self.recorded,
            "usage backfill"
        );
    }
}

/// The usage queue could not be set up, read or saved from; its messages come back.
pub struct UsageReceiveFailed<'a> {
    pub error: &'a dyn std::fmt::Display,
    pub setup: bool,
}

impl UsageReceiveFailed<'_> {
    pub fn emit(self, metrics: &Metrics) {
        metrics.usage_receive_failed();
        if self.setup {
            tracing::error!(error = %self.error, "cannot use the usage queue");
        } else {
            tracing::warn!(error = %self.error, "cannot receive or keep usage events; they come back");
        }
    }
}

/// The events queue could not be set up or read; the cron run is the safety net.
pub struct EventReceiveFailed<'a> {
    pub error: &'a dyn std::fmt::Display,
    /// The queue could not even be set up (a config or endpoint problem).
    pub setup: bool,
}

impl EventReceiveFailed<'_> {
    pub fn emit(self, metrics: &Metrics) {
        metrics.event_receive_failed();
        if self.setup {
            tracing::error!(error = %self.error, "cannot use the events queue");
        } else {
            tracing::warn!(error = %self.error, "cannot receive from the events queue; the cron run is the safety net");
        }
    }
}

/// A user named by an event was read and handled, `lag_seconds` after the event's time.
pub struct EventHandled {
    pub lag_seconds: f64,
}

impl EventHandled {
    pub fn emit(self, metrics: &Metrics) {
        metrics.event_handled(self.lag_seconds);
    }
}

/// Exposure claims that no live read confirmed: nothing changed; reported and journaled.
pub struct ExposuresUnconfirmed<'a> {
    pub claims: &'a [(String, UnconfirmedExposure)],
}

impl ExposuresUnconfirmed<'_> {
    pub fn emit(self, metrics: &Metrics) {
        for (account, claim) in self.claims {
            tracing::warn!(
                account_id = %account,
                user = claim.user.as_deref().unwrap_or("(no user has this key)"),
                access_key_id = %claim.access_key_id,
                "an AWS Health event claims this key is exposed, but no quarantine policy confirms it; nothing was changed (reported and journaled)"
            );
        }
        metrics.exposures_unconfirmed(self.claims.len());
    }
}

//! Prometheus metrics.
//!
//! Two parts, rendered together on `/metrics`:
//! - live process metrics in a long-lived registry (counters, reload and audit status);
//! - the audit page: every per-account, per-user and per-key gauge, written as text from the
//!   last completed audit once, right after it. A scrape serves that text
//!   and never calls AWS, and series of keys or users that disappeared are gone at the next
//!   audit by construction (no stale series).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::RwLock;

use hyper::body::Bytes;
use prometheus::{Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::model::{AccountInventory, KeyStatus};
use crate::report::Report;
use crate::rules::Rule;

pub struct Metrics {
    registry: Registry,
    pub audit_last_success: Gauge,
    pub audit_duration: Gauge,
    pub audit_success: IntGauge,
    pub audit_skipped: IntCounter,
    pub audit_runs: IntCounterVec,
    pub iam_requests: IntCounterVec,
    pub deactivations: IntCounterVec,
    pub config_reload_ok: IntGauge,
    pub config_reload_ts: Gauge,
    pub deactivations_held_back: IntGaugeVec,
    pub state_ok: IntGauge,
    pub clock_skew: Gauge,
    pub clock_ok: IntGauge,
    pub deactivation_failing_keys: IntGaugeVec,
    audit_page: RwLock<Bytes>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let build_info = IntGaugeVec::new(opts("keywarden_build_info", "keywarden build, value 1"), &["version"])?;
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let m = Metrics {
            audit_last_success: Gauge::with_opts(opts(
                "keywarden_audit_last_success_timestamp_seconds",
                "Unix time the last complete audit finished",
            ))?,
            audit_duration: Gauge::with_opts(opts("keywarden_audit_duration_seconds", "Duration of the last audit"))?,
            audit_success: IntGauge::with_opts(opts(
                "keywarden_audit_success",
                "1 if the last audit read every account and user completely, else 0",
            ))?,
            audit_skipped: IntCounter::with_opts(opts(
                "keywarden_audit_skipped_total",
                "Scheduled audits skipped because the previous one was still running",
            ))?,
            audit_runs: IntCounterVec::new(
                opts(
                    "keywarden_audit_runs_total",
                    "Audits run, by outcome (success, incomplete, error)",
                ),
                &["outcome"],
            )?,
            iam_requests: IntCounterVec::new(
                opts(
                    "keywarden_iam_requests_total",
                    "IAM and STS request attempts, by operation and outcome",
                ),
                &["operation", "outcome"],
            )?,
            deactivations: IntCounterVec::new(
                opts(
                    "keywarden_deactivations_total",
                    "Deactivation decisions, by outcome (success, error, dry_run)",
                ),
                &["account_id", "rule", "outcome"],
            )?,
            config_reload_ok: IntGauge::with_opts(opts(
                "keywarden_config_last_reload_successful",
                "1 if the last configuration load succeeded, else 0",
            ))?,
            config_reload_ts: Gauge::with_opts(opts(
                "keywarden_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful configuration load",
            ))?,
            deactivations_held_back: IntGaugeVec::new(
                opts(
                    "keywarden_deactivations_held_back",
                    "Due deactivations left for a later run by enforcement.max_deactivations_per_run",
                ),
                &["account_id"],
            )?,
            state_ok: IntGauge::with_opts(opts(
                "keywarden_state_ok",
                "1 if the state file was read and written at the last run; 0 disables enforcement",
            ))?,
            clock_skew: Gauge::with_opts(opts(
                "keywarden_clock_skew_seconds",
                "Local time minus the Date of AWS's answers at the last run (largest either way)",
            ))?,
            clock_ok: IntGauge::with_opts(opts(
                "keywarden_clock_ok",
                "1 if the clock agreed with AWS's and did not go backwards at the last run; 0 disables enforcement",
            ))?,
            deactivation_failing_keys: IntGaugeVec::new(
                opts(
                    "keywarden_deactivation_failing_keys",
                    "Due keys whose deactivation failed and is retried with backoff",
                ),
                &["account_id"],
            )?,
            audit_page: RwLock::new(Bytes::new()),
            registry,
        };
        m.registry.register(Box::new(build_info))?;
        m.registry.register(Box::new(m.audit_last_success.clone()))?;
        m.registry.register(Box::new(m.audit_duration.clone()))?;
        m.registry.register(Box::new(m.audit_success.clone()))?;
        m.registry.register(Box::new(m.audit_skipped.clone()))?;
        m.registry.register(Box::new(m.audit_runs.clone()))?;
        m.registry.register(Box::new(m.iam_requests.clone()))?;
        m.registry.register(Box::new(m.deactivations.clone()))?;
        m.registry.register(Box::new(m.config_reload_ok.clone()))?;
        m.registry.register(Box::new(m.config_reload_ts.clone()))?;
        m.registry.register(Box::new(m.deactivations_held_back.clone()))?;
        m.registry.register(Box::new(m.state_ok.clone()))?;
        m.registry.register(Box::new(m.clock_skew.clone()))?;
        m.registry.register(Box::new(m.clock_ok.clone()))?;
        m.registry.register(Box::new(m.deactivation_failing_keys.clone()))?;
        m.clock_ok.set(1);
        Ok(m)
    }

    /// The whole `/metrics` page, as chunks: the live registry, then the audit page (shared,
    /// not copied, so a scrape of a large account costs no large allocation).
    pub fn render(&self) -> Vec<Bytes> {
        let page = self.audit_page.read().map(|p| p.clone()).unwrap_or_default();
        vec![Bytes::from(encode(&self.registry)), page]
    }

    /// One IAM or STS request attempt (see `aws::RequestObserver`).
    pub fn attempt(&self, operation: &str, outcome: &'static str) {
        self.iam_requests.with_label_values(&[operation, outcome]).inc();
    }

    /// Keys whose deactivation failed and waits for its backoff, per account.
    pub fn publish_failures(&self, state: &crate::state::State) {
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
    pub fn publish_audit(&self, accounts: &[AccountInventory], report: &Report, per_key: bool) {
        let page = Bytes::from(audit_page(accounts, report, per_key));
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

fn secs(t: crate::model::Timestamp) -> f64 {
    t.timestamp() as f64 + f64::from(t.timestamp_subsec_millis()) / 1000.0
}

/// Writes one gauge family in the text exposition format. The audit page is written directly
/// rather than through a registry: at 100,000 series a registry's gather() allocates several
/// times the page size, which would set the daemon's peak memory.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn start(out: &'a mut String, name: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label(self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Every per-audit family, in a fixed order. Families with no sample are still announced
/// (HELP/TYPE) so dashboards and `promtool` see a stable page.
fn audit_page(accounts: &[AccountInventory], report: &Report, per_key: bool) -> String {
    let now = report.evaluated_at;
    let keys: usize = accounts.iter().flat_map(|a| &a.users).map(|u| u.keys.len()).sum();
    let users: usize = accounts.iter().map(|a| a.users.len()).sum();
    let mut out = String::with_capacity(4096 + users * 110 + if per_key { keys * 520 } else { 0 });

    // Per account.
    let mut violations: BTreeMap<(&str, Rule), (usize, usize)> = BTreeMap::new();
    let mut planned: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for a in accounts {
        for rule in Rule::ALL {
            violations.insert((a.account_id.as_str(), rule), (0, 0));
        }
        planned.insert(a.account_id.as_str(), BTreeSet::new());
    }
    for f in &report.findings {
        let v = violations.entry((f.account_id.as_str(), f.rule)).or_default();
        if f.exempt {
            v.1 += 1;
        } else {
            v.0 += 1;
            if f.deactivate_after.is_some() {
                planned
                    .entry(f.account_id.as_str())
                    .or_default()
                    .insert(f.access_key_id.as_str());
            }
        }
    }
    let per_account = |out: &mut String, name: &str, help: &str, value: &dyn Fn(&AccountInventory) -> Option<f64>| {
        let mut fam = Family::start(out, name, help);
        for a in accounts {
            if let Some(v) = value(a) {
                fam.sample(name, &[("account_id", &a.account_id)], v);
            }
        }
    };
    per_account(
        &mut out,
        "keywarden_account_audit_success",
        "1 if every read of the account succeeded in the last audit (0: see the errors in the log and report)",
        &|a| Some(if a.errors.is_empty() { 1.0 } else { 0.0 }),
    );
    per_account(&mut out, "keywarden_users", "IAM users read in the last audit", &|a| {
        Some(a.users.len() as f64)
    });
    per_account(
        &mut out,
        "keywarden_unreadable_users",
        "Users whose keys could not be read in the last audit (left out of every decision)",
        &|a| Some(a.errors.iter().filter(|e| e.user.is_some()).count() as f64),
    );
    per_account(
        &mut out,
        "keywarden_root_access_keys_present",
        "1 if the account's root user has access keys",
        &|a| a.root_access_keys_present.map(|p| if p { 1.0 } else { 0.0 }),
    );
    per_account(
        &mut out,
        "keywarden_oldest_active_access_key_age_seconds",
        "Age of the oldest active key of the account",
        &|a| {
            let oldest = a
                .users
                .iter()
                .flat_map(|u| &u.keys)
                .filter(|k| k.is_active())
                .map(|k| k.created)
                .min();
            Some(oldest.map_or(0.0, |c| (now - c).num_seconds().max(0) as f64))
        },
    );
    per_account(
        &mut out,
        "keywarden_credential_report_generated_timestamp_seconds",
        "Unix time the credential report used by the last audit was generated (credential-report mode)",
        &|a| a.credential_report_generated.map(secs),
    );
    let count = |pred: &dyn Fn(&crate::rules::Finding) -> bool| {
        let mut by: BTreeMap<&str, usize> = accounts.iter().map(|a| (a.account_id.as_str(), 0)).collect();
        for f in report.findings.iter().filter(|f| pred(f)) {
            *by.entry(f.account_id.as_str()).or_default() += 1;
        }
        by
    };
    let own = count(&|f| f.own_credentials && !f.exempt);
    per_account(
        &mut out,
        "keywarden_own_access_key_findings",
        "Findings on the access key keywarden itself signs with (never deactivated by keywarden: rotate it)",
        &|a| own.get(a.account_id.as_str()).map(|n| *n as f64),
    );
    let held = count(&|f| f.held.is_some() && !f.exempt);
    per_account(
        &mut out,
        "keywarden_held_deactivations",
        "multiple_active_keys deactivations waiting until the kept key has been used (a rotation in progress)",
        &|a| held.get(a.account_id.as_str()).map(|n| *n as f64),
    );
    per_account(
        &mut out,
        "keywarden_planned_deactivations",
        "Keys with a non-exempt finding whose action is deactivate",
        &|a| Some(planned.get(a.account_id.as_str()).map_or(0, |s| s.len()) as f64),
    );
    {
        let name = "keywarden_access_keys";
        let mut fam = Family::start(&mut out, name, "Access keys by status");
        for a in accounts {
            let all = a.users.iter().flat_map(|u| &u.keys);
            let active = all.clone().filter(|k| k.status == KeyStatus::Active).count();
            let inactive = all.count() - active;
            fam.sample(
                name,
                &[("account_id", &a.account_id), ("status", "Active")],
                active as f64,
            );
            fam.sample(
                name,
                &[("account_id", &a.account_id), ("status", "Inactive")],
                inactive as f64,
            );
        }
    }
    for (name, help, pick) in [
        ("keywarden_violations", "Non-exempt findings by rule", 0),
        ("keywarden_exempt_findings", "Exempt findings by rule", 1),
    ] {
        let mut fam = Family::start(&mut out, name, help);
        for ((account, rule), (v, e)) in &violations {
            let n = if pick == 0 { *v } else { *e };
            fam.sample(name, &[("account_id", account), ("rule", rule.as_str())], n as f64);
        }
    }
    {
        let name = "keywarden_user_active_access_keys";
        let mut fam = Family::start(&mut out, name, "Active access keys per user");
        for a in accounts {
            for u in &a.users {
                let active = u.keys.iter().filter(|k| k.is_active()).count();
                fam.sample(name, &[("account_id", &a.account_id), ("user", &u.name)], active as f64);
            }
        }
    }
    if !per_key {
        return out;
    }

    // Per key.
    let each_key = |out: &mut String,
                    name: &str,
                    help: &str,
                    value: &dyn Fn(&crate::model::AccessKey) -> Option<f64>,
                    status: bool| {
        let mut fam = Family::start(out, name, help);
        for a in accounts {
            for u in &a.users {
                for k in &u.keys {
                    if let Some(v) = value(k) {
                        let base = [
                            ("account_id", a.account_id.as_str()),
                            ("user", u.name.as_str()),
                            ("access_key_id", k.id.as_str()),
                        ];
                        if status {
                            let [x, y, z] = base;
                            fam.sample(name, &[x, y, z, ("status", k.status.as_str())], v);
                        } else {
                            fam.sample(name, &base, v);
                        }
                    }
                }
            }
        }
    };
    each_key(
        &mut out,
        "keywarden_access_key_age_seconds",
        "Age of the access key at the last audit",
        &|k| Some((now - k.created).num_seconds().max(0) as f64),
        true,
    );
    each_key(
        &mut out,
        "keywarden_access_key_created_timestamp_seconds",
        "Unix time the access key was created",
        &|k| Some(secs(k.created)),
        true,
    );
    each_key(
        &mut out,
        "keywarden_access_key_last_used_timestamp_seconds",
        "Unix time the active access key was last used (absent: never used)",
        &|k| k.last_used.map(secs),
        false,
    );
    let name = "keywarden_access_key_deactivation_deadline_timestamp_seconds";
    let mut fam = Family::start(
        &mut out,
        name,
        "Unix time after which the key is deactivated for this finding",
    );
    for f in report.findings.iter().filter(|f| !f.exempt) {
        if let Some(deadline) = f.deactivate_after {
            let labels = [
                ("account_id", f.account_id.as_str()),
                ("user", f.user.as_str()),
                ("access_key_id", f.access_key_id.as_str()),
                ("rule", f.rule.as_str()),
            ];
            fam.sample(name, &labels, secs(deadline));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        Family::start(&mut out, "m", "help").sample("m", &[("user", "a\"b\\c\nd")], 1.5);
        assert_eq!(out, "# HELP m help\n# TYPE m gauge\nm{user=\"a\\\"b\\\\c\\nd\"} 1.5\n");
    }
}

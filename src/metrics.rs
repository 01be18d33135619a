//! Prometheus metrics.
//!
//! Two parts, rendered together on `/metrics`:
//! - live process metrics in a long-lived registry (counters, reload and audit status);
//! - the audit page: every per-account, per-user and per-key gauge, built in a fresh registry
//!   from the last completed audit and encoded once, right after it. A scrape copies that text
//!   and never calls AWS, and series of keys or users that disappeared are gone at the next
//!   audit by construction (no stale series).

use std::sync::{Arc, RwLock};

use prometheus::{
    Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

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
    audit_page: RwLock<Arc<String>>,
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
            audit_page: RwLock::new(Arc::new(String::new())),
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
        Ok(m)
    }

    /// The whole `/metrics` page.
    pub fn render(&self) -> String {
        let page = self.audit_page.read().map(|p| Arc::clone(&p)).unwrap_or_default();
        let mut out = encode(&self.registry);
        out.push_str(&page);
        out
    }

    /// Replaces the audit page with the gauges of this audit.
    pub fn publish_audit(&self, accounts: &[AccountInventory], report: &Report, per_key: bool) {
        let page = match audit_page(accounts, report, per_key) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the audit metrics");
                return;
            }
        };
        if let Ok(mut slot) = self.audit_page.write() {
            *slot = Arc::new(page);
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

fn audit_page(accounts: &[AccountInventory], report: &Report, per_key: bool) -> Result<String, prometheus::Error> {
    let r = Registry::new();
    let gauge = |name: &str, help: &str, labels: &[&str]| -> Result<GaugeVec, prometheus::Error> {
        let g = GaugeVec::new(opts(name, help), labels)?;
        r.register(Box::new(g.clone()))?;
        Ok(g)
    };
    let now = report.evaluated_at;
    let users = gauge("keywarden_users", "IAM users read in the last audit", &["account_id"])?;
    let keys = gauge(
        "keywarden_access_keys",
        "Access keys by status",
        &["account_id", "status"],
    )?;
    let unreadable = gauge(
        "keywarden_unreadable_users",
        "Users whose keys could not be read in the last audit (left out of every decision)",
        &["account_id"],
    )?;
    let root = gauge(
        "keywarden_root_access_keys_present",
        "1 if the account's root user has access keys",
        &["account_id"],
    )?;
    let oldest = gauge(
        "keywarden_oldest_active_access_key_age_seconds",
        "Age of the oldest active key of the account",
        &["account_id"],
    )?;
    let violations = gauge(
        "keywarden_violations",
        "Non-exempt findings by rule",
        &["account_id", "rule"],
    )?;
    let exempt = gauge(
        "keywarden_exempt_findings",
        "Exempt findings by rule",
        &["account_id", "rule"],
    )?;
    let planned = gauge(
        "keywarden_planned_deactivations",
        "Keys with a non-exempt finding whose action is deactivate",
        &["account_id"],
    )?;
    let user_active = gauge(
        "keywarden_user_active_access_keys",
        "Active access keys per user",
        &["account_id", "user"],
    )?;
    let key_series = if per_key {
        Some((
            gauge(
                "keywarden_access_key_age_seconds",
                "Age of the access key at the last audit",
                &["account_id", "user", "access_key_id", "status"],
            )?,
            gauge(
                "keywarden_access_key_created_timestamp_seconds",
                "Unix time the access key was created",
                &["account_id", "user", "access_key_id", "status"],
            )?,
            gauge(
                "keywarden_access_key_last_used_timestamp_seconds",
                "Unix time the active access key was last used (absent: never used)",
                &["account_id", "user", "access_key_id"],
            )?,
            gauge(
                "keywarden_access_key_deactivation_deadline_timestamp_seconds",
                "Unix time after which the key is deactivated for this finding",
                &["account_id", "user", "access_key_id", "rule"],
            )?,
        ))
    } else {
        None
    };

    for a in accounts {
        let id = a.account_id.as_str();
        users.with_label_values(&[id]).set(a.users.len() as f64);
        unreadable
            .with_label_values(&[id])
            .set(a.errors.iter().filter(|e| e.user.is_some()).count() as f64);
        if let Some(present) = a.root_access_keys_present {
            root.with_label_values(&[id]).set(if present { 1.0 } else { 0.0 });
        }
        let (mut active_n, mut inactive_n, mut oldest_age) = (0usize, 0usize, 0f64);
        for u in &a.users {
            let mut active = 0;
            for k in &u.keys {
                let age = (now - k.created).num_seconds().max(0) as f64;
                match k.status {
                    KeyStatus::Active => {
                        active += 1;
                        oldest_age = oldest_age.max(age);
                    }
                    KeyStatus::Inactive => inactive_n += 1,
                }
                if let Some((age_g, created_g, used_g, _)) = &key_series {
                    let status = k.status.as_str();
                    age_g.with_label_values(&[id, &u.name, &k.id, status]).set(age);
                    created_g
                        .with_label_values(&[id, &u.name, &k.id, status])
                        .set(secs(k.created));
                    if let Some(used) = k.last_used {
                        used_g.with_label_values(&[id, &u.name, &k.id]).set(secs(used));
                    }
                }
            }
            active_n += active;
            user_active.with_label_values(&[id, &u.name]).set(active as f64);
        }
        keys.with_label_values(&[id, "Active"]).set(active_n as f64);
        keys.with_label_values(&[id, "Inactive"]).set(inactive_n as f64);
        oldest.with_label_values(&[id]).set(oldest_age);
        for rule in Rule::ALL {
            violations.with_label_values(&[id, rule.as_str()]).set(0.0);
            exempt.with_label_values(&[id, rule.as_str()]).set(0.0);
        }
        planned.with_label_values(&[id]).set(0.0);
    }
    let mut planned_keys = std::collections::BTreeSet::new();
    for f in &report.findings {
        let id = f.account_id.as_str();
        if f.exempt {
            exempt.with_label_values(&[id, f.rule.as_str()]).inc();
            continue;
        }
        violations.with_label_values(&[id, f.rule.as_str()]).inc();
        if let Some(deadline) = f.deactivate_after {
            planned_keys.insert((id, f.access_key_id.as_str()));
            if let Some((_, _, _, deadline_g)) = &key_series {
                deadline_g
                    .with_label_values(&[id, &f.user, &f.access_key_id, f.rule.as_str()])
                    .set(secs(deadline));
            }
        }
    }
    for (id, _) in &planned_keys {
        planned.with_label_values(&[id]).inc();
    }
    Ok(encode(&r))
}

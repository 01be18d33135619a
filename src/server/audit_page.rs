//! The audit page: every per-account, per-user and per-key gauge, written as text from the
//! last completed audit once, right after it. A scrape serves that text and never calls AWS,
//! and series of keys or users that disappeared are gone at the next audit by construction
//! (no stale series).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write;

use crate::config::PerKey;
use crate::core::model::{AccessKey, AccountInventory, CredentialType, KeyStatus, Timestamp};
use crate::core::owners::Owners;
use crate::core::policy::Rule;
use crate::core::report::{AccountSummary, Report};

fn secs(t: crate::core::model::Timestamp) -> f64 {
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
/// (HELP/TYPE) so dashboards and `promtool` see a stable page. Per-account values come from
/// the report's account summaries (counted once, in `core::report`).
pub(crate) fn write(accounts: &[AccountInventory], report: &Report, owners: &Owners, per_key: PerKey) -> String {
    let keys: usize = match per_key {
        PerKey::All => report.accounts.iter().map(|a| a.access_keys).sum(),
        PerKey::Findings => report.findings.len(),
        PerKey::Off => 0,
    };
    let users: usize = report.accounts.iter().map(|a| a.users).sum();
    let mut out = String::with_capacity(4096 + users * 130 + keys * 560);
    account_families(&mut out, report);
    rule_families(&mut out, report);
    owner_family(&mut out, report);
    held_by_owner_family(&mut out, report);
    tag_exemption_family(&mut out, report);
    // One owner per user: the label adds no series, only a routing key for the alerts.
    let owned: Vec<Vec<&str>> = accounts
        .iter()
        .map(|a| a.users.iter().map(|u| owners.owner_of(u)).collect())
        .collect();
    user_family(&mut out, accounts, &owned);
    credential_count_family(&mut out, report, accounts);
    // Only "findings" needs the set; every key and no key need nothing built per audit.
    let with_findings: HashSet<(&str, &str)> = match per_key {
        PerKey::Findings => report
            .findings
            .iter()
            .map(|f| (f.account_id.as_str(), f.access_key_id.as_str()))
            .collect(),
        PerKey::All | PerKey::Off => HashSet::new(),
    };
    let selected = |account_id: &str, key: &str| match per_key {
        PerKey::All => true,
        PerKey::Findings => with_findings.contains(&(account_id, key)),
        PerKey::Off => false,
    };
    if per_key != PerKey::Off {
        key_families(&mut out, accounts, &owned, report.evaluated_at, &selected);
        credential_age_family(&mut out, accounts, report.evaluated_at, &selected);
        deadline_family(&mut out, report);
    }
    out
}

/// Non-exempt findings per owner and rule; only owners with findings have series.
fn owner_family(out: &mut String, report: &Report) {
    let name = "keywarden_owner_violations";
    let mut counts: BTreeMap<(&str, &str, Rule), usize> = BTreeMap::new();
    for f in report.findings.iter().filter(|f| !f.exempt) {
        *counts.entry((&f.account_id, &f.owner, f.rule)).or_default() += 1;
    }
    let mut fam = Family::start(
        out,
        name,
        "Non-exempt findings by the owner of the key's user, and rule",
    );
    for ((account_id, owner, rule), n) in counts {
        let labels = [("account_id", account_id), ("owner", owner), ("rule", rule.as_str())];
        fam.sample(name, &labels, n as f64);
    }
}

/// Deactivations waiting for the kept key's first use (a rotation in progress, such as one
/// `keywarden rotate` started) per owner: who has to switch the application over.
fn held_by_owner_family(out: &mut String, report: &Report) {
    let name = "keywarden_owner_held_deactivations";
    let mut counts: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for f in report.findings.iter().filter(|f| !f.exempt && f.held.is_some()) {
        counts
            .entry((&f.account_id, &f.owner))
            .or_default()
            .insert(&f.access_key_id);
    }
    let mut fam = Family::start(
        out,
        name,
        "Keys whose deactivation waits until the user's new key has been used (a rotation in progress), by owner",
    );
    for ((account_id, owner), keys) in counts {
        fam.sample(name, &[("account_id", account_id), ("owner", owner)], keys.len() as f64);
    }
}

fn tag_exemption_family(out: &mut String, report: &Report) {
    let name = "keywarden_tag_exemptions";
    let mut fam = Family::start(
        out,
        name,
        "Users with keywarden:exempt-until/-reason tags, by state (active, invalid, too_long)",
    );
    for a in &report.accounts {
        for (state, n) in &a.tag_exemptions {
            fam.sample(name, &[("account_id", &a.account_id), ("state", state)], *n as f64);
        }
    }
}

/// One gauge per account, by name: (name, help, value; `None`: no sample).
type PerAccount<'a> = (&'a str, &'a str, &'a dyn Fn(&AccountSummary) -> Option<f64>);

/// Long because it declares every per-account family in one table (name, help, value), so
/// that adding one is one entry.
fn account_families(out: &mut String, report: &Report) {
    let now = report.evaluated_at;
    let count = |n: usize| Some(n as f64);
    let name = "keywarden_account_audit_success";
    let help = "1 if every read of the account succeeded in the last audit (0: see the errors in the log and report)";
    let mut fam = Family::start(out, name, help);
    for a in &report.accounts {
        fam.sample(
            name,
            &[("account_id", &a.account_id)],
            if a.complete { 1.0 } else { 0.0 },
        );
    }
    let families: [PerAccount<'_>; 10] = [
        ("keywarden_users", "IAM users read in the last audit", &|a| {
            count(a.users)
        }),
        (
            "keywarden_unreadable_users",
            "Users whose keys could not be read in the last audit (left out of every decision)",
            &|a| count(a.unreadable_users),
        ),
        (
            "keywarden_root_access_keys_present",
            "1 if the account's root user has access keys",
            &|a| a.root_access_keys_present.map(|p| if p { 1.0 } else { 0.0 }),
        ),
        (
            "keywarden_oldest_active_access_key_age_seconds",
            "Age of the oldest active key of the account",
            &|a| {
                Some(
                    a.oldest_active_key_created
                        .map_or(0.0, |c| (now - c).num_seconds().max(0) as f64),
                )
            },
        ),
        (
            "keywarden_credential_report_generated_timestamp_seconds",
            "Unix time the credential report used by the last audit was generated (credential-report mode)",
            &|a| a.credential_report_generated.map(secs),
        ),
        (
            "keywarden_own_access_key_findings",
            "Findings on the access key keywarden itself signs with (never deactivated by keywarden: rotate it)",
            &|a| count(a.own_key_findings),
        ),
        (
            "keywarden_exposed_access_keys",
            "Active access keys AWS found exposed in public (its quarantine policy on the user; a Health event narrows it to the key it names)",
            &|a| count(a.exposed_keys),
        ),
        (
            "keywarden_own_access_key_exposed",
            "1 if the access key keywarden signs with was found exposed (never deactivated by keywarden: rotate it now)",
            &|a| Some(if a.own_key_exposed { 1.0 } else { 0.0 }),
        ),
        (
            "keywarden_held_deactivations",
            "multiple_active_keys deactivations waiting until the kept key has been used (a rotation in progress)",
            &|a| count(a.held_deactivations),
        ),
        (
            "keywarden_planned_deactivations",
            "Keys with a non-exempt finding whose action is deactivate",
            &|a| count(a.scheduled_deactivations()),
        ),
    ];
    for (name, help, value) in families {
        let mut fam = Family::start(out, name, help);
        // An account that could not be read at all has no counts, only its failure (above).
        for a in report.accounts.iter().filter(|a| !a.read_nothing()) {
            if let Some(v) = value(a) {
                fam.sample(name, &[("account_id", &a.account_id)], v);
            }
        }
    }
    let name = "keywarden_access_keys";
    let mut fam = Family::start(out, name, "Access keys by status");
    for a in report.accounts.iter().filter(|a| !a.read_nothing()) {
        let id = ("account_id", a.account_id.as_str());
        fam.sample(name, &[id, ("status", "Active")], a.active_access_keys as f64);
        let inactive = a.access_keys - a.active_access_keys;
        fam.sample(name, &[id, ("status", "Inactive")], inactive as f64);
    }
}

fn rule_families(out: &mut String, report: &Report) {
    type ByRule = fn(&AccountSummary) -> &BTreeMap<Rule, usize>;
    let families: [(&str, &str, ByRule); 2] = [
        ("keywarden_violations", "Non-exempt findings by rule", |a| {
            &a.violations_by_rule
        }),
        ("keywarden_exempt_findings", "Exempt findings by rule", |a| {
            &a.exempt_by_rule
        }),
    ];
    for (name, help, counts) in families {
        let mut fam = Family::start(out, name, help);
        for a in report.accounts.iter().filter(|a| !a.read_nothing()) {
            for (rule, n) in counts(a) {
                fam.sample(
                    name,
                    &[("account_id", &a.account_id), ("rule", rule.as_str())],
                    *n as f64,
                );
            }
        }
    }
}

fn user_family(out: &mut String, accounts: &[AccountInventory], owned: &[Vec<&str>]) {
    let name = "keywarden_user_active_access_keys";
    let mut fam = Family::start(out, name, "Active access keys per user");
    for (a, owners) in accounts.iter().zip(owned) {
        for (u, owner) in a.users.iter().zip(owners) {
            let active = u.keys.iter().filter(|k| k.is_active()).count();
            let labels = [
                ("account_id", a.account_id.as_str()),
                ("user", &u.name),
                ("owner", owner),
            ];
            fam.sample(name, &labels, active as f64);
        }
    }
}

/// Credentials by kind and status: access keys always, the other kinds where read (a kind
/// no enabled rule needs is not read, so it has no series rather than a false zero).
fn credential_count_family(out: &mut String, report: &Report, accounts: &[AccountInventory]) {
    let name = "keywarden_credentials";
    let mut fam = Family::start(out, name, "Long-lived credentials of IAM users by kind and status");
    let readable: HashSet<&str> = report
        .accounts
        .iter()
        .filter(|a| !a.read_nothing())
        .map(|a| a.account_id.as_str())
        .collect();
    for a in accounts.iter().filter(|a| readable.contains(a.account_id.as_str())) {
        let mut counts: BTreeMap<(CredentialType, &str), usize> = BTreeMap::new();
        for status in [KeyStatus::Active, KeyStatus::Inactive] {
            counts.insert((CredentialType::AccessKey, status.as_str()), 0);
        }
        for u in &a.users {
            for k in &u.keys {
                *counts
                    .entry((CredentialType::AccessKey, k.status.as_str()))
                    .or_default() += 1;
            }
            for c in &u.credentials {
                *counts.entry((c.kind, c.status.as_str())).or_default() += 1;
            }
        }
        for ((kind, status), n) in counts {
            let labels = [
                ("account_id", a.account_id.as_str()),
                ("credential_type", kind.as_str()),
                ("status", status),
            ];
            fam.sample(name, &labels, n as f64);
        }
    }
}

/// The age of each credential other than an access key (those have their own families), for
/// the ones `selected` names (`metrics.per_key`).
fn credential_age_family(
    out: &mut String,
    accounts: &[AccountInventory],
    now: Timestamp,
    selected: &dyn Fn(&str, &str) -> bool,
) {
    let name = "keywarden_credential_age_seconds";
    let help = "Age of a password (since its login profile's creation), SSH public key, service-specific credential or signing certificate at the last audit";
    let mut fam = Family::start(out, name, help);
    for a in accounts {
        for u in &a.users {
            for c in u.credentials.iter().filter(|c| selected(&a.account_id, &c.id)) {
                let labels = [
                    ("account_id", a.account_id.as_str()),
                    ("user", u.name.as_str()),
                    ("credential_type", c.kind.as_str()),
                    ("credential_id", c.id.as_str()),
                    ("status", c.status.as_str()),
                ];
                fam.sample(name, &labels, (now - c.created).num_seconds().max(0) as f64);
            }
        }
    }
}

/// One gauge per key: (name, help, value, whether the `status` label is on it).
type KeyFamily<'a> = (&'a str, &'a str, &'a dyn Fn(&AccessKey) -> Option<f64>, bool);

/// Per-key series of the keys `selected` names (`metrics.per_key`).
fn key_families(
    out: &mut String,
    accounts: &[AccountInventory],
    owned: &[Vec<&str>],
    now: Timestamp,
    selected: &dyn Fn(&str, &str) -> bool,
) {
    let families: [KeyFamily<'_>; 3] = [
        (
            "keywarden_access_key_age_seconds",
            "Age of the access key at the last audit",
            &|k| Some((now - k.created).num_seconds().max(0) as f64),
            true,
        ),
        (
            "keywarden_access_key_created_timestamp_seconds",
            "Unix time the access key was created",
            &|k| Some(secs(k.created)),
            true,
        ),
        (
            "keywarden_access_key_last_used_timestamp_seconds",
            "Unix time the active access key was last used (absent: never used)",
            &|k| k.last_used.map(secs),
            false,
        ),
    ];
    for (name, help, value, status) in families {
        let mut fam = Family::start(out, name, help);
        for (a, owners) in accounts.iter().zip(owned) {
            for (u, owner) in a.users.iter().zip(owners) {
                for k in u.keys.iter().filter(|k| selected(&a.account_id, &k.id)) {
                    let Some(v) = value(k) else { continue };
                    let base = [
                        ("account_id", a.account_id.as_str()),
                        ("user", u.name.as_str()),
                        ("access_key_id", k.id.as_str()),
                        ("owner", *owner),
                    ];
                    if status {
                        let [w, x, y, z] = base;
                        fam.sample(name, &[w, x, y, z, ("status", k.status.as_str())], v);
                    } else {
                        fam.sample(name, &base, v);
                    }
                }
            }
        }
    }
}

fn deadline_family(out: &mut String, report: &Report) {
    let name = "keywarden_access_key_deactivation_deadline_timestamp_seconds";
    let mut fam = Family::start(
        out,
        name,
        "Unix time after which the credential is deactivated (a password: deleted) for this finding",
    );
    for f in report.findings.iter().filter(|f| !f.exempt) {
        if let Some(deadline) = f.deactivate_after {
            let labels = [
                ("account_id", f.account_id.as_str()),
                ("user", f.user.as_str()),
                ("access_key_id", f.access_key_id.as_str()),
                ("credential_type", f.credential_type.as_str()),
                ("rule", f.rule.as_str()),
                ("owner", f.owner.as_str()),
            ];
            fam.sample(name, &labels, secs(deadline));
        }
    }
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

    #[test]
    fn credentials_are_counted_by_kind_and_status_and_aged_per_credential_when_selected() {
        use crate::core::model::{Credential, CredentialStatus, User};
        use chrono::TimeZone;
        let now = chrono::Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let cred = |kind, id: &str, status| Credential {
            kind,
            id: id.into(),
            status,
            created: now - chrono::TimeDelta::days(10),
            last_used: None,
            service: None,
            expires: None,
        };
        let dana = User {
            name: "dana".into(),
            path: "/".into(),
            keys: vec![AccessKey {
                id: "AKIA1".into(),
                status: KeyStatus::Inactive,
                created: now,
                last_used: None,
            }],
            credentials: vec![
                cred(CredentialType::SshPublicKey, "APKA1", CredentialStatus::Active),
                cred(CredentialType::SshPublicKey, "APKA2", CredentialStatus::Inactive),
                cred(
                    CredentialType::ServiceSpecificCredential,
                    "ACCA1",
                    CredentialStatus::Expired,
                ),
            ],
            ..Default::default()
        };
        let accounts = vec![AccountInventory {
            account_id: "123456789012".into(),
            users: vec![dana],
            ..Default::default()
        }];
        let report = Report::build(now, crate::core::policy::Mode::DryRun, &accounts, vec![]);
        let page = write(&accounts, &report, &Owners::default(), PerKey::All);
        for line in [
            "keywarden_credentials{account_id=\"123456789012\",credential_type=\"access_key\",status=\"Active\"} 0",
            "keywarden_credentials{account_id=\"123456789012\",credential_type=\"access_key\",status=\"Inactive\"} 1",
            "keywarden_credentials{account_id=\"123456789012\",credential_type=\"ssh_public_key\",status=\"Active\"} 1",
            "keywarden_credentials{account_id=\"123456789012\",credential_type=\"ssh_public_key\",status=\"Inactive\"} 1",
            "keywarden_credentials{account_id=\"123456789012\",credential_type=\"service_specific_credential\",status=\"Expired\"} 1",
            "keywarden_credential_age_seconds{account_id=\"123456789012\",user=\"dana\",credential_type=\"ssh_public_key\",credential_id=\"APKA1\",status=\"Active\"} 864000",
        ] {
            assert!(page.contains(line), "{line} in\n{page}");
        }
        assert!(
            !page.contains("credential_type=\"password\""),
            "passwords were not read"
        );
        let findings_only = write(&accounts, &report, &Owners::default(), PerKey::Findings);
        assert!(
            !findings_only.contains("keywarden_credential_age_seconds{"),
            "no finding, no series"
        );
        assert!(findings_only.contains("keywarden_credentials{"), "counts stay");
    }
}

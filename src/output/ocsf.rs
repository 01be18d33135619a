//! `audit --format ocsf`: the findings as OCSF Detection Findings (class 2004, schema 1.3.0),
//! one JSON array, for Security Lake and the SIEMs that read OCSF. One event per key and rule,
//! on the access key as the resource (with its user and account), never on the user alone.
//!
//! Mapping: `activity_id` 1 (Create); `status_id` 1 New for a violation, 3 Suppressed for an
//! exempt finding; `severity_id` 3 Medium for a violation (5 Critical for `exposed_key`; 2 Low for `max_key_age`, which only
//! ages), 1 Informational when exempt; `finding_info.uid` stable per account, key and rule;
//! `finding_info.types` the control ids (`core::controls`); `remediation.desc` the CIS
//! procedure; what keywarden will do and when (`action`, `deactivate_after`) in `unmapped`.

use serde_json::{json, Value};

use crate::core::model::CredentialType;
use crate::core::policy::Rule;
use crate::core::report::Report;
use crate::core::rules::Finding;

pub const SCHEMA_VERSION: &str = "1.3.0";

/// What each rule asks, as the benchmark words it.
pub fn title(rule: Rule) -> &'static str {
    match rule {
        Rule::ExposedKey => "Access key exposed in public (found by AWS)",
        Rule::UnusedKey => "Access key unused for 45 days or more",
        Rule::MultipleActiveKeys => "More than one active access key for one IAM user",
        Rule::MaxKeyAge => "Access key not rotated for 90 days or more",
        Rule::UnusedPassword => "Console password unused for 45 days or more",
        Rule::MaxCredentialAge => "IAM user credential older than its maximum age",
        Rule::LongTermServiceCredential => "Service-specific credential without a short expiry",
    }
}

/// The resource a finding is on, in the names ASFF and OCSF share: an access key is
/// `AwsIamAccessKey`; a password is its user's (`AwsIamUser`, named by the user's ARN); the
/// other kinds have no type of their own (`Other`, named by their id).
pub fn resource_type(kind: CredentialType) -> &'static str {
    match kind {
        CredentialType::AccessKey => "AwsIamAccessKey",
        CredentialType::Password => "AwsIamUser",
        _ => "Other",
    }
}

/// What to do about an exposed key, after keywarden's part (docs/exposed-keys.md).
pub const EXPOSED_REMEDIATION: &str = "AWS found this access key in public. Deactivate it now (keywarden \
does when enforcing), rotate: create a new key, hand it over (Secrets Manager), then delete the exposed \
key; review CloudTrail for every request signed with the key since it was exposed; detach the \
AWSCompromisedKeyQuarantine policy from the user once done.";

/// The remediation a finding of `rule` gives.
pub fn remediation(rule: Rule) -> &'static str {
    match rule {
        Rule::ExposedKey => EXPOSED_REMEDIATION,
        Rule::UnusedPassword => PASSWORD_REMEDIATION,
        Rule::MaxCredentialAge | Rule::LongTermServiceCredential => CREDENTIAL_REMEDIATION,
        _ => REMEDIATION,
    }
}

/// What to do about an unused console password.
pub const PASSWORD_REMEDIATION: &str = "Remove console access the user does not use: in the IAM console open the user's Security credentials and choose Manage console access > Disable (or `aws iam delete-login-profile`); if the person still needs the console, give them access through IAM Identity Center instead.";

/// What to do about an old or long-lived credential other than an access key.
pub const CREDENTIAL_REMEDIATION: &str = "Replace the credential: create a new one (an SSH key, a service-specific credential with an expiry, a certificate), switch its users over, then make the old one inactive in the user's Security credentials (or `aws iam update-ssh-public-key`, `update-service-specific-credential`, `update-signing-certificate` with `--status Inactive`).";

/// The remediation of the CIS procedure (IAM > Users > Security credentials > Make inactive).
pub const REMEDIATION: &str = "Deactivate the non-operational keys, keep one key less than 90 days old: \
in the IAM console open the user's Security credentials and choose Make inactive on each key that is \
unused or older than 90 days (or `aws iam update-access-key --status Inactive`); create a new key first \
if the application still needs one, and switch it over before the old key is deactivated.";

fn ms(t: &crate::core::model::Timestamp) -> i64 {
    t.timestamp_millis()
}

fn event(r: &Report, f: &Finding) -> Value {
    let (severity_id, severity) = match (f.exempt, f.rule) {
        (true, _) => (1, "Informational"),
        (false, Rule::ExposedKey) => (5, "Critical"),
        (false, Rule::MaxKeyAge) => (2, "Low"),
        (false, _) => (3, "Medium"),
    };
    let (status_id, status) = if f.exempt { (3, "Suppressed") } else { (1, "New") };
    let time = crate::sys::timefmt::format;
    json!({
        "activity_id": 1,
        "activity_name": "Create",
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "time": ms(&r.evaluated_at),
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": status,
        "message": format!("{} ({} {}) of IAM user {} in account {}", title(f.rule), f.credential_type, f.access_key_id, f.user, f.account_id),
        "metadata": {
            "version": SCHEMA_VERSION,
            "product": {
                "name": "keywarden",
                "vendor_name": "keywarden",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "profiles": ["cloud"],
        },
        "cloud": {
            "provider": "AWS",
            "account": {"uid": f.account_id, "type": "AWS Account", "type_id": 10},
        },
        "finding_info": {
            "uid": format!("keywarden/{}/{}/{}", f.account_id, f.access_key_id, f.rule.as_str()),
            "title": title(f.rule),
            "desc": format!("Rule {} ({}).", f.rule.as_str(), crate::core::controls::of(f.rule).join(", ")),
            "types": crate::core::controls::of(f.rule),
            "first_seen_time": ms(&f.first_seen),
            "first_seen_time_dt": time(&f.first_seen),
            "analytic": {"name": f.rule.as_str(), "type_id": 1, "type": "Rule"},
        },
        "resources": [{
            "uid": f.access_key_id,
            "name": f.access_key_id,
            "type": resource_type(f.credential_type),
            "cloud_partition": "aws",
            "owner": {"name": f.user, "account": {"uid": f.account_id, "type": "AWS Account", "type_id": 10}},
            "data": {
                "credential_type": f.credential_type.as_str(),
                "user": f.user,
                "created": time(&f.created),
                "last_used": f.last_used.as_ref().map(time),
            },
            "labels": [format!("owner:{}", f.owner)],
        }],
        "remediation": {"desc": remediation(f.rule)},
        "unmapped": {
            "action": f.action.as_str(),
            "deactivate_after": f.deactivate_after.as_ref().map(time),
            "exempt": f.exempt,
            "exemption_reason": f.exemption_reason,
            "owner": f.owner,
            "mode": r.mode,
        },
    })
}

impl Report {
    pub fn to_ocsf(&self) -> String {
        let events: Vec<Value> = self.findings.iter().map(|f| event(self, f)).collect();
        serde_json::to_string_pretty(&events).unwrap_or_else(|_| "[]".into())
    }
}

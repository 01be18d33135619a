//! The findings as ASFF (AWS Security Finding Format, schema 2018-10-08), for Security Hub's
//! `BatchImportFindings` (`app::export` sends them).
//!
//! One finding per key and rule, on the access key (`Resources[0].Type = AwsIamAccessKey`, the
//! user in its details), never on the user alone. `Id` is `keywarden/<account>/<key>/<rule>`,
//! stable across runs, so a re-import updates. `ProductArn` is the account's own default
//! product (custom findings are imported by the account they are about). Severity MEDIUM, as
//! Security Hub rates IAM.3 and IAM.22; CRITICAL for `exposed_key`. `Compliance.RelatedRequirements` carries the control
//! ids (`core::controls`), `Remediation` the CIS procedure, `ProductFields` what keywarden will
//! do and when (`keywarden/DeactivateAfter`). A finding that stopped holding is re-imported with
//! `RecordState: ARCHIVED` and `Compliance.Status: PASSED` ([`archived`]).

use serde_json::{json, Map, Value};

use crate::core::arn::partition;
use crate::core::model::CredentialType;
use crate::core::model::Timestamp;
use crate::core::report::Report;
use crate::core::rules::{Finding, Rule};
use crate::output::ocsf::{remediation, resource_type, title};

pub const SCHEMA_VERSION: &str = "2018-10-08";
/// `GeneratorId` of every keywarden finding: what the archive step lists.
pub const GENERATOR_ID: &str = "keywarden";
const TYPE: &str = "Software and Configuration Checks/Industry and Regulatory Standards/CIS AWS Foundations Benchmark";

/// The default product of `account`: where an account imports its own findings.
pub fn product_arn(region: &str, account: &str) -> String {
    format!(
        "arn:{}:securityhub:{region}:{account}:product/{account}/default",
        partition(region)
    )
}

/// The noun a description names a credential with.
fn noun(kind: CredentialType) -> &'static str {
    match kind {
        CredentialType::AccessKey => "access key",
        CredentialType::Password => "console password",
        CredentialType::SshPublicKey => "SSH public key",
        CredentialType::ServiceSpecificCredential => "service-specific credential",
        CredentialType::SigningCertificate => "signing certificate",
    }
}

/// The finding's resource: an access key with its ASFF details; a password on its user
/// (`AwsIamUser`, by ARN); any other kind as `Other`, its kind and user in `Details.Other`.
fn resource(f: &Finding, partition: &str, region: &str, key_details: Value) -> Value {
    let kind = resource_type(f.credential_type);
    let details = match f.credential_type {
        CredentialType::AccessKey => json!({"AwsIamAccessKey": key_details}),
        CredentialType::Password => json!({"AwsIamUser": {"UserName": f.user, "CreateDate": time(&f.created)}}),
        other => {
            json!({"Other": {"CredentialType": other.as_str(), "UserName": f.user, "CreatedAt": time(&f.created)}})
        }
    };
    json!({"Type": kind, "Id": f.access_key_id, "Partition": partition, "Region": region, "Details": details})
}

pub fn finding_id(f: &Finding) -> String {
    format!("keywarden/{}/{}/{}", f.account_id, f.access_key_id, f.rule.as_str())
}

fn time(t: &Timestamp) -> String {
    crate::sys::timefmt::format(t)
}

/// What keywarden will do about the key, in one sentence.
fn outlook(r: &Report, f: &Finding) -> String {
    if f.own_credentials {
        return "keywarden signs with this key and only reports it.".into();
    }
    if let Some(kept) = &f.kept_access_key_id {
        if f.deactivate_after.is_none() && f.held.is_some() {
            return format!("Deactivation waits until the application uses {kept}.");
        }
    }
    match (&f.deactivate_after, f.action.as_str()) {
        (Some(t), "deactivate") if r.mode == "enforce" => format!("keywarden deactivates it after {}.", time(t)),
        (Some(t), "deactivate") => format!("keywarden would deactivate it after {} (dry-run).", time(t)),
        (None, "deactivate") => "Its deactivation is held back.".into(),
        (Some(t), "delete_login_profile") if r.mode == "enforce" => {
            format!("keywarden deletes the login profile after {}.", time(t))
        }
        (Some(t), "delete_login_profile") => {
            format!("keywarden would delete the login profile after {} (dry-run).", time(t))
        }
        _ => "keywarden reports it; it does not deactivate it.".into(),
    }
}

/// The ASFF finding of one non-exempt finding, imported into `region`'s hub.
pub fn finding(r: &Report, f: &Finding, region: &str) -> Value {
    let partition = partition(region);
    let controls = crate::core::controls::of(f.rule);
    let mut fields = Map::new();
    let mut field = |k: &str, v: String| {
        fields.insert(format!("keywarden/{k}"), Value::String(v));
    };
    field("Rule", f.rule.as_str().into());
    field("Action", f.action.as_str().into());
    field("Mode", r.mode.clone());
    field("Owner", f.owner.clone());
    field("FirstSeen", time(&f.first_seen));
    if let Some(t) = &f.deactivate_after {
        field("DeactivateAfter", time(t));
    }
    if let Some(k) = &f.kept_access_key_id {
        field("KeptAccessKeyId", k.clone());
    }
    let details = json!({
        "AccessKeyId": f.access_key_id,
        "AccountId": f.account_id,
        "PrincipalName": f.user,
        "PrincipalType": "IAMUser",
        "UserName": f.user,
        "CreatedAt": time(&f.created),
    });
    if let Some(used) = &f.last_used {
        // Not an ASFF attribute of the key: carried in ProductFields instead.
        fields.insert("keywarden/LastUsed".into(), Value::String(time(used)));
    }
    json!({
        "SchemaVersion": SCHEMA_VERSION,
        "Id": finding_id(f),
        "ProductArn": product_arn(region, &f.account_id),
        "GeneratorId": GENERATOR_ID,
        "AwsAccountId": f.account_id,
        "Types": [TYPE],
        "CreatedAt": time(&f.first_seen),
        "FirstObservedAt": time(&f.first_seen),
        "UpdatedAt": time(&r.evaluated_at),
        "LastObservedAt": time(&r.evaluated_at),
        "Severity": {"Label": severity(f.rule)},
        "Title": title(f.rule),
        "Description": format!(
            "{} ({}): {} {} of IAM user {} in account {}. {}",
            title(f.rule),
            controls.join(", "),
            noun(f.credential_type),
            f.access_key_id,
            f.user,
            f.account_id,
            outlook(r, f)
        ),
        "Remediation": {"Recommendation": {"Text": remediation(f.rule)}},
        "ProductFields": fields,
        "Resources": [resource(f, partition, region, details)],
        "Compliance": {"Status": "FAILED", "RelatedRequirements": controls},
        "RecordState": "ACTIVE",
    })
}

/// MEDIUM as Security Hub rates IAM.3 and IAM.22; a key found in public is CRITICAL.
fn severity(rule: Rule) -> &'static str {
    match rule {
        Rule::ExposedKey => "CRITICAL",
        _ => "MEDIUM",
    }
}

/// The attributes keywarden writes; the rest of what GetFindings returns is Security Hub's.
const OWN: [&str; 18] = [
    "SchemaVersion",
    "Id",
    "ProductArn",
    "GeneratorId",
    "AwsAccountId",
    "Types",
    "CreatedAt",
    "FirstObservedAt",
    "UpdatedAt",
    "LastObservedAt",
    "Severity",
    "Title",
    "Description",
    "Remediation",
    "ProductFields",
    "Resources",
    "Compliance",
    "RecordState",
];

/// `previous` (as GetFindings returned it) closed: ARCHIVED and PASSED as of `now`.
pub fn archived(previous: &Value, now: &Timestamp) -> Value {
    let mut out = Map::new();
    for k in OWN {
        if let Some(v) = previous.get(k) {
            out.insert(k.to_string(), v.clone());
        }
    }
    if let Some(Value::Object(fields)) = out.get_mut("ProductFields") {
        fields.retain(|k, _| k.starts_with("keywarden/"));
    }
    out.insert("UpdatedAt".into(), json!(time(now)));
    out.insert("RecordState".into(), json!("ARCHIVED"));
    let requirements = previous["Compliance"]["RelatedRequirements"].clone();
    out.insert(
        "Compliance".into(),
        json!({"Status": "PASSED", "RelatedRequirements": requirements}),
    );
    Value::Object(out)
}

/// The first top-level attribute of `desired` that the hub's copy `actual` does not already
/// say (`None`: nothing to send). Times of observation are left out (they change every run),
/// and what Security Hub adds to a finding is ignored.
pub fn first_difference<'a>(desired: &'a Value, actual: &Value) -> Option<&'a str> {
    desired
        .as_object()?
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "UpdatedAt" | "LastObservedAt"))
        .find(|(k, v)| !actual.get(k.as_str()).is_some_and(|a| same(v, a)))
        .map(|(k, _)| k.as_str())
}

/// Whether `actual` holds everything `desired` does (objects may have more members).
fn same(desired: &Value, actual: &Value) -> bool {
    match desired {
        Value::Object(d) => d.iter().all(|(k, v)| actual.get(k).is_some_and(|a| same(v, a))),
        Value::Array(d) => actual
            .as_array()
            .is_some_and(|a| a.len() == d.len() && d.iter().zip(a).all(|(x, y)| same(x, y))),
        _ => desired == actual,
    }
}

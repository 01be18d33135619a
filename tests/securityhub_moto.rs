//! `[export.security_hub]` through the real binary against moto's Security Hub: the findings
//! arrive in batches of 100 with their resources, control ids and deadlines, every one passes
//! botocore's model of BatchImportFindings (tests/moto/asff_check.py), a rotated key's findings
//! are archived at the next run while unchanged ones are not sent again, and a failing export
//! leaves the audit complete and shows in the metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use crate::common::*;
use serde_json::Value;

const USERS: usize = 50;

/// Users with two keys created 100 days ago and never used: five findings each (both keys
/// unused and too old, one of them the second active key).
async fn seed(moto: &Moto) -> Vec<(String, SeededKey, SeededKey)> {
    let iam = moto.iam();
    let names: Vec<String> = (0..USERS).map(|i| format!("app-{i:02}")).collect();
    for n in &names {
        create_user(&iam, n, None).await;
    }
    moto.set_clock_days(-100.0);
    let mut out = Vec::new();
    for n in names {
        let a = create_key(&iam, &n).await;
        let b = create_key(&iam, &n).await;
        out.push((n, a, b));
    }
    moto.set_clock_days(0.0);
    out
}

/// What the hub holds, each finding checked against botocore's model.
fn hub_findings(moto: &Moto) -> Vec<Value> {
    let python = std::env::var_os("KEYWARDEN_TEST_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    let out = Command::new(python)
        .arg(repo().join("tests/moto/asff_check.py"))
        .args([moto.endpoint().as_str(), "us-east-1"])
        .output()
        .expect("run asff_check.py");
    assert!(
        out.status.success(),
        "a finding fails botocore's BatchImportFindings model:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("findings JSON")
}

fn run_once(config: &Path) {
    let (code, out, err) = outputs(&mut keywarden(&["run", "--once", "--config", config.to_str().unwrap()]));
    assert_eq!(code, 0, "run --once: {out}{err}");
}

fn imports(moto: &Moto) -> u64 {
    moto.take_stats()["BatchImportFindings"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn findings_arrive_in_batches_and_a_rotated_key_is_archived_at_the_next_run() {
    let moto = Moto::start();
    let users = seed(&moto).await;
    let dir = TempDir::new("securityhub");
    let config = moto_config(&dir, &moto, "[export.security_hub]\nenabled = true\n");
    moto.take_stats();
    run_once(&config);
    assert_eq!(imports(&moto), 3, "250 findings in batches of at most 100");

    // The audit after the run reads the same state: the same first-seen times and deadlines.
    let (_, report, err) = audit_json(&config, &[]);
    let expected: BTreeMap<String, &Value> = report["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings: {err}"))
        .iter()
        .map(|f| {
            (
                format!(
                    "keywarden/{}/{}/{}",
                    f["account_id"].as_str().unwrap(),
                    f["access_key_id"].as_str().unwrap(),
                    f["rule"].as_str().unwrap()
                ),
                f,
            )
        })
        .collect();
    assert_eq!(expected.len(), USERS * 5);

    let held = hub_findings(&moto);
    assert_eq!(held.len(), USERS * 5, "one finding per key and rule");
    for h in &held {
        let id = h["Id"].as_str().unwrap();
        let f = expected.get(id).unwrap_or_else(|| panic!("{id} is not in the report"));
        assert_eq!(h["RecordState"], "ACTIVE");
        assert_eq!(h["GeneratorId"], "keywarden");
        assert_eq!(h["AwsAccountId"], f["account_id"]);
        let r = &h["Resources"][0];
        assert_eq!(r["Type"], "AwsIamAccessKey", "{h}");
        assert_eq!(r["Id"], f["access_key_id"]);
        assert_eq!(r["Details"]["AwsIamAccessKey"]["PrincipalName"], f["user"]);
        assert_eq!(h["Compliance"]["Status"], "FAILED");
        assert_eq!(h["Compliance"]["RelatedRequirements"], f["controls"], "{id}");
        assert_eq!(
            h["ProductFields"]["keywarden/DeactivateAfter"], f["deactivate_after"],
            "{id}: the deadline"
        );
        assert!(h["Remediation"]["Recommendation"]["Text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Deactivate the non-operational keys")));
    }

    // The first user rotates: the two old keys deleted, a new one.
    let iam = moto.iam();
    let (user, a, b) = &users[0];
    for k in [a, b] {
        delete_key(&iam, user, &k.id).await;
    }
    create_key(&iam, user).await;
    moto.take_stats();
    run_once(&config);
    assert_eq!(
        imports(&moto),
        1,
        "only the five archived findings are sent; unchanged ones are not"
    );
    let held = hub_findings(&moto);
    let rotated: BTreeSet<&str> = [a.id.as_str(), b.id.as_str()].into();
    for h in &held {
        let key = h["Resources"][0]["Id"].as_str().unwrap();
        if rotated.contains(key) {
            assert_eq!(h["RecordState"], "ARCHIVED", "{h}");
            assert_eq!(h["Compliance"]["Status"], "PASSED", "{h}");
        } else {
            assert_eq!(h["RecordState"], "ACTIVE", "{h}");
        }
    }
    assert_eq!(held.iter().filter(|h| h["RecordState"] == "ARCHIVED").count(), 5);

    // The packaged policy allows exactly the Security Hub calls made.
    let text = std::fs::read_to_string(repo().join("packaging/iam-policy-securityhub.json")).unwrap();
    let policy: Value = serde_json::from_str(&text).expect("policy is JSON");
    let allowed: BTreeSet<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Action"].as_str().unwrap().to_string())
        .collect();
    let callers = moto.callers();
    let called: BTreeSet<String> = callers["testing"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|op| matches!(op.as_str(), "BatchImportFindings" | "GetFindings"))
        .map(|op| format!("securityhub:{op}"))
        .collect();
    assert_eq!(allowed, called);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_export_leaves_the_audit_complete_and_shows_in_the_metrics() {
    let moto = Moto::start();
    seed(&moto).await;
    moto.set_faults(r#"{"BatchImportFindings": ["*"]}"#);
    let dir = TempDir::new("securityhub-fail");
    let port = free_port();
    let config = moto_config(
        &dir,
        &moto,
        &format!(
            "[schedule]\ncron = \"*/2 * * * * *\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\
             [export.security_hub]\nenabled = true\n"
        ),
    );
    let d = DaemonProcess::spawn(
        keywarden(&["run", "--config", config.to_str().unwrap()]),
        port,
        dir.0.join("daemon.log"),
    );
    let hub = [("destination", "security_hub")];
    let page = d
        .wait_metrics(30, "an export attempt", |m| {
            metric(m, "keywarden_export_success", &hub).is_some()
        })
        .await;
    assert_eq!(
        metric(&page, "keywarden_export_success", &hub),
        Some(0.0),
        "{}",
        d.logs()
    );
    assert!(metric(&page, "keywarden_export_errors_total", &hub).unwrap_or(0.0) >= 1.0);
    assert_eq!(
        metric(&page, "keywarden_audit_success", &[]),
        Some(1.0),
        "the audit is complete"
    );
    assert!(
        d.logs().contains("AccessDenied"),
        "the service's code is logged: {}",
        d.logs()
    );

    // The hub comes back: the next export succeeds.
    moto.set_faults("{}");
    let page = d
        .wait_metrics(30, "a successful export", |m| {
            metric(m, "keywarden_export_success", &hub) == Some(1.0)
        })
        .await;
    let active = [("destination", "security_hub"), ("record_state", "ACTIVE")];
    assert_eq!(
        metric(&page, "keywarden_export_findings_total", &active),
        Some((USERS * 5) as f64)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_hub_is_tried_once_per_run_not_once_per_account() {
    let moto = Moto::start();
    let dir = TempDir::new("securityhub-unreachable");
    let role = |id: &str| format!("arn:aws:iam::{id}:role/keywarden-audit");
    let closed = free_port();
    let config = moto_config(
        &dir,
        &moto,
        &format!(
            "[[aws.accounts]]\nid = \"111111111111\"\nrole_arn = \"{}\"\n\n\
             [[aws.accounts]]\nid = \"222222222222\"\nrole_arn = \"{}\"\n\n\
             [export.security_hub]\nenabled = true\nendpoint_url = \"http://127.0.0.1:{closed}\"\n",
            role("111111111111"),
            role("222222222222")
        ),
    );
    let (code, out, err) = outputs(&mut keywarden(&["run", "--once", "--config", config.to_str().unwrap()]));
    assert_eq!(code, 0, "the run itself is good: {out}{err}");
    let failures: Vec<&str> = err.lines().filter(|l| l.contains("export failed")).collect();
    assert_eq!(failures.len(), 1, "one failure for both accounts: {err}");
    assert!(failures[0].contains("2 account(s) not exported this run"), "{err}");
}

//! `exposed_key` through the real binary against moto: a user carrying AWS's quarantine policy
//! loses its active keys in the first enforcing run whatever the grace period and the rotation
//! hold, its older sessions are denied (`keywarden-revoke-sessions`) and `reactivate` undoes
//! that; a config exemption keeps the key only when it names the rule; dry-run only journals;
//! and the edge cases (no keys, a policy the partition lacks, a denied read, a user deleted
//! before the action) have defined outcomes. The launcher serves the quarantine policies and
//! ListEntitiesForPolicy (moto has neither by default).

use std::collections::BTreeMap;

use crate::common::*;
use serde_json::Value;

const V3: &str = "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3";
const V1: &str = "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantine";

async fn quarantine(moto: &Moto, user: &str, policy: &str) {
    moto.iam()
        .attach_user_policy()
        .user_name(user)
        .policy_arn(policy)
        .send()
        .await
        .expect("AttachUserPolicy");
}

/// One enforcing (or dry) run that changes nothing in IAM.
fn runs_without_changes(moto: &Moto, config: &std::path::Path) {
    moto.take_stats();
    let (code, err) = run_once(config);
    assert_eq!(code, 0, "{err}");
    let stats = moto.take_stats();
    assert_eq!(
        (counted(&stats, "UpdateAccessKey"), counted(&stats, "PutUserPolicy")),
        (0, 0),
        "{stats}"
    );
}

fn of_key<'a>(entries: &'a [Value], key: &str) -> Vec<&'a Value> {
    entries.iter().filter(|e| e["access_key_id"] == key).collect()
}

async fn inline_policy(moto: &Moto, user: &str) -> Option<String> {
    match moto
        .iam()
        .get_user_policy()
        .user_name(user)
        .policy_name("keywarden-revoke-sessions")
        .send()
        .await
    {
        Ok(p) => Some(urlencoding_decode(&p.policy_document)),
        Err(_) => None,
    }
}

/// IAM returns policy documents URL-encoded (%XX; the JSON has no `+`).
fn urlencoding_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        let hex = tail.get(..2).and_then(|h| std::str::from_utf8(h).ok());
        match (b, hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                rest = &tail[2..];
            }
            _ => {
                out.push(b);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quarantined_users_keys_go_in_the_first_enforcing_run_and_reactivate_undoes_the_session_denial() {
    let moto = Moto::start();
    let iam = moto.iam();
    for u in ["leaky", "calm"] {
        create_user(&iam, u, None).await;
    }
    moto.set_clock_days(-20.0);
    let old = create_key(&iam, "leaky").await;
    use_key(&moto, &old).await;
    let calm = create_key(&iam, "calm").await;
    moto.set_clock_days(0.0);
    // A fresh key nobody used yet: multiple_active_keys alone would hold the used old key.
    let new = create_key(&iam, "leaky").await;
    quarantine(&moto, "leaky", V3).await;

    let dir = TempDir::new("exposed");
    let config = moto_config(
        &dir,
        &moto,
        "[enforcement]\nmode = \"enforce\"\ngrace_period = \"30d\"\n[rules.unused_key]\nmax_unused = \"10d\"\n",
    );
    // What the audit says first: both of leaky's keys are exposed and due now.
    let (code, report, err) = audit_json(&config, &[]);
    assert_eq!(code, 3, "{err}");
    let exposed: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "exposed_key")
        .collect();
    let mut ids: Vec<&str> = exposed.iter().filter_map(|f| f["access_key_id"].as_str()).collect();
    ids.sort();
    let mut want = vec![old.id.as_str(), new.id.as_str()];
    want.sort();
    assert_eq!(ids, want, "{report}");
    for f in &exposed {
        assert_eq!(f["action"], "deactivate");
        assert_eq!(f["deactivate_after"], report["evaluated_at"], "no grace period: {f}");
        assert_eq!(f["controls"], serde_json::json!([]), "no benchmark names it");
    }
    // calm's unused key has its 30 days of grace.
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["access_key_id"] == calm.id.as_str()
            && f["rule"] == "unused_key"
            && f["deactivate_after"] != report["evaluated_at"]));

    moto.take_stats();
    let (code, err) = run_once(&config);
    assert_eq!(code, 0, "{err}");
    let stats = moto.take_stats();
    let statuses = key_statuses(&iam, &["leaky", "calm"]).await;
    assert_eq!(statuses[&old.id], "Inactive", "{err}");
    assert_eq!(
        statuses[&new.id], "Inactive",
        "the quarantine is on the user: every key is exposed"
    );
    assert_eq!(statuses[&calm.id], "Active", "its grace period runs");
    assert_eq!(counted(&stats, "ListEntitiesForPolicy"), 3, "{stats}");
    assert_eq!(counted(&stats, "PutUserPolicy"), 2, "one per deactivation: {stats}");
    assert_eq!(counted(&stats, "DeleteAccessKey"), 0, "never a delete");

    let document = inline_policy(&moto, "leaky")
        .await
        .expect("keywarden-revoke-sessions on leaky");
    let doc: Value = serde_json::from_str(&document).unwrap_or_else(|e| panic!("{e}: {document}"));
    assert_eq!(doc["Statement"][0]["Effect"], "Deny");
    assert!(
        doc["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"].is_string(),
        "{doc}"
    );
    assert_eq!(inline_policy(&moto, "calm").await, None);

    let journal = history_json(&config);
    let entries = of_key(&journal, &old.id);
    let deactivation = entries.iter().find(|e| e["action"] == "deactivate").expect("journaled");
    assert_eq!(deactivation["outcome"], "success");
    assert_eq!(deactivation["rules"][0], "exposed_key", "{deactivation}");
    let revoke = entries
        .iter()
        .find(|e| e["action"] == "revoke_sessions")
        .expect("revocation journaled");
    assert_eq!(revoke["outcome"], "success", "{revoke}");

    // Undo: the key is Active again and the user's sessions are no longer denied.
    let (code, out, err) = outputs(
        keywarden(&[
            "reactivate",
            &old.id,
            "--reason",
            "INC-9 false positive",
            "--config",
            config.to_str().unwrap(),
        ])
        .env("SUDO_USER", "oncall"),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(key_statuses(&iam, &["leaky"]).await[&old.id], "Active");
    assert_eq!(
        inline_policy(&moto, "leaky").await,
        None,
        "reactivate removes the denial"
    );
    let journal = history_json(&config);
    let restore = of_key(&journal, &old.id)
        .into_iter()
        .find(|e| e["action"] == "restore_sessions")
        .expect("restore journaled");
    assert_eq!(
        (restore["outcome"].as_str(), restore["operator"].as_str()),
        (Some("success"), Some("oncall"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_an_exemption_that_names_exposed_key_keeps_a_leaked_key_and_dry_run_only_journals() {
    let moto = Moto::start();
    let iam = moto.iam();
    let mut keys = BTreeMap::new();
    for u in ["scoped", "broad", "tagged", "empty"] {
        create_user(&iam, u, None).await;
        if u != "empty" {
            keys.insert(u, create_key(&iam, u).await.id);
        }
        quarantine(&moto, u, V1).await;
    }
    tag_user(&iam, "tagged", "keywarden:exempt-until", "2027-01-31").await;
    tag_user(&iam, "tagged", "keywarden:exempt-reason", "SEC-7").await;
    let dir = TempDir::new("exposed-exempt");
    let rules = "[[exemptions]]\nuser = \"scoped\"\nrules = [\"exposed_key\"]\nreason = \"SEC-9 honeypot key\"\n\
                 [[exemptions]]\nuser = \"broad\"\nreason = \"SEC-1 all rules\"\n\
                 [exemptions_from_tags]\nenabled = true\nmax_duration = \"3650d\"\n";

    // Dry-run: journaled, nothing touched, no session denial.
    let config = moto_config(&dir, &moto, &format!("[enforcement]\nmode = \"dry-run\"\n{rules}"));
    runs_without_changes(&moto, &config);
    let journal = history_json(&config);
    let dry = of_key(&journal, &keys["broad"]);
    assert_eq!(dry.len(), 1, "{journal:?}");
    assert_eq!(
        (dry[0]["outcome"].as_str(), dry[0]["rules"][0].as_str()),
        (Some("dry_run"), Some("exposed_key"))
    );
    assert!(of_key(&journal, &keys["scoped"]).is_empty(), "exempt: {journal:?}");

    let config = moto_config(&dir, &moto, &format!("[enforcement]\nmode = \"enforce\"\n{rules}"));
    let (code, err) = run_once(&config);
    assert_eq!(code, 0, "{err}");
    let statuses = key_statuses(&iam, &["scoped", "broad", "tagged"]).await;
    assert_eq!(
        statuses[&keys["scoped"]], "Active",
        "exempt by an entry naming exposed_key"
    );
    assert_eq!(
        statuses[&keys["broad"]], "Inactive",
        "an all-rules exemption does not cover a leak"
    );
    assert_eq!(statuses[&keys["tagged"]], "Inactive", "tag exemptions never apply");
    let (_, report, _) = audit_json(&config, &[]);
    let scoped = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["access_key_id"] == keys["scoped"].as_str())
        .expect("still a finding");
    assert_eq!(
        (scoped["exempt"].as_bool(), scoped["exemption_reason"].as_str()),
        (Some(true), Some("SEC-9 honeypot key"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_policies_denied_reads_and_vanished_users_have_defined_outcomes() {
    let moto = Moto::start();
    let iam = moto.iam();
    create_user(&iam, "gone", None).await;
    let gone = create_key(&iam, "gone").await;
    quarantine(&moto, "gone", V3).await;
    let dir = TempDir::new("exposed-edges");
    let config = moto_config(&dir, &moto, "[enforcement]\nmode = \"enforce\"\n");

    // Credential-report mode finds it too, at the same 3 requests per account.
    let report_dir = TempDir::new("exposed-report");
    let report_config = moto_config_aws(&report_dir, &moto, "inventory = \"credential-report\"\n", "");
    moto.take_stats();
    let (code, report, err) = audit_json(&report_config, &[]);
    assert_eq!(code, 3, "{err}");
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "exposed_key" && f["access_key_id"] == gone.id.as_str()),
        "{report}"
    );
    let stats = moto.take_stats();
    assert_eq!(counted(&stats, "ListEntitiesForPolicy"), 3, "{stats}");
    eprintln!("credential-report audit, one account: {stats}");
    let (_, _, _) = audit_json(&config, &[]);
    eprintln!("api audit, one account: {}", moto.take_stats());

    // A partition without the policies (NoSuchEntity): nobody is quarantined, the audit is complete.
    moto.set_faults(r#"{"_missing": {"ListEntitiesForPolicy": ["*"]}}"#);
    let (code, report, err) = audit_json(&config, &[]);
    assert_eq!(code, 0, "{err}\n{report}");
    assert!(report["findings"].as_array().unwrap().is_empty(), "{report}");

    // Denied: the account's read is incomplete (exit 1) and names the missing permission.
    moto.set_faults(r#"{"ListEntitiesForPolicy": ["*"]}"#);
    let (code, report, err) = audit_json(&config, &[]);
    assert_eq!(code, 1, "{report}");
    assert!(
        err.contains("iam:ListEntitiesForPolicy") || report.to_string().contains("iam:ListEntitiesForPolicy"),
        "{err}\n{report}"
    );

    // Deleted between detection and action: the fresh re-read finds no user; nothing is sent.
    moto.set_faults(r#"{"_missing": {"GetUser": ["gone"]}}"#);
    runs_without_changes(&moto, &config);
    let journal = history_json(&config);
    let entry = of_key(&journal, &gone.id);
    assert_eq!(entry.len(), 1, "{journal:?}");
    assert_eq!(entry[0]["outcome"], "no_longer_due");
    assert!(
        entry[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no longer exists")),
        "{}",
        entry[0]
    );

    // A quarantined user without keys is no finding and no error.
    moto.set_faults("{}");
    create_user(&iam, "keyless", None).await;
    quarantine(&moto, "keyless", V3).await;
    let (_, report, err) = audit_json(&config, &[]);
    assert!(!report.to_string().contains("keyless"), "{report}\n{err}");
}

//! Guided rotation through the real binary against moto (IAM and Secrets Manager): `rotate`
//! makes the new key and stores it in Secrets Manager, the old key stays active while the new
//! one is unused and is deactivated by an enforcing run once it is used; each refusal changes
//! nothing; a Secrets Manager failure leaves the user with exactly the keys it had; the daemon
//! rotates a tagged user only, once per key, and dry-run only journals.

use std::collections::BTreeSet;

use crate::common::*;
use serde_json::{json, Value};

fn rotate(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["rotate"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", config.to_str().unwrap()]);
    outputs(
        keywarden(&all)
            .env("SUDO_USER", "alice-oncall")
            .env("RUST_LOG", "debug"),
    )
}

/// The secret's current value, straight from moto's Secrets Manager.
fn secret(moto: &Moto, name: &str) -> Option<Value> {
    let (status, answer) = moto.json_call(
        "secretsmanager",
        "secretsmanager.GetSecretValue",
        "application/x-amz-json-1.1",
        &json!({"SecretId": name, "VersionStage": "AWSCURRENT"}),
    );
    if !status.contains(" 200") {
        return None;
    }
    serde_json::from_str(answer["SecretString"].as_str()?).ok()
}

async fn key_ids(moto: &Moto, user: &str) -> BTreeSet<String> {
    key_statuses(&moto.iam(), &[user]).await.into_keys().collect()
}

/// Everything keywarden wrote to disk under `dir`, as text.
fn files_under(dir: &std::path::Path) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_file() {
            all.push_str(&String::from_utf8_lossy(&std::fs::read(e.path()).unwrap_or_default()));
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_hands_the_new_key_over_and_the_old_one_goes_once_the_new_one_is_used() {
    let moto = Moto::start();
    let iam = moto.iam();
    create_user(&iam, "app", None).await;
    moto.set_clock_days(-100.0);
    let old = create_key(&iam, "app").await;
    moto.set_clock_days(-1.0);
    use_key(&moto, &old).await;
    moto.set_clock_days(0.0);
    let dir = TempDir::new("rotate");
    let config = moto_config(
        &dir,
        &moto,
        "[enforcement]\nmode = \"enforce\"\ngrace_period = \"0s\"\n[rotation]\nsecret_prefix = \"apps/\"\n",
    );

    let (code, out, err) = rotate(&config, &["app", "--reason", "SEC-12 the key is 100 days old"]);
    assert_eq!(code, 0, "{out}{err}");
    let stored = secret(&moto, &format!("apps/{ACCOUNT}/app")).expect("the secret exists");
    let new_id = stored["AccessKeyId"].as_str().expect("AccessKeyId").to_string();
    let new_secret = stored["SecretAccessKey"].as_str().expect("SecretAccessKey").to_string();
    assert!(new_secret.len() >= 20, "{stored}");
    assert_eq!(
        key_ids(&moto, "app").await,
        BTreeSet::from([old.id.clone(), new_id.clone()])
    );
    assert!(out.contains(&new_id) && out.contains(&old.id), "{out}");
    // The secret is in Secrets Manager and nowhere else keywarden writes.
    for (what, text) in [
        ("stdout", &out),
        ("stderr", &err),
        ("state and journal", &files_under(&dir.0)),
    ] {
        assert!(!text.contains(&new_secret), "the secret leaked into {what}");
    }
    let journal = history_json(&config);
    let entry = journal.iter().find(|e| e["action"] == "rotate").expect("journaled");
    assert_eq!(
        (
            entry["outcome"].as_str(),
            entry["access_key_id"].as_str(),
            entry["new_access_key_id"].as_str()
        ),
        (Some("success"), Some(old.id.as_str()), Some(new_id.as_str()))
    );
    assert!(
        entry["secret_arn"]
            .as_str()
            .is_some_and(|a| a.contains(":secret:apps/")),
        "{entry}"
    );
    assert_eq!(entry["operator"], "alice-oncall");
    assert!(
        entry["reason"].as_str().is_some_and(|r| r.contains("SEC-12")),
        "{entry}"
    );

    // The new key is unused: the old one stays, held by the rotation-aware rule.
    let (code, err) = run_once(&config);
    assert_eq!(code, 0, "{err}");
    let statuses = key_statuses(&iam, &["app"]).await;
    assert_eq!(
        (statuses[&old.id].as_str(), statuses[&new_id].as_str()),
        ("Active", "Active")
    );
    let (_, report, _) = audit_json(&config, &[]);
    let held = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["access_key_id"] == old.id.as_str() && f["rule"] == "multiple_active_keys")
        .expect("the old key is a multiple_active_keys finding");
    assert_eq!(held["deactivate_after"], Value::Null, "held: {held}");

    // The application switched: the new key is used, and the next enforcing run retires the old.
    let new = SeededKey {
        id: new_id.clone(),
        secret: new_secret,
        created: 0,
    };
    use_key(&moto, &new).await;
    let (code, err) = run_once(&config);
    assert_eq!(code, 0, "{err}");
    let statuses = key_statuses(&iam, &["app"]).await;
    assert_eq!(
        (statuses[&old.id].as_str(), statuses[&new_id].as_str()),
        ("Inactive", "Active"),
        "{err}"
    );
    let journal = history_json(&config);
    let deactivation = journal
        .iter()
        .find(|e| e["action"] == "deactivate" && e["access_key_id"] == old.id.as_str())
        .expect("deactivation journaled");
    assert_eq!(deactivation["rules"][0], "multiple_active_keys", "{deactivation}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_change_nothing_and_a_failed_hand_over_leaves_the_keys_as_they_were() {
    let moto = Moto::start();
    let iam = moto.iam();
    for u in ["pair", "idle", "keywarden", "solo"] {
        create_user(&iam, u, None).await;
    }
    create_key(&iam, "pair").await;
    create_key(&iam, "pair").await;
    let idle = create_key(&iam, "idle").await;
    deactivate(&iam, "idle", &idle).await;
    let own = create_key(&iam, "keywarden").await;
    let solo = create_key(&iam, "solo").await;
    let dir = TempDir::new("rotate-refusals");
    let config = moto_config(&dir, &moto, "");

    moto.take_stats();
    for (user, why) in [
        ("pair", "two access keys"),
        ("idle", "no active access key"),
        ("nobody", "does not exist"),
    ] {
        let (code, out, err) = rotate(&config, &[user, "--reason", "x"]);
        assert_eq!(code, 4, "{user}: {out}{err}");
        assert!(err.contains(why), "{user}: {err}");
    }
    // keywarden's own user, with keywarden signing as that user.
    let mut cmd = keywarden(&[
        "rotate",
        "keywarden",
        "--reason",
        "x",
        "--config",
        config.to_str().unwrap(),
    ]);
    cmd.env("AWS_ACCESS_KEY_ID", &own.id)
        .env("AWS_SECRET_ACCESS_KEY", &own.secret);
    let (code, out, err) = outputs(&mut cmd);
    assert_eq!(code, 4, "{out}{err}");
    assert!(err.contains("runs as"), "{err}");
    let stats = moto.take_stats();
    assert_eq!(counted(&stats, "CreateAccessKey"), 0, "{stats}");
    let (code, _, err) = rotate(&config, &["solo", "--reason", " "]);
    assert_eq!(code, 2, "an empty reason is a usage error: {err}");

    // Secrets Manager refuses: the new key is deleted again, the user keeps exactly its key.
    moto.set_faults(r#"{"CreateSecret": ["*"]}"#);
    moto.take_stats();
    let (code, out, err) = rotate(&config, &["solo", "--reason", "SEC-13"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("deleted again"), "{err}");
    assert_eq!(key_ids(&moto, "solo").await, BTreeSet::from([solo.id.clone()]));
    let stats = moto.take_stats();
    assert_eq!(
        (counted(&stats, "CreateAccessKey"), counted(&stats, "DeleteAccessKey")),
        (1, 1),
        "{stats}"
    );
    let journal = history_json(&config);
    let failed = journal
        .iter()
        .find(|e| e["action"] == "rotate")
        .expect("the failure is journaled");
    assert_eq!(failed["outcome"], "error");
    assert_eq!(failed["secret_arn"], Value::Null);

    // An account that cannot be reached is a runtime error naming why, not a usage error.
    moto.set_faults(r#"{"AssumeRole": ["*"]}"#);
    let roles = moto_config(
        &dir,
        &moto,
        "[[aws.accounts]]\nid = \"111111111111\"\nrole_arn = \"arn:aws:iam::111111111111:role/keywarden-audit\"\n",
    );
    let (code, out, err) = rotate(&roles, &["solo", "--reason", "x", "--account", "111111111111"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("cannot reach the account") && err.contains("AssumeRole"),
        "{err}"
    );
    moto.set_faults("{}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_rotates_a_tagged_user_once_and_dry_run_only_journals() {
    let moto = Moto::start();
    let iam = moto.iam();
    for u in ["tagged", "plain", "young"] {
        create_user(&iam, u, None).await;
    }
    tag_user(&iam, "tagged", "keywarden:rotate", "secretsmanager").await;
    tag_user(&iam, "young", "keywarden:rotate", "secretsmanager").await;
    moto.set_clock_days(-80.0);
    let old = create_key(&iam, "tagged").await;
    create_key(&iam, "plain").await;
    moto.set_clock_days(-30.0);
    create_key(&iam, "young").await;
    moto.set_clock_days(0.0);
    let dir = TempDir::new("rotate-auto");
    let rotation = "[rotation]\nauto_before = \"14d\"\n";

    let dry = moto_config(&dir, &moto, rotation);
    moto.take_stats();
    for _ in 0..2 {
        let (code, err) = run_once(&dry);
        assert_eq!(code, 0, "{err}");
    }
    assert_eq!(counted(&moto.take_stats(), "CreateAccessKey"), 0);
    let journal = history_json(&dry);
    let would: Vec<&Value> = journal.iter().filter(|e| e["action"] == "rotate").collect();
    assert_eq!(would.len(), 1, "once per key, not once per run: {journal:?}");
    assert_eq!(
        (would[0]["outcome"].as_str(), would[0]["user"].as_str()),
        (Some("dry_run"), Some("tagged"))
    );

    let enforce = moto_config(&dir, &moto, &format!("[enforcement]\nmode = \"enforce\"\n{rotation}"));
    for _ in 0..2 {
        let (code, err) = run_once(&enforce);
        assert_eq!(code, 0, "{err}");
    }
    let stats = moto.take_stats();
    assert_eq!(
        counted(&stats, "CreateAccessKey"),
        1,
        "one rotation over two runs: {stats}"
    );
    let tagged = key_ids(&moto, "tagged").await;
    assert_eq!(tagged.len(), 2);
    let stored = secret(&moto, &format!("keywarden/{ACCOUNT}/tagged")).expect("secret");
    let new_id = stored["AccessKeyId"].as_str().unwrap().to_string();
    assert!(tagged.contains(&new_id) && tagged.contains(&old.id));
    assert_eq!(key_ids(&moto, "plain").await.len(), 1, "untagged users are not rotated");
    assert_eq!(key_ids(&moto, "young").await.len(), 1, "not yet 76 days old");
    let journal = history_json(&enforce);
    let done: Vec<&Value> = journal
        .iter()
        .filter(|e| e["action"] == "rotate" && e["mode"] == "enforce")
        .collect();
    assert_eq!(done.len(), 1, "{journal:?}");
    assert_eq!(done[0]["operator"], "keywarden");
    assert_eq!(done[0]["new_access_key_id"].as_str(), Some(new_id.as_str()));
}

//! Incremental inventory against moto: a credential-report run lists (ListAccessKeys) only the
//! users whose report slots changed since the key ids the state remembers, and its findings
//! stay api mode's.

use std::path::Path;

use crate::common::*;
use serde_json::Value;

fn run_once(config: &Path) {
    let (code, out, err) = outputs(&mut keywarden(&["run", "--once", "--config", config.to_str().unwrap()]));
    assert_eq!(code, 0, "run --once: {out}{err}");
}

fn listings(moto: &Moto) -> u64 {
    moto.take_stats()["ListAccessKeys"].as_u64().unwrap_or(0)
}

/// The findings, as (key, rule, deadline) sorted, of an audit at `at` in `mode`.
fn findings(config: &Path, at: &str) -> Vec<(String, String, String)> {
    let (_, json, err) = audit_json(config, &["--at", at]);
    let mut out: Vec<_> = json["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings: {err}"))
        .iter()
        .map(|f: &Value| {
            (
                f["access_key_id"].as_str().unwrap_or_default().to_string(),
                f["rule"].as_str().unwrap_or_default().to_string(),
                f["deactivate_after"].to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unchanged_user_is_not_listed_again_and_a_rotated_one_is() {
    let moto = Moto::start();
    let names: Vec<String> = (0..20).map(|i| format!("svc-{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let keys = idle_users(&moto, &refs).await;
    let dir = TempDir::new("incremental");
    let report_mode = moto_config_aws(&dir, &moto, "inventory = \"credential-report\"\n", "");
    let api_dir = TempDir::new("incremental-api");
    // The api-mode twin reads the same state (first-seen times) through its own config.
    let api_mode = api_dir.write(
        "keywarden.toml",
        &std::fs::read_to_string(&report_mode)
            .unwrap()
            .replace("inventory = \"credential-report\"", "inventory = \"api\""),
    );

    moto.take_stats();
    run_once(&report_mode);
    // per_key = true (the default) wants every key id: every user is listed once.
    assert_eq!(listings(&moto), 20, "the first run lists every user");
    run_once(&report_mode);
    assert_eq!(listings(&moto), 0, "an unchanged run lists nobody");

    // svc-03 rotates: a new key, the old one deleted.
    let iam = moto.iam();
    create_key(&iam, "svc-03").await;
    delete_key(&iam, "svc-03", &keys[3].id).await;
    // svc-05 makes a second key: a new slot.
    create_key(&iam, "svc-05").await;
    moto.take_stats();
    run_once(&report_mode);
    assert_eq!(listings(&moto), 2, "only the two users whose keys changed are listed");

    let at = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let incremental = findings(&report_mode, &at);
    assert!(!incremental.is_empty());
    assert_eq!(incremental, findings(&api_mode, &at), "the same findings as api mode");

    // aws.full_refresh_every = 1: every run lists every wanted user, as before.
    let text = std::fs::read_to_string(&report_mode).unwrap();
    std::fs::write(&report_mode, text.replace("[aws]\n", "[aws]\nfull_refresh_every = 1\n")).unwrap();
    moto.take_stats();
    run_once(&report_mode);
    assert_eq!(listings(&moto), 20, "a full refresh lists everyone");
}

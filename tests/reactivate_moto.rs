//! Undo through the real binary against moto: the daemon deactivates a key, `reactivate` makes
//! it Active and snoozes it, the next runs leave it alone until the snooze ends and then
//! deactivate it again; keys keywarden never touched, or that are Active, are refused (exit 4).

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

fn reactivate(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["reactivate"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", config.to_str().unwrap()]);
    outputs(keywarden(&all).env("SUDO_USER", "alice-oncall"))
}

/// The key's journal entries, newest first.
fn out_of<'a>(entries: &'a Value, key: &str) -> Vec<&'a Value> {
    entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["access_key_id"] == key)
        .collect()
}

async fn status(moto: &Moto, user: &str, key: &str) -> String {
    key_statuses(&moto.iam(), &[user]).await.remove(key).unwrap_or_default()
}

async fn wait_status(moto: &Moto, user: &str, key: &str, want: &str, secs: u64, logs: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while status(moto, user, key).await != want {
        assert!(
            Instant::now() < deadline,
            "{key} never became {want}; logs:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reactivated_key_is_left_alone_until_its_snooze_ends() {
    let moto = Moto::start();
    let keys = idle_users(&moto, &["app", "other"]).await;
    let (app, other) = (&keys[0], &keys[1]);
    let dir = TempDir::new("reactivate");
    let port = free_port();
    // Only `app` is ever due: `other` is exempt, so keywarden never touches it.
    let config = moto_config(
        &dir,
        &moto,
        &format!(
            "[enforcement]\nmode = \"enforce\"\ngrace_period = \"1s\"\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\n[schedule]\ncron = \"* * * * * *\"\n\
             [[exemptions]]\nuser = \"other\"\nreason = \"test\"\n"
        ),
    );
    let mut cmd = keywarden(&["run", "--config", config.to_str().unwrap()]);
    cmd.env("RUST_LOG", "info");
    let d = DaemonProcess::spawn(cmd, port, dir.0.join("log"));
    wait_status(&moto, "app", &app.id, "Inactive", 30, || d.logs()).await;

    // Refusals change nothing.
    let (code, _, err) = reactivate(&config, &[&other.id, "--reason", "x"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("not in the action journal"), "{err}");
    assert_eq!(status(&moto, "other", &other.id).await, "Active");
    let (code, _, err) = reactivate(&config, &[&app.id, "--reason", " "]);
    assert_eq!(code, 2, "an empty reason is a usage error: {err}");
    // A snooze ending after 9999-12-31 could not be written to the state and read back.
    // (It did: the state then said "snoozed until +11027-..." and no command could read it.)
    let (code, _, err) = reactivate(&config, &[&app.id, "--reason", "x", "--snooze", "9000y"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("9999-12-31") && err.contains("--snooze"), "{err}");
    assert_eq!(status(&moto, "app", &app.id).await, "Inactive");

    let (code, out, err) = reactivate(&config, &[&app.id, "--reason", "INC-7 payments down", "--snooze", "6s"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("reactivated") && out.contains("snoozed until"), "{out}");
    let reactivated_at = Instant::now();
    assert_eq!(status(&moto, "app", &app.id).await, "Active");
    let (code, _, err) = reactivate(&config, &[&app.id, "--reason", "again"]);
    assert_eq!(code, 4, "already Active: {err}");

    // The runs every second leave it alone while the snooze lasts, and say why.
    let (_, report, _) = audit_json(&config, &[]);
    let finding = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["access_key_id"] == app.id.as_str())
        .cloned()
        .expect("a finding for the reactivated key");
    assert_eq!(finding["exemption_source"], "snooze", "{finding}");
    assert_eq!(finding["exemption_reason"], "INC-7 payments down");
    while reactivated_at.elapsed() < Duration::from_secs(4) {
        assert_eq!(
            status(&moto, "app", &app.id).await,
            "Active",
            "deactivated during its snooze"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Then it is deactivated again (and journaled right after the read-back confirms it).
    wait_status(&moto, "app", &app.id, "Inactive", 20, || d.logs()).await;
    let journal = dir.0.join("actions.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&journal).map_or(0, |j| j.matches("\"outcome\":\"success\"").count()) < 3 {
        assert!(
            Instant::now() < deadline,
            "the second deactivation is not journaled:\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let out = run(&mut keywarden(&[
        "history",
        "--config",
        config.to_str().unwrap(),
        "--format",
        "json",
    ]));
    let entries: Value = serde_json::from_slice(&out.stdout).unwrap();
    let trail: Vec<(String, String)> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["access_key_id"] == app.id.as_str() && e["outcome"] == "success")
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["operator"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        trail,
        [
            ("deactivate".to_string(), String::new()),
            ("reactivate".to_string(), "alice-oncall".to_string()),
            ("deactivate".to_string(), String::new()),
        ],
        "newest first: {entries}"
    );
    let reactivation = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "reactivate")
        .unwrap();
    assert_eq!(reactivation["reason"], "INC-7 payments down");
    // The journal's deadline of the reactivation is the snooze's end; the next deactivation
    // came after it.
    let until = reactivation["deadline"].as_str().unwrap();
    assert!(
        out_of(&entries, &app.id)[0]["time"].as_str().unwrap() >= until,
        "{entries}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).is_empty());
}

//! The action journal through the real binary against moto: what the daemon did is in
//! `keywarden history` and `GET /api/v1/actions`, and a torn last line does not stop either.

use crate::common::*;
use serde_json::Value;

fn history(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["history", "--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    outputs(&mut keywarden(&all))
}

#[tokio::test(flavor = "multi_thread")]
async fn deactivations_are_journaled_and_listed_newest_first() {
    let moto = Moto::start();
    let keys = idle_users(&moto, &["idle-a", "ci-b"]).await;
    let dir = TempDir::new("journal");
    let port = free_port();
    let config = moto_config(
        &dir,
        &moto,
        &format!(
            "[enforcement]\nmode = \"enforce\"\ngrace_period = \"0s\"\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\n[schedule]\ncron = \"0 0 0 1 1 *\"\n"
        ),
    );
    let mut cmd = keywarden(&["run", "--config", config.to_str().unwrap()]);
    cmd.env("RUST_LOG", "info");
    let d = DaemonProcess::spawn(cmd, port, dir.0.join("log"));
    d.wait_metrics(30, "two deactivations", |m| {
        m.lines()
            .filter(|l| l.starts_with("keywarden_deactivations_total{") && l.contains("outcome=\"success\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
            >= 2.0
    })
    .await;
    let journal = dir.0.join("actions.jsonl");
    let lines = std::fs::read_to_string(&journal).expect("the journal next to the state");
    assert_eq!(lines.lines().count(), 2, "{lines}");

    let (code, out, err) = history(&config, &["--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let entries: Value = serde_json::from_str(&out).expect("JSON array");
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for e in entries {
        assert_eq!(e["action"], "deactivate");
        assert_eq!(e["mode"], "enforce");
        assert_eq!(e["outcome"], "success");
        assert_eq!(e["account_id"], "123456789012");
        assert_eq!(e["rules"], serde_json::json!(["unused_key"]));
        for field in ["time", "run_id", "host", "first_seen", "deadline", "version"] {
            assert!(e[field].is_string(), "{field} in {e}");
        }
        assert!(e.get("error").is_some() && e.get("reason").is_some() && e.get("operator").is_some());
    }
    let ids: Vec<&str> = entries.iter().map(|e| e["access_key_id"].as_str().unwrap()).collect();
    assert!(ids.contains(&keys[0].id.as_str()) && ids.contains(&keys[1].id.as_str()));
    assert!(
        entries[0]["time"].as_str() >= entries[1]["time"].as_str(),
        "newest first"
    );

    let (_, out, _) = history(&config, &["--user", "ci-*", "--format", "json"]);
    let only: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(only.as_array().unwrap().len(), 1);
    assert_eq!(only[0]["user"], "ci-b");
    let (_, table, _) = history(&config, &[]);
    assert!(
        table.contains(&keys[0].id) && table.contains("deactivate") && table.contains("success"),
        "{table}"
    );

    let (status, body) = d.get("/api/v1/actions?since=1h").await.expect("answer");
    assert_eq!(status, 200, "{body}");
    let api: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(api.as_array().unwrap().len(), 2, "{body}");
    let (status, _) = d.get("/api/v1/actions?since=soon").await.expect("answer");
    assert_eq!(status, 400);

    // kill -9 in the middle of an append leaves a torn line: reported, never fatal.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(&journal).unwrap();
    f.write_all(b"{\"time\":\"2026-12-01T00:00:00Z\",\"action\":\"deac")
        .unwrap();
    drop(f);
    let (code, out, err) = history(&config, &["--format", "json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().len(),
        2
    );
    assert!(err.contains("line 3") && err.contains("skipped"), "{err}");
    let (status, _) = d.get("/api/v1/actions").await.expect("answer");
    assert_eq!(status, 200);
}

//! Enforcement windows through the real binary against moto: outside every window a due key
//! stays Active (and says until when); at the first run inside one it is deactivated.

use std::time::{Duration, Instant};

use crate::common::*;
use chrono::Datelike;

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn config_with(dir: &TempDir, moto: &Moto, port: u16, windows: &str) -> std::path::PathBuf {
    moto_config(
        dir,
        moto,
        &format!(
            "[enforcement]\nmode = \"enforce\"\ngrace_period = \"0s\"\nwindows = [{windows}]\ntimezone = \"Europe/Berlin\"\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\n[schedule]\ncron = \"* * * * * *\"\ntimezone = \"Europe/Berlin\"\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_due_key_waits_for_the_window_and_goes_at_its_first_run() {
    let moto = Moto::start();
    let key = idle_users(&moto, &["idle"]).await.remove(0);
    let dir = TempDir::new("windows");
    let port = free_port();
    // A window on the weekday three days from now (Berlin's weekday is UTC's or the next one,
    // so it is never open now).
    let closed_day = DAYS[(chrono::Utc::now().weekday().num_days_from_monday() as usize + 3) % 7];
    let config = config_with(&dir, &moto, port, &format!("\"{closed_day} 09:00-16:00\""));
    let mut cmd = keywarden(&["run", "--config", config.to_str().unwrap()]);
    cmd.env("RUST_LOG", "info");
    let d = DaemonProcess::spawn(cmd, port, dir.0.join("log"));
    d.wait_metrics(30, "the window hold", |m| {
        metric(m, "keywarden_deactivations_held_back", &[("reason", "window")]) == Some(1.0)
    })
    .await;
    let (_, body) = d.get("/api/v1/report").await.expect("report");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    let f = &report["findings"][0];
    assert_eq!(f["waiting_for_window"], true, "{f}");
    let after = f["deactivate_after"].as_str().unwrap();
    assert!(
        after > chrono::Utc::now().to_rfc3339().as_str(),
        "the deadline is the next opening: {after}"
    );
    // Three more runs (counted, not slept for): still Active, nothing journaled.
    let runs = |m: &str| metric(m, "keywarden_audit_runs_total", &[("outcome", "success")]).unwrap_or(0.0);
    let before = runs(&d.get("/metrics").await.expect("metrics").1);
    d.wait_metrics(20, "three more runs", |m| runs(m) >= before + 3.0).await;
    let statuses = key_statuses(&moto.iam(), &["idle"]).await;
    assert_eq!(statuses[&key.id], "Active", "deactivated outside every window");
    assert!(!dir.0.join("actions.jsonl").exists(), "journaled outside every window");

    // The window opens (a reload to one that spans the week): the next run deactivates it.
    config_with(&dir, &moto, port, "\"Mon-Sun 00:00-24:00\"");
    d.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let statuses = key_statuses(&moto.iam(), &["idle"]).await;
        if statuses[&key.id] == "Inactive" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not deactivated inside the window:\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The journal entry follows the read-back that confirmed the change: wait for it.
    let path = dir.0.join("actions.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&path).is_ok_and(|j| j.ends_with('\n')) {
        assert!(Instant::now() < deadline, "no journal entry:\n{}", d.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let journal = std::fs::read_to_string(&path).unwrap();
    assert_eq!(journal.lines().count(), 1, "{journal}");
}

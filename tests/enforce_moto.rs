//! Enforcement against moto with the real binary: grace periods, the cap, dry-run, fresh
//! decisions, a corrupt state file and a denied UpdateAccessKey.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;

async fn statuses(moto: &Moto, users: &[&str]) -> BTreeMap<String, String> {
    key_statuses(&moto.iam(), users).await
}

fn enforce_config(dir: &TempDir, moto: &Moto, mode: &str, grace: &str, cap: u32) -> std::path::PathBuf {
    moto_config(
        dir,
        moto,
        &format!(
            "[enforcement]\nmode = \"{mode}\"\ngrace_period = \"{grace}\"\nmax_deactivations_per_run = {cap}\n\n\
             [log]\nformat = \"json\"\n\n[[exemptions]]\nuser = \"exempt-*\"\nreason = \"SEC-1\"\n"
        ),
    )
}

/// `run --once`: exit code and the JSON log events.
fn once(config: &std::path::Path) -> (Option<i32>, Vec<serde_json::Value>, String) {
    let out = run(keywarden(&["run", "--once", "--config", config.to_str().unwrap()]).env("RUST_LOG", "info"));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let events = stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    (out.status.code(), events, stderr)
}

fn decisions<'a>(events: &'a [serde_json::Value], outcome: &str) -> Vec<&'a str> {
    let mut keys: Vec<&str> = events
        .iter()
        .filter(|e| e["outcome"] == outcome && e["access_key_id"].is_string())
        .filter_map(|e| e["access_key_id"].as_str())
        .collect();
    keys.sort();
    keys
}

struct Seeded {
    keep: SeededKey,
    second: SeededKey,
    idle: SeededKey,
    exempt: SeededKey,
    old_used: SeededKey,
}

const USERS: [&str; 4] = ["two", "idle", "exempt-idle", "old-used"];

async fn seed(moto: &Moto) -> Seeded {
    let iam = moto.iam();
    for u in USERS {
        create_user(&iam, u, None).await;
    }
    moto.set_clock_days(-100.0);
    let old_used = create_key(&iam, "old-used").await;
    moto.set_clock_days(-60.0);
    let second = create_key(&iam, "two").await;
    let idle = create_key(&iam, "idle").await;
    let exempt = create_key(&iam, "exempt-idle").await;
    moto.set_clock_days(0.0);
    let keep = create_key(&iam, "two").await;
    use_key(moto, &keep).await;
    use_key(moto, &old_used).await;
    Seeded {
        keep,
        second,
        idle,
        exempt,
        old_used,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grace_zero_enforce_deactivates_exactly_the_due_keys() {
    let moto = Moto::start();
    let s = seed(&moto).await;
    let dir = TempDir::new("enforce0");
    let config = enforce_config(&dir, &moto, "enforce", "0s", 25);
    let (code, events, stderr) = once(&config);
    assert_eq!(code, Some(0), "{stderr}");

    let st = statuses(&moto, &USERS).await;
    assert_eq!(st.len(), 5, "no key was deleted");
    assert_eq!(st[&s.second.id], "Inactive");
    assert_eq!(st[&s.idle.id], "Inactive");
    assert_eq!(st[&s.keep.id], "Active", "the kept key stays");
    assert_eq!(st[&s.exempt.id], "Active", "exemptions win");
    assert_eq!(st[&s.old_used.id], "Active", "max_key_age only reports");
    let mut expected = vec![s.second.id.as_str(), s.idle.id.as_str()];
    expected.sort();
    assert_eq!(decisions(&events, "success"), expected);
    let ev = events.iter().find(|e| e["outcome"] == "success").unwrap();
    for field in ["account_id", "user", "rule", "first_seen", "deadline", "mode"] {
        assert!(ev[field].is_string(), "every action is logged with {field}: {ev}");
    }

    // The next run finds nothing left to do and the state forgets what no longer holds.
    let (code, events, _) = once(&config);
    assert_eq!(code, Some(0));
    assert!(decisions(&events, "success").is_empty());
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.0.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["schema_version"], 1);
    assert_eq!(state["findings"].as_array().unwrap().len(), 0, "{state}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_changes_nothing_and_decides_the_same() {
    let moto = Moto::start();
    let s = seed(&moto).await;
    let dir = TempDir::new("dry");
    let before = statuses(&moto, &USERS).await;
    let (code, events, stderr) = once(&enforce_config(&dir, &moto, "dry-run", "0s", 25));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(statuses(&moto, &USERS).await, before, "dry-run changes nothing");
    let mut expected = vec![s.second.id.as_str(), s.idle.id.as_str()];
    expected.sort();
    assert_eq!(
        decisions(&events, "dry_run"),
        expected,
        "the same decisions enforce makes"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grace_period_survives_a_restart_then_deactivates() {
    let moto = Moto::start();
    let s = seed(&moto).await;
    let dir = TempDir::new("grace");
    let config = enforce_config(&dir, &moto, "enforce", "3s", 25);
    let (code, events, _) = once(&config);
    assert_eq!(code, Some(0));
    assert!(decisions(&events, "success").is_empty(), "nothing is due yet");
    assert_eq!(statuses(&moto, &USERS).await[&s.idle.id], "Active");

    // The deadlines are exposed (audit reads the same state file).
    let (_, report, _) = audit_json(&config, &[]);
    let idle = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["access_key_id"] == s.idle.id.as_str() && f["rule"] == "unused_key")
        .unwrap()
        .clone();
    let first_seen = chrono::DateTime::parse_from_rfc3339(idle["first_seen"].as_str().unwrap()).unwrap();
    let deadline = chrono::DateTime::parse_from_rfc3339(idle["deactivate_after"].as_str().unwrap()).unwrap();
    assert_eq!((deadline - first_seen).num_seconds(), 3);

    // A second process (a restart) keeps the first-seen time: still not due if under 3 s.
    let (code, events, _) = once(&config);
    assert_eq!(code, Some(0));
    if chrono::Utc::now() < deadline {
        assert!(decisions(&events, "success").is_empty());
    }
    let (_, report, _) = audit_json(&config, &[]);
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["first_seen"] == idle["first_seen"]));

    std::thread::sleep(Duration::from_millis(3200));
    let (code, events, stderr) = once(&config);
    assert_eq!(code, Some(0), "{stderr}");
    let mut expected = vec![s.second.id.as_str(), s.idle.id.as_str()];
    expected.sort();
    assert_eq!(decisions(&events, "success"), expected);
    assert_eq!(statuses(&moto, &USERS).await[&s.idle.id], "Inactive");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cap_holds() {
    let moto = Moto::start();
    let iam = moto.iam();
    let mut users = Vec::new();
    for i in 0..10 {
        let name = format!("idle-{i}");
        create_user(&iam, &name, None).await;
        users.push(name);
    }
    moto.set_clock_days(-60.0);
    for u in &users {
        create_key(&iam, u).await;
    }
    moto.set_clock_days(0.0);
    let dir = TempDir::new("cap");
    let config = enforce_config(&dir, &moto, "enforce", "0s", 4);
    let (code, events, _) = once(&config);
    assert_eq!(code, Some(0));
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let inactive = |st: &BTreeMap<String, String>| st.values().filter(|s| *s == "Inactive").count();
    assert_eq!(inactive(&statuses(&moto, &names).await), 4);
    assert_eq!(decisions(&events, "success").len(), 4);
    assert!(events.iter().any(|e| e["held_back"] == 6), "the rest are counted");
    once(&config);
    assert_eq!(inactive(&statuses(&moto, &names).await), 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_made_compliant_during_its_grace_is_never_touched() {
    let moto = Moto::start();
    let iam = moto.iam();
    create_user(&iam, "pair", None).await;
    moto.set_clock_days(-20.0);
    let older = create_key(&iam, "pair").await;
    moto.set_clock_days(-2.0);
    use_key(&moto, &older).await;
    moto.set_clock_days(-1.0);
    let newer = create_key(&iam, "pair").await;
    moto.set_clock_days(0.0);
    use_key(&moto, &newer).await;
    let dir = TempDir::new("compliant");
    let config = enforce_config(&dir, &moto, "enforce", "2s", 25);
    once(&config);
    let state = std::fs::read_to_string(dir.0.join("state.json")).unwrap();
    assert!(
        state.contains(&older.id) && state.contains("multiple_active_keys"),
        "pending: {state}"
    );
    // The owner rotates by hand: the newer key goes, the older one is now the only key.
    deactivate(&iam, "pair", &newer).await;
    std::thread::sleep(Duration::from_millis(2200));
    let (code, events, _) = once(&config);
    assert_eq!(code, Some(0));
    assert!(decisions(&events, "success").is_empty());
    assert_eq!(statuses(&moto, &["pair"]).await[&older.id], "Active");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_state_file_blocks_enforcement_and_is_kept() {
    let moto = Moto::start();
    let s = seed(&moto).await;
    let dir = TempDir::new("corrupt");
    let config = enforce_config(&dir, &moto, "enforce", "0s", 25);
    let state = dir.write("state.json", "{\"schema_version\": 1, \"findings\": [{\"oops\"");
    let (code, _, stderr) = once(&config);
    assert_eq!(code, Some(1));
    assert!(stderr.contains(state.to_str().unwrap()), "names the file: {stderr}");
    assert_eq!(statuses(&moto, &USERS).await[&s.idle.id], "Active", "no key changes");
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        "{\"schema_version\": 1, \"findings\": [{\"oops\"",
        "never overwritten"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_update_is_counted_and_the_daemon_keeps_running() {
    let moto = Moto::start();
    let s = seed(&moto).await;
    moto.set_faults(r#"{"UpdateAccessKey": ["*"]}"#);
    let dir = TempDir::new("denied");
    let config = enforce_config(&dir, &moto, "enforce", "0s", 25);
    let (code, events, _) = once(&config);
    assert_eq!(code, Some(1), "errors make --once fail");
    assert_eq!(decisions(&events, "error").len(), 2);
    assert_eq!(statuses(&moto, &USERS).await[&s.idle.id], "Active");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.0.join("state.json")).unwrap()).unwrap();
    assert!(
        state["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["access_key_id"] == s.idle.id.as_str()),
        "the finding stays in the state: {state}"
    );

    let port = free_port();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n[schedule]\ncron = \"*/2 * * * * *\"\n"
    ));
    std::fs::write(&config, text).unwrap();
    let mut d = DaemonProcess::spawn(
        keywarden(&["run", "--config", config.to_str().unwrap()]),
        port,
        dir.0.join("log"),
    );
    // The failed keys back off (30 minutes) instead of failing again at every tick.
    let page = d
        .wait_metrics(30, "two runs with the failing keys backing off", |m| {
            metric(m, "keywarden_audit_runs_total", &[("outcome", "success")]).unwrap_or(0.0) >= 2.0
                && metric(m, "keywarden_deactivation_failing_keys", &[("account_id", ACCOUNT)]) == Some(2.0)
        })
        .await;
    assert_eq!(
        metric(&page, "keywarden_deactivations_total", &[("outcome", "error")]),
        None,
        "not retried while backing off"
    );
    assert!(d.child.try_wait().unwrap().is_none(), "still running");

    // Access fixed, and the backoff over (moved into the past, under the state lock so no
    // run of the daemon interleaves): the next run deactivates.
    moto.set_faults("{}");
    {
        let path = dir.0.join("state.json");
        let lock = std::fs::File::create(dir.0.join("state.json.lock")).unwrap();
        // SAFETY: flock on a descriptor this test owns.
        assert_eq!(
            unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
            0
        );
        let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for f in state["failures"].as_array_mut().expect("failures") {
            f["next_attempt"] = "2020-01-01T00:00:00Z".into();
        }
        std::fs::write(&path, state.to_string()).unwrap();
    }
    d.wait_metrics(30, "recovery at a later run", |m| {
        metric(m, "keywarden_deactivations_total", &[("outcome", "success")]).is_some()
    })
    .await;
    assert_eq!(statuses(&moto, &USERS).await[&s.idle.id], "Inactive");
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(10).0, Some(0));
}

/// UpdateAccessKey applied by IAM but its answer lost (truncated, then the connection closed):
/// the read-back shows the key inactive, so it counts as done and the state forgets it.
#[tokio::test(flavor = "multi_thread")]
async fn an_update_whose_answer_is_lost_is_confirmed_by_the_read_back() {
    let moto = Moto::start();
    let s = seed(&moto).await;
    moto.set_faults(r#"{"_truncate": {"UpdateAccessKey": 1.0}}"#);
    let dir = TempDir::new("lost-answer");
    let config = enforce_config(&dir, &moto, "enforce", "0s", 25);
    let (code, events, stderr) = once(&config);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(decisions(&events, "success"), {
        let mut due = vec![s.idle.id.as_str(), s.second.id.as_str()];
        due.sort();
        due
    });
    assert!(stderr.contains("reported an error but the key is inactive"), "{stderr}");
    let now = statuses(&moto, &USERS).await;
    assert_eq!(now[&s.idle.id], "Inactive");
    assert_eq!(now[&s.keep.id], "Active");
    assert_eq!(now[&s.exempt.id], "Active");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.0.join("state.json")).unwrap()).unwrap();
    assert!(
        !state["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["access_key_id"] == s.idle.id.as_str()),
        "a deactivated key is forgotten: {state}"
    );
}

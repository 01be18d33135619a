//! The safety holes of issue 12, each through the real binary against moto: its own key, keys
//! created in the same second, a panicking or stuck run, a rotation in progress, a cap starved
//! by keys that cannot be deactivated, users that vanish, a wrong clock, two writers of one
//! state file, and a credential report of another account.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::common::*;

fn enforce(dir: &TempDir, moto: &Moto, extra: &str) -> std::path::PathBuf {
    moto_config(
        dir,
        moto,
        &format!("[enforcement]\nmode = \"enforce\"\ngrace_period = \"0s\"\n\n[log]\nformat = \"json\"\n\n{extra}"),
    )
}

/// `run --once`: exit code, JSON log events and stderr.
fn once(cmd: &mut std::process::Command) -> (Option<i32>, Vec<serde_json::Value>, String) {
    let out = run(cmd.env("RUST_LOG", "info"));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let events = stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    (out.status.code(), events, stderr)
}

fn run_once(config: &Path) -> (Option<i32>, Vec<serde_json::Value>, String) {
    once(&mut keywarden(&["run", "--once", "--config", config.to_str().unwrap()]))
}

fn outcome_of<'a>(events: &'a [serde_json::Value], key: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e["access_key_id"] == key && e["outcome"].is_string())
        .filter_map(|e| e["outcome"].as_str())
        .collect()
}

async fn statuses(moto: &Moto, users: &[&str]) -> BTreeMap<String, String> {
    key_statuses(&moto.iam(), users).await
}

/// A user's findings as (key, rule) pairs, sorted.
fn findings_of(report: &serde_json::Value, user: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["user"] == user)
        .map(|f| {
            (
                f["access_key_id"].as_str().unwrap_or_default().to_string(),
                f["rule"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn its_own_key_is_never_deactivated_and_its_findings_stay_visible() {
    let moto = Moto::start();
    let iam = moto.iam();
    create_user(&iam, "keywarden-svc", None).await;
    create_user(&iam, "old", None).await;
    moto.set_clock_days(-100.0);
    let own = create_key(&iam, "keywarden-svc").await;
    let other = create_key(&iam, "old").await;
    moto.set_clock_days(0.0);
    use_key(&moto, &other).await;
    let dir = TempDir::new("own");
    let config = enforce(&dir, &moto, "[rules.max_key_age]\naction = \"deactivate\"\n");
    let as_own = |args: &[&str]| {
        let mut c = keywarden(args);
        c.env("AWS_ACCESS_KEY_ID", &own.id)
            .env("AWS_SECRET_ACCESS_KEY", &own.secret);
        c
    };
    let (code, events, stderr) = once(&mut as_own(&["run", "--once", "--config", config.to_str().unwrap()]));
    assert_eq!(code, Some(0), "{stderr}");
    let st = statuses(&moto, &["keywarden-svc", "old"]).await;
    assert_eq!(st[&own.id], "Active", "keywarden's own key stays active: {stderr}");
    assert_eq!(st[&other.id], "Inactive", "other keys are enforced as usual");
    assert!(
        outcome_of(&events, &own.id).is_empty(),
        "no action on its own key: {stderr}"
    );

    let out = run(&mut as_own(&[
        "audit",
        "--format",
        "json",
        "--config",
        config.to_str().unwrap(),
    ]));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let f = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["access_key_id"] == own.id.as_str())
        .unwrap_or_else(|| panic!("its own key's finding is reported: {report}"));
    assert_eq!(f["rule"], "max_key_age");
    assert_eq!(f["action"], "report");
    assert_eq!(f["own_credentials"], true);
    assert_eq!(f["deactivate_after"], serde_json::Value::Null);
    let table = run(&mut as_own(&["audit", "--config", config.to_str().unwrap()]));
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("keywarden's own key"), "{table}");
}

/// Two keys of `user` created in the same second, as scripts and Terraform make them.
async fn same_second_pair(iam: &aws_sdk_iam::Client, user: &str) -> (SeededKey, SeededKey) {
    for _ in 0..20 {
        let a = create_key(iam, user).await;
        let b = create_key(iam, user).await;
        if a.created == b.created {
            return (a, b);
        }
        for k in [&a, &b] {
            delete_key(iam, user, &k.id).await;
        }
    }
    panic!("could not create two keys within one second");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_created_in_the_same_second_give_the_same_findings_in_both_modes() {
    let moto = Moto::start();
    let iam = moto.iam();
    create_user(&iam, "twins", None).await;
    create_user(&iam, "single", None).await;
    let (a, b) = same_second_pair(&iam, "twins").await;
    create_key(&iam, "single").await;
    let dir = TempDir::new("twins");
    let api = moto_config_aws(&dir, &moto, "inventory = \"api\"\n", "");
    let (code, api_report, err) = audit_json(&api, &[]);
    assert_eq!(code, 3, "{err}");
    let expected = findings_of(&api_report, "twins");
    assert_eq!(expected.len(), 1, "{api_report}");
    assert_eq!(expected[0].1, "multiple_active_keys");
    assert!([&a.id, &b.id].contains(&&expected[0].0));

    let dir = TempDir::new("twins-report");
    let report = moto_config_aws(&dir, &moto, "inventory = \"credential-report\"\n", "");
    let (code, cr_report, err) = audit_json(&report, &[]);
    assert_eq!(code, 3, "credential-report mode finds it too: {cr_report}\n{err}");
    assert_eq!(findings_of(&cr_report, "twins"), expected);
    assert_eq!(cr_report["complete"], true, "{cr_report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_run_ends_that_run_only() {
    let moto = Moto::start();
    let idle = idle_users(&moto, &["idle"]).await.remove(0);

    // run --once: the panic is a runtime error (exit 1), and leaves no state behind.
    let dir = TempDir::new("panic-once");
    let config = enforce(&dir, &moto, "");
    let (code, _, stderr) = once(
        keywarden(&["run", "--once", "--config", config.to_str().unwrap()]).env("KEYWARDEN_FAILPOINT_PANIC_RUNS", "1"),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("panicked"), "{stderr}");
    assert!(!dir.0.join("state.json").exists(), "the half-done run wrote no state");
    assert_eq!(statuses(&moto, &["idle"]).await[&idle.id], "Active");

    // The daemon: the first run panics, the next tick runs and enforces.
    let dir = TempDir::new("panic-daemon");
    let port = free_port();
    let config = enforce(
        &dir,
        &moto,
        &format!("[schedule]\ncron = \"* * * * * *\"\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let mut cmd = keywarden(&["run", "--config", config.to_str().unwrap()]);
    cmd.env("KEYWARDEN_FAILPOINT_PANIC_RUNS", "1");
    let d = DaemonProcess::spawn(cmd, port, dir.0.join("log"));
    let page = d
        .wait_metrics(30, "a panicked run, then a good one that enforces", |m| {
            metric(m, "keywarden_audit_runs_total", &[("outcome", "panic")]) == Some(1.0)
                && metric(m, "keywarden_deactivations_total", &[("outcome", "success")]) == Some(1.0)
        })
        .await;
    assert_eq!(metric(&page, "keywarden_audit_success", &[]), Some(1.0));
    assert_eq!(d.get("/-/healthy").await.map(|r| r.0), Some(200));
    assert_eq!(statuses(&moto, &["idle"]).await[&idle.id], "Inactive");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stuck_run_is_not_healthy() {
    let moto = Moto::start();
    create_user(&moto.iam(), "someone", None).await;
    moto.set_faults(r#"{"_delay": {"ListUsers": 5}}"#);
    let dir = TempDir::new("stuck");
    let port = free_port();
    let config = moto_config(
        &dir,
        &moto,
        &format!(
            "[schedule]\ncron = \"0 0 0 1 1 *\"\nmax_run_duration = \"1s\"\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    );
    let d = DaemonProcess::spawn(
        keywarden(&["run", "--config", config.to_str().unwrap()]),
        port,
        dir.0.join("log"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen_unhealthy = false;
    while std::time::Instant::now() < deadline {
        if let Some((503, body)) = d.get("/-/healthy").await {
            assert!(body.contains("run"), "{body}");
            seen_unhealthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen_unhealthy,
        "a run older than max_run_duration is unhealthy; logs:\n{}",
        d.logs()
    );
    // Once the run ends the loop makes progress again.
    d.first_audit().await;
    assert_eq!(d.get("/-/healthy").await.map(|r| r.0), Some(200));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_waits_until_the_new_key_has_been_used() {
    let moto = Moto::start();
    let iam = moto.iam();
    create_user(&iam, "app", None).await;
    moto.set_clock_days(-120.0);
    let old = create_key(&iam, "app").await;
    moto.set_clock_days(-5.0);
    let new = create_key(&iam, "app").await;
    moto.set_clock_days(-2.0);
    use_key(&moto, &old).await;
    moto.set_clock_days(0.0);
    let dir = TempDir::new("rotation");
    let config = enforce(&dir, &moto, "");

    let (code, events, stderr) = run_once(&config);
    assert_eq!(code, Some(0), "{stderr}");
    let st = statuses(&moto, &["app"]).await;
    assert_eq!(
        st[&old.id], "Active",
        "the key in use stays until the new one works: {stderr}"
    );
    assert_eq!(st[&new.id], "Active");
    assert!(outcome_of(&events, &old.id).is_empty(), "{stderr}");
    let (_, report, _) = audit_json(&config, &[]);
    let f = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["access_key_id"] == old.id.as_str() && f["rule"] == "multiple_active_keys")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(f["action"], "deactivate");
    assert_eq!(f["held"], "waiting_for_kept_key_use", "{f}");
    assert_eq!(f["kept_access_key_id"], new.id.as_str(), "{f}");
    assert_eq!(f["deactivate_after"], serde_json::Value::Null, "{f}");

    // The application switches: the new key is used, and the old one goes.
    use_key(&moto, &new).await;
    let (code, events, stderr) = run_once(&config);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(outcome_of(&events, &old.id), ["success"], "{stderr}");
    let st = statuses(&moto, &["app"]).await;
    assert_eq!((st[&old.id].as_str(), st[&new.id].as_str()), ("Inactive", "Active"));
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_that_cannot_be_deactivated_do_not_starve_the_cap() {
    let moto = Moto::start();
    let users = ["denied-1", "denied-2", "ok-1", "ok-2", "ok-3"];
    let keys: BTreeMap<&str, SeededKey> = users.into_iter().zip(idle_users(&moto, &users).await).collect();
    moto.set_faults(r#"{"UpdateAccessKey": ["denied-1", "denied-2"]}"#);
    let dir = TempDir::new("starved");
    let config = moto_config(
        &dir,
        &moto,
        "[enforcement]\nmode = \"enforce\"\ngrace_period = \"1d\"\nmax_deactivations_per_run = 2\n\n[log]\nformat = \"json\"\n",
    );
    // The denied keys have the oldest deadlines.
    let now = chrono::Utc::now();
    let entries: Vec<String> = users
        .iter()
        .map(|u| {
            let days = if u.starts_with("denied") { 10 } else { 5 };
            format!(
                r#"{{"account_id": "{ACCOUNT}", "user": "{u}", "access_key_id": "{}", "rule": "unused_key", "first_seen": "{}"}}"#,
                keys[u].id,
                (now - chrono::TimeDelta::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        })
        .collect();
    std::fs::write(
        dir.0.join("state.json"),
        format!(r#"{{"schema_version": 1, "findings": [{}]}}"#, entries.join(",")),
    )
    .unwrap();

    let (_, events, stderr) = run_once(&config);
    assert_eq!(outcome_of(&events, &keys["denied-1"].id), ["error"], "{stderr}");
    let done: usize = ["ok-1", "ok-2", "ok-3"]
        .iter()
        .filter(|u| outcome_of(&events, &keys[*u].id) == ["success"])
        .count();
    assert_eq!(done, 2, "failed attempts use no slot of the cap: {stderr}");

    moto.take_stats();
    let (_, events, stderr) = run_once(&config);
    let st = statuses(&moto, &users).await;
    for u in ["ok-1", "ok-2", "ok-3"] {
        assert_eq!(st[&keys[u].id], "Inactive", "{u}: {stderr}");
    }
    for u in ["denied-1", "denied-2"] {
        assert_eq!(st[&keys[u].id], "Active");
        assert!(
            outcome_of(&events, &keys[u].id).iter().all(|o| *o == "backoff"),
            "a failed key is retried with backoff, not every run: {stderr}"
        );
    }
    assert_eq!(moto.take_stats()["UpdateAccessKey"], 1, "only the third key was tried");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.0.join("state.json")).unwrap()).unwrap();
    let failures = state["failures"].as_array().expect("failures in the state");
    assert_eq!(failures.len(), 2, "{state}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_deleted_before_the_action_is_no_longer_due() {
    let moto = Moto::start();
    let mut keys = idle_users(&moto, &["gone", "stays"]).await;
    let (stays, gone) = (keys.remove(1), keys.remove(0));
    moto.set_faults(r#"{"_missing": {"GetUser": ["gone"]}}"#);
    let dir = TempDir::new("vanished");
    let (code, events, stderr) = run_once(&enforce(&dir, &moto, ""));
    assert_eq!(code, Some(0), "a vanished user is not an error: {stderr}");
    assert_eq!(outcome_of(&events, &gone.id), ["no_longer_due"], "{stderr}");
    assert_eq!(outcome_of(&events, &stays.id), ["success"], "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_clock_audits_but_deactivates_nothing() {
    let moto = Moto::start();
    let idle = idle_users(&moto, &["idle"]).await.remove(0);
    let dir = TempDir::new("skew");
    let config = enforce(&dir, &moto, "");

    // AWS's Date is 15 minutes ahead of this host.
    moto.set_faults(r#"{"_date_skew": 900}"#);
    let (code, events, stderr) = run_once(&config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("clock"), "{stderr}");
    assert!(outcome_of(&events, &idle.id).is_empty(), "{stderr}");
    assert_eq!(statuses(&moto, &["idle"]).await[&idle.id], "Active");

    assert!(
        !dir.0.join("state.json").exists(),
        "nothing is recorded on a wrong clock"
    );

    // The clock went backwards since the last run (kept in the state).
    moto.set_faults("{}");
    let path = dir.0.join("state.json");
    let state_at = |t: chrono::DateTime<chrono::Utc>| {
        let t = t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        std::fs::write(
            &path,
            format!(r#"{{"schema_version": 1, "last_run": "{t}", "findings": []}}"#),
        )
        .unwrap();
    };
    state_at(chrono::Utc::now() + chrono::TimeDelta::hours(1));
    let (code, _, stderr) = run_once(&config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("backwards"), "{stderr}");
    assert_eq!(statuses(&moto, &["idle"]).await[&idle.id], "Active");

    // A sane clock: enforced.
    state_at(chrono::Utc::now() - chrono::TimeDelta::hours(1));
    let (code, _, stderr) = run_once(&config);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(statuses(&moto, &["idle"]).await[&idle.id], "Inactive");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_writer_per_state_file() {
    let moto = Moto::start();
    let idle = idle_users(&moto, &["idle"]).await.remove(0);
    let dir = TempDir::new("lock");
    let config = enforce(&dir, &moto, "");

    // Another keywarden holds the lock of this state file.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.0.join("state.json.lock"))
        .unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );
    let (code, _, stderr) = run_once(&config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("state.json") && stderr.contains("locked"), "{stderr}");
    assert_eq!(statuses(&moto, &["idle"]).await[&idle.id], "Active");
    drop(lock);

    let (code, _, stderr) = run_once(&config);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(statuses(&moto, &["idle"]).await[&idle.id], "Inactive");
    let mode = std::fs::metadata(dir.0.join("state.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the state file is private");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credential_report_of_another_account_is_an_error_not_findings() {
    let moto = Moto::start();
    idle_users(&moto, &["idle"]).await;
    moto.set_faults(r#"{"_report_account": "999999999999"}"#);
    let dir = TempDir::new("other-account");
    let config = moto_config_aws(&dir, &moto, "inventory = \"credential-report\"\n", "");
    let (code, report, err) = audit_json(&config, &[]);
    assert_eq!(code, 1, "{report}\n{err}");
    assert_eq!(report["findings"].as_array().map(Vec::len), Some(0), "{report}");
    let e = &report["errors"][0];
    assert_eq!(e["account_id"], ACCOUNT);
    assert!(
        e["message"].as_str().unwrap_or_default().contains("999999999999"),
        "{e}"
    );
}

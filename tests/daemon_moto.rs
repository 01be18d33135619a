//! `keywarden run` as a real child process against moto: metrics over HTTP, real signals,
//! the sd-notify protocol over a real datagram socket.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::common::*;

const YEARLY: &str = "0 0 0 1 1 *";

fn daemon_config(dir: &TempDir, moto: &Moto, port: u16, cron: &str, max_age: &str, extra: &str) -> std::path::PathBuf {
    moto_config(
        dir,
        moto,
        &format!(
            "[schedule]\ncron = \"{cron}\"\nrun_on_start = true\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [rules.max_key_age]\nmax_age = \"{max_age}\"\n\n{extra}"
        ),
    )
}

async fn seed(moto: &Moto) -> (SeededKey, SeededKey, SeededKey) {
    let iam = moto.iam();
    create_user(&iam, "two", None).await;
    create_user(&iam, "one", None).await;
    create_user(&iam, "none", None).await;
    moto.set_clock_days(-100.0);
    let old = create_key(&iam, "one").await;
    moto.set_clock_days(-60.0);
    let idle = create_key(&iam, "two").await;
    moto.set_clock_days(0.0);
    let kept = create_key(&iam, "two").await;
    use_key(moto, &kept).await;
    use_key(moto, &old).await;
    (old, idle, kept)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_reload_and_clean_stop() {
    let moto = Moto::start();
    let (old, idle, _kept) = seed(&moto).await;
    let dir = TempDir::new("daemon");
    let port = free_port();
    let config = daemon_config(&dir, &moto, port, YEARLY, "90d", "");
    let mut cmd = keywarden(&["run", "--config", config.to_str().unwrap()]);
    cmd.env("RUST_LOG", "info");
    let mut d = DaemonProcess::spawn(cmd, port, dir.0.join("log"));

    let page = d.first_audit().await;
    let acct = ("account_id", ACCOUNT);
    assert_eq!(
        metric(&page, "keywarden_user_active_access_keys", &[acct, ("user", "two")]),
        Some(2.0)
    );
    assert_eq!(
        metric(&page, "keywarden_user_active_access_keys", &[acct, ("user", "one")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&page, "keywarden_user_active_access_keys", &[acct, ("user", "none")]),
        Some(0.0)
    );
    for (rule, n) in [("multiple_active_keys", 1.0), ("max_key_age", 1.0), ("unused_key", 1.0)] {
        assert_eq!(
            metric(&page, "keywarden_violations", &[acct, ("rule", rule)]),
            Some(n),
            "{rule}"
        );
    }
    let age = metric(
        &page,
        "keywarden_access_key_age_seconds",
        &[("access_key_id", &old.id), ("status", "Active")],
    )
    .expect("age series");
    assert!((age - 100.0 * 86_400.0).abs() < 300.0, "age {age}");
    let created = metric(
        &page,
        "keywarden_access_key_created_timestamp_seconds",
        &[("access_key_id", &old.id)],
    );
    assert_eq!(created.map(|c| c as i64), Some(old.created));
    assert!(metric(
        &page,
        "keywarden_access_key_last_used_timestamp_seconds",
        &[("access_key_id", &idle.id)]
    )
    .is_none());
    let deadline = metric(
        &page,
        "keywarden_access_key_deactivation_deadline_timestamp_seconds",
        &[("access_key_id", &idle.id), ("rule", "unused_key")],
    )
    .expect("deadline of the idle key");
    let now = chrono::Utc::now().timestamp() as f64;
    assert!((deadline - (now + 7.0 * 86_400.0)).abs() < 300.0);
    assert_eq!(metric(&page, "keywarden_root_access_keys_present", &[acct]), Some(0.0));
    assert_eq!(
        metric(&page, "keywarden_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        Some(1.0)
    );
    assert!(
        metric(
            &page,
            "keywarden_iam_requests_total",
            &[("operation", "ListAccessKeys"), ("outcome", "success")]
        )
        .unwrap_or(0.0)
            >= 3.0
    );

    // Endpoints.
    assert_eq!(d.get("/-/healthy").await.map(|r| r.0), Some(200));
    assert_eq!(d.get("/-/ready").await.map(|r| r.0), Some(200));
    assert_eq!(d.get("/nope").await.map(|r| r.0), Some(404));
    let (status, landing) = d.get("/").await.unwrap();
    assert_eq!(status, 200);
    assert!(landing.contains("/metrics") && landing.contains("/api/v1/report"));
    let (status, report) = d.get("/api/v1/report").await.unwrap();
    assert_eq!(status, 200);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["summary"]["violations"], 3);
    assert_eq!(report["findings"].as_array().unwrap().len(), 3);

    // Valid reload: a longer max_age, a schedule of every second and a new listen address;
    // values change and the listener moves.
    let port2 = free_port();
    let config2 = daemon_config(&dir, &moto, port2, "* * * * * *", "200d", "");
    assert_eq!(config, config2);
    d.signal(libc::SIGHUP);
    d.port = port2;
    let page = d
        .wait_metrics(30, "the new threshold", |m| {
            metric(m, "keywarden_violations", &[acct, ("rule", "max_key_age")]) == Some(0.0)
        })
        .await;
    assert_eq!(metric(&page, "keywarden_config_last_reload_successful", &[]), Some(1.0));
    assert_eq!(
        metric(&page, "keywarden_violations", &[acct, ("rule", "unused_key")]),
        Some(1.0)
    );

    // A key that disappears loses its series at the next audit.
    delete_key(&moto.iam(), "one", &old.id).await;
    d.wait_metrics(30, "the deleted key's series to go", |m| {
        metric(m, "keywarden_access_key_age_seconds", &[("access_key_id", &old.id)]).is_none()
    })
    .await;

    // Invalid reload: keeps running on the old config, gauge 0, old values still served.
    std::fs::write(
        &config,
        format!("[metrics]\nlisten = \"127.0.0.1:{port2}\"\n[rules.max_key_age]\nmax_age = \"forever\"\n"),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    let page = d
        .wait_metrics(30, "the failed reload", |m| {
            metric(m, "keywarden_config_last_reload_successful", &[]) == Some(0.0)
        })
        .await;
    assert_eq!(
        metric(&page, "keywarden_user_active_access_keys", &[acct, ("user", "two")]),
        Some(2.0)
    );
    assert_eq!(
        metric(&page, "keywarden_violations", &[acct, ("rule", "max_key_age")]),
        Some(0.0)
    );
    assert!(
        d.logs().contains("rules.max_key_age.max_age"),
        "the error names the key:\n{}",
        d.logs()
    );
    assert!(d.child.try_wait().unwrap().is_none(), "still running");
    // Audits go on every second on the old config.
    let runs = |m: &str| metric(m, "keywarden_audit_runs_total", &[("outcome", "success")]).unwrap_or(0.0);
    let before = runs(&page);
    d.wait_metrics(30, "audits to continue", |m| runs(m) > before).await;

    d.signal(libc::SIGTERM);
    let (code, took) = d.wait_exit(10);
    assert_eq!(code, Some(0), "logs:\n{}", d.logs());
    assert!(took < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tick_during_a_running_audit_is_skipped_and_counted() {
    let moto = Moto::start();
    seed(&moto).await;
    moto.set_faults(r#"{"_delay": {"ListUsers": 2.5}}"#);
    let dir = TempDir::new("skip");
    let port = free_port();
    let config = daemon_config(&dir, &moto, port, "* * * * * *", "90d", "");
    let mut d = DaemonProcess::spawn(
        keywarden(&["run", "--config", config.to_str().unwrap()]),
        port,
        dir.0.join("log"),
    );
    let page = d
        .wait_metrics(30, "a skipped tick", |m| {
            metric(m, "keywarden_audit_skipped_total", &[]).unwrap_or(0.0) >= 1.0
        })
        .await;
    assert_eq!(
        metric(&page, "keywarden_audit_runs_total", &[("outcome", "failed")]),
        None
    );
    // SIGTERM during a slow audit: abandoned safely, exit 0 within 10 s.
    d.signal(libc::SIGTERM);
    let (code, took) = d.wait_exit(10);
    assert_eq!(code, Some(0), "logs:\n{}", d.logs());
    assert!(took < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_unreachable_keeps_serving_with_audit_success_0() {
    let dir = TempDir::new("down");
    let port = free_port();
    let dead = free_port();
    let config = dir.write(
        "k.toml",
        &format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"http://127.0.0.1:{dead}\"\nmax_attempts = 1\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\n[state]\npath = \"{}\"\n",
            dir.0.join("state.json").display()
        ),
    );
    let d = DaemonProcess::spawn(
        keywarden(&["run", "--config", config.to_str().unwrap()]),
        port,
        dir.0.join("log"),
    );
    let page = d
        .wait_metrics(30, "a failed audit", |m| {
            metric(m, "keywarden_audit_runs_total", &[("outcome", "failed")]) == Some(1.0)
        })
        .await;
    assert_eq!(metric(&page, "keywarden_audit_success", &[]), Some(0.0));
    assert_eq!(
        d.get("/-/ready").await.map(|r| r.0),
        Some(503),
        "not ready: the audit completed but could read nothing"
    );
    assert!(metric(&page, "keywarden_iam_requests_total", &[("outcome", "transport_error")]).unwrap_or(0.0) >= 1.0);
}

/// AWS gone (every connection dropped), then back: the daemon serves throughout and the next
/// scheduled run succeeds on its own.
#[tokio::test(flavor = "multi_thread")]
async fn recovers_on_its_own_when_aws_comes_back() {
    let moto = Moto::start();
    seed(&moto).await;
    moto.set_faults(r#"{"_drop": {"*": 1.0}}"#);
    let dir = TempDir::new("recover");
    let port = free_port();
    let config = daemon_config(&dir, &moto, port, "*/2 * * * * *", "90d", "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("max_attempts = 2", "max_attempts = 1")).unwrap();
    let d = DaemonProcess::spawn(
        keywarden(&["run", "--config", config.to_str().unwrap()]),
        port,
        dir.0.join("log"),
    );
    let down = d
        .wait_metrics(30, "a failed audit", |m| {
            metric(m, "keywarden_audit_runs_total", &[("outcome", "failed")]).unwrap_or(0.0) >= 1.0
        })
        .await;
    assert_eq!(metric(&down, "keywarden_audit_success", &[]), Some(0.0));
    assert_eq!(
        metric(&down, "keywarden_audit_last_success_timestamp_seconds", &[]),
        Some(0.0),
        "{down}"
    );

    moto.set_faults("{}");
    let up = d
        .wait_metrics(30, "a successful audit", |m| {
            metric(m, "keywarden_audit_success", &[]) == Some(1.0)
        })
        .await;
    assert!(metric(&up, "keywarden_audit_last_success_timestamp_seconds", &[]).unwrap_or(0.0) > 0.0);
    assert_eq!(
        metric(
            &up,
            "keywarden_user_active_access_keys",
            &[("account_id", ACCOUNT), ("user", "two")]
        ),
        Some(2.0),
        "{up}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sd_notify_messages_over_a_real_socket() {
    let moto = Moto::start();
    let dir = TempDir::new("notify");
    let sock_path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let port = free_port();
    let config = daemon_config(&dir, &moto, port, YEARLY, "90d", "");
    let mut cmd = keywarden(&["run", "--config", config.to_str().unwrap()]);
    cmd.env("NOTIFY_SOCKET", &sock_path).env("WATCHDOG_USEC", "400000");
    let mut d = DaemonProcess::spawn(cmd, port, dir.0.join("log"));

    let recv = || {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notify message");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let first = recv();
    assert!(first.starts_with("READY=1"), "{first}");
    // The listener is bound before READY=1.
    assert_eq!(d.get("/-/healthy").await.map(|r| r.0), Some(200));
    let mut saw_watchdog = false;
    for _ in 0..10 {
        if recv() == "WATCHDOG=1" {
            saw_watchdog = true;
            break;
        }
    }
    assert!(saw_watchdog);

    d.signal(libc::SIGHUP);
    let mut msgs: Vec<String> = Vec::new();
    while !msgs.iter().any(|m| m.starts_with("READY=1")) {
        let m = recv();
        if m != "WATCHDOG=1" {
            msgs.push(m);
        }
        assert!(msgs.len() < 10, "{msgs:?}");
    }
    let reloading = msgs.iter().find(|m| m.starts_with("RELOADING=1")).expect("RELOADING=1");
    let usec: u64 = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{reloading:?}"));
    assert!(usec > 0);

    d.signal(libc::SIGTERM);
    let mut stopping = false;
    for _ in 0..10 {
        if recv() == "STOPPING=1" {
            stopping = true;
            break;
        }
    }
    assert!(stopping);
    assert_eq!(d.wait_exit(10).0, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn promtool_accepts_the_metrics_page() {
    let promtool = std::process::Command::new("promtool").arg("--version").output();
    if promtool.is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "promtool is required in CI (Debian package prometheus, installed by .ci/run)"
        );
        eprintln!("promtool not installed; skipping outside CI");
        return;
    }
    let moto = Moto::start();
    seed(&moto).await;
    let dir = TempDir::new("promtool");
    let port = free_port();
    let config = daemon_config(&dir, &moto, port, YEARLY, "90d", "");
    let d = DaemonProcess::spawn(
        keywarden(&["run", "--config", config.to_str().unwrap()]),
        port,
        dir.0.join("log"),
    );
    let page = d.first_audit().await;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check metrics failed:\n{said}");
    assert!(said.trim().is_empty(), "promtool warnings:\n{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn per_key_series_can_be_turned_off() {
    let moto = Moto::start();
    seed(&moto).await;
    let dir = TempDir::new("perkey");
    let port = free_port();
    let config = moto_config(
        &dir,
        &moto,
        &format!("[schedule]\ncron = \"{YEARLY}\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\nper_key = false\n"),
    );
    let d = DaemonProcess::spawn(
        keywarden(&["run", "--config", config.to_str().unwrap()]),
        port,
        dir.0.join("log"),
    );
    let page = d.first_audit().await;
    assert!(!page.contains("access_key_id="), "no per-key series");
    assert_eq!(
        metric(&page, "keywarden_user_active_access_keys", &[("user", "two")]),
        Some(2.0)
    );
    assert_eq!(
        metric(&page, "keywarden_access_keys", &[("status", "Active")]),
        Some(3.0)
    );
    assert_eq!(
        metric(&page, "keywarden_violations", &[("rule", "unused_key")]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_huge_headers_and_idle_clients_cannot_stop_the_listener() {
    use std::io::{Read, Write};
    let moto = Moto::start();
    let dir = TempDir::new("hostile-http");
    let port = free_port();
    let config = daemon_config(&dir, &moto, port, YEARLY, "90d", "");
    let d = DaemonProcess::spawn(
        keywarden(&["run", "--config", config.to_str().unwrap()]),
        port,
        dir.0.join("log"),
    );
    d.first_audit().await;

    // Idle connections that never send a byte.
    let idle: Vec<_> = (0..64)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    // Garbage instead of HTTP.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_end(&mut buf);
    let reply = String::from_utf8_lossy(&buf);
    assert!(reply.is_empty() || reply.starts_with("HTTP/1.1 400"), "{reply}");
    // A 1 MiB header: refused, not buffered without bound.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let big = "a".repeat(1 << 20);
    let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let mut buf = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_end(&mut buf);
    let reply = String::from_utf8_lossy(&buf);
    assert!(
        !reply.starts_with("HTTP/1.1 200"),
        "a 1 MiB header must not be served: {}",
        &reply[..reply.len().min(80)]
    );

    // Still serving everyone else.
    assert_eq!(d.get("/-/healthy").await.map(|r| r.0), Some(200));
    let (status, page) = d.get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("keywarden_build_info"));
    drop(idle);
}

#[tokio::test(flavor = "multi_thread")]
async fn per_key_findings_exports_series_only_for_keys_with_findings() {
    let moto = Moto::start();
    seed(&moto).await;
    let dir = TempDir::new("perkey-findings");
    let port = free_port();
    let config = moto_config(
        &dir,
        &moto,
        &format!("[schedule]\ncron = \"{YEARLY}\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\nper_key = \"findings\"\n"),
    );
    let d = DaemonProcess::spawn(
        keywarden(&["run", "--config", config.to_str().unwrap()]),
        port,
        dir.0.join("log"),
    );
    let page = d.first_audit().await;
    let (_, body) = d.get("/api/v1/report").await.expect("report");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    let with_findings: std::collections::BTreeSet<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["access_key_id"].as_str().unwrap().to_string())
        .collect();
    let keys_in_report: usize = report["summary"]["access_keys"].as_u64().unwrap() as usize;
    let exported: std::collections::BTreeSet<String> = page
        .lines()
        .filter(|l| l.starts_with("keywarden_access_key_age_seconds{"))
        .filter_map(|l| l.split("access_key_id=\"").nth(1))
        .filter_map(|r| r.split('"').next())
        .map(str::to_string)
        .collect();
    assert!(!with_findings.is_empty());
    assert!(
        with_findings.len() < keys_in_report,
        "the seed has keys without findings"
    );
    assert_eq!(
        exported, with_findings,
        "per-key series exactly for the keys with findings"
    );
    // Per-user and per-account series are unchanged.
    assert_eq!(
        metric(&page, "keywarden_user_active_access_keys", &[("user", "two")]),
        Some(2.0)
    );

    let bad = dir.write("bad.toml", "[metrics]\nper_key = \"sometimes\"\n");
    let (code, _, err) = outputs(&mut keywarden(&["check-config", bad.to_str().unwrap()]));
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.toml:2: key `metrics.per_key`") && err.contains("\"findings\""),
        "{err}"
    );
}

/// Nothing listens at the endpoint: the audit says so first, in words, naming the endpoint;
/// the refused connection is not retried; no count is shown as if it were a result; the
/// daemon is not ready and says why, and publishes no account's counts.
#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_that_refuses_is_a_failure_said_first_never_a_clean_result() {
    let closed = free_port();
    let endpoint = format!("http://127.0.0.1:{closed}");
    let dir = TempDir::new("refused");
    let port = free_port();
    // aws.max_attempts is left at its default: a refusal must not be retried whatever it is.
    let config = dir.write(
        "keywarden.toml",
        &format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n[state]\npath = \"{}\"\n\
             [schedule]\ncron = \"{YEARLY}\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            dir.0.join("state.json").display()
        ),
    );
    let (code, table, err) = outputs(&mut keywarden(&["audit", "--config", config.to_str().unwrap()]));
    assert_eq!(code, 1, "{table}\n{err}");
    let first = table.lines().next().unwrap_or_default();
    assert!(first.starts_with("FAILED: nothing could be read"), "{table}");
    assert!(
        table.contains(&format!("could not connect to {endpoint}: connection refused")),
        "{table}"
    );
    for hidden in [
        "No findings",
        "Violations",
        "Users 0",
        "DispatchFailure",
        "ConnectorError",
    ] {
        assert!(!table.contains(hidden), "{hidden}:\n{table}");
        assert!(!err.contains(hidden), "{hidden}:\n{err}");
    }
    assert!(err.contains("FAILED: nothing could be read"), "{err}");
    let (code, json, _) = audit_json(&config, &[]);
    assert_eq!(code, 1);
    assert_eq!(json["complete"], false);
    assert_eq!(json["summary"]["violations"], serde_json::Value::Null, "{json:#}");

    let mut cmd = keywarden(&["run", "--config", config.to_str().unwrap()]);
    cmd.env("RUST_LOG", "info");
    let d = DaemonProcess::spawn(cmd, port, dir.0.join("log"));
    let page = d
        .wait_metrics(30, "the first (failed) run", |m| {
            metric(m, "keywarden_audit_runs_total", &[("outcome", "failed")]) >= Some(1.0)
        })
        .await;
    assert_eq!(metric(&page, "keywarden_audit_accounts_read", &[]), Some(0.0), "{page}");
    assert_eq!(
        metric(
            &page,
            "keywarden_iam_requests_total",
            &[("operation", "GetCallerIdentity"), ("outcome", "transport_error")]
        ),
        Some(1.0),
        "one attempt, no retries of a refusal: {page}"
    );
    assert!(
        !page.lines().any(|l| l.starts_with("keywarden_violations{")),
        "no counts for an account nobody read: {page}"
    );
    let (status, body) = d.get("/-/ready").await.expect("ready");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("could read nothing") && body.contains("connection refused"),
        "{body}"
    );
}

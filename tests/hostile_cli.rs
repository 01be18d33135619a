//! Hostile and odd input through the real binary (issue "proven under attack"): files that are
//! not regular files, control characters, oversized names, empty variable names. Each test
//! names the defect it closes; every one failed before its fix.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Runs `cmd`, killing it after `secs`: (exit code, stderr), or a panic naming the hang.
fn bounded(cmd: &mut Command, secs: u64) -> (i32, String) {
    let err_path = std::env::temp_dir().join(format!("kw-bounded-{}-{:?}", std::process::id(), Instant::now()));
    let file = std::fs::File::create(&err_path).unwrap();
    let mut child = cmd.stdout(Stdio::null()).stderr(file).spawn().expect("spawn");
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hung for {secs} s: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&err_path);
    (code, err)
}

fn fifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) on a path of our own temp dir.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn a_fifo_or_a_device_as_the_config_is_refused_not_read() {
    let dir = TempDir::new("fifo-config");
    let path = dir.0.join("k.toml");
    fifo(&path);
    for config in [path.to_str().unwrap(), "/dev/zero"] {
        let (code, err) = bounded(&mut keywarden(&["check-config", config]), 10);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(config) && err.contains("not a regular file"), "{err}");
    }
}

#[test]
fn a_fifo_as_the_state_file_is_refused_not_read() {
    let dir = TempDir::new("fifo-state");
    let state = dir.0.join("state.json");
    fifo(&state);
    let config = dir.write(
        "k.toml",
        &format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"http://127.0.0.1:9\"\nmax_attempts = 1\n[state]\npath = \"{}\"\n",
            state.display()
        ),
    );
    let (code, err) = bounded(&mut keywarden(&["audit", "--config", config.to_str().unwrap()]), 20);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn a_nul_in_a_config_comment_is_named_with_its_line() {
    let dir = TempDir::new("nul");
    let path = dir.0.join("k.toml");
    std::fs::write(&path, b"[state]\npath = \"/tmp/x/state.json\"\n# a comment \x00 here\n").unwrap();
    let (code, err) = bounded(&mut keywarden(&["check-config", path.to_str().unwrap()]), 10);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("k.toml:3:") && err.contains("U+0000"), "{err}");
}

#[test]
fn a_megabyte_key_name_is_cut_in_the_error() {
    let dir = TempDir::new("big-key");
    let key = "a".repeat(1_000_000);
    let path = dir.write("k.toml", &format!("[state]\npath = \"/tmp/x/state.json\"\n{key} = 1\n"));
    let (code, err) = bounded(&mut keywarden(&["check-config", path.to_str().unwrap()]), 10);
    assert_eq!(code, 2, "{err:.300}");
    assert!(err.len() < 4_000, "{} bytes of error: {:.300}", err.len(), err);
    assert!(err.contains("aaaaaaaa") && err.contains("1000000 bytes"), "{err}");
    assert!(err.contains("k.toml:3:"), "the line is still named: {err}");
}

#[test]
fn a_variable_named_only_keywarden_underscore_is_an_error() {
    let dir = TempDir::new("env-empty");
    let path = dir.write("k.toml", "[state]\npath = \"/tmp/x/state.json\"\n");
    let mut cmd = keywarden(&["check-config", path.to_str().unwrap()]);
    cmd.env("KEYWARDEN_", "1");
    let (code, err) = bounded(&mut cmd, 10);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("KEYWARDEN_") && err.contains("names no key"), "{err}");
}

/// A daemon config whose cron never comes (the first run only), and its metrics port.
fn first_run_only(dir: &TempDir, moto: &Moto) -> (u16, std::path::PathBuf) {
    let port = free_port();
    let extra = format!("[schedule]\ncron = \"0 0 0 1 1 *\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    (port, moto_config(dir, moto, &extra))
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_never_starve_the_health_check() {
    let moto = Moto::start();
    let dir = TempDir::new("idle-conns");
    let (port, config) = first_run_only(&dir, &moto);
    // 64 descriptors, as a tight LimitNOFILE= would give.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec \"$0\" run --config '{}'",
            config.display()
        ))
        .arg(keywarden(&[]).get_program());
    for (k, v) in keywarden(&[]).get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let d = DaemonProcess::spawn(cmd, port, dir.0.join("log"));
    d.first_audit().await;
    // 80 connections that never send a byte.
    let idle: Vec<std::net::TcpStream> = (0..80)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(idle.len() >= 64, "the test could open only {} connections", idle.len());
    let health = d.get("/-/healthy").await;
    assert_eq!(
        health.as_ref().map(|h| h.0),
        Some(200),
        "{health:?}; logs:\n{}",
        d.logs()
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sighup_after_the_config_became_a_fifo_keeps_the_loop_running() {
    let moto = Moto::start();
    let dir = TempDir::new("hup-fifo");
    let (port, config) = first_run_only(&dir, &moto);
    let mut d = DaemonProcess::spawn(
        keywarden(&["run", "--config", config.to_str().unwrap()]),
        port,
        dir.0.join("log"),
    );
    d.first_audit().await;
    std::fs::remove_file(&config).unwrap();
    fifo(&config);
    d.signal(libc::SIGHUP);
    let page = d
        .wait_metrics(15, "the refused reload", |m| {
            metric(m, "keywarden_config_last_reload_successful", &[]) == Some(0.0)
        })
        .await;
    assert_eq!(metric(&page, "keywarden_audit_success", &[]), Some(1.0));
    assert!(d.logs().contains("not a regular file"), "{}", d.logs());
    // The loop still answers signals.
    d.signal(libc::SIGTERM);
    let (code, _) = d.wait_exit(15);
    assert_eq!(code, Some(0));
}

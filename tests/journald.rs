//! The journal fields are named as docs/names.md says (`ACCOUNT_ID`, `USER`, `ACCESS_KEY_ID`,
//! `RULE`, `OUTCOME`, ...), so `journalctl -u keywarden ACCESS_KEY_ID=AKIA...` finds the event.
//!
//! journald's socket path is fixed, so the real binary runs in a private mount namespace
//! (`unshare`, root) whose `/run` is a fresh tmpfs with a datagram socket of this test at
//! `/run/systemd/journal/socket`; what keywarden sends there is journald's native protocol.
//! Without root this test is skipped outside CI and fails in CI.

use crate::common::*;

/// Receives journald datagrams at the socket path until killed, one hex line each.
const LISTENER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("ready", flush=True)
with open(sys.argv[2], "w") as out:
    while True:
        data = s.recv(1 << 20)
        out.write(data.hex() + "\n")
        out.flush()
"#;

/// A native-protocol entry's field names (`NAME=value` lines, or `NAME\n<len><bytes>`).
fn field_names(entry: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = entry;
    while !rest.is_empty() {
        let line_end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let line = &rest[..line_end];
        match line.iter().position(|b| *b == b'=') {
            Some(eq) => {
                names.push(String::from_utf8_lossy(&line[..eq]).to_string());
                rest = rest.get(line_end + 1..).unwrap_or(&[]);
            }
            None => {
                // Binary form: NAME\n, 8-byte little-endian length, value, \n.
                names.push(String::from_utf8_lossy(line).to_string());
                let after = rest.get(line_end + 1..).unwrap_or(&[]);
                let len = after
                    .get(..8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
                    .unwrap_or(0);
                rest = after.get(8 + len + 1..).unwrap_or(&[]);
            }
        }
    }
    names
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn journal_fields_are_named_as_documented() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("CI").is_err(),
            "CI runs as root; this test needs a private mount namespace"
        );
        eprintln!("skipped: needs root for a private mount namespace");
        return;
    }
    let moto = Moto::start();
    let idle = idle_users(&moto, &["idle"]).await.remove(0);
    let dir = TempDir::new("journald");
    let config = moto_config(&dir, &moto, "[enforcement]\ngrace_period = \"0s\"\n");
    let listener = dir.write("listener.py", LISTENER);
    let received = dir.0.join("received");
    let python = repo().join(".venv/bin/python");
    let kw = env!("CARGO_BIN_EXE_keywarden");
    let script = format!(
        "set -e; mount -t tmpfs keywarden-test /run; mkdir -p /run/systemd/journal; \
         {py} {listener} /run/systemd/journal/socket {received} > {dir}/ready & \
         listener=$!; trap 'kill $listener' EXIT; \
         for i in $(seq 50); do [ -s {dir}/ready ] && break; sleep 0.1; done; \
         {kw} run --once --config {config}; sleep 0.5",
        py = python.display(),
        listener = listener.display(),
        received = received.display(),
        dir = dir.0.display(),
        config = config.display(),
    );
    // The environment the harness gives the binary (test credentials, no AWS profile).
    let base = keywarden(&[]);
    let mut unshare = std::process::Command::new("unshare");
    unshare.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => unshare.env(k, v),
            None => unshare.env_remove(k),
        };
    }
    let out = unshare.env("RUST_LOG", "info").output().expect("unshare");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines = std::fs::read_to_string(&received).unwrap_or_default();
    let entries: Vec<Vec<u8>> = lines.lines().map(unhex).filter(|e| !e.is_empty()).collect();
    assert!(!entries.is_empty(), "keywarden logged nothing to the journal: {stderr}");
    let decision = entries
        .iter()
        .find(|e| String::from_utf8_lossy(e).contains(&idle.id))
        .unwrap_or_else(|| panic!("no journal entry names {}: {stderr}", idle.id));
    let names = field_names(decision);
    for field in ["ACCOUNT_ID", "USER", "ACCESS_KEY_ID", "RULE", "OUTCOME", "MESSAGE"] {
        assert!(names.iter().any(|n| n == field), "{field} missing from {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("F_")),
        "fields are not prefixed: {names:?}"
    );
}

//! `cargo bench --bench audit_cpu`: keywarden's own cost per user, against the in-memory fake
//! IAM (moto's 5-12 ms of server CPU per request would hide it). Audits USERS users (default
//! 100,000) x 2 keys in api mode and prints keywarden's CPU time per user, users per second and
//! peak RSS, measured by GNU time around the child. Targets: <= 20 us CPU per user, peak RSS
//! < 256 MiB at 100,000 users. `WRAP` prefixes the keywarden command (a profiler).

#[path = "support/fake_iam.rs"]
mod fake_iam;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("audit_cpu: run with `cargo bench --bench audit_cpu`");
        return;
    }
    let users: usize = std::env::var("USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    // MODE=api (default) or credential-report; PAIRS_EVERY=n: only every n-th user has a second
    // active key (a finding); default 1: every user.
    let mode = std::env::var("MODE").unwrap_or_else(|_| "api".into());
    let pairs_every: usize = std::env::var("PAIRS_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let iam = Arc::new(fake_iam::FakeIam::new(users, 2, pairs_every));
    let addr = Arc::clone(&iam).serve().await;
    let dir = std::env::temp_dir().join(format!("keywarden-audit-cpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("k.toml");
    std::fs::write(
        &config,
        format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"http://{addr}\"\ninventory = \"{mode}\"\n[state]\npath = \"{}/state.json\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let times = dir.join("time.txt");
    let started = Instant::now();
    // GNU time forks the child itself, so the child's peak RSS is its own, not this process's.
    let mut cmd = std::process::Command::new("/usr/bin/time");
    cmd.args(["-q", "-f", "%U %S %M", "-o"]).arg(&times);
    // e.g. WRAP="valgrind --tool=callgrind --callgrind-out-file=/tmp/kw.cg" to see where time goes.
    if let Ok(wrap) = std::env::var("WRAP") {
        cmd.args(wrap.split_whitespace());
    }
    cmd.arg(env!("CARGO_BIN_EXE_keywarden"))
        .args(["audit", "--format", "json", "--config"])
        .arg(&config)
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run keywarden audit under /usr/bin/time (Debian package `time`)");
    let wall = started.elapsed().as_secs_f64();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(
        report["summary"]["users"].as_u64(),
        Some(users as u64),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = std::fs::read_to_string(&times).unwrap();
    let f: Vec<f64> = t.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let (user_s, sys_s, rss_kib) = (f[0], f[1], f[2]);
    let _ = std::fs::remove_dir_all(&dir);
    let cpu = user_s + sys_s;
    println!(
        "{mode} mode, {users} users x 2 keys (second key active for every {pairs_every}. user), {} IAM requests: wall {wall:.2} s, {:.0} users/s; keywarden CPU {cpu:.2} s \
         (user {user_s:.2}, sys {sys_s:.2}) = {:.1} us/user; peak RSS {:.1} MiB",
        iam.requests.load(Ordering::Relaxed),
        users as f64 / wall,
        cpu * 1e6 / users as f64,
        rss_kib / 1024.0
    );
    println!("targets: <= 20 us CPU per user, peak RSS < 256 MiB");
}

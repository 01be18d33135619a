//! `cargo bench --bench org_cycle`: one organization of ACCOUNTS member accounts (default
//! 1,000) x USERS users (default 100), every PAIRS_EVERY-th user (default 20: 5%) with a second
//! active key, in credential-report mode, against the in-memory fake IAM/STS/Organizations.
//!
//! Runs the daemon's cycle (`run --once`) three times: first, unchanged, and after 1% of the
//! users rotated a key; each with the key ids the state remembers (incremental) and, for
//! comparison in the same run, with `aws.full_refresh_every = 1` (every wanted user listed at
//! every run, as before the incremental inventory). Prints requests per run by operation, wall
//! and CPU time, and peak RSS (GNU time around the child). Then, for each `metrics.per_key`
//! setting, the daemon's `/metrics` page size and scrape latency (200 scrapes; SCRAPE=0 skips).
//!
//! Targets: unchanged run <= 5 requests per account; after changes <= 5 per account + 1 per
//! changed user; one cycle of 100,000 users <= 10 s CPU and <= 256 MiB peak RSS; with
//! `per_key = "findings"`, scrape p99 <= 100 ms.

#[path = "support/fake_iam.rs"]
mod fake_iam;
#[path = "support/http_get.rs"]
mod http_get;

use http_get::{client, free_port, scrapes, wait_ready};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn keywarden() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_keywarden"));
    c.env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn");
    c
}

fn config(dir: &Path, addr: std::net::SocketAddr, extra_aws: &str, rest: &str) -> PathBuf {
    let path = dir.join("k.toml");
    std::fs::write(
        &path,
        format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"http://{addr}\"\ninventory = \"credential-report\"\n\
             max_concurrent_requests = 32\n{extra_aws}\
             [aws.organization]\nrole_name = \"keywarden-audit\"\n\
             [state]\npath = \"{}/state.json\"\n{rest}",
            dir.display()
        ),
    )
    .unwrap();
    path
}

struct Cycle {
    wall: f64,
    cpu: f64,
    rss_mib: f64,
    requests: BTreeMap<String, u64>,
}

async fn cycle(iam: &fake_iam::FakeIam, config: &Path, dir: &Path) -> Cycle {
    iam.take_counts();
    let times = dir.join("time.txt");
    let mut cmd = std::process::Command::new("/usr/bin/time");
    cmd.args(["-q", "-f", "%U %S %M", "-o"]).arg(&times);
    let kw = keywarden();
    cmd.arg(kw.get_program())
        .args(["run", "--once", "--config"])
        .arg(config)
        .envs(kw.get_envs().filter_map(|(k, v)| Some((k, v?))));
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run keywarden under /usr/bin/time (Debian package `time`)");
    let wall = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "run --once failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = std::fs::read_to_string(&times).unwrap();
    let f: Vec<f64> = t.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    Cycle {
        wall,
        cpu: f[0] + f[1],
        rss_mib: f[2] / 1024.0,
        requests: iam.take_counts(),
    }
}

fn print(label: &str, c: &Cycle, accounts: usize, changed: usize) {
    let total: u64 = c.requests.values().sum();
    let ops: Vec<String> = c.requests.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "  {label:<32} {total:>7} requests ({:.2}/account{}), wall {:.1} s, CPU {:.2} s, peak RSS {:.0} MiB\n      {}",
        total as f64 / accounts as f64,
        if changed > 0 {
            format!(
                ", {:.2}/account beyond 1 per changed user",
                (total as f64 - changed as f64) / accounts as f64
            )
        } else {
            String::new()
        },
        c.wall,
        c.cpu,
        c.rss_mib,
        ops.join(", ")
    );
}

async fn three_runs(label: &str, accounts: usize, users: usize, pairs_every: usize, full_refresh_every: u32) {
    let iam = Arc::new(fake_iam::FakeIam::organization(accounts, users, 2, pairs_every));
    let addr = Arc::clone(&iam).serve().await;
    let dir = std::env::temp_dir().join(format!("keywarden-org-{}-{full_refresh_every}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = config(
        &dir,
        addr,
        &format!("full_refresh_every = {full_refresh_every}\n"),
        "[metrics]\nper_key = \"findings\"\n",
    );
    println!("{label} (aws.full_refresh_every = {full_refresh_every}):");
    let first = cycle(&iam, &config, &dir).await;
    print("first run", &first, accounts, 0);
    let unchanged = cycle(&iam, &config, &dir).await;
    print("unchanged second run", &unchanged, accounts, 0);
    // 1% of the users rotate their first key: one in 100, spread over the accounts.
    let mut changed = 0;
    {
        let mut r = iam.rotated.lock().unwrap();
        for a in 0..accounts {
            for i in (a % 100..users).step_by(100) {
                r.insert((a, i));
                changed += 1;
            }
        }
    }
    let after = cycle(&iam, &config, &dir).await;
    print(&format!("after {changed} users rotated"), &after, accounts, changed);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn scrape(accounts: usize, users: usize, pairs_every: usize, per_key: &str) {
    let iam = Arc::new(fake_iam::FakeIam::organization(accounts, users, 2, pairs_every));
    let addr = Arc::clone(&iam).serve().await;
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("keywarden-org-scrape-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = config(
        &dir,
        addr,
        "",
        &format!("[schedule]\ncron = \"0 0 0 1 1 *\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\nper_key = {per_key}\n"),
    );
    let mut child = keywarden()
        .args(["run", "--config", config.to_str().unwrap()])
        .spawn()
        .expect("spawn keywarden");
    let client = client();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&client, &base, Instant::now(), Duration::from_secs(900)).await;
    let (lat, page) = scrapes(&client, &format!("{base}/metrics"), 200).await;
    let size = page.len();
    let series = page
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && l[0] != b'#')
        .count();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  per_key = {per_key:<10} page {:>8.1} KiB, {series:>7} series; scrape median {:.2} ms, p99 {:.2} ms",
        size as f64 / 1024.0,
        ms(lat[lat.len() / 2]),
        ms(lat[lat.len() * 99 / 100]),
    );
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("org_cycle: run with `cargo bench --bench org_cycle`");
        return;
    }
    let accounts = env_or("ACCOUNTS", 1000);
    let users = env_or("USERS", 100);
    let pairs_every = env_or("PAIRS_EVERY", 20);
    println!(
        "{accounts} accounts x {users} users ({} users), every {pairs_every}. user with a second active key; credential-report mode, per_key = \"findings\"",
        accounts * users
    );
    three_runs("incremental", accounts, users, pairs_every, 24).await;
    three_runs(
        "every user listed at every run (as before)",
        accounts,
        users,
        pairs_every,
        1,
    )
    .await;
    // SCRAPE=0 skips the scrapes (about 3 minutes at 100,000 users).
    if env_or("SCRAPE", 1) != 0 {
        println!("/metrics after the first run:");
        for per_key in ["true", "false", "\"findings\""] {
            scrape(accounts, users, pairs_every, per_key).await;
        }
    }
    println!(
        "targets: unchanged <= 5 requests/account; after changes <= 5/account + 1/changed user; \
         <= 10 s CPU and <= 256 MiB peak RSS per cycle; per_key = \"findings\" scrape p99 <= 100 ms"
    );
}

//! `cargo bench --bench scrape`: scrape latency of `/metrics` on a daemon holding USERS users
//! (default 10,000) x 2 keys, read from the in-memory fake IAM. Prints median and p99 scrape
//! latency, page size and the daemon's RSS. Targets: p99 < 50 ms, RSS < 64 MiB.

#[path = "support/fake_iam.rs"]
mod fake_iam;
#[path = "support/http_get.rs"]
mod http_get;

use http_get::{client, free_port, scrapes, wait_ready};

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("scrape: run with `cargo bench --bench scrape`");
        return;
    }
    let users: usize = std::env::var("USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let iam = Arc::new(fake_iam::FakeIam::new(users, 2, 1));
    let addr = Arc::clone(&iam).serve().await;
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("keywarden-scrape-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("k.toml");
    std::fs::write(
        &config,
        format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"http://{addr}\"\n[schedule]\ncron = \"0 0 0 1 1 *\"\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\n[state]\npath = \"{}/state.json\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keywarden"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("spawn keywarden");
    let client = client();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&client, &base, started, Duration::from_secs(600)).await;
    let audit_s = started.elapsed().as_secs_f64();
    let (lat, page) = scrapes(&client, &format!("{base}/metrics"), 200).await;
    let size = page.len();
    let pid = child.id();
    let (rss, hwm) = (rss_kib(pid, "VmRSS:"), rss_kib(pid, "VmHWM:"));
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "users {users} x 2 keys; first audit ready after {audit_s:.2} s ({} IAM requests)",
        iam.requests.load(Ordering::Relaxed)
    );
    println!(
        "scrape /metrics x{}: median {:.2} ms, p99 {:.2} ms, max {:.2} ms; page {:.1} KiB",
        lat.len(),
        ms(lat[lat.len() / 2]),
        ms(lat[lat.len() * 99 / 100]),
        ms(lat[lat.len() - 1]),
        size as f64 / 1024.0
    );
    println!(
        "daemon RSS {:.1} MiB (peak {:.1} MiB); targets: p99 < 50 ms, RSS < 64 MiB",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
}

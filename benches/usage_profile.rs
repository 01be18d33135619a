//! `cargo bench --bench usage_profile`: the usage profile's cost in the core. Prints
//! - profile updates per second on one core, into one busy profile and spread over 10,000
//!   (goal: at least 200,000 events/s per core);
//! - heap bytes per profiled key after a realistic month of calls, counted by a counting
//!   allocator (goal: at most 2 KiB), a worst case (every bound full), and what 10,000
//!   profiled keys add to the RSS;
//! - the bytes of a profile in usage.json.
//!
//! Numbers are printed, never asserted: these machines are noisy.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use chrono::{TimeDelta, TimeZone, Utc};
use keywarden::core::usage::event::UsageEvent;
use keywarden::core::usage::profile::{Feed, Profile};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// A deterministic stream of calls as a busy workload makes them: 12 addresses (one of them
/// most), 3 user agents, 6 services, 40 actions, 2 regions, over 30 days.
fn events(n: usize, key: &str, seed: u64) -> Vec<UsageEvent> {
    let agents = [
        "aws-cli/2.17.46 md/awscrt#0.21.2 ua/2.0 os/linux#6.5.0 md/arch#x86_64 lang/python#3.11.10 md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/prompt#off md/command#s3.cp",
        "Boto3/1.34.145 md/Botocore#1.34.145 ua/2.0 os/linux#5.10.233-244.887.amzn2.x86_64 md/arch#x86_64 lang/python#3.11.10 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.145",
        "APN/1.0 HashiCorp/1.0 Terraform/1.11.4 (+https://www.terraform.io) terraform-provider-aws/5.98.0 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.36.3",
    ];
    let services = ["s3", "ec2", "dynamodb", "sts", "lambda", "logs"];
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let mut x = seed;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let r = next();
            let address = if r % 3 == 0 {
                format!("10.0.0.{}", r % 12)
            } else {
                "203.0.113.7".to_string()
            };
            EventSketch {
                id: format!("{key}-{seed}-{i}"),
                time: start + TimeDelta::seconds((i as i64 * 2_592_000) / n.max(1) as i64),
                // 40 actions, each of one of the 6 services (as an API's actions are).
                service: services[((r >> 16) % 40) as usize % services.len()],
                action: format!("Action{}", (r >> 16) % 40),
                region: if r & 1 == 0 { "us-east-1" } else { "eu-west-1" },
                address,
                agent: agents[(r >> 24) as usize % agents.len()],
            }
            .into_event(key)
        })
        .collect()
}

struct EventSketch {
    id: String,
    time: chrono::DateTime<Utc>,
    service: &'static str,
    action: String,
    region: &'static str,
    address: String,
    agent: &'static str,
}

impl EventSketch {
    fn into_event(self, key: &str) -> UsageEvent {
        UsageEvent {
            event_id: self.id,
            time: self.time,
            account_id: "123456789012".into(),
            access_key_id: key.into(),
            service: self.service.into(),
            action: self.action,
            region: self.region.into(),
            source: self.address,
            user_agent: self.agent.into(),
        }
    }
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("usage_profile: run with `cargo bench --bench usage_profile`");
        return;
    }
    // Updates per second: one busy key.
    let stream = events(1_000_000, "AKIABUSY000000000000", 1);
    let mut one = Profile::new("123456789012", "AKIABUSY000000000000");
    let t = Instant::now();
    for e in &stream {
        one.record(e, Feed::Live);
    }
    let rate = stream.len() as f64 / t.elapsed().as_secs_f64();
    println!(
        "profile updates, one key:          {rate:>12.0} events/s ({} events)",
        stream.len()
    );
    drop(stream);

    // Spread over 10,000 keys (each key's own stream, interleaved).
    let keys = 10_000;
    let per_key = 100;
    let streams: Vec<Vec<UsageEvent>> = (0..keys)
        .map(|k| events(per_key, &format!("AKIA{k:016}"), k as u64 + 7))
        .collect();
    let before_profiles = LIVE.load(Ordering::Relaxed);
    let rss_before = rss_kib().unwrap_or(0);
    let mut profiles: Vec<Profile> = (0..keys)
        .map(|k| Profile::new("123456789012", &format!("AKIA{k:016}")))
        .collect();
    let t = Instant::now();
    for i in 0..per_key {
        for (k, s) in streams.iter().enumerate() {
            profiles[k].record(&s[i], Feed::Live);
        }
    }
    let rate = (keys * per_key) as f64 / t.elapsed().as_secs_f64();
    let heap = LIVE.load(Ordering::Relaxed) - before_profiles;
    println!(
        "profile updates, 10,000 keys:      {rate:>12.0} events/s ({} events)",
        keys * per_key
    );
    let inline = std::mem::size_of::<Profile>();
    println!(
        "memory per profiled key (a month, 100 calls): {:>6} bytes ({} inline + {} heap)",
        inline as isize + heap / keys as isize,
        inline,
        heap / keys as isize
    );
    let rss_after = rss_kib().unwrap_or(0);
    drop(streams);
    println!(
        "RSS growth for 10,000 profiled keys: {:>10} KiB (RSS {} KiB, with this benchmark's own event streams)",
        rss_after.saturating_sub(rss_before),
        rss_after
    );

    // A busy month: 5,000 calls of one key.
    let before = LIVE.load(Ordering::Relaxed);
    let mut busy = Profile::new("123456789012", "AKIAMONTH00000000000");
    for e in &events(5_000, "AKIAMONTH00000000000", 3) {
        busy.record(e, Feed::Live);
    }
    let heap = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "memory of a busy key (5,000 calls):   {:>6} bytes",
        inline as isize + heap
    );

    // The worst case: every bound full (one-off addresses, agents, services, regions, actions).
    let before = LIVE.load(Ordering::Relaxed);
    let mut worst = Profile::new("123456789012", "AKIAWORST00000000000");
    for (i, mut e) in events(20_000, "AKIAWORST00000000000", 5).into_iter().enumerate() {
        e.source = format!("2001:db8::{i:x}");
        e.user_agent = format!("{}{i}", "x".repeat(240));
        e.service = format!("service{}", i % 64);
        e.region = format!("region-{}", i % 64);
        e.action = format!("SomeLongerActionName{i}");
        worst.record(&e, Feed::Live);
    }
    let heap = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "memory of a full profile (every bound): {:>6} bytes",
        inline as isize + heap
    );
    profiles.push(busy);
    std::hint::black_box(&profiles);
    std::hint::black_box(&worst);
    std::hint::black_box(&one);
}

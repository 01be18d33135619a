//! Several real `keywarden run` processes on one DynamoDB state table (moto serves IAM and
//! DynamoDB on one port): exactly one leader; the leader killed with SIGKILL ten times during
//! enforcement, each time replaced by a new process; a leader paused past its lease and
//! resumed; every host replaced; a file state imported. Each process signs with its own access
//! key id, so moto's per-caller counts say who sent which UpdateAccessKey.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

const LEASE: Duration = Duration::from_secs(3);

/// One test at a time: each runs several daemons against its own moto, and timing claims
/// (takeover within a lease and a tick) should not depend on how many others share the CPU.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Renewals and takeover checks come every third of the lease.
const TICK: Duration = Duration::from_secs(1);

/// moto_config puts a `[state]` table of its own first; the later one would be a duplicate
/// key, so the config is written whole here.
fn write_config(dir: &TempDir, moto: &Moto, state: &str, extra: &str) -> PathBuf {
    dir.write(
        "keywarden.toml",
        &format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nmax_attempts = 2\n\n{state}\n{extra}",
            moto.endpoint()
        ),
    )
}

fn dynamodb_state(dir: &Path, table: &str) -> String {
    format!(
        "[state]\nbackend = \"dynamodb\"\npath = \"{}\"\n[state.dynamodb]\ntable = \"{table}\"\nlease_duration = \"3s\"\n",
        dir.join("state.json").display()
    )
}

fn cfg(config: &Path) -> &str {
    config.to_str().expect("utf-8 path")
}

fn state_init(config: &Path) {
    let (code, out, err) = outputs(&mut keywarden(&["state", "init", "--config", cfg(config)]));
    assert_eq!(code, 0, "state init: {out}{err}");
}

/// Instance `n`: its own metrics port and its own access key id.
fn instance(config: &Path, dir: &TempDir, n: usize) -> DaemonProcess {
    let port = free_port();
    let mut cmd = keywarden(&["run", "--config", cfg(config)]);
    cmd.env("AWS_ACCESS_KEY_ID", caller(n))
        .env("KEYWARDEN_METRICS__LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info");
    DaemonProcess::spawn(cmd, port, dir.0.join(format!("instance-{n}.log")))
}

fn caller(n: usize) -> String {
    format!("AKIDINSTANCE{n:04}")
}

async fn is_leader(d: &DaemonProcess) -> bool {
    match d.get("/metrics").await {
        Some((200, body)) => metric(&body, "keywarden_leader", &[]) == Some(1.0),
        _ => false,
    }
}

/// The index of the one leader among `live`, waiting up to `secs`; panics if two lead at once.
///
/// Each instance reads its lease when scraped, but the scrapes of one sample are served a few
/// milliseconds apart (more under load), and a handover inside that gap shows the old leader's
/// last 1 and the new one's first. Two leaders count only when the next sample agrees: a real
/// overlap would last until the old leader's renewal failed, a third of a lease at least.
async fn leader(live: &[DaemonProcess], secs: f64) -> Option<usize> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut seen_two: Option<Vec<usize>> = None;
    loop {
        let gauges = futures_util::future::join_all(live.iter().map(is_leader)).await;
        let leading: Vec<usize> = gauges.iter().enumerate().filter(|(_, l)| **l).map(|(i, _)| i).collect();
        if leading.len() > 1 {
            if let Some(before) = seen_two.replace(leading.clone()) {
                panic!("more than one leader in two samples in a row: {before:?}, then {leading:?}");
            }
            continue;
        }
        seen_two = None;
        if let Some(i) = leading.first() {
            return Some(*i);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn successes(entries: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in entries
        .iter()
        .filter(|e| e["action"] == "deactivate" && e["outcome"] == "success")
    {
        out.entry(e["access_key_id"].as_str().unwrap_or("").to_string())
            .or_default()
            .push(e.clone());
    }
    out
}

/// `access key id/rule` -> (first_seen, deactivate_after) of its findings that are not
/// exempt (exempt ones are not remembered), from `audit --format json`.
fn deadlines(config: &Path) -> BTreeMap<String, (String, String)> {
    let (_, report, err) = audit_json(config, &[]);
    report["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings: {report}\n{err}"))
        .iter()
        .filter(|f| f["exempt"] == false)
        .map(|f| {
            (
                format!(
                    "{}/{}",
                    f["access_key_id"].as_str().unwrap_or(""),
                    f["rule"].as_str().unwrap_or("")
                ),
                (f["first_seen"].to_string(), f["deactivate_after"].to_string()),
            )
        })
        .collect()
}

/// The runs a `/metrics` page says were published (`keywarden_audit_runs_total`, success and
/// failed): a run's audit is published before it enforces, and runs never overlap, so `n` more
/// than now means at least `n - 1` whole runs took place since.
fn runs_published(page: &str) -> f64 {
    ["success", "failed"]
        .iter()
        .filter_map(|o| metric(page, "keywarden_audit_runs_total", &[("outcome", o)]))
        .sum()
}

/// Waits until `d` has published `n` more runs than it had at its next answer.
async fn wait_runs(d: &DaemonProcess, n: f64, secs: u64) {
    let now = runs_published(&d.wait_metrics(secs, "an answer", |_| true).await);
    d.wait_metrics(secs, &format!("{n} more runs"), |p| runs_published(p) >= now + n)
        .await;
}

async fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_kills_of_the_leader_lose_no_grace_period_and_act_once_per_key() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::start();
    let due: Vec<String> = (0..16).map(|i| format!("due-{i:02}")).collect();
    let exempt = ["keep-0", "keep-1"];
    let names: Vec<&str> = due.iter().map(String::as_str).chain(exempt).collect();
    let keys = idle_users(&moto, &names).await;
    let key_of: BTreeMap<&str, &str> = names.iter().copied().zip(keys.iter().map(|k| k.id.as_str())).collect();
    let dir = TempDir::new("lease-kill");
    let config = write_config(
        &dir,
        &moto,
        &dynamodb_state(&dir.0, "keywarden-kill"),
        "[schedule]\ncron = \"* * * * * *\"\n\
         [enforcement]\nmode = \"enforce\"\ngrace_period = \"8s\"\nmax_deactivations_per_run = 1\n\
         [[exemptions]]\nuser = \"keep-*\"\nreason = \"test\"\n",
    );
    state_init(&config);

    let mut live: Vec<DaemonProcess> = (0..3).map(|n| instance(&config, &dir, n)).collect();
    let mut next_id = 3;
    leader(&live, 15.0).await.expect("a leader");
    // Exactly one, and it stays so.
    for _ in 0..10 {
        assert!(leader(&live, 0.0).await.is_some(), "no leader for a moment");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The first-seen times the first leader recorded.
    // The first-seen times the first leader recorded: an audit without them would count
    // every finding as first seen now, so two audits a second apart agree only once they are.
    let started = Instant::now();
    let first = loop {
        let a = deadlines(&config);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        if a.len() == due.len() && deadlines(&config) == a {
            break a;
        }
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "no first-seen times recorded: {a:?}"
        );
    };

    // Slow deactivations, so that kills land in the middle of them.
    moto.set_faults(r#"{"_delay": {"UpdateAccessKey": 0.4}}"#);
    wait_until(30, "the first deactivation", || {
        !successes(&history_json(&config)).is_empty()
    })
    .await;
    let mut takeovers = Vec::new();
    let mut seed = 7u64;
    for kill in 0..10 {
        let l = leader(&live, 10.0)
            .await
            .unwrap_or_else(|| panic!("no leader before kill {kill}"));
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis(300 + (seed >> 33) % 1200)).await;
        let mut victim = live.remove(l);
        victim.signal(libc::SIGKILL);
        let killed = Instant::now();
        let _ = victim.wait_exit(5);
        live.push(instance(&config, &dir, next_id));
        next_id += 1;
        // The survivors have been watching the lease; the new process may win too.
        leader(&live, (LEASE + TICK * 3).as_secs_f64())
            .await
            .unwrap_or_else(|| panic!("no takeover after kill {kill}"));
        takeovers.push(killed.elapsed());
    }
    moto.set_faults("{}");

    let iam = moto.iam();
    let due_users: Vec<&str> = due.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let statuses = key_statuses(&iam, &due_users).await;
        if statuses.values().all(|s| s == "Inactive") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every due key was deactivated: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The journal entry follows the read-back (or a later run's, for a kill in between).
    wait_until(15, "every deactivation journaled", || {
        successes(&history_json(&config)).len() >= due.len()
    })
    .await;

    let entries = history_json(&config);
    let done = successes(&entries);
    let late = entries
        .iter()
        .filter(|e| e["error"].as_str().is_some_and(|m| m.contains("later run")))
        .count();
    println!("takeover after each kill: {takeovers:?}; deactivations journaled late (killed between action and record): {late}");
    for t in &takeovers {
        // Lease + one tick, plus the metrics polling and process start-up of the test.
        assert!(*t <= LEASE + TICK + Duration::from_millis(1500), "takeover took {t:?}");
    }
    for u in &due {
        let key = key_of[u.as_str()];
        let got = done.get(key).map(Vec::len).unwrap_or(0);
        assert_eq!(
            got, 1,
            "{u} ({key}) deactivated {got} times in the journal: {entries:#?}"
        );
        let first_seen = &first[&format!("{key}/unused_key")].0;
        assert_eq!(
            &done[key][0]["first_seen"].to_string(),
            first_seen,
            "{u}: its grace period restarted"
        );
    }
    for u in exempt {
        let key = key_of[u];
        assert!(entries.iter().all(|e| e["access_key_id"] != key), "{u} was journaled");
    }
    let statuses = key_statuses(&iam, &exempt).await;
    assert!(
        statuses.values().all(|s| s == "Active"),
        "an exempt key was touched: {statuses:?}"
    );
    let updates: u64 = moto
        .callers()
        .as_object()
        .map(|m| m.values().filter_map(|v| v["UpdateAccessKey"].as_u64()).sum())
        .unwrap_or(0);
    assert!(updates >= due.len() as u64, "UpdateAccessKey calls: {updates}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_paused_past_its_lease_acts_on_nothing_after_it_resumes() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::start();
    let names: Vec<String> = (0..8).map(|i| format!("idle-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    idle_users(&moto, &refs).await;
    let dir = TempDir::new("lease-pause");
    let config = write_config(
        &dir,
        &moto,
        &dynamodb_state(&dir.0, "keywarden-pause"),
        "[schedule]\ncron = \"* * * * * *\"\n\
         [enforcement]\nmode = \"enforce\"\ngrace_period = \"1s\"\nmax_deactivations_per_run = 1\n",
    );
    state_init(&config);
    moto.set_faults(r#"{"_delay": {"UpdateAccessKey": 0.3}}"#);
    let live: Vec<DaemonProcess> = (0..2).map(|n| instance(&config, &dir, n)).collect();
    let l = leader(&live, 15.0).await.expect("a leader");
    let paused = &live[l];
    let other = &live[1 - l];
    wait_until(30, "a deactivation by the leader", || {
        !successes(&history_json(&config)).is_empty()
    })
    .await;

    paused.signal(libc::SIGSTOP);
    let stopped_at = Instant::now();
    let mut took_over = false;
    while stopped_at.elapsed() < LEASE + TICK * 3 {
        if is_leader(other).await {
            took_over = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        took_over,
        "the other instance did not take over; logs:\n{}",
        other.logs()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = moto.callers()[caller(l)]["UpdateAccessKey"].as_u64().unwrap_or(0);
    let log_before = paused.logs().len();
    paused.signal(libc::SIGCONT);
    // Several of its cron runs (a run per second), each with its lease check, enforced or not.
    // Counted from its first answer after the pause (a stopped process answers nothing).
    wait_runs(paused, 4.0, 30).await;
    let after = moto.callers()[caller(l)]["UpdateAccessKey"].as_u64().unwrap_or(0);
    let resumed_log = paused.logs()[log_before..].to_string();
    assert_eq!(
        after, before,
        "the resumed instance sent UpdateAccessKey; its log:\n{resumed_log}"
    );
    assert!(
        !resumed_log.contains("deactivated access key"),
        "the resumed instance acted:\n{resumed_log}"
    );
    assert!(!is_leader(paused).await, "the resumed instance still says it leads");
    assert!(is_leader(other).await);
    let done = successes(&history_json(&config));
    assert!(done.values().all(|v| v.len() == 1), "a key deactivated twice: {done:?}");
    moto.set_faults("{}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grace_period_survives_replacing_every_host() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::start();
    idle_users(&moto, &["idle"]).await;
    let host_a = TempDir::new("lease-host-a");
    let host_b = TempDir::new("lease-host-b");
    let extra = "[enforcement]\nmode = \"enforce\"\ngrace_period = \"1h\"\n[schedule]\ncron = \"* * * * * *\"\n";
    let config_a = write_config(&host_a, &moto, &dynamodb_state(&host_a.0, "keywarden-hosts"), extra);
    let config_b = write_config(&host_b, &moto, &dynamodb_state(&host_b.0, "keywarden-hosts"), extra);
    state_init(&config_a);
    let mut a = instance(&config_a, &host_a, 0);
    wait_until(15, "a first-seen time", || deadlines(&config_a).len() == 1).await;
    let recorded = deadlines(&config_a);
    a.signal(libc::SIGTERM);
    assert_eq!(a.wait_exit(10).0, Some(0));
    drop(a);
    drop(host_a);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let b = instance(&config_b, &host_b, 1);
    assert!(
        leader(std::slice::from_ref(&b), 5.0).await.is_some(),
        "the released lease is taken at once"
    );
    b.first_audit().await;
    let (_, body) = b.get("/api/v1/report").await.expect("report");
    let report: Value = serde_json::from_str(&body).expect("report json");
    let f = &report["findings"][0];
    assert_eq!(
        (f["first_seen"].to_string(), f["deactivate_after"].to_string()),
        recorded.values().next().cloned().unwrap(),
        "the new host restarted the grace period"
    );
    assert!(!host_b.0.join("state.json").exists(), "a state file was written");
}

#[tokio::test(flavor = "multi_thread")]
async fn state_import_keeps_every_deadline_and_the_journal() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::start();
    idle_users(&moto, &["a", "b"]).await;
    let dir = TempDir::new("lease-import");
    let file_config = moto_config(
        &dir,
        &moto,
        "[enforcement]\nmode = \"enforce\"\ngrace_period = \"0s\"\nmax_deactivations_per_run = 1\n",
    );
    // One run: both first seen, one deactivated (the cap), one pending with its failure-free history.
    let (code, _, err) = outputs(&mut keywarden(&["run", "--once", "--config", cfg(&file_config)]));
    assert_eq!(code, 0, "{err}");
    let file_config_grace = dir.write(
        "grace.toml",
        &std::fs::read_to_string(&file_config)
            .unwrap()
            .replace("\"0s\"", "\"30d\""),
    );
    let before = deadlines(&file_config_grace);
    let journal_before = history_json(&file_config);
    assert_eq!(journal_before.len(), 1);

    let table_dir = TempDir::new("lease-import-table");
    let table_config = write_config(
        &table_dir,
        &moto,
        &dynamodb_state(&table_dir.0, "keywarden-import"),
        "[enforcement]\ngrace_period = \"30d\"\n",
    );
    let (code, _, err) = outputs(&mut keywarden(&["state", "init", "--config", cfg(&file_config)]));
    assert_eq!(code, 2, "state init needs a table backend: {err}");
    state_init(&table_config);
    state_init(&table_config);
    let state_file = dir.0.join("state.json");
    let (code, out, err) = outputs(&mut keywarden(&[
        "state",
        "import",
        state_file.to_str().unwrap(),
        "--config",
        cfg(&table_config),
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 journal entries"), "{out}");
    assert_eq!(deadlines(&table_config), before, "the table gives other deadlines");
    assert_eq!(history_json(&table_config), journal_before);
    let (code, _, err) = outputs(&mut keywarden(&[
        "state",
        "import",
        state_file.to_str().unwrap(),
        "--config",
        cfg(&table_config),
    ]));
    assert_eq!(code, 1, "a second import into a table with state is refused");
    assert!(err.contains("already holds state"), "{err}");
}

fn policy_statements() -> Vec<std::collections::BTreeSet<String>> {
    let text = std::fs::read_to_string(repo().join("packaging/iam-policy-dynamodb.json")).unwrap();
    let p: Value = serde_json::from_str(&text).expect("policy is JSON");
    p["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["Action"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

/// The IAM actions behind the requests one caller sent (a transaction needs the permission
/// of each action it contains).
fn table_actions(callers: &Value, who: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for (op, _) in callers[who].as_object().cloned().unwrap_or_default() {
        // IAM and STS requests are counted here too; only DynamoDB's operations count.
        let needs: &[&str] = match op.as_str() {
            "TransactWriteItems" => &["PutItem", "DeleteItem", "ConditionCheckItem"],
            "TransactGetItems" => &["GetItem"],
            "GetItem" | "PutItem" | "UpdateItem" | "DeleteItem" | "Query" | "Scan" | "BatchGetItem"
            | "BatchWriteItem" | "CreateTable" | "DescribeTable" | "DescribeTimeToLive" | "UpdateTimeToLive" => {
                out.insert(format!("dynamodb:{op}"));
                &[]
            }
            _ => &[],
        };
        out.extend(needs.iter().map(|a| format!("dynamodb:{a}")));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_table_policy_allows_exactly_what_the_code_calls() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::start();
    idle_users(&moto, &["a", "b"]).await;
    let dir = TempDir::new("lease-policy");
    let config = write_config(
        &dir,
        &moto,
        &dynamodb_state(&dir.0, "keywarden"),
        "[schedule]\ncron = \"* * * * * *\"\n[enforcement]\nmode = \"enforce\"\ngrace_period = \"1s\"\n",
    );
    let (code, _, err) =
        outputs(keywarden(&["state", "init", "--config", cfg(&config)]).env("AWS_ACCESS_KEY_ID", caller(90)));
    assert_eq!(code, 0, "{err}");
    let mut d = instance(&config, &dir, 91);
    wait_until(30, "both keys deactivated", || {
        successes(&history_json(&config)).len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(10).0, Some(0));
    let callers = moto.callers();
    let statements = policy_statements();
    let (run_policy, init_policy) = (&statements[0], &statements[1]);
    let run_calls = table_actions(&callers, &caller(91));
    let init_calls = table_actions(&callers, &caller(90));
    assert_eq!(&run_calls, run_policy, "the daemon's table calls and the policy differ");
    assert!(init_calls.is_subset(init_policy), "state init calls {init_calls:?}");
    assert!(init_calls.contains("dynamodb:CreateTable"), "{init_calls:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_table_stops_enforcement_keeps_serving_and_recovers() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::start();
    idle_users(&moto, &["a", "b"]).await;
    let dir = TempDir::new("lease-faults");
    let config = write_config(
        &dir,
        &moto,
        &dynamodb_state(&dir.0, "keywarden-faults"),
        "[schedule]\ncron = \"* * * * * *\"\n[enforcement]\nmode = \"enforce\"\ngrace_period = \"0s\"\n",
    );
    state_init(&config);
    let statuses = || async { key_statuses(&moto.iam(), &["a", "b"]).await };
    for fault in [
        // The state cannot be read: no decision on partial state.
        r#"{"_unavailable": {"Query": 1.0}}"#,
        // The first-seen times cannot be written: nothing is acted on.
        r#"{"_unavailable": {"TransactWriteItems": 1.0}}"#,
    ] {
        moto.set_faults(fault);
        let d = instance(&config, &dir, 1);
        assert!(leader(std::slice::from_ref(&d), 5.0).await.is_some());
        d.first_audit().await;
        // Enforcement was reached and refused (not merely not yet run).
        d.wait_metrics(15, "keywarden_state_ok 0", |p| {
            metric(p, "keywarden_state_ok", &[]) == Some(0.0)
        })
        .await;
        let (_, page) = d.get("/metrics").await.expect("metrics");
        assert_eq!(metric(&page, "keywarden_state_ok", &[]), Some(0.0), "{}", d.logs());
        assert_eq!(
            metric(&page, "keywarden_audit_success", &[]),
            Some(1.0),
            "the audit is published"
        );
        assert_eq!(d.get("/-/ready").await.map(|r| r.0), Some(200), "still ready");
        assert!(
            statuses().await.values().all(|s| s == "Active"),
            "a key was deactivated with {fault}"
        );
        // A clean stop releases the lease for the next instance.
        let mut d = d;
        d.signal(libc::SIGTERM);
        assert_eq!(d.wait_exit(10).0, Some(0));
    }
    moto.set_faults("{}");
    let d = instance(&config, &dir, 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !statuses().await.values().all(|s| s == "Inactive") {
        assert!(Instant::now() < deadline, "no recovery; logs:\n{}", d.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = d
        .wait_metrics(10, "state ok", |m| metric(m, "keywarden_state_ok", &[]) == Some(1.0))
        .await;
    assert_eq!(metric(&page, "keywarden_leader", &[]), Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn reactivate_works_from_another_host_and_the_leader_honours_the_snooze() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::start();
    let keys = idle_users(&moto, &["app"]).await;
    let host_a = TempDir::new("lease-undo-a");
    let host_b = TempDir::new("lease-undo-b");
    let extra = "[schedule]\ncron = \"* * * * * *\"\n[enforcement]\nmode = \"enforce\"\ngrace_period = \"0s\"\n";
    let config_a = write_config(&host_a, &moto, &dynamodb_state(&host_a.0, "keywarden-undo"), extra);
    let config_b = write_config(&host_b, &moto, &dynamodb_state(&host_b.0, "keywarden-undo"), extra);
    state_init(&config_a);
    let d = instance(&config_a, &host_a, 0);
    let status = || async {
        key_statuses(&moto.iam(), &["app"])
            .await
            .remove(&keys[0].id)
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while status().await != "Inactive" {
        assert!(Instant::now() < deadline, "not deactivated; logs:\n{}", d.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Reactivate while a run is in the middle of it: that run loaded the state before the
    // snooze existed and lists the user's keys (one user: api mode) after the reactivation,
    // so it sees the key Active again and plans to deactivate it; the check before
    // UpdateAccessKey must find the snooze in the table. moto counts ListUsers on arrival and
    // then holds it, so the reactivation lands inside that run.
    moto.set_faults(r#"{"_delay": {"ListUsers": 5}}"#);
    let listed = || moto.callers()[caller(0)]["ListUsers"].as_u64().unwrap_or(0);
    let before = listed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while listed() == before {
        assert!(Instant::now() < deadline, "no run started; logs:\n{}", d.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // From host B, which has no files of its own: the journal and the snooze are in the table.
    let (code, out, err) = outputs(
        keywarden(&[
            "reactivate",
            &keys[0].id,
            "--reason",
            "INC-9",
            "--snooze",
            "1h",
            "--config",
            cfg(&config_b),
        ])
        .env("SUDO_USER", "oncall"),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(status().await, "Active");
    // The run in flight ends (the next one's publication proves it); later ones load the
    // snooze. All leave the key alone.
    wait_runs(&d, 2.0, 30).await;
    moto.set_faults("{}");
    wait_runs(&d, 3.0, 30).await;
    assert_eq!(
        status().await,
        "Active",
        "deactivated during its snooze; logs:\n{}",
        d.logs()
    );
    // Newest first: the reactivation, then only the run in flight's refusal.
    let entries = history_json(&config_b);
    let undo = entries
        .iter()
        .position(|e| e["action"] == "reactivate")
        .unwrap_or_else(|| panic!("no reactivation journaled: {entries:?}"));
    assert_eq!(entries[undo]["operator"], "oncall");
    assert_eq!(entries[undo]["reason"], "INC-9");
    let [refused] = &entries[..undo] else {
        panic!("not exactly one entry after the reactivation: {entries:?}");
    };
    assert_eq!(refused["action"], "deactivate", "{entries:?}");
    assert_eq!(refused["outcome"], "no_longer_due", "{entries:?}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("snoozed by an operator")),
        "{refused}"
    );
    // Stamped when it was decided (after ListUsers was held), not when its run began.
    assert!(
        refused["time"].as_str() > entries[undo]["time"].as_str(),
        "the refusal is dated before the reactivation it followed: {entries:?}"
    );
    assert!(!host_b.0.join("state.json").exists() && !host_b.0.join("actions.jsonl").exists());
}

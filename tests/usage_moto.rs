//! Usage profiles end to end, through the real binary against moto: `keywarden usage
//! --backfill` over the launcher's CloudTrail LookupEvents (four workloads told apart by their
//! calls, every page read at CloudTrail's pace, a second backfill that sends nothing and
//! counts nothing twice, a rejected record counted and left out, the least-privilege policy of
//! one user), and the daemon consuming the usage queue through moto's EventBridge and SQS
//! (each event counted once, each bad one with its outcome, no re-audit).

use serde_json::{json, Value};

use crate::common::*;

/// A CloudTrail record as a trail writes it, `hours` ago.
fn record(id: &str, key: &str, user: &str, agent: &str, address: &str, call: (&str, &str), hours: i64) -> Value {
    let time = chrono::Utc::now() - chrono::TimeDelta::hours(hours);
    json!({
        "eventVersion": "1.09",
        "eventID": id,
        "eventTime": time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": call.0,
        "eventName": call.1,
        "awsRegion": "us-east-1",
        "sourceIPAddress": address,
        "userAgent": agent,
        "readOnly": true,
        "recipientAccountId": "123456789012",
        "userIdentity": {"type": "IAMUser", "userName": user, "accessKeyId": key,
                         "arn": format!("arn:aws:iam::123456789012:user/{user}")}
    })
}

const CLI: &str = "aws-cli/2.17.46 md/awscrt#0.21.2 ua/2.0 os/macos#24.1.0 md/arch#arm64 lang/python#3.11.10 md/pyimpl#CPython cfg/retry-mode#standard md/installer#source md/prompt#off md/command#s3.ls";
const TERRAFORM: &str = "APN/1.0 HashiCorp/1.0 Terraform/1.11.4 (+https://www.terraform.io) terraform-provider-aws/5.98.0 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.36.3 ua/2.1 os/linux lang/go#1.23.8 md/GOOS#linux md/GOARCH#amd64 api/ec2#1.79.3 m/Z,g";
const LAMBDA: &str = "Boto3/1.34.145 md/Botocore#1.34.145 ua/2.0 os/linux#5.10.233-244.887.amzn2.x86_64 md/arch#x86_64 lang/python#3.11.10 md/pyimpl#CPython exec-env/AWS_Lambda_python3.11 cfg/retry-mode#legacy Botocore/1.34.145";
const GITHUB: &str = "configure-aws-credentials-for-github-actions";

fn by_user<'a>(report: &'a Value, user: &str) -> &'a Value {
    report
        .as_array()
        .expect("an array")
        .iter()
        .find(|k| k["user"] == user)
        .unwrap_or_else(|| panic!("{user} in {report:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_profiles_from_a_backfill_name_the_workload_and_what_should_replace_each_key() {
    let moto = Moto::start();
    let dir = TempDir::new("usage");
    let iam = moto.iam();
    let mut keys = std::collections::BTreeMap::new();
    for user in ["alice", "deploy", "orders-fn", "release"] {
        create_user(&iam, user, None).await;
        keys.insert(user, create_key(&iam, user).await.id);
    }
    let mut records = Vec::new();
    // alice, by hand with the AWS CLI: 120 calls, three pages.
    for i in 0..120 {
        let call = if i % 2 == 0 {
            ("s3.amazonaws.com", "ListBuckets")
        } else {
            ("ec2.amazonaws.com", "DescribeInstances")
        };
        records.push(record(
            &format!("a-{i}"),
            &keys["alice"],
            "alice",
            CLI,
            "198.51.100.7",
            call,
            i,
        ));
    }
    for i in 0..5 {
        let tf = ("ec2.amazonaws.com", "DescribeVpcs");
        records.push(record(
            &format!("t-{i}"),
            &keys["deploy"],
            "deploy",
            TERRAFORM,
            &format!("203.0.113.{i}"),
            tf,
            i,
        ));
        let put = ("dynamodb.amazonaws.com", "PutItem");
        records.push(record(
            &format!("l-{i}"),
            &keys["orders-fn"],
            "orders-fn",
            LAMBDA,
            "3.80.1.2",
            put,
            i,
        ));
    }
    records.push(record(
        "g-0",
        &keys["release"],
        "release",
        GITHUB,
        "20.1.2.3",
        ("sts.amazonaws.com", "GetCallerIdentity"),
        2,
    ));
    records.push(record(
        "g-1",
        &keys["release"],
        "release",
        CLI,
        "20.1.2.3",
        ("s3.amazonaws.com", "PutObject"),
        1,
    ));
    // A record whose event name is no IAM action: rejected, counted, left out.
    records.push(record(
        "bad",
        &keys["alice"],
        "alice",
        CLI,
        "198.51.100.7",
        ("s3.amazonaws.com", "Put Object!"),
        3,
    ));
    moto.store_cloudtrail(&records);
    let usage = format!("[usage]\ncloudtrail_endpoint_url = \"{}\"\n", moto.endpoint());
    let config = moto_config(&dir, &moto, &usage);
    let cfg = config.to_str().unwrap();
    moto.take_stats();

    let (code, out, err) = outputs(&mut keywarden(&[
        "usage",
        "--backfill",
        "--format",
        "json",
        "--config",
        cfg,
    ]));
    assert_eq!(code, 0, "{err}");
    let stats = moto.take_stats();
    // A request throttled anyway (the network can bring two closer than the pace) is waited
    // out and sent again: count the answered ones.
    let throttled = stats["LookupEvents:ThrottlingException"].as_u64().unwrap_or(0);
    assert_eq!(
        stats["LookupEvents"].as_u64().unwrap_or(0) - throttled,
        3 + 1 + 1 + 1,
        "alice 3 pages, one each for the others: {stats}"
    );
    let said = format!("{} LookupEvents requests ({throttled} throttled", 6 + throttled);
    assert!(
        err.contains(&said) && err.contains("132 events counted") && err.contains("1 rejected"),
        "{err}"
    );
    let report: Value = serde_json::from_str(&out).expect("JSON");
    let alice = by_user(&report, "alice");
    assert_eq!(
        (alice["workload"].as_str(), alice["replacement"]["kind"].as_str()),
        (Some("person"), Some("identity_center"))
    );
    assert_eq!(alice["events_total"], 120);
    assert_eq!(alice["events"], 120, "all within 30 days (120 hours)");
    assert_eq!(alice["sources"], json!([{"address": "198.51.100.7", "count": 120}]));
    assert_eq!(alice["actions"], json!(["ec2:DescribeInstances", "s3:ListBuckets"]));
    assert_eq!(alice["backfill"], "done");
    let deploy = by_user(&report, "deploy");
    assert_eq!(deploy["workload"], "terraform", "{deploy:#}");
    let lambda = by_user(&report, "orders-fn");
    assert_eq!(
        (lambda["workload"].as_str(), lambda["replacement"]["kind"].as_str()),
        (Some("aws_lambda"), Some("execution_role"))
    );
    let release = by_user(&report, "release");
    assert_eq!(release["workload"], "github_actions");
    let trust = &release["replacement"]["trust_policy"]["Statement"][0];
    assert_eq!(
        trust["Principal"]["Federated"],
        "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    );
    assert_eq!(
        trust["Condition"]["StringLike"]["token.actions.githubusercontent.com:sub"],
        "repo:OWNER/REPO:*"
    );

    // Finished: a second backfill sends nothing and counts nothing twice.
    let (code, out, err) = outputs(&mut keywarden(&[
        "usage",
        "alice",
        "--backfill",
        "--format",
        "json",
        "--config",
        cfg,
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(moto.take_stats().get("LookupEvents").is_none(), "nothing read again");
    let again: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(again.as_array().unwrap().len(), 1, "one user's keys");
    assert_eq!(again[0]["events_total"], 120);

    // The table a person reads, and the policy of what alice called.
    let (code, table, err) = outputs(&mut keywarden(&["usage", "orders-fn", "--config", cfg]));
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("aws_lambda") && table.contains("exec-env/AWS_Lambda_python3.11"),
        "{table}"
    );
    assert!(table.lines().all(|l| l.chars().count() <= 80), "{table}");
    let (code, policy, err) = outputs(&mut keywarden(&["usage", "alice", "--policy", "--config", cfg]));
    assert_eq!(code, 0, "{err}");
    let policy: Value = serde_json::from_str(&policy).expect("a policy document");
    let actions: Vec<&str> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Action"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()))
        .collect();
    assert_eq!(actions, ["ec2:DescribeInstances", "s3:ListBuckets"]);
    assert!(err.contains("Resource is \"*\""), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_lookup_fails_the_command_and_keeps_nothing_that_looks_finished() {
    let moto = Moto::start();
    let dir = TempDir::new("usage-denied");
    let iam = moto.iam();
    create_user(&iam, "alice", None).await;
    let key = create_key(&iam, "alice").await.id;
    moto.store_cloudtrail(&[record(
        "a-0",
        &key,
        "alice",
        CLI,
        "198.51.100.7",
        ("s3.amazonaws.com", "ListBuckets"),
        1,
    )]);
    // Nothing answers CloudTrail there: the read fails in the transport's words.
    let config = moto_config(
        &dir,
        &moto,
        "[usage]\ncloudtrail_endpoint_url = \"http://127.0.0.1:9\"\n",
    );
    let (code, out, err) = outputs(&mut keywarden(&[
        "usage",
        "--backfill",
        "--format",
        "json",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("CloudTrail") && err.contains(&key), "{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(report[0]["backfill"], "not_started", "{report:#}");
}

/// The usage queue as the packaged rule feeds it: CloudTrail events signed by a long-term key.
fn usage_queue(moto: &Moto) -> String {
    let pattern = json!({
        "detail-type": ["AWS API Call via CloudTrail"],
        "detail": {"userIdentity": {"accessKeyId": [{"prefix": "AKIA"}]}}
    });
    crate::events_moto::queue_with_pattern(moto, "keywarden-usage", pattern)
}

/// The daemon with this `[usage]` table (and a cron that never comes: the first run only), and
/// its config file.
fn usage_daemon(moto: &Moto, dir: &TempDir, usage: &str) -> (DaemonProcess, std::path::PathBuf) {
    let port = free_port();
    let config = moto_config(
        dir,
        moto,
        &format!("[schedule]\ncron = \"0 0 0 1 1 *\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n[usage]\n{usage}"),
    );
    let d = DaemonProcess::spawn(
        keywarden(&["run", "--config", config.to_str().unwrap()]),
        port,
        dir.0.join("log"),
    );
    (d, config)
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_events_from_the_queue_count_once_and_bad_ones_have_defined_outcomes() {
    use crate::events_moto::put_event;
    let moto = Moto::start();
    let url = usage_queue(&moto);
    let iam = moto.iam();
    create_user(&iam, "alice", None).await;
    let key = create_key(&iam, "alice").await.id;
    let second = create_key(&iam, "alice").await.id;
    let dir = TempDir::new("usage-queue");
    let usage = format!(
        "enabled = true\nqueue_url = \"{url}\"\nendpoint_url = \"{}\"\n",
        moto.endpoint()
    );
    let (d, config) = usage_daemon(&moto, &dir, &usage);
    let first = d
        .wait_metrics(30, "the first run", |m| {
            metric(m, "keywarden_user_active_access_keys", &[("user", "alice")]) == Some(2.0)
        })
        .await;
    // No profile yet: both keys are published, as unknown.
    assert_eq!(
        metric(&first, "keywarden_access_keys_by_workload", &[("workload", "unknown")]),
        Some(2.0),
        "{first}"
    );
    let (status, api) = d.get("/api/v1/usage").await.expect("/api/v1/usage");
    assert_eq!(status, 200, "{api}");
    let api: Value = serde_json::from_str(&api).expect("JSON");
    assert_eq!(api.as_array().map(Vec::len), Some(2), "{api:#}");

    let detail =
        |id: &str, key: &str, name: &str| record(id, key, "alice", CLI, "198.51.100.7", ("s3.amazonaws.com", name), 0);
    for (id, k, name) in [
        ("u-1", key.as_str(), "ListBuckets"),
        ("u-2", key.as_str(), "GetObject"),
        ("u-3", key.as_str(), "PutObject"),
        ("u-1", key.as_str(), "ListBuckets"),           // delivered twice
        ("u-4", "AKIAUNKNOWN000000000", "ListBuckets"), // a key no run read
        ("u-5", key.as_str(), "Get Object!"),           // not an action name
        ("u-6", "ASIATEMPORARY0000000", "ListBuckets"), // temporary credentials: the rule drops it
        ("u-7", second.as_str(), "DescribeInstances"),
    ] {
        put_event(&moto, "aws.s3", "AWS API Call via CloudTrail", detail(id, k, name));
    }
    let page = d
        .wait_metrics(30, "every usage event counted", |m| {
            let n = |o: &str| metric(m, "keywarden_usage_events_total", &[("outcome", o)]).unwrap_or(0.0);
            n("recorded") + n("duplicate") + n("unknown_key") + n("malformed") >= 7.0
        })
        .await;
    let n = |o: &str| metric(&page, "keywarden_usage_events_total", &[("outcome", o)]);
    assert_eq!(
        (n("recorded"), n("duplicate"), n("unknown_key"), n("malformed")),
        (Some(4.0), Some(1.0), Some(1.0), Some(1.0)),
        "{page}"
    );
    assert_eq!(
        metric(&page, "keywarden_audit_runs_total", &[("outcome", "success")]),
        Some(1.0),
        "a usage event never triggers a re-audit"
    );
    let (code, out, err) = outputs(&mut keywarden(&[
        "usage",
        &key,
        "--format",
        "json",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(report[0]["events_total"], 3, "{report:#}");
    assert_eq!(report[0]["workload"], "person");
    assert_eq!(
        report[0]["actions"],
        json!(["s3:GetObject", "s3:ListBuckets", "s3:PutObject"])
    );

    // The audit's multiple_active_keys finding names what uses each of the two keys.
    let (code, audit, err) = audit_json(&config, &[]);
    assert_eq!(code, 3, "{err}");
    let multiple = audit["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "multiple_active_keys")
        .unwrap_or_else(|| panic!("{audit:#}"));
    assert_eq!(multiple["usage"]["workload"], "person", "{multiple:#}");
    assert_eq!(multiple["kept_key_usage"]["workload"], "person", "{multiple:#}");
    assert_eq!(multiple["usage"]["last_source"], "198.51.100.7");
    let events: u64 = [&multiple["usage"]["events"], &multiple["kept_key_usage"]["events"]]
        .iter()
        .map(|v| v.as_u64().expect("a count"))
        .sum();
    assert_eq!(events, 4, "3 calls of one key, 1 of the other: {multiple:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_leader_backfills_keys_without_a_profile_after_its_run() {
    let moto = Moto::start();
    let iam = moto.iam();
    create_user(&iam, "orders-fn", None).await;
    let key = create_key(&iam, "orders-fn").await.id;
    let call = ("dynamodb.amazonaws.com", "PutItem");
    let records: Vec<Value> = (0..60)
        .map(|i| record(&format!("b-{i}"), &key, "orders-fn", LAMBDA, "3.80.1.2", call, i))
        .collect();
    moto.store_cloudtrail(&records);
    let dir = TempDir::new("usage-background");
    let usage = format!(
        "enabled = true\nbackfill = true\ncloudtrail_endpoint_url = \"{}\"\n",
        moto.endpoint()
    );
    let (d, config) = usage_daemon(&moto, &dir, &usage);
    let page = d
        .wait_metrics(30, "the backfill after the first run", |m| {
            metric(m, "keywarden_usage_backfill_requests_total", &[("outcome", "answered")]).unwrap_or(0.0) >= 2.0
        })
        .await;
    assert_eq!(
        metric(&page, "keywarden_usage_backfill_errors_total", &[]),
        Some(0.0),
        "{page}"
    );
    let (code, out, err) = outputs(&mut keywarden(&[
        "usage",
        &key,
        "--format",
        "json",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(report[0]["events_total"], 60, "{report:#}");
    assert_eq!(report[0]["backfill"], "done");
    assert_eq!(report[0]["workload"], "aws_lambda");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_due_key_in_live_use_is_held_journaled_once_and_deactivated_without_evidence() {
    let moto = Moto::start();
    let dir = TempDir::new("usage-hold");
    let iam = moto.iam();
    moto.set_clock_days(-100.0);
    create_user(&iam, "alice", None).await;
    let key = create_key(&iam, "alice").await.id;
    moto.set_clock_days(0.0);
    // The key signed a call an hour ago: in live use for a 24h window.
    moto.store_cloudtrail(&[record(
        "c-0",
        &key,
        "alice",
        CLI,
        "198.51.100.7",
        ("s3.amazonaws.com", "ListBuckets"),
        1,
    )]);
    let config = moto_config(
        &dir,
        &moto,
        &format!(
            "[enforcement]\nmode = \"enforce\"\ngrace_period = \"1d\"\n[usage]\nenabled = true\nhold_live_keys = true\ncloudtrail_endpoint_url = \"{}\"\n",
            moto.endpoint()
        ),
    );
    let config = config.to_str().unwrap();
    let (code, out, err) = outputs(&mut keywarden(&["usage", "alice", "--backfill", "--config", config]));
    assert_eq!(code, 0, "{out}{err}");
    // unused_key first seen 36 hours ago: due for 12 hours, held at most 12 more.
    let seen = chrono::Utc::now() - chrono::TimeDelta::hours(36);
    dir.write(
        "state.json",
        &json!({"schema_version": 1, "last_run": null, "findings": [{
            "account_id": "123456789012", "user": "alice", "access_key_id": key,
            "rule": "unused_key", "first_seen": seen.format("%Y-%m-%dT%H:%M:%SZ").to_string()}]})
        .to_string(),
    );
    let (code, report, err) = audit_json(dir.0.join("keywarden.toml").as_path(), &[]);
    assert_eq!(code, 3, "{err}");
    let unused = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "unused_key")
        .expect("unused_key finding");
    assert_eq!(
        (&unused["held"], &unused["deactivate_after"]),
        (&json!("in_live_use"), &Value::Null),
        "{unused:#}"
    );
    let until = (seen + chrono::TimeDelta::days(2))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    assert_eq!(unused["held_until"], until.as_str());
    let status = |iam: aws_sdk_iam::Client| async move {
        let keys = iam.list_access_keys().user_name("alice").send().await.unwrap();
        keys.access_key_metadata()[0].status().unwrap().as_str().to_string()
    };
    let journal = || {
        std::fs::read_to_string(dir.0.join("actions.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    for _ in 0..2 {
        let (code, out, err) = outputs(&mut keywarden(&["run", "--once", "--config", config]));
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(status(iam.clone()).await, "Active");
    }
    let entries = journal();
    assert_eq!(entries.len(), 1, "one hold, journaled once: {entries:#?}");
    assert_eq!(
        (&entries[0]["outcome"], &entries[0]["deadline"]),
        (&json!("held"), &json!(until))
    );
    // No evidence: the live read decides alone.
    std::fs::remove_file(dir.0.join("usage.json")).unwrap();
    let (code, out, err) = outputs(&mut keywarden(&["run", "--once", "--config", config]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(status(iam.clone()).await, "Inactive");
    assert_eq!(journal().last().unwrap()["outcome"], "success");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_on_one_table_count_one_keys_events_without_loss() {
    use crate::events_moto::put_event;
    let moto = Moto::start();
    let url = usage_queue(&moto);
    let iam = moto.iam();
    create_user(&iam, "alice", None).await;
    let key = create_key(&iam, "alice").await.id;
    let dir = TempDir::new("usage-table");
    let config = dir.write(
        "keywarden.toml",
        &format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\nmax_attempts = 2\n\
             [state]\nbackend = \"dynamodb\"\npath = \"{state}\"\n[state.dynamodb]\ntable = \"keywarden-usage\"\n\
             [schedule]\ncron = \"0 0 0 1 1 *\"\n\
             [usage]\nenabled = true\nqueue_url = \"{url}\"\nendpoint_url = \"{endpoint}\"\n",
            endpoint = moto.endpoint(),
            state = dir.0.join("state.json").display(),
        ),
    );
    let cfg = config.to_str().unwrap();
    let (code, out, err) = outputs(&mut keywarden(&["state", "init", "--config", cfg]));
    assert_eq!(code, 0, "{out}{err}");
    let instances: Vec<DaemonProcess> = (0..2)
        .map(|n| {
            let port = free_port();
            let mut cmd = keywarden(&["run", "--config", cfg]);
            cmd.env("KEYWARDEN_METRICS__LISTEN", format!("127.0.0.1:{port}"));
            DaemonProcess::spawn(cmd, port, dir.0.join(format!("instance-{n}.log")))
        })
        .collect();
    for d in &instances {
        d.wait_metrics(30, "the first run", |m| {
            metric(m, "keywarden_audit_runs_total", &[("outcome", "success")]) == Some(1.0)
        })
        .await;
    }
    const EVENTS: usize = 60;
    for i in 0..EVENTS {
        let detail = record(
            &format!("m-{i}"),
            &key,
            "alice",
            CLI,
            "198.51.100.7",
            ("s3.amazonaws.com", "ListBuckets"),
            0,
        );
        put_event(&moto, "aws.s3", "AWS API Call via CloudTrail", detail);
    }
    // Both instances consume the queue and save the same key's profile: every event counts
    // once, in one profile, whoever saved first.
    let mut counted = (0.0, 0.0);
    for _ in 0..120 {
        counted = (0.0, 0.0);
        for d in &instances {
            if let Some((200, m)) = d.get("/metrics").await {
                let n = |o: &str| metric(&m, "keywarden_usage_events_total", &[("outcome", o)]).unwrap_or(0.0);
                counted.0 += n("recorded");
                counted.1 += n("duplicate");
            }
        }
        if counted.0 + counted.1 >= EVENTS as f64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(
        counted,
        (EVENTS as f64, 0.0),
        "recorded, duplicate across both instances"
    );
    let (code, out, err) = outputs(&mut keywarden(&["usage", &key, "--format", "json", "--config", cfg]));
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(report[0]["events_total"], EVENTS, "{report:#}");
}

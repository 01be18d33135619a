//! The events queue's edge against moto over HTTP: an EventBridge rule on IAM's CloudTrail
//! events with an SQS target, events put through EventBridge (moto's IAM emits none), received
//! with long polling by `aws::sqs::Queue`, read by `aws::eventbridge::parse` and decided by
//! `core::events::decide`; a foreign event filtered by the rule; delete after handling.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::*;
use keywarden::core::events::{decide, Decision, Kind, Subject};
use serde_json::{json, Value};

/// A JSON-protocol call that must succeed.
pub(crate) fn call(moto: &Moto, service: &str, target: &str, content_type: &str, body: &Value) -> Value {
    let (status, answer) = moto.json_call(service, target, content_type, body);
    assert!(status.contains(" 200"), "{target}: {status} {answer}");
    answer
}

pub(crate) fn sqs(moto: &Moto, op: &str, body: Value) -> Value {
    call(
        moto,
        "sqs",
        &format!("AmazonSQS.{op}"),
        "application/x-amz-json-1.0",
        &body,
    )
}

pub(crate) fn events(moto: &Moto, op: &str, body: Value) -> Value {
    call(
        moto,
        "events",
        &format!("AWSEvents.{op}"),
        "application/x-amz-json-1.1",
        &body,
    )
}

/// A queue `name` fed by an EventBridge rule of the same name on `pattern`.
pub(crate) fn queue_with_pattern(moto: &Moto, name: &str, pattern: Value) -> String {
    let url = sqs(moto, "CreateQueue", json!({"QueueName": name}))["QueueUrl"]
        .as_str()
        .expect("queue url")
        .to_string();
    let arn = sqs(
        moto,
        "GetQueueAttributes",
        json!({"QueueUrl": url, "AttributeNames": ["QueueArn"]}),
    )["Attributes"]["QueueArn"]
        .as_str()
        .expect("queue arn")
        .to_string();
    events(
        moto,
        "PutRule",
        json!({"Name": name, "EventPattern": pattern.to_string(), "State": "ENABLED"}),
    );
    events(
        moto,
        "PutTargets",
        json!({"Rule": name, "Targets": [{"Id": "queue", "Arn": arn}]}),
    );
    url
}

/// A queue fed by a rule on IAM's CloudTrail events and on Health's exposed keys, as the
/// packaged template makes it.
fn queue_with_rule(moto: &Moto) -> String {
    let pattern = json!({
        "source": ["aws.iam", "aws.health"],
        "detail-type": ["AWS API Call via CloudTrail", "AWS Health Event"]
    });
    queue_with_pattern(moto, "keywarden-events", pattern)
}

pub(crate) fn put_event(moto: &Moto, source: &str, detail_type: &str, detail: Value) {
    let r = events(
        moto,
        "PutEvents",
        json!({"Entries": [{"Source": source, "DetailType": detail_type, "Detail": detail.to_string()}]}),
    );
    assert_eq!(r["FailedEntryCount"], 0, "{r}");
}

fn queue(moto: &Moto, url: &str) -> keywarden::aws::sqs::Queue {
    let sdk = moto.sdk(aws_sdk_iam::config::Credentials::new(
        "AKIAQUEUE",
        "s",
        None,
        None,
        "test",
    ));
    keywarden::aws::sqs::Queue::new(&sdk, url, Some("us-east-1"), Some(&moto.endpoint())).expect("queue")
}

#[tokio::test]
async fn iam_events_arrive_through_the_rule_and_are_deleted_once_handled() {
    let moto = Moto::start();
    let url = queue_with_rule(&moto);
    let q = queue(&moto, &url);
    let managed: BTreeSet<String> = [ACCOUNT.to_string()].into();

    // Nothing yet: a short long poll comes back empty.
    assert!(q.receive(Duration::from_secs(1)).await.expect("receive").is_empty());

    put_event(&moto, "aws.s3", "Object Created", json!({"bucket": {"name": "b"}}));
    put_event(
        &moto,
        "aws.iam",
        "AWS API Call via CloudTrail",
        json!({
            "eventTime": "2026-12-04T12:00:01Z", "eventSource": "iam.amazonaws.com",
            "eventName": "CreateAccessKey", "requestParameters": {"userName": "alice"},
            "recipientAccountId": ACCOUNT
        }),
    );
    let started = Instant::now();
    let got = q.receive(Duration::from_secs(20)).await.expect("receive");
    assert_eq!(got.len(), 1, "only the IAM event passes the rule: {got:?}");
    // Functional, not a speed target: a poll that did not wake on arrival would take 20 s.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "long polling wakes on arrival"
    );
    let envelope = keywarden::aws::eventbridge::parse(&got[0].body).expect("an EventBridge envelope");
    let trusted = keywarden::core::events::Trusted {
        accounts: &managed,
        sns_topics: &[],
    };
    match decide(&envelope, &trusted) {
        Decision::Changes(c) => {
            assert_eq!(c.len(), 1);
            assert_eq!(c[0].kind, Kind::AccessKey);
            assert_eq!(c[0].subject, Subject::User("alice".into()));
            assert_eq!(
                c[0].account_id, ACCOUNT,
                "detail.recipientAccountId (moto sends no account)"
            );
        }
        d => panic!("{d:?}"),
    }

    // Not deleted: after the visibility timeout it comes back (what a failed re-audit relies on).
    sqs(
        &moto,
        "ChangeMessageVisibility",
        json!({"QueueUrl": url, "ReceiptHandle": got[0].receipt_handle, "VisibilityTimeout": 0}),
    );
    let again = q.receive(Duration::from_secs(5)).await.expect("receive");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, got[0].id);
    assert_eq!(again[0].receive_count, 2);

    let failed = q.delete(&[again[0].receipt_handle.clone()]).await.expect("delete");
    assert!(failed.is_empty(), "{failed:?}");
    sqs(
        &moto,
        "SetQueueAttributes",
        json!({"QueueUrl": url, "Attributes": {"VisibilityTimeout": "0"}}),
    );
    assert!(
        q.receive(Duration::from_secs(1)).await.expect("receive").is_empty(),
        "deleted"
    );
}

#[tokio::test]
async fn a_missing_queue_is_an_error_naming_sqs_code() {
    let moto = Moto::start();
    let q = queue(&moto, &format!("{}/{ACCOUNT}/no-such-queue", moto.endpoint()));
    let e = q.receive(Duration::from_secs(1)).await.expect_err("no queue");
    let text = e.to_string();
    assert!(text.starts_with("SQS ReceiveMessage:"), "{text}");
    assert!(
        text.contains("NonExistentQueue") || text.contains("QueueDoesNotExist"),
        "{text}"
    );
}

/// The daemon with `[events]` on this queue: the first (cron) run reads everything; events
/// then re-audit single users within seconds.
fn daemon_with_events(moto: &Moto, dir: &TempDir, url: &str, port: u16, extra: &str) -> DaemonProcess {
    let config = events_config(moto, dir, url, port, "1s", extra);
    daemon_on(&config, port, dir)
}

/// A config (written again on each call) with `[events]` on `url`, long polls of `poll_wait`,
/// a yearly cron, the metrics on `port`, then `extra`.
fn events_config(moto: &Moto, dir: &TempDir, url: &str, port: u16, poll_wait: &str, extra: &str) -> std::path::PathBuf {
    moto_config(
        dir,
        moto,
        &format!(
            "[schedule]\ncron = \"0 0 0 1 1 *\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\
             [events]\nqueue_url = \"{url}\"\nendpoint_url = \"{}\"\npoll_wait = \"{poll_wait}\"\n{extra}",
            moto.endpoint()
        ),
    )
}

fn daemon_on(config: &std::path::Path, port: u16, dir: &TempDir) -> DaemonProcess {
    DaemonProcess::spawn(
        keywarden(&["run", "--config", config.to_str().unwrap()]),
        port,
        dir.0.join("log"),
    )
}

fn waiting(moto: &Moto, url: &str) -> u64 {
    let a = sqs(
        moto,
        "GetQueueAttributes",
        json!({"QueueUrl": url, "AttributeNames": ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]}),
    );
    let n = |k: &str| {
        a["Attributes"][k]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    n("ApproximateNumberOfMessages") + n("ApproximateNumberOfMessagesNotVisible")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_key_is_seen_seconds_after_its_event_and_bad_messages_have_defined_outcomes() {
    let moto = Moto::start();
    let url = queue_with_rule(&moto);
    let iam = moto.iam();
    create_user(&iam, "alice", None).await;
    create_key(&iam, "alice").await;
    let dir = TempDir::new("events-daemon");
    let port = free_port();
    let d = daemon_with_events(&moto, &dir, &url, port, "");
    d.wait_metrics(30, "the first run", |m| {
        metric(m, "keywarden_user_active_access_keys", &[("user", "alice")]) == Some(1.0)
    })
    .await;

    // A second key, and CloudTrail's event for it (moto's IAM emits none).
    create_key(&iam, "alice").await;
    let event_time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    put_event(
        &moto,
        "aws.iam",
        "AWS API Call via CloudTrail",
        json!({"eventTime": event_time, "eventSource": "iam.amazonaws.com", "eventName": "CreateAccessKey",
               "requestParameters": {"userName": "alice"}, "recipientAccountId": ACCOUNT}),
    );
    let page = d
        .wait_metrics(20, "the event's re-audit", |m| {
            metric(m, "keywarden_user_active_access_keys", &[("user", "alice")]) == Some(2.0)
        })
        .await;
    assert_eq!(
        metric(&page, "keywarden_events_received_total", &[("kind", "access_key")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&page, "keywarden_event_lag_seconds_count", &[]),
        Some(1.0),
        "{page}"
    );
    let (_, report) = d.get("/api/v1/report").await.expect("report");
    let report: Value = serde_json::from_str(&report).unwrap();
    let held = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "multiple_active_keys")
        .map(|f| f["first_seen"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert_eq!(held, [event_time], "first seen at the event's time: {report:#}");

    // Straight into the queue: a foreign event is deleted, a malformed one stays for the DLQ.
    sqs(
        &moto,
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": "{\"detail-type\": \"Object Created\", \"source\": \"aws.s3\", \"detail\": {}}"}),
    );
    sqs(
        &moto,
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": "this is not an event"}),
    );
    let page = d
        .wait_metrics(20, "both counted", |m| {
            metric(m, "keywarden_events_received_total", &[("kind", "ignored")]) == Some(1.0)
                && metric(m, "keywarden_events_received_total", &[("kind", "malformed")]) >= Some(1.0)
        })
        .await;
    assert_eq!(metric(&page, "keywarden_event_receive_errors_total", &[]), Some(0.0));
    assert_eq!(waiting(&moto, &url), 1, "the malformed message stays on the queue");
    let logs = d.logs();
    assert!(
        logs.contains("malformed event left for the dead-letter queue"),
        "{logs}"
    );
    assert_eq!(
        moto.callers()["testing"]["ListUsers"],
        1,
        "events read single users; only the first run listed every user"
    );
}

fn send(moto: &Moto, url: &str, body: &Value) {
    sqs(
        moto,
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": body.to_string()}),
    );
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A Health exposure event as EventBridge delivers it (moto's EventBridge drops the envelope's
/// `account`, which Health events name the account by: these go straight into the queue).
fn health_event(key: &str) -> Value {
    json!({"detail-type": "AWS Health Event", "source": "aws.health", "account": ACCOUNT, "time": now_text(),
        "detail": {"eventTypeCode": "AWS_RISK_CREDENTIALS_EXPOSED", "affectedEntities": [{"entityValue": key}]}})
}

/// A CloudTrail IAM event naming `user`, at `time`.
fn trail_event(name: &str, user: &str, time: &str) -> Value {
    json!({"detail-type": "AWS API Call via CloudTrail", "source": "aws.iam", "account": ACCOUNT, "time": time,
        "detail": {"eventTime": time, "eventSource": "iam.amazonaws.com", "eventName": name,
                   "requestParameters": {"userName": user}, "recipientAccountId": ACCOUNT}})
}

/// Users an event run handled (each observes the lag once): the counter that proves a run
/// took place.
fn handled_users(page: &str) -> f64 {
    metric(page, "keywarden_event_lag_seconds_count", &[]).unwrap_or(0.0)
}

fn actions(page: &str) -> Vec<(String, String, String)> {
    let v: Value = serde_json::from_str(page).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").to_string(),
                e["outcome"].as_str().unwrap_or("").to_string(),
                e["access_key_id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// moto with the events queue; `user` with `keys` keys, the last one used; and the daemon
/// with `[events]`, enforcing with `grace`, after its first run.
async fn enforcing(user: &str, keys: usize, grace: &str) -> (Moto, String, Vec<SeededKey>, TempDir, DaemonProcess) {
    let moto = Moto::start();
    let url = queue_with_rule(&moto);
    let iam = moto.iam();
    create_user(&iam, user, None).await;
    let mut made = Vec::new();
    for _ in 0..keys {
        made.push(create_key(&iam, user).await);
    }
    if let Some(k) = made.last() {
        use_key(&moto, k).await;
    }
    let dir = TempDir::new(&format!("events-{user}"));
    let port = free_port();
    let extra = format!("[enforcement]\nmode = \"enforce\"\ngrace_period = \"{grace}\"\n");
    let d = daemon_with_events(&moto, &dir, &url, port, &extra);
    // The page is published before the run enforces and saves its state; `keywarden_state_ok`
    // is set once the run has settled, so the state file exists from then on.
    d.wait_metrics(30, "the first run, settled", |m| {
        metric(m, "keywarden_user_active_access_keys", &[("user", user)]) == Some(keys as f64)
            && metric(m, "keywarden_state_ok", &[]) == Some(1.0)
    })
    .await;
    (moto, url, made, dir, d)
}

/// An AWS Health claim is a hint: anyone who may send to the queue can forge one. Without a
/// quarantine policy on the user (the live read), it is reported, journaled as unconfirmed and
/// changes nothing, and an SNS-wrapped one from a topic the config does not name is ignored.
/// With the policy, the key it names is deactivated within seconds, and only that key; a
/// later unrelated event never acts on it again.
#[tokio::test(flavor = "multi_thread")]
async fn a_health_claim_acts_only_when_the_live_read_confirms_it() {
    let (moto, url, keys, _dir, d) = enforcing("bob", 2, "30d").await;
    let (leaked, other) = (&keys[0], &keys[1]);
    let iam = moto.iam();

    // Forged: no quarantine policy on bob; and the same through a topic nobody named.
    moto.take_stats();
    send(&moto, &url, &health_event(&leaked.id));
    let wrapped = json!({"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:999999999999:forged",
        "Signature": "Zm9yZ2Vk", "Message": health_event(&leaked.id).to_string()});
    send(&moto, &url, &wrapped);
    let page = d
        .wait_metrics(20, "the claim checked and reported", |m| {
            metric(m, "keywarden_unconfirmed_exposures_total", &[]) == Some(1.0)
                && metric(m, "keywarden_events_received_total", &[("kind", "ignored")]) == Some(1.0)
        })
        .await;
    assert_eq!(
        metric(&page, "keywarden_exposed_access_keys", &[("account_id", ACCOUNT)]),
        Some(0.0),
        "{page}"
    );
    let stats = moto.take_stats();
    assert_eq!(
        (counted(&stats, "UpdateAccessKey"), counted(&stats, "PutUserPolicy")),
        (0, 0),
        "a forged claim changes nothing: {stats}"
    );
    assert!(counted(&stats, "ListEntitiesForPolicy") >= 1, "the live read: {stats}");
    let (_, journal) = d.get("/api/v1/actions").await.expect("actions");
    assert_eq!(
        actions(&journal),
        [(
            "report_exposure".to_string(),
            "unconfirmed".to_string(),
            leaked.id.clone()
        )],
        "journaled as unconfirmed, nothing else"
    );
    let statuses = key_statuses(&iam, &["bob"]).await;
    assert_eq!(
        (statuses[&leaked.id].as_str(), statuses[&other.id].as_str()),
        ("Active", "Active")
    );

    // Confirmed: AWS quarantined bob; Health names one key.
    moto.iam()
        .attach_user_policy()
        .user_name("bob")
        .policy_arn("arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3")
        .send()
        .await
        .expect("AttachUserPolicy");
    send(&moto, &url, &health_event(&leaked.id));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let statuses = key_statuses(&iam, &["bob"]).await;
        if statuses[&leaked.id] == "Inactive" {
            assert_eq!(statuses[&other.id], "Active", "Health named one key");
            break;
        }
        assert!(Instant::now() < deadline, "never deactivated:\n{}", d.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = d
        .wait_metrics(10, "the health events counted", |m| {
            metric(m, "keywarden_events_received_total", &[("kind", "health")]) == Some(2.0)
        })
        .await;
    assert_eq!(
        metric(&page, "keywarden_unconfirmed_exposures_total", &[]),
        Some(1.0),
        "confirmed this time"
    );
    let (_, journal) = d.get("/api/v1/actions").await.expect("actions");
    let kinds = actions(&journal);
    assert!(
        kinds.contains(&("deactivate".into(), "success".into(), leaked.id.clone())),
        "{kinds:?}"
    );
    assert!(
        kinds.iter().any(|(a, o, _)| a == "revoke_sessions" && o == "success"),
        "{kinds:?}"
    );

    // A person turns the key back on; an unrelated event run leaves it alone.
    iam.update_access_key()
        .user_name("bob")
        .access_key_id(&leaked.id)
        .status(aws_sdk_iam::types::StatusType::Active)
        .send()
        .await
        .expect("UpdateAccessKey");
    let before = handled_users(&d.get("/metrics").await.expect("metrics").1);
    create_user(&iam, "carol", None).await;
    send(&moto, &url, &trail_event("CreateUser", "carol", &now_text()));
    d.wait_metrics(20, "carol's event run", |m| handled_users(m) > before)
        .await;
    let statuses = key_statuses(&iam, &["bob"]).await;
    assert_eq!(
        statuses[&leaked.id],
        "Active",
        "an event about carol never acts on bob:\n{}",
        d.logs()
    );
    let (_, journal) = d.get("/api/v1/actions").await.expect("actions");
    assert_eq!(actions(&journal).len(), kinds.len(), "nothing journaled for bob");
}

/// Event runs act only on the users their events name, and between two cron runs they
/// deactivate no more than one run's cap together, however many events arrive.
#[tokio::test(flavor = "multi_thread")]
async fn event_runs_act_only_on_named_users_within_one_cap_between_cron_runs() {
    let moto = Moto::start();
    let url = queue_with_rule(&moto);
    let names = ["u1", "u2", "u3", "u4", "u5", "u6", "u7"];
    idle_users(&moto, &names).await;
    let iam = moto.iam();
    let dir = TempDir::new("events-cap");
    let port = free_port();
    let d = daemon_with_events(
        &moto,
        &dir,
        &url,
        port,
        "[enforcement]\nmode = \"enforce\"\ngrace_period = \"0s\"\nmax_deactivations_per_run = 2\n",
    );
    let inactive = |s: &std::collections::BTreeMap<String, String>| s.values().filter(|v| *v == "Inactive").count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while inactive(&key_statuses(&iam, &names).await) < 2 {
        assert!(Instant::now() < deadline, "the first run acted on none:\n{}", d.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Four events about users that do not exist: nobody else is acted on.
    for ghost in ["g1", "g2", "g3", "g4"] {
        send(&moto, &url, &trail_event("CreateUser", ghost, &now_text()));
    }
    d.wait_metrics(30, "four event runs' users", |m| handled_users(m) >= 4.0)
        .await;
    assert_eq!(
        inactive(&key_statuses(&iam, &names).await),
        2,
        "events about others:\n{}",
        d.logs()
    );

    // Events naming every due user: the event runs share one cap until the next cron run.
    for u in names {
        send(&moto, &url, &trail_event("TagUser", u, &now_text()));
    }
    d.wait_metrics(30, "the named users' event runs", |m| handled_users(m) >= 11.0)
        .await;
    assert_eq!(
        inactive(&key_statuses(&iam, &names).await),
        4,
        "2 by the cron run, 2 by all event runs together:\n{}",
        d.logs()
    );
}

/// An event's time cannot start a grace period before keywarden first saw the account: with
/// no last run in the state (lost, or restored empty), a CreateAccessKey event dated 2001 is
/// first seen now, and a 7-day grace period is not cut short.
#[tokio::test(flavor = "multi_thread")]
async fn an_old_event_time_never_cuts_a_grace_period_short() {
    let (moto, url, keys, dir, d) = enforcing("alice", 1, "7d").await;
    let first = &keys[0];
    let iam = moto.iam();
    std::fs::remove_file(dir.0.join("state.json")).expect("the state file is there to lose");
    let started = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    let second = create_key(&iam, "alice").await;
    send(
        &moto,
        &url,
        &trail_event("CreateAccessKey", "alice", "2001-01-01T00:00:00Z"),
    );
    let page = d
        .wait_metrics(20, "the event run", |m| {
            handled_users(m) >= 1.0 && metric(m, "keywarden_user_active_access_keys", &[("user", "alice")]) == Some(2.0)
        })
        .await;
    let statuses = key_statuses(&iam, &["alice"]).await;
    assert_eq!(
        (statuses[&first.id].as_str(), statuses[&second.id].as_str()),
        ("Active", "Active"),
        "within the grace period:\n{page}\n{}",
        d.logs()
    );
    let (_, report) = d.get("/api/v1/report").await.expect("report");
    let report: Value = serde_json::from_str(&report).unwrap();
    let seen: Vec<chrono::DateTime<chrono::Utc>> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["first_seen"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        !seen.is_empty() && seen.iter().all(|t| *t >= started),
        "first seen now, not in 2001: {report:#}"
    );
}

/// Each user's messages succeed or fail on their own: one unreadable user leaves its own
/// message on the queue, the other is deleted, and the next event run is complete again.
#[tokio::test(flavor = "multi_thread")]
async fn one_unreadable_user_delays_only_its_own_messages() {
    let moto = Moto::start();
    let url = queue_with_rule(&moto);
    let iam = moto.iam();
    create_user(&iam, "alice", None).await;
    create_key(&iam, "alice").await;
    moto.set_faults(r#"{"GetUser": ["ghost"], "ListAccessKeys": ["ghost"]}"#);
    // Both wait on the queue before the daemon starts: its first receive takes them together.
    send(&moto, &url, &trail_event("CreateUser", "ghost", &now_text()));
    send(&moto, &url, &trail_event("CreateAccessKey", "alice", &now_text()));
    let dir = TempDir::new("events-unreadable");
    let port = free_port();
    let d = daemon_with_events(&moto, &dir, &url, port, "");
    d.wait_metrics(30, "alice handled", |m| handled_users(m) >= 1.0).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while waiting(&moto, &url) != 1 {
        assert!(
            Instant::now() < deadline,
            "alice's message is deleted, ghost's stays: {} waiting\n{}",
            waiting(&moto, &url),
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The next event run (before ghost's message comes back, 30 s) is complete again.
    send(&moto, &url, &trail_event("CreateAccessKey", "alice", &now_text()));
    let page = d
        .wait_metrics(20, "the next event run", |m| handled_users(m) >= 2.0)
        .await;
    assert_eq!(
        metric(&page, "keywarden_audit_success", &[]),
        Some(1.0),
        "ghost's failed read was that run's outcome alone:\n{}",
        d.logs()
    );
}

/// Instance `n` on a shared DynamoDB table with `[events]`: its own port and access key id.
fn instance_with_events(moto: &Moto, dir: &TempDir, url: &str, n: usize) -> DaemonProcess {
    let config = dir.write(
        &format!("instance-{n}.toml"),
        &format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\nmax_attempts = 2\n\
             [state]\nbackend = \"dynamodb\"\n[state.dynamodb]\ntable = \"kw-events\"\nlease_duration = \"3s\"\n\
             [schedule]\ncron = \"0 0 0 1 1 *\"\n\
             [events]\nqueue_url = \"{url}\"\nendpoint_url = \"{endpoint}\"\npoll_wait = \"1s\"\n",
            endpoint = moto.endpoint()
        ),
    );
    if n == 0 {
        let (code, out, err) = outputs(&mut keywarden(&["state", "init", "--config", config.to_str().unwrap()]));
        assert_eq!(code, 0, "state init: {out}{err}");
    }
    let port = free_port();
    let mut cmd = keywarden(&["run", "--config", config.to_str().unwrap()]);
    cmd.env("AWS_ACCESS_KEY_ID", format!("AKIDEVENTS{n:04}"))
        .env("KEYWARDEN_METRICS__LISTEN", format!("127.0.0.1:{port}"));
    DaemonProcess::spawn(cmd, port, dir.0.join(format!("instance-{n}.log")))
}

async fn received(d: &DaemonProcess) -> f64 {
    match d.get("/metrics").await {
        Some((200, page)) => metric(&page, "keywarden_events_received_total", &[("kind", "access_key")]).unwrap_or(0.0),
        _ => 0.0,
    }
}

async fn leads(d: &DaemonProcess) -> bool {
    matches!(d.get("/metrics").await, Some((200, page)) if metric(&page, "keywarden_leader", &[]) == Some(1.0))
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_consumes_and_its_successor_takes_over_the_queue() {
    let moto = Moto::start();
    let url = queue_with_rule(&moto);
    let iam = moto.iam();
    for u in ["u1", "u2"] {
        create_user(&iam, u, None).await;
        create_key(&iam, u).await;
    }
    // What a dead leader received and did not delete comes back after this.
    sqs(
        &moto,
        "SetQueueAttributes",
        json!({"QueueUrl": url, "Attributes": {"VisibilityTimeout": "5"}}),
    );
    let dir = TempDir::new("events-lease");
    let mut live = vec![
        instance_with_events(&moto, &dir, &url, 0),
        instance_with_events(&moto, &dir, &url, 1),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        let states = futures_util::future::join_all(live.iter().map(leads)).await;
        if let Some(i) = states.iter().position(|l| *l) {
            break i;
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    live[leader].first_audit().await;
    let event = |user: &str| {
        json!({"eventTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
               "eventSource": "iam.amazonaws.com", "eventName": "CreateAccessKey",
               "requestParameters": {"userName": user}, "recipientAccountId": ACCOUNT})
    };
    put_event(&moto, "aws.iam", "AWS API Call via CloudTrail", event("u1"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while received(&live[leader]).await < 1.0 {
        assert!(Instant::now() < deadline, "the leader did not handle the event");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while waiting(&moto, &url) > 0 {
        assert!(Instant::now() < deadline, "the leader did not delete the handled event");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let follower = 1 - leader;
    let callers = moto.callers();
    assert!(
        callers[format!("AKIDEVENTS{follower:04}")]["ReceiveMessage"].is_null(),
        "the follower never receives: {callers}"
    );
    assert!(callers[format!("AKIDEVENTS{leader:04}")]["ReceiveMessage"].as_u64() >= Some(1));

    // The leader dies; its successor takes the lease, runs, and reads the queue.
    live[leader].signal(libc::SIGKILL);
    let _ = live[leader].wait_exit(5);
    let successor = live.remove(follower);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !leads(&successor).await {
        assert!(Instant::now() < deadline, "no successor");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    put_event(&moto, "aws.iam", "AWS API Call via CloudTrail", event("u2"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while received(&successor).await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the successor did not handle the event:\n{}",
            successor.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while waiting(&moto, &url) > 0 {
        assert!(
            Instant::now() < deadline,
            "not every event was handled and deleted:\n{}",
            successor.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A user's SSH keys are listed on full refreshes only: runs in between take them from the
/// state, and a CloudTrail event for an SSH key call reads the user again at once (renewing
/// what is remembered), so a key uploaded by a person shows within seconds.
#[tokio::test(flavor = "multi_thread")]
async fn an_ssh_key_event_reads_its_user_and_runs_between_full_refreshes_list_nothing() {
    let moto = Moto::start();
    let url = queue_with_rule(&moto);
    let iam = moto.iam();
    moto.set_clock_days(-100.0);
    create_user(&iam, "dev", None).await;
    let first = upload_ssh_key(&iam, "dev").await;
    moto.set_clock_days(0.0);
    let dir = TempDir::new("events-ssh");
    let port = free_port();
    // Acting (dry-run): the state keeps a first-seen time per finding.
    let rules = "[rules.max_credential_age]\nenabled = true\naction = \"deactivate\"\ntypes = [\"ssh_public_key\"]\n";
    let mut d = daemon_with_events(&moto, &dir, &url, port, rules);
    let ssh = |n: f64| {
        move |m: &str| {
            metric(
                m,
                "keywarden_credentials",
                &[("credential_type", "ssh_public_key"), ("status", "Active")],
            ) == Some(n)
                && metric(m, "keywarden_state_ok", &[]) == Some(1.0)
        }
    };
    d.wait_metrics(30, "the first run, settled", ssh(1.0)).await;

    // A person uploads another old-enough key; CloudTrail's event names the user.
    moto.set_clock_days(-100.0);
    let second = iam
        .upload_ssh_public_key()
        .user_name("dev")
        .ssh_public_key_body("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAISecondKeywardenKey dev")
        .send()
        .await
        .expect("UploadSSHPublicKey")
        .ssh_public_key
        .expect("the key")
        .ssh_public_key_id;
    moto.set_clock_days(0.0);
    send(&moto, &url, &trail_event("UploadSSHPublicKey", "dev", &now_text()));
    let page = d
        .wait_metrics(20, "the event's re-read", |m| {
            ssh(2.0)(m) && metric(m, "keywarden_events_received_total", &[("kind", "credential")]) == Some(1.0)
        })
        .await;
    assert_eq!(handled_users(&page), 1.0, "{page}");
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(30).0, Some(0), "{}", d.logs());

    // The next run is not a full refresh: it lists no SSH key and still finds both.
    moto.take_stats();
    let config = dir.0.join("keywarden.toml");
    let out = run(&mut keywarden(&["run", "--once", "--config", config.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = moto.take_stats();
    assert_eq!(stats.get("ListSSHPublicKeys"), None, "{stats}");
    assert!(stats["ListUsers"].as_u64() >= Some(1), "a run took place: {stats}");
    let state: Value = serde_json::from_str(&std::fs::read_to_string(dir.0.join("state.json")).unwrap()).unwrap();
    let pending: BTreeSet<&str> = state["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "max_credential_age")
        .filter_map(|f| f["access_key_id"].as_str())
        .collect();
    assert_eq!(pending, [first.as_str(), second.as_str()].into(), "{state:#}");
}

/// An exemption added by SIGHUP binds every run that starts after the reload: an event that
/// arrives during a long poll begun before the reload is handled under the new config, not
/// the one the poll began with (the campaign's fleet sequence found a key of a user exempted
/// by SIGHUP deactivated by the next event run).
#[tokio::test(flavor = "multi_thread")]
async fn an_exemption_added_by_sighup_binds_an_event_received_in_a_poll_begun_before_it() {
    let moto = Moto::start();
    let url = queue_with_rule(&moto);
    let iam = moto.iam();
    create_user(&iam, "carol", None).await;
    let dir = TempDir::new("events-hup-exempt");
    let port = free_port();
    let config = |exemption: &str| {
        let enforce = format!("[enforcement]\nmode = \"enforce\"\ngrace_period = \"0s\"\n{exemption}");
        events_config(&moto, &dir, &url, port, "15s", &enforce)
    };
    let d = daemon_on(&config(""), port, &dir);
    d.wait_metrics(30, "the first run, settled", |m| {
        metric(m, "keywarden_state_ok", &[]) == Some(1.0)
    })
    .await;
    // The leader is now in a 15 s long poll. A key unused for 60 days appears; before its
    // event, carol is exempted and the config reloaded.
    moto.set_clock_days(-60.0);
    let key = create_key(&iam, "carol").await;
    moto.set_clock_days(0.0);
    config("[[exemptions]]\nuser = \"carol\"\nreason = \"ticket SEC-1: handover\"\n");
    let before = d
        .get("/metrics")
        .await
        .map(|(_, m)| metric(&m, "keywarden_config_last_reload_success_timestamp_seconds", &[]).unwrap_or(0.0));
    d.signal(libc::SIGHUP);
    d.wait_metrics(30, "the reload", |m| {
        metric(m, "keywarden_config_last_reload_success_timestamp_seconds", &[]) > before
    })
    .await;
    send(&moto, &url, &trail_event("CreateAccessKey", "carol", &now_text()));
    d.wait_metrics(30, "carol's event run", |m| handled_users(m) >= 1.0)
        .await;
    let statuses = key_statuses(&iam, &["carol"]).await;
    assert_eq!(
        statuses.get(&key.id).map(String::as_str),
        Some("Active"),
        "an exempt user's key deactivated:\n{}",
        d.logs()
    );
}

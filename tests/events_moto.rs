//! The events queue's edge against moto over HTTP: an EventBridge rule on IAM's CloudTrail
//! events with an SQS target, events put through EventBridge (moto's IAM emits none), received
//! with long polling by `aws::sqs::Queue`, read by `aws::eventbridge::parse` and decided by
//! `core::events::decide`; a foreign event filtered by the rule; delete after handling.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use keywarden::core::events::{decide, Decision, Kind, Subject};
use serde_json::{json, Value};

/// A JSON-protocol call to moto (unsigned: moto routes by the credential scope's service and
/// does not check the signature).
fn call(moto: &Moto, service: &str, target: &str, content_type: &str, body: &Value) -> Value {
    use std::io::{Read, Write};
    let body = body.to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", moto.port)).expect("connect");
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-Amz-Target: {target}\r\nContent-Type: {content_type}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=AKIATESTSEED/20261204/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=x\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        moto.port,
        body.len()
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    assert!(
        resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"),
        "{target}: {resp}"
    );
    let text = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn sqs(moto: &Moto, op: &str, body: Value) -> Value {
    call(
        moto,
        "sqs",
        &format!("AmazonSQS.{op}"),
        "application/x-amz-json-1.0",
        &body,
    )
}

fn events(moto: &Moto, op: &str, body: Value) -> Value {
    call(
        moto,
        "events",
        &format!("AWSEvents.{op}"),
        "application/x-amz-json-1.1",
        &body,
    )
}

/// A queue fed by a rule on IAM's CloudTrail events and on Health's exposed keys, as the
/// packaged template makes it.
fn queue_with_rule(moto: &Moto) -> String {
    let url = sqs(moto, "CreateQueue", json!({"QueueName": "keywarden-events"}))["QueueUrl"]
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
    let pattern = json!({
        "source": ["aws.iam", "aws.health"],
        "detail-type": ["AWS API Call via CloudTrail", "AWS Health Event"]
    });
    events(
        moto,
        "PutRule",
        json!({"Name": "keywarden-iam-keys", "EventPattern": pattern.to_string(), "State": "ENABLED"}),
    );
    events(
        moto,
        "PutTargets",
        json!({"Rule": "keywarden-iam-keys", "Targets": [{"Id": "queue", "Arn": arn}]}),
    );
    url
}

fn put_event(moto: &Moto, source: &str, detail_type: &str, detail: Value) {
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
    let got = q.receive(Duration::from_secs(5)).await.expect("receive");
    assert_eq!(got.len(), 1, "only the IAM event passes the rule: {got:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "long polling wakes on arrival"
    );
    let envelope = keywarden::aws::eventbridge::parse(&got[0].body).expect("an EventBridge envelope");
    match decide(&envelope, &managed) {
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

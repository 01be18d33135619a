//! EventBridge envelopes as they reach the events queue, read into [`Envelope`] (what
//! `core::events` decides on): CloudTrail's "AWS API Call via CloudTrail" and AWS Health
//! events, delivered to SQS straight from an EventBridge rule, or wrapped in SNS's
//! Notification (a topic in between without raw delivery); and the CloudTrail records of the
//! usage queue ([`usage_event`]).

use serde_json::Value;

use crate::core::events::Envelope;
use crate::core::usage::event::RawEvent;

/// The EventBridge event in a message body, unwrapped from SNS's Notification when a topic
/// sits in between (with the topic's ARN, empty when the notification names none).
fn unwrap(body: &str) -> Result<(Value, Option<String>), String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if v["Type"] != "Notification" {
        return Ok((v, None));
    }
    // Unverified: SNS's signature is not checked, so a named topic is only as good as the
    // queue policy that lets no one but that topic and EventBridge send.
    let topic = v["TopicArn"].as_str().unwrap_or_default().to_string();
    let inner = v["Message"].as_str().ok_or("an SNS notification without a Message")?;
    let inner = serde_json::from_str(inner).map_err(|e| format!("the SNS Message is not JSON: {e}"))?;
    Ok((inner, Some(topic)))
}

/// The envelope in a message body, or why it is not one.
pub fn parse(body: &str) -> Result<Envelope, String> {
    let (v, sns_topic) = unwrap(body)?;
    let text = |p: &Value| p.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let detail_type = text(&v["detail-type"]).ok_or("no detail-type: not an EventBridge event")?;
    let source = text(&v["source"]).ok_or("no source: not an EventBridge event")?;
    let d = &v["detail"];
    if !d.is_object() {
        return Err("no detail object".into());
    }
    let time = text(&d["eventTime"])
        .or_else(|| text(&v["time"]))
        .and_then(|t| crate::sys::timefmt::parse(&t).ok());
    let access_key_id = text(&d["requestParameters"]["accessKeyId"])
        .or_else(|| text(&d["responseElements"]["accessKey"]["accessKeyId"]));
    let affected_entities = d["affectedEntities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| text(&e["entityValue"]))
        .collect();
    Ok(Envelope {
        detail_type,
        source,
        account: text(&v["account"]),
        event_name: text(&d["eventName"]),
        event_source: text(&d["eventSource"]),
        error_code: text(&d["errorCode"]),
        recipient_account_id: text(&d["recipientAccountId"]),
        request_user: text(&d["requestParameters"]["userName"]),
        identity_user: text(&d["userIdentity"]["userName"]),
        access_key_id,
        event_type_code: text(&d["eventTypeCode"]),
        affected_entities,
        time,
        sns_topic,
    })
}

/// The CloudTrail record of a message on the usage queue (an "AWS API Call via CloudTrail"
/// envelope, plain or SNS-wrapped), as the core's [`RawEvent`], or why it is not one.
pub fn usage_event(body: &str) -> Result<RawEvent, String> {
    let (v, _) = unwrap(body)?;
    if v["detail-type"] != "AWS API Call via CloudTrail" {
        return Err("not an \"AWS API Call via CloudTrail\" event".into());
    }
    if !v["detail"].is_object() {
        return Err("no detail object".into());
    }
    Ok(crate::aws::cloudtrail::raw_event(&v["detail"], v["account"].as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usage_event_is_its_cloudtrail_record_and_anything_else_says_why() {
        let body = serde_json::json!({
            "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3", "account": "123456789012",
            "detail": {"eventID": "e1", "eventName": "ListBuckets", "eventSource": "s3.amazonaws.com",
                       "userIdentity": {"accessKeyId": "AKIAIOSFODNN7EXAMPLE"}}
        });
        let e = usage_event(&body.to_string()).expect("a usage event");
        assert_eq!(e.account_id.as_deref(), Some("123456789012"), "the envelope's account");
        assert_eq!(e.access_key_id.as_deref(), Some("AKIAIOSFODNN7EXAMPLE"));
        let wrapped = serde_json::json!({"Type": "Notification", "Message": body.to_string()}).to_string();
        assert_eq!(usage_event(&wrapped), Ok(e));
        for (bad, why) in [
            ("[", "not JSON"),
            ("{}", "not an"),
            (r#"{"detail-type": "AWS API Call via CloudTrail"}"#, "no detail"),
        ] {
            assert!(usage_event(bad).unwrap_err().contains(why), "{bad}");
        }
    }

    const CREATE: &str = r#"{
      "version": "0", "id": "6f3a", "detail-type": "AWS API Call via CloudTrail",
      "source": "aws.iam", "account": "123456789012", "time": "2026-12-04T12:00:03Z",
      "region": "us-east-1", "resources": [],
      "detail": {
        "eventVersion": "1.09", "eventTime": "2026-12-04T12:00:01Z",
        "eventSource": "iam.amazonaws.com", "eventName": "CreateAccessKey",
        "userIdentity": {"type": "IAMUser", "userName": "admin"},
        "requestParameters": {"userName": "alice"},
        "responseElements": {"accessKey": {"accessKeyId": "AKIANEW", "status": "Active", "userName": "alice"}},
        "recipientAccountId": "123456789012"
      }
    }"#;

    #[test]
    fn a_cloudtrail_event_is_read_field_by_field() {
        let e = parse(CREATE).expect("parsed");
        assert_eq!(e.detail_type, "AWS API Call via CloudTrail");
        assert_eq!(e.event_name.as_deref(), Some("CreateAccessKey"));
        assert_eq!(e.request_user.as_deref(), Some("alice"));
        assert_eq!(e.identity_user.as_deref(), Some("admin"));
        assert_eq!(e.access_key_id.as_deref(), Some("AKIANEW"));
        assert_eq!(e.recipient_account_id.as_deref(), Some("123456789012"));
        assert_eq!(
            e.time.map(|t| crate::sys::timefmt::format(&t)),
            Some("2026-12-04T12:00:01Z".to_string()),
            "the CloudTrail event time, not the envelope's"
        );
    }

    #[test]
    fn a_health_event_and_an_sns_wrapped_one_are_read() {
        let health = r#"{"detail-type": "AWS Health Event", "source": "aws.health", "account": "123456789012",
          "time": "2026-12-04T12:05:00Z", "detail": {"eventTypeCode": "AWS_RISK_CREDENTIALS_EXPOSED",
          "service": "RISK", "affectedEntities": [{"entityValue": "AKIAEXPOSED"}]}}"#;
        let e = parse(health).expect("health");
        assert_eq!(e.affected_entities, ["AKIAEXPOSED"]);
        assert!(e.time.is_some(), "the envelope's time");
        let topic = "arn:aws:sns:us-east-1:123456789012:keywarden";
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "m", "TopicArn": topic, "Message": CREATE})
            .to_string();
        let wrapped = parse(&sns).expect("sns");
        assert_eq!(wrapped.sns_topic.as_deref(), Some(topic));
        assert_eq!(
            Envelope {
                sns_topic: None,
                ..wrapped
            },
            parse(CREATE).expect("plain")
        );
        let anonymous = serde_json::json!({"Type": "Notification", "Message": CREATE}).to_string();
        assert_eq!(
            parse(&anonymous).expect("no topic").sns_topic.as_deref(),
            Some(""),
            "still SNS: no topic is no trusted topic"
        );
    }

    #[test]
    fn malformed_bodies_say_why() {
        for (body, why) in [
            ("not json", "not JSON"),
            ("{}", "no detail-type"),
            (r#"{"detail-type": "x", "source": "aws.iam"}"#, "no detail object"),
            (
                r#"{"Type": "Notification", "Message": "{oops"}"#,
                "SNS Message is not JSON",
            ),
        ] {
            let e = parse(body).expect_err(body);
            assert!(e.contains(why), "{body}: {e}");
        }
    }
}

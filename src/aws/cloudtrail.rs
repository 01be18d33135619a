//! CloudTrail's LookupEvents, for the usage backfill: one page (at most 50 events) of the
//! management events one access key signed, newest first. JSON 1.1, signed here
//! (`aws::sigv4`) and sent by the SDK's connector, as SQS and Security Hub are: one call does
//! not warrant another SDK crate.
//!
//! Also the reading of a CloudTrail record into the core's [`RawEvent`], which the usage
//! queue's messages (an EventBridge envelope's `detail`) share with LookupEvents'
//! `CloudTrailEvent`.

use aws_config::SdkConfig;
use serde_json::{json, Value};

use crate::aws::sigv4::JsonService;
use crate::core::model::{ServiceError, Timestamp};
use crate::core::usage::event::{LookupPage as Page, RawEvent};

/// CloudTrail's code for a request past its rate (2 per second per account and region).
pub const THROTTLED: &str = "ThrottlingException";

/// One account's CloudTrail in one region.
pub struct Trail {
    service: JsonService,
}

impl Trail {
    /// `region`: default the SDK's; `endpoint_url`: default CloudTrail's regional one.
    pub fn new(sdk: &SdkConfig, region: Option<&str>, endpoint_url: Option<&str>) -> Result<Trail, ServiceError> {
        let service = JsonService::new(sdk, "cloudtrail", "CloudTrail", region, endpoint_url)?;
        Ok(Trail { service })
    }

    pub fn region(&self) -> &str {
        self.service.region()
    }
}

impl crate::ports::EventLookup for Trail {
    /// One LookupEvents page of the events `access_key_id` signed, up to `end` (inclusive;
    /// `None`: now), continuing at `next_token` when given.
    async fn lookup(
        &self,
        access_key_id: &str,
        end: Option<Timestamp>,
        next_token: Option<&str>,
    ) -> Result<Page, ServiceError> {
        let mut request = json!({
            "LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": access_key_id}],
            "MaxResults": 50,
        });
        if let Some(end) = end {
            request["EndTime"] = json!(end.timestamp());
        }
        if let Some(token) = next_token {
            request["NextToken"] = json!(token);
        }
        let target = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents";
        let answer = self
            .service
            .call("LookupEvents", target, request.to_string().as_bytes())
            .await?;
        Ok(page(&answer))
    }
}

/// A LookupEvents answer's page.
fn page(answer: &Value) -> Page {
    let mut out = Page {
        next_token: answer["NextToken"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        ..Page::default()
    };
    for e in answer["Events"].as_array().map(Vec::as_slice).unwrap_or_default() {
        match e["CloudTrailEvent"]
            .as_str()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
        {
            Some(record) if record.is_object() => out.events.push(raw_event(&record, None)),
            _ => out.unreadable += 1,
        }
    }
    out
}

/// The fields of a CloudTrail record the usage profile needs; `account`: the envelope's
/// `account`, used when the record names no `recipientAccountId`.
pub fn raw_event(record: &Value, account: Option<&str>) -> RawEvent {
    let text = |v: &Value| v.as_str().map(str::to_string);
    RawEvent {
        event_id: text(&record["eventID"]),
        time: record["eventTime"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc)),
        account_id: text(&record["recipientAccountId"]).or_else(|| account.map(str::to_string)),
        access_key_id: text(&record["userIdentity"]["accessKeyId"]),
        event_source: text(&record["eventSource"]),
        event_name: text(&record["eventName"]),
        region: text(&record["awsRegion"]),
        source: text(&record["sourceIPAddress"]),
        user_agent: text(&record["userAgent"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_reads_each_cloudtrail_event_and_counts_what_it_cannot() {
        let record = json!({
            "eventID": "e1", "eventTime": "2026-11-30T10:00:00Z", "recipientAccountId": "123456789012",
            "userIdentity": {"type": "IAMUser", "accessKeyId": "AKIAIOSFODNN7EXAMPLE"},
            "eventSource": "s3.amazonaws.com", "eventName": "ListBuckets", "awsRegion": "us-east-1",
            "sourceIPAddress": "198.51.100.7", "userAgent": "aws-cli/2.15.30"
        });
        let answer = json!({
            "Events": [
                {"EventId": "e1", "CloudTrailEvent": record.to_string()},
                {"EventId": "e2", "CloudTrailEvent": "not json"},
                {"EventId": "e3"}
            ],
            "NextToken": "t"
        });
        let p = page(&answer);
        assert_eq!(
            (p.events.len(), p.unreadable, p.next_token.as_deref()),
            (1, 2, Some("t"))
        );
        let e = &p.events[0];
        assert_eq!(e.access_key_id.as_deref(), Some("AKIAIOSFODNN7EXAMPLE"));
        assert_eq!(e.time.map(|t| t.to_rfc3339()), Some("2026-11-30T10:00:00+00:00".into()));
        assert_eq!(e.user_agent.as_deref(), Some("aws-cli/2.15.30"));
    }

    #[test]
    fn the_envelope_account_stands_in_for_a_missing_recipient() {
        let e = raw_event(&json!({"eventTime": "yesterday"}), Some("210987654321"));
        assert_eq!(e.account_id.as_deref(), Some("210987654321"));
        assert_eq!(e.time, None, "an unparsable time is missing, and the core rejects it");
    }
}

//! One usage event as keywarden admits it: a CloudTrail management event signed by a
//! long-term access key, its fields checked and bounded. Pure: the edge parses the JSON
//! (EventBridge envelope or a LookupEvents record) into [`RawEvent`]; this decides whether the
//! event is usable and what of it is kept.
//!
//! Anyone who may send to the usage queue can write a message that looks like an event, so
//! nothing here is trusted beyond its shape: a rejected event changes no profile, and an
//! admitted one changes only the profile of the key it names (which decides nothing unless
//! `hold_live_keys`, and then can only delay an action). What is kept is bounded whatever the
//! input: a user agent is cut to [`MAX_USER_AGENT`] bytes and stripped of control characters,
//! an address that is neither an IP address nor an AWS service name is kept as
//! [`UNPARSABLE_SOURCE`].

// `::core::net`, not `std::net`: address parsing is pure; the sockets are the edge's.
use ::core::net::IpAddr;

use chrono::TimeDelta;

use crate::core::model::Timestamp;

/// The longest user agent kept, in bytes (the AWS CLI's is about 150; CloudTrail itself cuts
/// longer ones).
pub const MAX_USER_AGENT: usize = 256;
/// How old an event may be: CloudTrail's LookupEvents covers 90 days, and nothing older can
/// be delivered truthfully.
pub const MAX_AGE: TimeDelta = TimeDelta::days(90);
/// How far ahead of keywarden's clock an event's time may be (clock skew between hosts).
pub const MAX_AHEAD: TimeDelta = TimeDelta::minutes(5);
/// The source kept for an address that is neither an IP address nor an AWS service name.
pub const UNPARSABLE_SOURCE: &str = "(unparsable)";

/// The fields of one CloudTrail record the profile needs, as the edge found them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawEvent {
    /// `eventID`.
    pub event_id: Option<String>,
    /// `eventTime`, parsed by the edge (RFC 3339).
    pub time: Option<Timestamp>,
    /// `recipientAccountId`, else the envelope's `account`.
    pub account_id: Option<String>,
    /// `userIdentity.accessKeyId`.
    pub access_key_id: Option<String>,
    /// `eventSource`, e.g. `s3.amazonaws.com`.
    pub event_source: Option<String>,
    /// `eventName`, e.g. `GetObject`.
    pub event_name: Option<String>,
    /// `awsRegion`.
    pub region: Option<String>,
    /// `sourceIPAddress`.
    pub source: Option<String>,
    /// `userAgent`.
    pub user_agent: Option<String>,
}

/// One page of CloudTrail's LookupEvents, as the edge read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupPage {
    /// The records (each admitted or rejected by [`admit`]).
    pub events: Vec<RawEvent>,
    /// Records whose `CloudTrailEvent` was not a JSON object: malformed.
    pub unreadable: usize,
    pub next_token: Option<String>,
}

/// An admitted event: every field present and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEvent {
    pub event_id: String,
    pub time: Timestamp,
    pub account_id: String,
    pub access_key_id: String,
    /// The IAM action prefix of the service (`s3`, `cloudwatch` for `monitoring`).
    pub service: String,
    /// `eventName`.
    pub action: String,
    pub region: String,
    /// An IP address, an AWS service name (`cloudformation.amazonaws.com`, `AWS Internal`) or
    /// [`UNPARSABLE_SOURCE`].
    pub source: String,
    /// Cut to [`MAX_USER_AGENT`] bytes, control characters removed; empty when absent.
    pub user_agent: String,
}

/// Why an event was not admitted (each counted as `malformed`, except a key that is not a
/// long-term one, which is not a usage event at all).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("the event has no {0}")]
    Missing(&'static str),
    #[error("userIdentity.accessKeyId {0:?} is not a long-term access key (AKIA...)")]
    NotLongTerm(String),
    #[error("{field} {value:?} is not well-formed")]
    Invalid { field: &'static str, value: String },
    #[error("the event is from {0}, older than CloudTrail keeps events (90 days)")]
    Stale(Timestamp),
    #[error("the event is from {0}, in the future")]
    Future(Timestamp),
}

/// Admits `raw` at `now`, or says what is wrong with it.
pub fn admit(raw: &RawEvent, now: Timestamp) -> Result<UsageEvent, Rejected> {
    let key = raw
        .access_key_id
        .as_deref()
        .ok_or(Rejected::Missing("userIdentity.accessKeyId"))?;
    if !is_long_term_key(key) {
        return Err(Rejected::NotLongTerm(cut(key, 32)));
    }
    let event_id = field(&raw.event_id, "eventID", 64, |c| c.is_ascii_alphanumeric() || c == '-')?;
    let time = raw.time.ok_or(Rejected::Missing("eventTime"))?;
    if now - time > MAX_AGE {
        return Err(Rejected::Stale(time));
    }
    if time - now > MAX_AHEAD {
        return Err(Rejected::Future(time));
    }
    let account_id = field(&raw.account_id, "recipientAccountId", 12, |c| c.is_ascii_digit())?;
    if account_id.len() != 12 {
        return Err(Rejected::Invalid {
            field: "recipientAccountId",
            value: account_id,
        });
    }
    let event_source = field(&raw.event_source, "eventSource", 128, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'
    })?;
    let service = iam_prefix(&event_source).ok_or_else(|| Rejected::Invalid {
        field: "eventSource",
        value: event_source.clone(),
    })?;
    let action = field(&raw.event_name, "eventName", 128, |c| c.is_ascii_alphanumeric())?;
    let region = field(&raw.region, "awsRegion", 32, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
    })?;
    Ok(UsageEvent {
        event_id,
        time,
        account_id,
        access_key_id: key.to_string(),
        service,
        action,
        region,
        source: source(raw.source.as_deref().unwrap_or("")),
        user_agent: user_agent(raw.user_agent.as_deref().unwrap_or("")),
    })
}

/// Whether `id` is a long-term IAM user access key id: `AKIA` and 16 more upper-case letters
/// or digits (temporary credentials start `ASIA` and have no profile).
pub fn is_long_term_key(id: &str) -> bool {
    id.len() == 20 && id.starts_with("AKIA") && id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// A required field: present, non-empty, at most `max` bytes, every character allowed.
fn field(
    value: &Option<String>,
    name: &'static str,
    max: usize,
    allowed: fn(char) -> bool,
) -> Result<String, Rejected> {
    let v = value.as_deref().ok_or(Rejected::Missing(name))?;
    if v.is_empty() || v.len() > max || !v.chars().all(allowed) {
        return Err(Rejected::Invalid {
            field: name,
            value: cut(v, 64),
        });
    }
    Ok(v.to_string())
}

/// The IAM action prefix of a CloudTrail event source: the part before `.amazonaws.com`, where
/// the two differ the IAM name (CloudTrail names a few services by their old endpoints).
pub fn iam_prefix(event_source: &str) -> Option<String> {
    let name = event_source.strip_suffix(".amazonaws.com")?;
    if name.is_empty() || name.contains('.') {
        return None;
    }
    let prefix = match name {
        "monitoring" => "cloudwatch",
        "email" => "ses",
        "elasticloadbalancing" => "elasticloadbalancing",
        "streams.dynamodb" => "dynamodb",
        "tagging" => "tag",
        "execute-api" => "execute-api",
        other => other,
    };
    Some(prefix.to_string())
}

/// What is kept of `sourceIPAddress`: an IP address in its canonical form, an AWS service's
/// name as CloudTrail writes it, or [`UNPARSABLE_SOURCE`].
fn source(raw: &str) -> String {
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return ip.to_string();
    }
    let service_name = raw.len() <= 128
        && raw.ends_with(".amazonaws.com")
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if service_name || raw == "AWS Internal" {
        raw.to_string()
    } else {
        UNPARSABLE_SOURCE.to_string()
    }
}

/// A user agent without control characters, cut to [`MAX_USER_AGENT`] bytes at a character
/// boundary.
fn user_agent(raw: &str) -> String {
    let clean: String = raw.chars().filter(|c| !c.is_control()).collect();
    cut(clean.trim(), MAX_USER_AGENT)
}

/// The first `max` bytes of `s`, at a character boundary.
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
    }

    pub(crate) fn raw() -> RawEvent {
        RawEvent {
            event_id: Some("3f1c2a9e-8d7b-4c61-9e0f-5a4b3c2d1e0f".into()),
            time: Some(now() - TimeDelta::hours(1)),
            account_id: Some("123456789012".into()),
            access_key_id: Some("AKIAIOSFODNN7EXAMPLE".into()),
            event_source: Some("s3.amazonaws.com".into()),
            event_name: Some("ListBuckets".into()),
            region: Some("eu-west-1".into()),
            source: Some("198.51.100.7".into()),
            user_agent: Some("aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0 exe/x86_64.ubuntu.22 prompt/off".into()),
        }
    }

    #[test]
    fn a_well_formed_event_is_admitted_with_the_iam_prefix_of_its_service() {
        let mut r = raw();
        r.event_source = Some("monitoring.amazonaws.com".into());
        let e = admit(&r, now()).unwrap();
        assert_eq!((e.service.as_str(), e.action.as_str()), ("cloudwatch", "ListBuckets"));
        assert_eq!(e.source, "198.51.100.7");
        assert_eq!(e.access_key_id, "AKIAIOSFODNN7EXAMPLE");
    }

    #[test]
    fn temporary_and_foreign_shaped_keys_are_not_usage_events() {
        for key in ["ASIAIOSFODNN7EXAMPLE", "AKIAshort", "AKIAIOSFODNN7EXAMPL\u{e9}", ""] {
            let mut r = raw();
            r.access_key_id = Some(key.into());
            assert!(matches!(admit(&r, now()), Err(Rejected::NotLongTerm(_))), "{key}");
        }
        let mut r = raw();
        r.access_key_id = None;
        assert_eq!(admit(&r, now()), Err(Rejected::Missing("userIdentity.accessKeyId")));
    }

    #[test]
    fn events_outside_what_cloudtrail_can_deliver_are_rejected() {
        let mut r = raw();
        r.time = Some(now() - TimeDelta::days(91));
        assert!(matches!(admit(&r, now()), Err(Rejected::Stale(_))));
        r.time = Some(now() + TimeDelta::minutes(6));
        assert!(matches!(admit(&r, now()), Err(Rejected::Future(_))));
        r.time = Some(now() + TimeDelta::minutes(4));
        assert!(admit(&r, now()).is_ok(), "within the clock skew allowed");
    }

    #[test]
    fn every_field_is_checked_and_the_error_names_it() {
        type Change = fn(&mut RawEvent);
        let cases: [(Change, &str); 6] = [
            (|r| r.event_id = Some("a b".into()), "eventID"),
            (|r| r.account_id = Some("12345".into()), "recipientAccountId"),
            (|r| r.event_source = Some("evil.example.com".into()), "eventSource"),
            (|r| r.event_name = Some("Get\"Object".into()), "eventName"),
            (|r| r.region = Some("x".repeat(33)), "awsRegion"),
            (|r| r.event_name = Some("A".repeat(100_000)), "eventName"),
        ];
        for (change, name) in cases {
            let mut r = raw();
            change(&mut r);
            let err = admit(&r, now()).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
            assert!(err.to_string().len() < 200, "a huge field is not echoed whole: {err}");
        }
    }

    #[test]
    fn garbage_addresses_and_user_agents_are_kept_bounded() {
        let mut r = raw();
        r.source = Some("not an address\n".into());
        r.user_agent = Some(format!("evil\u{0}\nagent{}", "\u{e9}".repeat(400)));
        let e = admit(&r, now()).unwrap();
        assert_eq!(e.source, UNPARSABLE_SOURCE);
        assert!(e.user_agent.starts_with("evilagent"));
        assert!(e.user_agent.len() <= MAX_USER_AGENT);
        for kept in ["cloudformation.amazonaws.com", "AWS Internal", "2001:db8::1"] {
            r.source = Some(kept.into());
            assert_eq!(admit(&r, now()).unwrap().source, kept);
        }
    }
}

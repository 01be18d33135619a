//! What an event from the queue means (`[events]`): which user of which account changed, and
//! when; the defined outcome of every kind of bad input. Pure: the edge parses the JSON into
//! [`Envelope`], this decides.
//!
//! The queue is fed by EventBridge: CloudTrail management events of `iam.amazonaws.com`
//! ("AWS API Call via CloudTrail") and AWS Health's `AWS_RISK_CREDENTIALS_EXPOSED`. An event
//! is only a hint: the run re-reads the user live, and nothing changes that the live read does
//! not confirm. What an event contributes is *when*: a new finding of a changed user is first
//! seen at the event's time, not at the read's, but never before keywarden's own earliest sight
//! of the account (its last run, or now when the state remembers none: a late, redelivered or
//! forged event cannot shorten a grace period) and never in the future.
//!
//! Anyone who may `sqs:SendMessage` to the queue can write a message that looks like an
//! event. What such a message can make keywarden do is bounded here and in `app::events`: read
//! the users it names again, act only on what that read shows due (an exposure only when the
//! user carries AWS's quarantine policy now), within one run's cap between two cron runs.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::model::Timestamp;

/// The fields of one queue message the decision needs (the edge's parse of the JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// `detail-type`.
    pub detail_type: String,
    /// `source` (`aws.iam`, `aws.health`).
    pub source: String,
    /// `account` (absent in some deliveries, e.g. moto's).
    pub account: Option<String>,
    /// `detail.eventName` (CloudTrail).
    pub event_name: Option<String>,
    /// `detail.eventSource` (CloudTrail: `iam.amazonaws.com`).
    pub event_source: Option<String>,
    /// `detail.errorCode`: the call failed and changed nothing.
    pub error_code: Option<String>,
    /// `detail.recipientAccountId` (CloudTrail).
    pub recipient_account_id: Option<String>,
    /// `detail.requestParameters.userName`.
    pub request_user: Option<String>,
    /// `detail.userIdentity.userName`: whose call it was (an IAM user acting on itself when
    /// the request names no user).
    pub identity_user: Option<String>,
    /// `detail.requestParameters.accessKeyId` or `responseElements.accessKey.accessKeyId`.
    pub access_key_id: Option<String>,
    /// `detail.eventTypeCode` (Health).
    pub event_type_code: Option<String>,
    /// `detail.affectedEntities[].entityValue` (Health: the exposed key ids).
    pub affected_entities: Vec<String>,
    /// `detail.eventTime` (CloudTrail), else the envelope's `time`.
    pub time: Option<Timestamp>,
    /// The SNS topic the event came through (`TopicArn` of an SNS Notification), if any.
    pub sns_topic: Option<String>,
}

/// Who may put events on the queue, as far as keywarden can tell from a message.
#[derive(Debug, Clone, Copy)]
pub struct Trusted<'a> {
    /// The accounts this instance reads: events of others are ignored.
    pub accounts: &'a BTreeSet<String>,
    /// SNS topics whose notifications are read (`events.sns_topic_arns`); any other topic's,
    /// or every one when this is empty, is ignored.
    pub sns_topics: &'a [String],
}

/// What kind of change (the `kind` label of `keywarden_events_received_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// CreateAccessKey, UpdateAccessKey, DeleteAccessKey.
    AccessKey,
    /// CreateUser, DeleteUser, TagUser, UntagUser.
    User,
    /// A call that changes a user's other credentials ([`CREDENTIAL_EVENTS`]): the user is
    /// read whole, which also renews what a run between full refreshes remembers of them.
    Credential,
    /// AWS Health: a key AWS found exposed.
    Health,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::AccessKey => "access_key",
            Kind::User => "user",
            Kind::Credential => "credential",
            Kind::Health => "health",
        }
    }
}

/// Every `kind` label value of `keywarden_events_received_total`, so that each series
/// exists from the start.
pub const KINDS: [&str; 6] = [
    Kind::AccessKey.as_str(),
    Kind::User.as_str(),
    Kind::Credential.as_str(),
    Kind::Health.as_str(),
    "ignored",
    "malformed",
];

/// Who changed: a user by name, or (Health) only a key, whose user the edge looks up.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    User(String),
    Key(String),
}

/// One event that asks for a re-audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: Kind,
    pub account_id: String,
    pub subject: Subject,
    pub time: Timestamp,
}

/// What one message comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Changes(Vec<Change>),
    /// Well-formed but nothing for keywarden (another event, a failed call, an account it
    /// does not manage): deleted, counted as `ignored`.
    Ignored(String),
    /// Not an event keywarden can read: left on the queue for its redrive policy (the
    /// dead-letter queue), counted as `malformed`.
    Malformed(String),
}

pub const ACCESS_KEY_EVENTS: [&str; 3] = ["CreateAccessKey", "UpdateAccessKey", "DeleteAccessKey"];
pub const USER_EVENTS: [&str; 4] = ["CreateUser", "DeleteUser", "TagUser", "UntagUser"];
/// The calls that change a user's console password, SSH keys, service-specific credentials
/// or signing certificates.
pub const CREDENTIAL_EVENTS: [&str; 13] = [
    "CreateLoginProfile",
    "UpdateLoginProfile",
    "DeleteLoginProfile",
    "UploadSSHPublicKey",
    "UpdateSSHPublicKey",
    "DeleteSSHPublicKey",
    "CreateServiceSpecificCredential",
    "UpdateServiceSpecificCredential",
    "ResetServiceSpecificCredential",
    "DeleteServiceSpecificCredential",
    "UploadSigningCertificate",
    "UpdateSigningCertificate",
    "DeleteSigningCertificate",
];
pub const EXPOSED: &str = "AWS_RISK_CREDENTIALS_EXPOSED";

/// Decides one parsed message.
pub fn decide(e: &Envelope, trusted: &Trusted<'_>) -> Decision {
    if let Some(topic) = &e.sns_topic {
        if !trusted.sns_topics.iter().any(|t| t == topic) {
            return Decision::Ignored(format!(
                "an SNS notification from {topic}, which events.sns_topic_arns does not name"
            ));
        }
    }
    let managed = trusted.accounts;
    let read: fn(&Envelope, Timestamp, &BTreeSet<String>) -> Decision =
        match (e.detail_type.as_str(), e.source.as_str()) {
            ("AWS API Call via CloudTrail", "aws.iam") => cloudtrail,
            ("AWS Health Event", "aws.health") => health,
            (t, s) => return Decision::Ignored(format!("not an event keywarden acts on: {t:?} from {s:?}")),
        };
    match e.time {
        Some(time) => read(e, time, managed),
        None => Decision::Malformed("no event time".into()),
    }
}

fn managed_account<'a>(account: Option<&'a str>, managed: &BTreeSet<String>) -> Result<&'a str, Decision> {
    match account {
        None => Err(Decision::Malformed("no account id".into())),
        Some(a) if !managed.contains(a) => Err(Decision::Ignored(format!("account {a} is not managed here"))),
        Some(a) => Ok(a),
    }
}

fn cloudtrail(e: &Envelope, time: Timestamp, managed: &BTreeSet<String>) -> Decision {
    let Some(name) = e.event_name.as_deref() else {
        return Decision::Malformed("a CloudTrail event without eventName".into());
    };
    if e.event_source.as_deref().is_some_and(|s| s != "iam.amazonaws.com") {
        return Decision::Ignored(format!("{name} from {:?}", e.event_source));
    }
    let kind = if ACCESS_KEY_EVENTS.contains(&name) {
        Kind::AccessKey
    } else if USER_EVENTS.contains(&name) {
        Kind::User
    } else if CREDENTIAL_EVENTS.contains(&name) {
        Kind::Credential
    } else {
        return Decision::Ignored(format!("{name} changes no credential"));
    };
    if let Some(code) = &e.error_code {
        return Decision::Ignored(format!("{name} failed ({code}) and changed nothing"));
    }
    let account = match managed_account(e.recipient_account_id.as_deref().or(e.account.as_deref()), managed) {
        Ok(a) => a,
        Err(d) => return d,
    };
    // Credential calls without a user name act on the caller's own user.
    let user = e.request_user.clone().or_else(|| match kind {
        Kind::AccessKey | Kind::Credential => e.identity_user.clone(),
        _ => None,
    });
    let subject = match (user, &e.access_key_id) {
        (Some(u), _) => Subject::User(u),
        (None, Some(k)) => Subject::Key(k.clone()),
        (None, None) => return Decision::Malformed(format!("{name} names no user")),
    };
    Decision::Changes(vec![Change {
        kind,
        account_id: account.to_string(),
        subject,
        time,
    }])
}

fn health(e: &Envelope, time: Timestamp, managed: &BTreeSet<String>) -> Decision {
    if e.event_type_code.as_deref() != Some(EXPOSED) {
        return Decision::Ignored(format!("Health event {:?}", e.event_type_code));
    }
    let account = match managed_account(e.account.as_deref(), managed) {
        Ok(a) => a,
        Err(d) => return d,
    };
    if e.affected_entities.is_empty() {
        return Decision::Malformed(format!("{EXPOSED} names no access key"));
    }
    Decision::Changes(
        e.affected_entities
            .iter()
            .map(|k| Change {
                kind: Kind::Health,
                account_id: account.to_string(),
                subject: Subject::Key(k.clone()),
                time,
            })
            .collect(),
    )
}

/// The changes of one batch, one entry per account and subject: duplicates and out-of-order
/// deliveries collapse to the latest event time (the change the live read will show).
pub fn batch(changes: impl IntoIterator<Item = Change>) -> BTreeMap<(String, Subject), Timestamp> {
    let mut out: BTreeMap<(String, Subject), Timestamp> = BTreeMap::new();
    for c in changes {
        let t = out.entry((c.account_id, c.subject)).or_insert(c.time);
        if c.time > *t {
            *t = c.time;
        }
    }
    out
}

/// When a new finding of a changed user was first seen: the event's time, but not before
/// the last run (which did not see it) and not after now. Without a last run (a new, lost or
/// restored-empty state) keywarden's earliest sight of the account is now: an event's time
/// alone, which anyone who can write to the queue chooses, never starts a grace period early.
pub fn first_seen(event_time: Timestamp, last_run: Option<Timestamp>, now: Timestamp) -> Timestamp {
    last_run.map_or(now, |l| event_time.max(l)).min(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(minute: u32) -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 12, 4, 12, minute, 0).unwrap()
    }

    fn managed() -> BTreeSet<String> {
        ["123456789012".to_string()].into()
    }

    fn here(e: &Envelope) -> Decision {
        decide(
            e,
            &Trusted {
                accounts: &managed(),
                sns_topics: &["arn:aws:sns:us-east-1:123456789012:keywarden".to_string()],
            },
        )
    }

    fn trail(name: &str, user: Option<&str>) -> Envelope {
        Envelope {
            detail_type: "AWS API Call via CloudTrail".into(),
            source: "aws.iam".into(),
            event_name: Some(name.into()),
            event_source: Some("iam.amazonaws.com".into()),
            recipient_account_id: Some("123456789012".into()),
            request_user: user.map(str::to_string),
            time: Some(t(1)),
            ..Envelope::default()
        }
    }

    fn change(e: &Envelope) -> Change {
        match here(e) {
            Decision::Changes(mut c) if c.len() == 1 => c.remove(0),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn key_and_user_calls_name_the_user_to_read_again() {
        for (name, kind) in [
            ("CreateAccessKey", Kind::AccessKey),
            ("UpdateAccessKey", Kind::AccessKey),
            ("DeleteAccessKey", Kind::AccessKey),
            ("CreateUser", Kind::User),
            ("DeleteUser", Kind::User),
            ("TagUser", Kind::User),
            ("UntagUser", Kind::User),
        ]
        .into_iter()
        .chain(CREDENTIAL_EVENTS.map(|name| (name, Kind::Credential)))
        {
            let c = change(&trail(name, Some("alice")));
            assert_eq!(c.kind, kind, "{name}");
            assert_eq!(c.subject, Subject::User("alice".into()));
            assert_eq!((c.account_id.as_str(), c.time), ("123456789012", t(1)));
        }
    }

    #[test]
    fn a_key_call_without_a_user_name_acts_on_the_callers_own_user() {
        let mut e = trail("CreateAccessKey", None);
        e.identity_user = Some("bob".into());
        assert_eq!(change(&e).subject, Subject::User("bob".into()));
        let mut e = trail("UpdateAccessKey", None);
        e.access_key_id = Some("AKIAX".into());
        assert_eq!(
            change(&e).subject,
            Subject::Key("AKIAX".into()),
            "a role's call: by key"
        );
        assert!(matches!(here(&trail("DeleteAccessKey", None)), Decision::Malformed(_)));
        // SSH keys, service-specific credentials and certificates: the same.
        let mut e = trail("UploadSSHPublicKey", None);
        e.identity_user = Some("bob".into());
        assert_eq!(change(&e).subject, Subject::User("bob".into()));
        let tag = trail("TagUser", None);
        assert!(
            matches!(here(&tag), Decision::Malformed(_)),
            "a user call names its user"
        );
    }

    #[test]
    fn foreign_failed_and_unmanaged_events_are_ignored_not_malformed() {
        let ignored = |e: &Envelope| matches!(here(e), Decision::Ignored(_));
        assert!(ignored(&trail("ListUsers", None)), "another IAM call");
        let mut s3 = trail("CreateAccessKey", Some("a"));
        s3.detail_type = "Object Created".into();
        s3.source = "aws.s3".into();
        s3.time = None;
        assert!(ignored(&s3), "a foreign event is ignored whatever it lacks");
        let mut failed = trail("CreateAccessKey", Some("a"));
        failed.error_code = Some("LimitExceeded".into());
        assert!(ignored(&failed), "a failed call changed nothing");
        let mut other = trail("CreateAccessKey", Some("a"));
        other.recipient_account_id = Some("999999999999".into());
        assert!(ignored(&other), "an account keywarden does not manage");
    }

    #[test]
    fn sns_notifications_are_read_only_from_the_topics_the_config_names() {
        let mut e = trail("CreateAccessKey", Some("a"));
        e.sns_topic = Some("arn:aws:sns:us-east-1:123456789012:keywarden".into());
        assert_eq!(change(&e).subject, Subject::User("a".into()), "a named topic");
        e.sns_topic = Some("arn:aws:sns:us-east-1:999999999999:forged".into());
        match here(&e) {
            Decision::Ignored(why) => assert!(why.contains("999999999999:forged"), "{why}"),
            d => panic!("a foreign topic: {d:?}"),
        }
        let mut direct = trail("CreateAccessKey", Some("a"));
        direct.sns_topic = Some("arn:aws:sns:us-east-1:123456789012:keywarden".into());
        let d = decide(
            &direct,
            &Trusted {
                accounts: &managed(),
                sns_topics: &[],
            },
        );
        assert!(
            matches!(d, Decision::Ignored(_)),
            "no topic named: SNS is not read at all"
        );
    }

    #[test]
    fn events_without_a_time_or_an_account_are_malformed() {
        let mut e = trail("CreateUser", Some("a"));
        e.time = None;
        assert!(matches!(here(&e), Decision::Malformed(_)));
        let mut e = trail("CreateUser", Some("a"));
        e.recipient_account_id = None;
        assert!(matches!(here(&e), Decision::Malformed(_)));
        let mut e = trail("CreateUser", Some("a"));
        e.recipient_account_id = None;
        e.account = Some("123456789012".into());
        assert_eq!(change(&e).account_id, "123456789012", "the envelope's account");
    }

    #[test]
    fn health_names_each_exposed_key() {
        let e = Envelope {
            detail_type: "AWS Health Event".into(),
            source: "aws.health".into(),
            account: Some("123456789012".into()),
            event_type_code: Some(EXPOSED.into()),
            affected_entities: vec!["AKIA1".into(), "AKIA2".into()],
            time: Some(t(2)),
            ..Envelope::default()
        };
        match here(&e) {
            Decision::Changes(c) => {
                assert_eq!(c.len(), 2);
                assert!(c.iter().all(|c| c.kind == Kind::Health));
                assert_eq!(c[1].subject, Subject::Key("AKIA2".into()));
            }
            d => panic!("{d:?}"),
        }
        let mut other = e.clone();
        other.event_type_code = Some("AWS_EC2_INSTANCE_RETIREMENT".into());
        assert!(matches!(here(&other), Decision::Ignored(_)));
        let mut none = e;
        none.affected_entities.clear();
        assert!(matches!(here(&none), Decision::Malformed(_)));
    }

    #[test]
    fn duplicates_and_out_of_order_deliveries_collapse_to_the_latest_time() {
        let c = |minute, user: &str| Change {
            kind: Kind::AccessKey,
            account_id: "1".into(),
            subject: Subject::User(user.into()),
            time: t(minute),
        };
        let b = batch([c(5, "a"), c(3, "a"), c(5, "a"), c(4, "b")]);
        assert_eq!(b.len(), 2);
        assert_eq!(b[&("1".to_string(), Subject::User("a".into()))], t(5));
        assert_eq!(b[&("1".to_string(), Subject::User("b".into()))], t(4));
    }

    #[test]
    fn first_seen_is_the_event_time_within_the_last_run_and_now() {
        assert_eq!(first_seen(t(5), Some(t(0)), t(10)), t(5));
        assert_eq!(first_seen(t(5), Some(t(7)), t(10)), t(7), "older than the last run");
        assert_eq!(
            first_seen(t(5), None, t(10)),
            t(10),
            "no last run: now, whatever the event says"
        );
        assert_eq!(first_seen(t(15), Some(t(0)), t(10)), t(10), "never in the future");
    }
}

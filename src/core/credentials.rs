//! Every long-lived credential of an IAM user as one kind of thing: access keys, console
//! passwords (login profiles), SSH public keys (CodeCommit), service-specific credentials
//! (CodeCommit HTTPS Git, Amazon Keyspaces, Amazon Bedrock API keys) and X.509 signing
//! certificates. Each has an id, a status, a creation time, and where AWS knows them its last
//! use, its service and its expiry.
//!
//! The checks here are the rules for the kinds other than access keys, as pure decisions over
//! one credential and an instant: a console password unused for too long (never used counts
//! from the login profile's creation), a credential older than its maximum age, and a
//! service-specific credential that lives too long (no expiry, or one further than the maximum
//! lifetime from its creation: Bedrock API keys created without an age limit are the case that
//! matters). An inactive or expired credential breaks none of them: there is nothing left to
//! switch off.

use chrono::TimeDelta;

use crate::core::model::{AccessKey, KeyStatus, Timestamp};

/// The kinds, with the names findings, journal entries, exports and metrics use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CredentialType {
    AccessKey,
    Password,
    SshPublicKey,
    ServiceSpecificCredential,
    SigningCertificate,
}

impl CredentialType {
    pub const ALL: [CredentialType; 5] = [
        CredentialType::AccessKey,
        CredentialType::Password,
        CredentialType::SshPublicKey,
        CredentialType::ServiceSpecificCredential,
        CredentialType::SigningCertificate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CredentialType::AccessKey => "access_key",
            CredentialType::Password => "password",
            CredentialType::SshPublicKey => "ssh_public_key",
            CredentialType::ServiceSpecificCredential => "service_specific_credential",
            CredentialType::SigningCertificate => "signing_certificate",
        }
    }

    pub fn parse(s: &str) -> Option<CredentialType> {
        CredentialType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for CredentialType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A credential's status as IAM reports it. A password has no status of its own: it exists
/// (Active) or the user has no login profile (no credential at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialStatus {
    Active,
    Inactive,
    /// A service-specific credential past its expiry (IAM lists it so; it cannot be used).
    Expired,
}

impl CredentialStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialStatus::Active => "Active",
            CredentialStatus::Inactive => "Inactive",
            CredentialStatus::Expired => "Expired",
        }
    }
}

/// One long-lived credential of a user, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub kind: CredentialType,
    /// The access key id, the SSH key's `APKA...` id, the `ServiceSpecificCredentialId`, the
    /// certificate's `CertificateId`; for a password, the user's ARN (a user has one at most).
    pub id: String,
    pub status: CredentialStatus,
    /// For a password: the login profile's creation.
    pub created: Timestamp,
    /// Where AWS records it (access keys, passwords); `None`: never used, or not known.
    pub last_used: Option<Timestamp>,
    /// A service-specific credential's service, e.g. `bedrock.amazonaws.com`.
    pub service: Option<String>,
    /// A service-specific credential's expiry (Bedrock API keys created with an age limit).
    pub expires: Option<Timestamp>,
}

impl From<&AccessKey> for Credential {
    fn from(k: &AccessKey) -> Credential {
        Credential {
            kind: CredentialType::AccessKey,
            id: k.id.clone(),
            status: match k.status {
                KeyStatus::Active => CredentialStatus::Active,
                KeyStatus::Inactive => CredentialStatus::Inactive,
            },
            created: k.created,
            last_used: k.last_used,
            service: None,
            expires: None,
        }
    }
}

impl Credential {
    /// Active, and not past its expiry at `now` (IAM may not have listed it as Expired yet).
    pub fn usable_at(&self, now: Timestamp) -> bool {
        self.status == CredentialStatus::Active && self.expires.is_none_or(|e| e > now)
    }
}

/// `unused_password`: since when a console password counts as unused beyond `max_unused` at
/// `now` (its last use, else the login profile's creation), or `None` when it does not.
pub fn unused_password(c: &Credential, max_unused: TimeDelta, now: Timestamp) -> Option<Timestamp> {
    if c.kind != CredentialType::Password || !c.usable_at(now) {
        return None;
    }
    let since = c.last_used.unwrap_or(c.created);
    (now - since > max_unused).then_some(since)
}

/// `max_credential_age`: whether a credential of one of `kinds` is older than `max_age` at
/// `now`. Access keys and passwords have rules of their own and are never this rule's.
pub fn too_old(c: &Credential, kinds: &[CredentialType], max_age: TimeDelta, now: Timestamp) -> bool {
    let own_rule = matches!(c.kind, CredentialType::AccessKey | CredentialType::Password);
    !own_rule && kinds.contains(&c.kind) && c.usable_at(now) && now - c.created > max_age
}

/// `long_term_service_credential`: whether a service-specific credential of one of `services`
/// (empty: every service) lives longer than `max_lifetime`: it never expires, or its expiry is
/// further than that from its creation.
pub fn long_term(c: &Credential, services: &[String], max_lifetime: TimeDelta, now: Timestamp) -> bool {
    if c.kind != CredentialType::ServiceSpecificCredential || !c.usable_at(now) {
        return false;
    }
    let service = c.service.as_deref().unwrap_or("");
    if !services.is_empty() && !services.iter().any(|s| s == service) {
        return false;
    }
    match c.expires {
        None => true,
        Some(e) => e - c.created > max_lifetime,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(n: i64) -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + TimeDelta::days(n)
    }

    fn cred(kind: CredentialType, created: i64) -> Credential {
        Credential {
            kind,
            id: format!("{kind}-1"),
            status: CredentialStatus::Active,
            created: day(created),
            last_used: None,
            service: None,
            expires: None,
        }
    }

    #[test]
    fn names_round_trip() {
        for t in CredentialType::ALL {
            assert_eq!(CredentialType::parse(t.as_str()), Some(t));
        }
        assert_eq!(CredentialType::parse("accesskey"), None);
    }

    #[test]
    fn an_access_key_is_a_credential_with_the_same_id_and_times() {
        let k = AccessKey {
            id: "AKIA1".into(),
            status: KeyStatus::Inactive,
            created: day(0),
            last_used: Some(day(3)),
        };
        let c = Credential::from(&k);
        assert_eq!(
            (c.kind, c.id.as_str(), c.status),
            (CredentialType::AccessKey, "AKIA1", CredentialStatus::Inactive)
        );
        assert_eq!((c.created, c.last_used), (day(0), Some(day(3))));
    }

    #[test]
    fn a_password_is_unused_from_its_last_use_else_its_creation() {
        let max = TimeDelta::days(45);
        let never = cred(CredentialType::Password, 0);
        assert_eq!(
            unused_password(&never, max, day(45)),
            None,
            "exactly 45 days is not beyond"
        );
        assert_eq!(unused_password(&never, max, day(46)), Some(day(0)));
        let used = Credential {
            last_used: Some(day(30)),
            ..never.clone()
        };
        assert_eq!(unused_password(&used, max, day(46)), None);
        assert_eq!(unused_password(&used, max, day(76)), Some(day(30)));
        let key = cred(CredentialType::AccessKey, 0);
        assert_eq!(
            unused_password(&key, max, day(100)),
            None,
            "access keys have unused_key"
        );
    }

    #[test]
    fn age_applies_to_the_listed_kinds_while_active() {
        let kinds = [CredentialType::SshPublicKey, CredentialType::SigningCertificate];
        let max = TimeDelta::days(90);
        let ssh = cred(CredentialType::SshPublicKey, 0);
        assert!(!too_old(&ssh, &kinds, max, day(90)));
        assert!(too_old(&ssh, &kinds, max, day(91)));
        let off = Credential {
            status: CredentialStatus::Inactive,
            ..ssh.clone()
        };
        assert!(!too_old(&off, &kinds, max, day(200)), "nothing to switch off");
        let svc = cred(CredentialType::ServiceSpecificCredential, 0);
        assert!(!too_old(&svc, &kinds, max, day(200)), "not a listed kind");
        let all = [CredentialType::AccessKey, CredentialType::Password];
        assert!(!too_old(&cred(CredentialType::AccessKey, 0), &all, max, day(200)));
        assert!(!too_old(&cred(CredentialType::Password, 0), &all, max, day(200)));
    }

    #[test]
    fn a_service_credential_without_expiry_or_with_a_far_one_is_long_term() {
        let max = TimeDelta::days(90);
        let bedrock = |expires: Option<i64>| Credential {
            service: Some("bedrock.amazonaws.com".into()),
            expires: expires.map(day),
            ..cred(CredentialType::ServiceSpecificCredential, 0)
        };
        assert!(long_term(&bedrock(None), &[], max, day(1)), "no expiry");
        assert!(long_term(&bedrock(Some(365)), &[], max, day(1)));
        assert!(
            !long_term(&bedrock(Some(90)), &[], max, day(1)),
            "exactly the lifetime is fine"
        );
        assert!(!long_term(&bedrock(Some(30)), &[], max, day(31)), "expired: unusable");
        let only_git = ["codecommit.amazonaws.com".to_string()];
        assert!(!long_term(&bedrock(None), &only_git, max, day(1)), "another service");
        let expired = Credential {
            status: CredentialStatus::Expired,
            ..bedrock(Some(365))
        };
        assert!(!long_term(&expired, &[], max, day(1)));
        assert!(!long_term(&cred(CredentialType::SshPublicKey, 0), &[], max, day(1)));
    }
}

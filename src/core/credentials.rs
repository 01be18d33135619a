//! The checks of a user's long-lived credentials other than access keys: console passwords
//! (login profiles), SSH public keys (CodeCommit), service-specific credentials (CodeCommit
//! HTTPS Git, Amazon Keyspaces, Amazon Bedrock API keys) and X.509 signing certificates. The
//! credential itself (`model::Credential`, one type for every kind, access keys included) is
//! inventory data and lives in the model.
//!
//! The checks here are the rules for the kinds other than access keys, as pure decisions over
//! one credential and an instant: a console password unused for too long (never used counts
//! from the login profile's creation), a credential older than its maximum age, and a
//! service-specific credential that lives too long (no expiry, or one further than the maximum
//! lifetime from its creation: Bedrock API keys created without an age limit are the case that
//! matters). An inactive or expired credential breaks none of them: there is nothing left to
//! switch off.

use chrono::TimeDelta;

use crate::core::model::Timestamp;
pub use crate::core::model::{Credential, CredentialStatus, CredentialType};

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
    use crate::core::model::{AccessKey, KeyStatus};
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

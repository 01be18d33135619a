//! A user's credentials beyond its access keys, read by keywarden's IAM client from moto (and
//! the launcher's service-specific credentials): each kind with its id, status, dates, service
//! and expiry as IAM reports them, nothing for a user who has none, and a failed listing as that
//! user's read error in the service's words (fail closed: no credential list is half read).

use std::sync::Arc;

use aws_credential_types::Credentials;
use keywarden::core::credentials::{CredentialStatus, CredentialType};

use crate::common::*;

#[tokio::test]
async fn every_kind_is_read_with_its_status_dates_service_and_expiry() {
    let moto = Moto::start();
    let iam = moto.iam();
    let dir = TempDir::new("user-credentials");
    create_user(&iam, "app", None).await;
    // moto dates a login profile by its user's creation: both 100 days ago.
    moto.set_clock_days(-100.0);
    create_user(&iam, "dev", None).await;
    create_login_profile(&iam, "dev").await;
    let ssh = upload_ssh_key(&iam, "dev").await;
    let git = create_service_credential(&iam, "dev", "codecommit.amazonaws.com", None).await;
    moto.set_clock_days(0.0);
    let bedrock = create_service_credential(&iam, "dev", "bedrock.amazonaws.com", Some(30)).await;
    let cert = upload_signing_certificate(&iam, &dir, "dev").await;
    iam.update_ssh_public_key()
        .user_name("dev")
        .ssh_public_key_id(&ssh)
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .expect("deactivate the ssh key");

    let cfg = keywarden::config::load(&moto_config(&dir, &moto, ""), true).expect("config");
    let sdk = moto.sdk(Credentials::new("testing", "testing", None, None, "test"));
    let client = keywarden::aws::Iam::new(&sdk, &cfg.aws, Arc::new(tokio::sync::Semaphore::new(4)), None);
    moto.take_stats();
    let arn = "arn:aws:iam::123456789012:user/dev";
    let read = client
        .other_credentials(("123456789012", "dev", arn), None, &CredentialType::ALL, None)
        .await
        .expect("every kind read");
    let stats = moto.take_stats();
    for action in [
        "GetLoginProfile",
        "ListSSHPublicKeys",
        "ListServiceSpecificCredentials",
        "ListSigningCertificates",
    ] {
        assert_eq!(stats[action].as_u64(), Some(1), "one {action} per user: {stats}");
    }
    let kinds: Vec<CredentialType> = read.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            CredentialType::Password,
            CredentialType::SshPublicKey,
            CredentialType::ServiceSpecificCredential,
            CredentialType::ServiceSpecificCredential,
            CredentialType::SigningCertificate
        ]
    );
    let now = chrono::Utc::now();
    let age_days = |i: usize| (now - read[i].created).num_days();
    assert_eq!(read[0].id, arn, "a password is named by its user's ARN");
    assert!(
        (99..=100).contains(&age_days(0)),
        "the login profile's creation: {:?}",
        read[0]
    );
    assert_eq!(read[0].last_used, None, "never used");
    assert_eq!(
        (read[1].id.as_str(), read[1].status),
        (ssh.as_str(), CredentialStatus::Inactive)
    );
    assert!((99..=100).contains(&age_days(1)));
    let git_read = &read[2];
    assert_eq!(git_read.id, git.service_specific_credential_id());
    assert_eq!(git_read.service.as_deref(), Some("codecommit.amazonaws.com"));
    assert_eq!(git_read.expires, None);
    assert!((99..=100).contains(&age_days(2)));
    let bedrock_read = &read[3];
    assert_eq!(bedrock_read.id, bedrock.service_specific_credential_id());
    let lifetime = bedrock_read.expires.expect("an expiry") - bedrock_read.created;
    assert_eq!(lifetime.num_days(), 30);
    assert_eq!(
        (read[4].id.as_str(), read[4].status),
        (cert.as_str(), CredentialStatus::Active)
    );

    let none = client
        .other_credentials(
            ("123456789012", "app", "arn:aws:iam::123456789012:user/app"),
            None,
            &CredentialType::ALL,
            None,
        )
        .await
        .expect("a user without any");
    assert!(none.is_empty(), "no login profile is no password: {none:?}");

    moto.set_faults(r#"{"ListSigningCertificates": ["dev"]}"#);
    let denied = client
        .other_credentials(("123456789012", "dev", arn), None, &CredentialType::ALL, None)
        .await
        .expect_err("a denied listing fails the user's read");
    assert_eq!(denied.operation, "ListSigningCertificates");
    assert_eq!(denied.code.as_deref(), Some("AccessDenied"));
    assert_eq!(denied.user.as_deref(), Some("dev"));
}

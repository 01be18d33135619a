//! The test launcher's service-specific credentials (moto has none), checked against what the
//! IAM API reference says they do, through the Rust SDK keywarden uses: CodeCommit and Keyspaces
//! credentials with a service user name, Bedrock API keys with an alias and an optional expiry
//! (`CredentialAgeDays`), two per user and service, the service's error codes, `Expired` once
//! the expiry has passed, and creation dates that follow the launcher's clock (how a test makes
//! an old credential).

use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_iam::types::StatusType;

use crate::common::*;

const CODECOMMIT: &str = "codecommit.amazonaws.com";
const BEDROCK: &str = "bedrock.amazonaws.com";

fn code<E: ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("(no code)").to_string()
}

#[tokio::test]
async fn service_specific_credentials_behave_as_the_api_reference_says() {
    let moto = Moto::start();
    let iam = moto.iam();
    create_user(&iam, "dev", None).await;

    // Created 120 days ago (the launcher's clock), no expiry: the long-lived kind.
    moto.set_clock_days(-120.0);
    let git = iam
        .create_service_specific_credential()
        .user_name("dev")
        .service_name(CODECOMMIT)
        .send()
        .await
        .expect("create a CodeCommit credential")
        .service_specific_credential
        .expect("the credential");
    moto.set_clock_days(0.0);
    let age_days = (chrono::Utc::now().timestamp() - git.create_date().secs()) / 86_400;
    assert!((119..=120).contains(&age_days), "created {age_days} days ago");
    assert_eq!(git.service_user_name(), "dev-at-123456789012");
    assert!(!git.service_password().is_empty(), "the password is shown at creation");
    assert!(git.expiration_date().is_none());
    assert_eq!(git.status(), &StatusType::Active);

    // A Bedrock API key that expires after one day, seen three days later.
    let bedrock = iam
        .create_service_specific_credential()
        .user_name("dev")
        .service_name(BEDROCK)
        .credential_age_days(1)
        .send()
        .await
        .expect("create a Bedrock API key")
        .service_specific_credential
        .expect("the key");
    assert!(bedrock.service_credential_alias().is_some_and(|a| a.contains("dev")));
    assert!(bedrock.service_credential_secret().is_some());
    let expiry = bedrock.expiration_date().expect("an expiry with CredentialAgeDays");
    assert_eq!(expiry.secs() - bedrock.create_date().secs(), 86_400);

    // Errors in the service's own codes.
    let second = iam
        .create_service_specific_credential()
        .user_name("dev")
        .service_name(CODECOMMIT)
        .send()
        .await;
    assert!(second.is_ok(), "two per user and service: {second:?}");
    let third = iam
        .create_service_specific_credential()
        .user_name("dev")
        .service_name(CODECOMMIT)
        .send()
        .await
        .expect_err("a third CodeCommit credential");
    assert_eq!(code(&third), "LimitExceeded");
    let unknown = iam
        .create_service_specific_credential()
        .user_name("dev")
        .service_name("s3.amazonaws.com")
        .send()
        .await
        .expect_err("an unsupported service");
    assert_eq!(code(&unknown), "NotSupportedService");
    let nobody = iam
        .list_service_specific_credentials()
        .user_name("nobody")
        .send()
        .await
        .expect_err("a user that does not exist");
    assert_eq!(code(&nobody), "NoSuchEntity");
    let no_expiry_here = iam
        .create_service_specific_credential()
        .user_name("dev")
        .service_name("cassandra.amazonaws.com")
        .credential_age_days(30)
        .send()
        .await
        .expect_err("CredentialAgeDays is for Bedrock API keys only");
    assert_eq!(code(&no_expiry_here), "InvalidInput");

    // Deactivated, listed without secrets; the expired key lists as Expired.
    iam.update_service_specific_credential()
        .user_name("dev")
        .service_specific_credential_id(git.service_specific_credential_id())
        .status(StatusType::Inactive)
        .send()
        .await
        .expect("deactivate");
    moto.set_clock_days(3.0);
    let listed = iam
        .list_service_specific_credentials()
        .user_name("dev")
        .send()
        .await
        .expect("list")
        .service_specific_credentials
        .unwrap_or_default();
    moto.set_clock_days(0.0);
    let status_of = |id: &str| {
        listed
            .iter()
            .find(|c| c.service_specific_credential_id() == id)
            .map(|c| c.status().clone())
    };
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(
        status_of(git.service_specific_credential_id()),
        Some(StatusType::Inactive)
    );
    assert_eq!(
        status_of(bedrock.service_specific_credential_id()),
        Some(StatusType::Expired)
    );
    let bedrock_listed = listed
        .iter()
        .find(|c| c.service_name() == BEDROCK)
        .expect("the Bedrock key is listed");
    assert_eq!(
        bedrock_listed.service_credential_alias(),
        bedrock.service_credential_alias()
    );

    // Without UserName: the signing user's own; AllUsers: everyone's.
    create_user(&iam, "other", None).await;
    iam.create_service_specific_credential()
        .user_name("other")
        .service_name(CODECOMMIT)
        .send()
        .await
        .expect("another user's credential");
    let dev_key = create_key(&iam, "dev").await;
    let as_dev = moto.iam_as(&dev_key.id, &dev_key.secret);
    let own = as_dev
        .list_service_specific_credentials()
        .send()
        .await
        .expect("list my own")
        .service_specific_credentials
        .unwrap_or_default();
    assert!(own.iter().all(|c| c.user_name() == "dev") && own.len() == 3, "{own:?}");
    let everyone = iam
        .list_service_specific_credentials()
        .all_users(true)
        .send()
        .await
        .expect("list every user's")
        .service_specific_credentials
        .unwrap_or_default();
    assert_eq!(everyone.len(), 4, "{everyone:?}");

    // Reset gives a new password; delete removes it; a deleted id is NoSuchEntity.
    let reset = iam
        .reset_service_specific_credential()
        .user_name("dev")
        .service_specific_credential_id(git.service_specific_credential_id())
        .send()
        .await
        .expect("reset")
        .service_specific_credential
        .expect("the credential");
    assert_ne!(reset.service_password(), git.service_password());
    iam.delete_service_specific_credential()
        .user_name("dev")
        .service_specific_credential_id(git.service_specific_credential_id())
        .send()
        .await
        .expect("delete");
    let gone = iam
        .update_service_specific_credential()
        .user_name("dev")
        .service_specific_credential_id(git.service_specific_credential_id())
        .status(StatusType::Active)
        .send()
        .await
        .expect_err("a deleted credential");
    assert_eq!(code(&gone), "NoSuchEntity");
    let stats = moto.take_stats();
    assert!(stats["CreateServiceSpecificCredential"].as_u64() >= Some(5), "{stats}");
}

//! A user's long-lived credentials beyond its access keys, read live: the console password
//! (GetLoginProfile; its last use comes with the user's ListUsers or GetUser record), SSH public
//! keys (ListSSHPublicKeys), service-specific credentials (ListServiceSpecificCredentials) and
//! signing certificates (ListSigningCertificates): four requests per user (more only past a
//! page of 100 SSH keys or certificates, which IAM's quota of 5 and 2 never reaches).
//!
//! A status keywarden does not know is an error, never a harmless credential; so is a missing
//! id or date. A user without a login profile has no password (NoSuchEntity is an answer here).

use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_iam::types::StatusType;

use crate::aws::iam::{to_chrono, user_error, Iam};
use crate::core::credentials::{Credential, CredentialStatus, CredentialType};
use crate::core::model::{ReadError, Timestamp};

fn status(kind: CredentialType, id: &str, s: &StatusType) -> Result<CredentialStatus, String> {
    match s {
        StatusType::Active => Ok(CredentialStatus::Active),
        StatusType::Inactive => Ok(CredentialStatus::Inactive),
        StatusType::Expired => Ok(CredentialStatus::Expired),
        other => Err(format!("{kind} {id} has unknown status {other:?}")),
    }
}

/// A listed credential without a service or expiry (SSH keys, signing certificates), checked:
/// a known status and a valid upload date.
fn listed(
    kind: CredentialType,
    id: String,
    s: &StatusType,
    uploaded: Option<aws_sdk_iam::primitives::DateTime>,
) -> Result<Credential, String> {
    Ok(Credential {
        kind,
        status: status(kind, &id, s)?,
        created: uploaded
            .and_then(to_chrono)
            .ok_or_else(|| format!("{kind} {id} without a valid UploadDate"))?,
        id,
        last_used: None,
        service: None,
        expires: None,
    })
}

impl Iam {
    /// Every credential of `user` but its access keys. `password_last_used` is the user
    /// record's `PasswordLastUsed` (ListUsers, GetUser), which GetLoginProfile does not carry.
    pub async fn other_credentials(
        &self,
        account_id: &str,
        user: &str,
        user_arn: &str,
        password_last_used: Option<Timestamp>,
    ) -> Result<Vec<Credential>, ReadError> {
        let mut out = Vec::new();
        if let Some(password) = self
            .login_profile(account_id, user, user_arn, password_last_used)
            .await?
        {
            out.push(password);
        }
        out.extend(self.ssh_public_keys(account_id, user).await?);
        out.extend(self.service_specific_credentials(account_id, user).await?);
        out.extend(self.signing_certificates(account_id, user).await?);
        Ok(out)
    }

    async fn login_profile(
        &self,
        account_id: &str,
        user: &str,
        user_arn: &str,
        last_used: Option<Timestamp>,
    ) -> Result<Option<Credential>, ReadError> {
        let fail = |e: String| user_error(account_id, user, "GetLoginProfile", e);
        let answer = self.gated(self.iam.get_login_profile().user_name(user).send()).await;
        let profile = match answer {
            Ok(a) => a.login_profile,
            Err(e) if e.code() == Some("NoSuchEntity") => return Ok(None),
            Err(e) => return Err(user_error(account_id, user, "GetLoginProfile", self.describe(&e))),
        };
        let profile = profile.ok_or_else(|| fail("an answer without LoginProfile".into()))?;
        let created =
            to_chrono(profile.create_date).ok_or_else(|| fail("a login profile without a valid CreateDate".into()))?;
        Ok(Some(Credential {
            kind: CredentialType::Password,
            id: user_arn.to_string(),
            status: CredentialStatus::Active,
            created,
            last_used,
            service: None,
            expires: None,
        }))
    }

    async fn ssh_public_keys(&self, account_id: &str, user: &str) -> Result<Vec<Credential>, ReadError> {
        let kind = CredentialType::SshPublicKey;
        let fail = |e: String| user_error(account_id, user, "ListSSHPublicKeys", e);
        let call = self
            .iam
            .list_ssh_public_keys()
            .user_name(user)
            .into_paginator()
            .items()
            .send();
        let keys: Vec<_> = self
            .gated(call.try_collect())
            .await
            .map_err(|e| user_error(account_id, user, "ListSSHPublicKeys", self.describe(&e)))?;
        keys.into_iter()
            .map(|k| listed(kind, k.ssh_public_key_id, &k.status, Some(k.upload_date)).map_err(fail))
            .collect()
    }

    async fn service_specific_credentials(&self, account_id: &str, user: &str) -> Result<Vec<Credential>, ReadError> {
        let kind = CredentialType::ServiceSpecificCredential;
        let fail = |e: String| user_error(account_id, user, "ListServiceSpecificCredentials", e);
        let answer = self
            .gated(self.iam.list_service_specific_credentials().user_name(user).send())
            .await
            .map_err(|e| user_error(account_id, user, "ListServiceSpecificCredentials", self.describe(&e)))?;
        answer
            .service_specific_credentials
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                let id = c.service_specific_credential_id;
                Ok(Credential {
                    kind,
                    status: status(kind, &id, &c.status).map_err(fail)?,
                    created: to_chrono(c.create_date)
                        .ok_or_else(|| fail(format!("{kind} {id} without a valid CreateDate")))?,
                    expires: c.expiration_date.and_then(to_chrono),
                    service: Some(c.service_name),
                    id,
                    last_used: None,
                })
            })
            .collect()
    }

    async fn signing_certificates(&self, account_id: &str, user: &str) -> Result<Vec<Credential>, ReadError> {
        let kind = CredentialType::SigningCertificate;
        let fail = |e: String| user_error(account_id, user, "ListSigningCertificates", e);
        let call = self
            .iam
            .list_signing_certificates()
            .user_name(user)
            .into_paginator()
            .items()
            .send();
        let certs: Vec<_> = self
            .gated(call.try_collect())
            .await
            .map_err(|e| user_error(account_id, user, "ListSigningCertificates", self.describe(&e)))?;
        certs
            .into_iter()
            .map(|c| listed(kind, c.certificate_id, &c.status, c.upload_date).map_err(fail))
            .collect()
    }
}

//! A user's long-lived credentials beyond its access keys, read live: the console password
//! (GetLoginProfile; its last use comes with the user's ListUsers or GetUser record), SSH public
//! keys (ListSSHPublicKeys), service-specific credentials (ListServiceSpecificCredentials) and
//! signing certificates (ListSigningCertificates): one request per user and kind asked for
//! (more only past a page of 100 SSH keys or certificates, which IAM's quota of 5 and 2 never
//! reaches).
//!
//! A status keywarden does not know is an error, never a harmless credential; so is a missing
//! id or date (the SDK fills a missing required date with 0 and a missing id with "": both are
//! refused here, or a credential would look 56 years old). A user without a login profile has
//! no password (NoSuchEntity is an answer here).
//!
//! The changes: Update...Status for the three kinds that have one, and for a password, which
//! has none, DeleteLoginProfile (after reading the settings it had) and CreateLoginProfile
//! (`keywarden reactivate USER --password`).

use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_iam::types::StatusType;

use crate::aws::iam::{every_item, to_chrono, user_error, Iam};
use crate::core::credentials::{Credential, CredentialStatus, CredentialType};
use crate::core::history::Listing;
use crate::core::model::{LoginProfile, ReadError, ServiceError, Timestamp};

/// A date IAM sent: `None` for none, or the 0 the SDK puts in place of a missing one.
fn sent(t: aws_sdk_iam::primitives::DateTime) -> Option<Timestamp> {
    (t.secs() != 0).then(|| to_chrono(t)).flatten()
}

/// An id IAM sent (the SDK puts "" in place of a missing one).
fn id_of(kind: CredentialType, id: String) -> Result<String, String> {
    if id.is_empty() {
        return Err(format!("a {kind} without an id"));
    }
    Ok(id)
}

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
    let id = id_of(kind, id)?;
    Ok(Credential {
        kind,
        status: status(kind, &id, s)?,
        created: uploaded
            .and_then(sent)
            .ok_or_else(|| format!("{kind} {id} without a valid UploadDate"))?,
        id,
        last_used: None,
        service: None,
        expires: None,
    })
}

impl Iam {
    /// The credentials of `user` of the `kinds` asked for (access keys are read elsewhere):
    /// one request per kind, except a kind `remembered` has (a run between full refreshes).
    /// `password_last_used` is the user record's `PasswordLastUsed` (ListUsers, GetUser),
    /// which GetLoginProfile does not carry: it is always this run's.
    pub async fn other_credentials(
        &self,
        (account_id, user, user_arn): (&str, &str, &str),
        password_last_used: Option<Timestamp>,
        kinds: &[CredentialType],
        remembered: Option<&Listing>,
    ) -> Result<Vec<Credential>, ReadError> {
        let mut out = Vec::new();
        for kind in kinds {
            if let Some(known) = remembered.and_then(|l| l.of(*kind)) {
                out.extend(known.cloned().map(|c| Credential {
                    last_used: password_last_used.filter(|_| c.kind == CredentialType::Password),
                    ..c
                }));
                continue;
            }
            match kind {
                CredentialType::AccessKey => {}
                CredentialType::Password => out.extend(
                    self.login_profile(account_id, user, user_arn, password_last_used)
                        .await?,
                ),
                CredentialType::SshPublicKey => out.extend(self.ssh_public_keys(account_id, user).await?),
                CredentialType::ServiceSpecificCredential => {
                    out.extend(self.service_specific_credentials(account_id, user).await?)
                }
                CredentialType::SigningCertificate => out.extend(self.signing_certificates(account_id, user).await?),
            }
        }
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
            sent(profile.create_date).ok_or_else(|| fail("a login profile without a valid CreateDate".into()))?;
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
        let keys: Vec<_> = every_item!(self, list_ssh_public_keys, user)
            .map_err(|e| user_error(account_id, user, "ListSSHPublicKeys", self.describe(&e)))?;
        keys.into_iter()
            .map(|k| listed(kind, k.ssh_public_key_id, &k.status, Some(k.upload_date)).map_err(fail))
            .collect()
    }

    async fn service_specific_credentials(&self, account_id: &str, user: &str) -> Result<Vec<Credential>, ReadError> {
        let kind = CredentialType::ServiceSpecificCredential;
        let fail = |e: String| user_error(account_id, user, "ListServiceSpecificCredentials", e);
        // Paged by Marker (IAM's usual quota is 2 per service, but a page is never assumed whole).
        let mut metas = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let call = self
                .iam
                .list_service_specific_credentials()
                .user_name(user)
                .set_marker(marker.take());
            let page = self
                .gated(call.send())
                .await
                .map_err(|e| user_error(account_id, user, "ListServiceSpecificCredentials", self.describe(&e)))?;
            let truncated = page.is_truncated();
            marker = page.marker.clone();
            metas.extend(page.service_specific_credentials.unwrap_or_default());
            match (truncated, &marker) {
                (false, _) => break,
                (true, Some(_)) => {}
                (true, None) => return Err(fail("a truncated answer without a Marker".into())),
            }
        }
        metas
            .into_iter()
            .map(|c| {
                let id = id_of(kind, c.service_specific_credential_id).map_err(fail)?;
                Ok(Credential {
                    kind,
                    status: status(kind, &id, &c.status).map_err(fail)?,
                    created: sent(c.create_date)
                        .ok_or_else(|| fail(format!("{kind} {id} without a valid CreateDate")))?,
                    expires: c.expiration_date.and_then(sent),
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
        let certs: Vec<_> = every_item!(self, list_signing_certificates, user)
            .map_err(|e| user_error(account_id, user, "ListSigningCertificates", self.describe(&e)))?;
        certs
            .into_iter()
            .map(|c| listed(kind, c.certificate_id, &c.status, c.upload_date).map_err(fail))
            .collect()
    }
}

/// The call that sets a credential's status (a password has none: it can only be deleted).
pub fn update_operation(kind: CredentialType) -> &'static str {
    match kind {
        CredentialType::AccessKey => "UpdateAccessKey",
        CredentialType::Password => "DeleteLoginProfile",
        CredentialType::SshPublicKey => "UpdateSSHPublicKey",
        CredentialType::ServiceSpecificCredential => "UpdateServiceSpecificCredential",
        CredentialType::SigningCertificate => "UpdateSigningCertificate",
    }
}

impl Iam {
    /// Sets an SSH key, service-specific credential or signing certificate Inactive or Active:
    /// reversible, as UpdateAccessKey is. Access keys have their own call; a password is refused.
    pub async fn update_credential(
        &self,
        user: &str,
        (kind, id): (CredentialType, &str),
        active: bool,
    ) -> Result<(), ServiceError> {
        let status = if active {
            StatusType::Active
        } else {
            StatusType::Inactive
        };
        let operation = update_operation(kind);
        let sent = match kind {
            CredentialType::SshPublicKey => {
                let call = self.iam.update_ssh_public_key().user_name(user).ssh_public_key_id(id);
                self.gated(call.status(status).send())
                    .await
                    .map(|_| ())
                    .map_err(|e| self.describe(&e))
            }
            CredentialType::ServiceSpecificCredential => {
                let call = self
                    .iam
                    .update_service_specific_credential()
                    .user_name(user)
                    .service_specific_credential_id(id);
                self.gated(call.status(status).send())
                    .await
                    .map(|_| ())
                    .map_err(|e| self.describe(&e))
            }
            CredentialType::SigningCertificate => {
                let call = self.iam.update_signing_certificate().user_name(user).certificate_id(id);
                self.gated(call.status(status).send())
                    .await
                    .map(|_| ())
                    .map_err(|e| self.describe(&e))
            }
            CredentialType::AccessKey | CredentialType::Password => {
                return Err(format!("{operation}: a {kind} has no status keywarden sets this way").into())
            }
        };
        sent.map_err(|e| ServiceError {
            message: format!("{operation}: {e}"),
            code: e.code,
        })
    }
}

impl Iam {
    /// GetLoginProfile (its settings, for the journal), then DeleteLoginProfile. A password
    /// cannot be switched off; this is the one credential keywarden deletes, and only when
    /// `rules.unused_password.action = "delete_login_profile"` says so.
    pub async fn delete_login_profile(&self, user: &str) -> Result<LoginProfile, ServiceError> {
        let named = |operation: &str, e: ServiceError| ServiceError {
            message: format!("{operation}: {e}"),
            code: e.code,
        };
        let read = self.gated(self.iam.get_login_profile().user_name(user).send()).await;
        let profile = read
            .map_err(|e| named("GetLoginProfile", self.describe(&e)))?
            .login_profile
            .ok_or_else(|| ServiceError::from("GetLoginProfile: an answer without LoginProfile"))?;
        let settings = LoginProfile {
            created: sent(profile.create_date)
                .ok_or_else(|| ServiceError::from("GetLoginProfile: a login profile without a valid CreateDate"))?,
            password_reset_required: profile.password_reset_required,
        };
        let deleted = self.gated(self.iam.delete_login_profile().user_name(user).send()).await;
        deleted.map_err(|e| named("DeleteLoginProfile", self.describe(&e)))?;
        Ok(settings)
    }

    /// CreateLoginProfile with a temporary password that must be changed at first sign-in.
    /// The password is in the request only: never in an error or a log line.
    pub async fn create_login_profile(&self, user: &str, password: &str) -> Result<(), ServiceError> {
        let call = self
            .iam
            .create_login_profile()
            .user_name(user)
            .password(password)
            .password_reset_required(true);
        let made = self.gated(call.send()).await;
        made.map(|_| ()).map_err(|e| {
            let e = self.describe(&e);
            ServiceError {
                message: format!("CreateLoginProfile: {e}"),
                code: e.code,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_iam::primitives::DateTime;

    #[test]
    fn the_sdks_stand_ins_for_missing_fields_are_refused() {
        let ssh = CredentialType::SshPublicKey;
        let zero = DateTime::from_secs(0);
        let day = DateTime::from_secs(86_400 * 20_000);
        assert_eq!(sent(zero), None, "0 is the SDK's stand-in for a missing date");
        assert!(listed(ssh, "".into(), &StatusType::Active, Some(day)).is_err(), "no id");
        let e = listed(ssh, "APKA1".into(), &StatusType::Active, Some(zero)).unwrap_err();
        assert!(e.contains("APKA1") && e.contains("UploadDate"), "{e}");
        let unknown = StatusType::from("Paused");
        assert!(listed(ssh, "APKA1".into(), &unknown, Some(day))
            .unwrap_err()
            .contains("unknown status"));
        let ok = listed(ssh, "APKA1".into(), &StatusType::Inactive, Some(day)).unwrap();
        assert_eq!(
            (ok.status, ok.created.timestamp()),
            (CredentialStatus::Inactive, 86_400 * 20_000)
        );
    }
}

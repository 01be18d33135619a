//! One account's IAM client: reads its inventory, and makes enforcement's few changes.
//!
//! Requests: GetAccountSummary (root keys, user count), ListUsers (paginated), then per user
//! ListAccessKeys, GetAccessKeyLastUsed for each active key and ListUserTags only when an
//! exemption needs tags; with `rules.exposed_key`, ListEntitiesForPolicy on each of AWS's three
//! quarantine policies (users only), 3 requests per account in either mode. At most `max_concurrent_requests` users are read at once; each user's
//! reads are sequential. The SDK's set-up is `sdk.rs`'s; who the credentials are and which
//! accounts to read, `identity.rs`'s and `accounts.rs`'s. Any failed read of a user puts the user in `errors` instead of
//! `users` (fail closed).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_iam::types::StatusType;
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::aws::credential_report::{self, CredentialReport, NamingError, Row};
use crate::aws::errors::{describe_at, NoRetryOnRefusal};
use crate::aws::ratelimit::TokenBucket;
use crate::aws::sdk::{endpoint_of, CountAttempts, DEFAULT_REGION};
use crate::config::AwsSettings;
use crate::core::history::Listing;
use crate::core::model::{
    AccessKey, AccountInventory, Credential, CredentialType, KeyStatus, ReadError, ServiceError, Timestamp, User,
    QUARANTINE_POLICIES,
};
use crate::ports::{InventoryMode, InventoryOptions, KeyActions, RequestObserver};

/// Every item of one user's paginated IAM listing (`list_user_tags`, `list_access_keys`, and in
/// `user_credentials` `list_ssh_public_keys`, `list_signing_certificates`), gated as one request
/// (a user has at most 2 keys, 50 tags, 5 SSH keys and 2 certificates: one page).
macro_rules! every_item {
    ($iam:expr, $operation:ident, $user:expr) => {
        $iam.gated(
            $iam.iam
                .$operation()
                .user_name($user)
                .into_paginator()
                .items()
                .send()
                .try_collect(),
        )
        .await
    };
}
pub(super) use every_item;

#[derive(Clone)]
pub struct Iam {
    pub(super) iam: aws_sdk_iam::Client,
    concurrency: usize,
    limiter: Option<Arc<TokenBucket>>,
    /// Shared by every account's client: the bound on requests in flight across accounts.
    global: Arc<Semaphore>,
    /// The client region's partition: AWS managed policies' ARNs name it.
    partition: &'static str,
    /// Where requests go, for messages when nothing answered.
    endpoint: String,
}

impl Iam {
    /// `s.max_concurrent_requests` users at once; every request first waits for this
    /// account's token bucket (`s.max_requests_per_second`, 0: none), then takes a permit of
    /// `global`.
    pub fn new(
        sdk: &SdkConfig,
        s: &AwsSettings,
        global: Arc<Semaphore>,
        observer: Option<Arc<dyn RequestObserver>>,
    ) -> Iam {
        let mut iam = aws_sdk_iam::config::Builder::from(sdk).retry_classifier(NoRetryOnRefusal);
        if let Some(o) = observer {
            iam = iam.interceptor(CountAttempts(o));
        }
        let rate = f64::from(s.max_requests_per_second);
        Iam {
            iam: aws_sdk_iam::Client::from_conf(iam.build()),
            concurrency: s.max_concurrent_requests.max(1),
            // ListUsers is limited per page; ListAccessKeys and ListUserTags per call (a user
            // has at most 2 keys, 50 tags).
            limiter: (rate > 0.0).then(|| Arc::new(TokenBucket::new(rate, rate))),
            global,
            partition: crate::core::arn::partition(sdk.region().map(|r| r.as_ref()).unwrap_or(DEFAULT_REGION)),
            endpoint: endpoint_of(sdk, "IAM"),
        }
    }

    /// An error of this client's request, in the service's words (the endpoint named when
    /// nothing answered).
    pub(super) fn describe<E>(
        &self,
        e: &aws_sdk_iam::error::SdkError<E, aws_smithy_runtime_api::http::Response>,
    ) -> ServiceError
    where
        E: aws_sdk_iam::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        describe_at(e, &self.endpoint)
    }

    /// Runs one request (or one paginated call) within this account's rate and the global
    /// bound. The permit is held only while `call` runs, so nested reads cannot deadlock.
    pub(super) async fn gated<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        if let Some(l) = &self.limiter {
            l.acquire().await;
        }
        // The semaphore is never closed, so acquire cannot fail.
        let _permit = self.global.acquire().await.ok();
        call.await
    }

    /// Reads one account. `account_id` is who the credentials act as (established by
    /// `accounts::Fleet`); it labels everything read.
    pub async fn account(&self, account_id: &str, opts: &InventoryOptions<'_>) -> AccountInventory {
        let mut inv = AccountInventory {
            account_id: account_id.to_string(),
            ..Default::default()
        };
        let mut user_count = None;
        match self.gated(self.iam.get_account_summary().send()).await {
            Ok(s) => {
                let map = s.summary_map.unwrap_or_default();
                inv.root_access_keys_present = map
                    .get(&aws_sdk_iam::types::SummaryKeyType::AccountAccessKeysPresent)
                    .map(|n| *n > 0);
                user_count = map.get(&aws_sdk_iam::types::SummaryKeyType::Users).map(|n| *n as usize);
            }
            Err(e) => inv
                .errors
                .push(account_error(account_id, "GetAccountSummary", self.describe(&e))),
        }
        if opts.exposure {
            match self.quarantined(account_id).await {
                Ok(q) => inv.exposure.quarantined = q,
                Err(e) => inv.errors.push(e),
            }
        }
        let quarantined = inv.exposure.quarantined.clone();
        let use_report = match opts.mode {
            InventoryMode::Api => false,
            InventoryMode::CredentialReport => true,
            InventoryMode::Auto => user_count.is_some_and(|n| n >= opts.auto_min_users),
        };
        let results = if use_report {
            match self.credential_report().await {
                Ok((report, generated)) => {
                    if let Some(message) = foreign_report(account_id, &report, inv.root_access_keys_present) {
                        inv.errors
                            .push(account_error(account_id, "GetCredentialReport", message));
                        return inv;
                    }
                    inv.credential_report_generated = generated;
                    futures_util::stream::iter(report.rows)
                        .map(|row| self.user_from_row(account_id, row, opts, &quarantined))
                        .buffer_unordered(self.concurrency)
                        .collect::<Vec<_>>()
                        .await
                }
                Err(message) => {
                    inv.errors
                        .push(account_error(account_id, "GetCredentialReport", message));
                    return inv;
                }
            }
        } else {
            let users = match self.list_users().await {
                Ok(u) => u,
                Err(e) => {
                    inv.errors.push(account_error(account_id, "ListUsers", e));
                    return inv;
                }
            };
            futures_util::stream::iter(users)
                .map(|u| self.read_user(account_id, u, opts))
                .buffer_unordered(self.concurrency)
                .collect::<Vec<_>>()
                .await
        };
        for r in results {
            match r {
                Ok(u) => inv.users.push(u),
                Err(e) => inv.errors.push(e),
            }
        }
        inv.users.sort_by(|a, b| a.name.cmp(&b.name));
        inv.errors.sort_by(|a, b| a.user.cmp(&b.user));
        inv
    }

    /// The users each of AWS's quarantine policies is attached to (user -> policy name). A
    /// policy this partition does not have (NoSuchEntity) quarantines nobody; any other failure
    /// is the account's error, so no run decides as if nobody were quarantined.
    pub async fn quarantined(&self, account_id: &str) -> Result<BTreeMap<String, String>, ReadError> {
        // One policy after the other: an account's reads stay within what its users' reads
        // put in flight (max_concurrent_accounts bounds accounts, not their extra calls).
        let mut users = BTreeMap::new();
        for name in QUARANTINE_POLICIES {
            let held_by = self
                .policy_users(name)
                .await
                .map_err(|e| account_error(account_id, "ListEntitiesForPolicy", e))?;
            for user in held_by {
                users.entry(user).or_insert_with(|| name.to_string());
            }
        }
        Ok(users)
    }

    /// The users AWS's managed policy `name` is attached to, every page; none when this
    /// partition has no such policy.
    async fn policy_users(&self, name: &str) -> Result<Vec<String>, ServiceError> {
        let arn = format!("arn:{}:iam::aws:policy/{name}", self.partition);
        let mut users = Vec::new();
        let mut marker = None;
        loop {
            let call = self
                .iam
                .list_entities_for_policy()
                .policy_arn(&arn)
                .entity_filter(aws_sdk_iam::types::EntityType::User)
                .set_marker(marker.take())
                .send();
            let page = match self.gated(call).await {
                Ok(p) => p,
                Err(e) if e.code() == Some("NoSuchEntity") => {
                    tracing::debug!(policy = %arn, "quarantine policy unknown here; it quarantines nobody");
                    return Ok(Vec::new());
                }
                Err(e) => return Err(self.describe(&e)),
            };
            users.extend(
                page.policy_users
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|u| u.user_name),
            );
            match page.marker {
                Some(m) if page.is_truncated => marker = Some(m),
                _ => return Ok(users),
            }
        }
    }

    /// Every page of ListUsers, each page its own gated request (a paginator would charge the
    /// token bucket once for a whole account of pages).
    async fn list_users(&self) -> Result<Vec<aws_sdk_iam::types::User>, ServiceError> {
        let mut users = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .gated(self.iam.list_users().set_marker(marker.take()).send())
                .await
                .map_err(|e| self.describe(&e))?;
            users.extend(page.users);
            match page.marker {
                Some(m) if page.is_truncated => marker = Some(m),
                _ => return Ok(users),
            }
        }
    }

    /// GenerateCredentialReport, polled with backoff until COMPLETE, then GetCredentialReport.
    async fn credential_report(&self) -> Result<(CredentialReport, Option<Timestamp>), String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        let mut delay = Duration::from_millis(250);
        loop {
            let out = self
                .gated(self.iam.generate_credential_report().send())
                .await
                .map_err(|e| format!("GenerateCredentialReport: {}", self.describe(&e)))?;
            if out.state == Some(aws_sdk_iam::types::ReportStateType::Complete) {
                break;
            }
            if tokio::time::Instant::now() + delay > deadline {
                return Err("GenerateCredentialReport: the report was not COMPLETE within 5 minutes".into());
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        let out = self
            .gated(self.iam.get_credential_report().send())
            .await
            .map_err(|e| self.describe(&e).message)?;
        let content = out.content.ok_or("the report has no content")?;
        let report = credential_report::parse(content.as_ref()).map_err(|e| e.to_string())?;
        let generated = out.generated_time.and_then(to_chrono);
        // No date in the report is later than it, nor than now: the later of the two bounds
        // them (some endpoints answer a fixed, old generation time).
        let now = chrono::Utc::now();
        credential_report::check_dates(&report, generated.map_or(now, |g| g.max(now))).map_err(|e| e.to_string())?;
        Ok((report, generated))
    }

    /// A user from the report. Key ids are read (ListAccessKeys, no GetAccessKeyLastUsed: the
    /// report has last use) only when `wants_key_ids` says so; otherwise the keys carry
    /// placeholder ids `user#slotN`, which never reach a finding or a per-key metric.
    async fn user_from_row(
        &self,
        account_id: &str,
        row: Row,
        opts: &InventoryOptions<'_>,
        quarantined: &BTreeMap<String, String>,
    ) -> Result<User, ReadError> {
        let placeholder = User {
            name: row.user.clone(),
            path: row.path.clone(),
            tags: Vec::new(),
            credentials: Vec::new(),
            keys: row
                .slots
                .iter()
                .enumerate()
                .map(|(i, s)| s.key(AccessKey::placeholder_id(&row.user, i + 1), s.last_rotated))
                .collect(),
        };
        let remembered = opts.listings.and_then(|state| state.listing(account_id, &row.user));
        let credentials = self
            .report_credentials(account_id, &row, &opts.credential_kinds, remembered)
            .await?;
        // A quarantined user's keys are findings: they need their ids.
        let wanted = quarantined.contains_key(&row.user) || (opts.wants_key_ids)(account_id, &placeholder);
        if placeholder.keys.is_empty() || !wanted {
            return Ok(User {
                credentials,
                ..placeholder
            });
        }
        let known = opts
            .key_names
            .and_then(|state| state.key_names(account_id, &row.user))
            .and_then(|names| credential_report::name_from_record(&row, names));
        let keys = match known {
            // The slots are the ones the last listing named: no request.
            Some(keys) => keys,
            None => {
                let listed = self.list_keys(account_id, &row.user).await?;
                match credential_report::name_slots(&row, &listed) {
                    Ok(keys) => keys,
                    // Keys created in the same second: read this user exactly, as api mode does.
                    Err(NamingError::Ambiguous) => self.with_last_use(account_id, &row.user, listed).await?,
                    Err(NamingError::Stale(m)) => return Err(user_error(account_id, &row.user, "ListAccessKeys", m)),
                }
            }
        };
        let tags = if opts.needs_tags {
            self.tags(account_id, &row.user).await?
        } else {
            Vec::new()
        };
        Ok(User {
            name: row.user,
            path: row.path,
            tags,
            keys,
            credentials,
        })
    }

    /// A report row's other credentials of `kinds`: the password from the row (no request);
    /// signing certificates listed only where the row shows an active one (the report has no
    /// ids); SSH keys and service-specific credentials, which the report lacks, listed; each
    /// taken from `remembered` instead where it has the kind (certificates only while it
    /// has as many active ones as the row).
    async fn report_credentials(
        &self,
        account_id: &str,
        row: &Row,
        kinds: &[CredentialType],
        remembered: Option<&Listing>,
    ) -> Result<Vec<Credential>, ReadError> {
        // Certificates changed since they were remembered: list them again.
        let without_certificates;
        let remembered = match remembered {
            Some(l) if !row.agrees_on_certificates(l) => {
                without_certificates = Listing {
                    kinds: l
                        .kinds
                        .iter()
                        .copied()
                        .filter(|k| *k != CredentialType::SigningCertificate)
                        .collect(),
                    ..l.clone()
                };
                Some(&without_certificates)
            }
            other => other,
        };
        let listed: Vec<CredentialType> = kinds
            .iter()
            .copied()
            .filter(|k| match k {
                CredentialType::Password => false,
                CredentialType::SigningCertificate => {
                    row.active_certificates > 0 || remembered.is_some_and(|l| l.kinds.contains(k))
                }
                _ => true,
            })
            .collect();
        let mut out = self
            .other_credentials((account_id, &row.user, &row.arn), None, &listed, remembered)
            .await?;
        if kinds.contains(&CredentialType::Password) {
            out.extend(row.password_credential());
        }
        Ok(out)
    }

    async fn tags(&self, account_id: &str, name: &str) -> Result<Vec<(String, String)>, ReadError> {
        Ok(every_item!(self, list_user_tags, name)
            .map_err(|e| user_error(account_id, name, "ListUserTags", self.describe(&e)))?
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect())
    }

    async fn read_user(
        &self,
        account_id: &str,
        u: aws_sdk_iam::types::User,
        opts: &InventoryOptions<'_>,
    ) -> Result<User, ReadError> {
        let name = u.user_name;
        let keys = self.read_keys(account_id, &name).await?;
        let last_used = u.password_last_used.and_then(to_chrono);
        let remembered = opts.listings.and_then(|state| state.listing(account_id, &name));
        let credentials = self
            .other_credentials(
                (account_id, &name, &u.arn),
                last_used,
                &opts.credential_kinds,
                remembered,
            )
            .await?;
        let tags = if opts.needs_tags && !(keys.is_empty() && credentials.is_empty()) {
            self.tags(account_id, &name).await?
        } else {
            Vec::new()
        };
        Ok(User {
            name,
            path: u.path,
            tags,
            keys,
            credentials,
        })
    }

    /// ListAccessKeys, then GetAccessKeyLastUsed for each active key.
    async fn read_keys(&self, account_id: &str, name: &str) -> Result<Vec<AccessKey>, ReadError> {
        let keys = self.list_keys(account_id, name).await?;
        self.with_last_use(account_id, name, keys).await
    }

    /// GetAccessKeyLastUsed for each active key of `keys` (as ListAccessKeys gave them).
    async fn with_last_use(
        &self,
        account_id: &str,
        name: &str,
        mut keys: Vec<AccessKey>,
    ) -> Result<Vec<AccessKey>, ReadError> {
        for k in keys.iter_mut().filter(|k| k.is_active()) {
            let out = self
                .gated(self.iam.get_access_key_last_used().access_key_id(&k.id).send())
                .await
                .map_err(|e| {
                    user_error(
                        account_id,
                        name,
                        "GetAccessKeyLastUsed",
                        ServiceError {
                            message: format!("key {}: {}", k.id, self.describe(&e)),
                            code: e.code().map(str::to_string),
                        },
                    )
                })?;
            k.last_used = out
                .access_key_last_used
                .and_then(|l| l.last_used_date)
                .and_then(to_chrono);
        }
        Ok(keys)
    }

    /// ListAccessKeys alone: ids, statuses and creation dates (`last_used` is `None`).
    async fn list_keys(&self, account_id: &str, name: &str) -> Result<Vec<AccessKey>, ReadError> {
        let fail = |operation: &str, error: ServiceError| user_error(account_id, name, operation, error);
        let metas: Vec<_> =
            every_item!(self, list_access_keys, name).map_err(|e| fail("ListAccessKeys", self.describe(&e)))?;
        let mut keys = Vec::with_capacity(metas.len());
        for m in metas {
            let id = m
                .access_key_id
                .ok_or_else(|| fail("ListAccessKeys", "a key without AccessKeyId".into()))?;
            let created = m
                .create_date
                .and_then(to_chrono)
                .ok_or_else(|| fail("ListAccessKeys", format!("key {id} without a valid CreateDate").into()))?;
            let status = match m.status {
                Some(StatusType::Active) => KeyStatus::Active,
                Some(StatusType::Inactive) => KeyStatus::Inactive,
                // An unknown status (e.g. a future "Expired") is never treated as harmless.
                other => {
                    return Err(fail(
                        "ListAccessKeys",
                        format!("key {id} has unknown status {other:?}").into(),
                    ))
                }
            };
            keys.push(AccessKey {
                id,
                status,
                created,
                last_used: None,
            });
        }
        Ok(keys)
    }
}

/// Fresh reads and the one mutating call, for enforcement.
impl KeyActions for Iam {
    /// GetUser (path and tags, so exemptions decide exactly as in the audit), then the keys.
    /// NoSuchEntity: the user was deleted since the audit.
    async fn read_user(&self, account_id: &str, name: &str) -> Result<Option<User>, ReadError> {
        self.read_user_with(account_id, name, &[]).await
    }

    /// [`KeyActions::read_user`], and the credentials of `kinds` (one request per kind).
    async fn read_user_with(
        &self,
        account_id: &str,
        name: &str,
        kinds: &[CredentialType],
    ) -> Result<Option<User>, ReadError> {
        let user = match self.gated(self.iam.get_user().user_name(name).send()).await {
            Ok(out) => out
                .user
                .ok_or_else(|| user_error(account_id, name, "GetUser", "no user in the response"))?,
            Err(e) if e.code() == Some("NoSuchEntity") => return Ok(None),
            Err(e) => return Err(user_error(account_id, name, "GetUser", self.describe(&e))),
        };
        let keys = self.read_keys(account_id, name).await?;
        let last_used = user.password_last_used.and_then(to_chrono);
        let credentials = self
            .other_credentials((account_id, name, &user.arn), last_used, kinds, None)
            .await?;
        Ok(Some(User {
            name: name.to_string(),
            path: user.path,
            credentials,
            tags: user
                .tags
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.key, t.value))
                .collect(),
            keys,
        }))
    }

    async fn set_credential_status(
        &self,
        _account_id: &str,
        user: &str,
        credential: (CredentialType, &str),
        active: bool,
    ) -> Result<(), ServiceError> {
        self.update_credential(user, credential, active).await
    }

    async fn delete_login_profile(
        &self,
        _account_id: &str,
        user: &str,
    ) -> Result<crate::core::model::LoginProfile, ServiceError> {
        Iam::delete_login_profile(self, user).await
    }

    async fn create_login_profile(&self, _account_id: &str, user: &str, password: &str) -> Result<(), ServiceError> {
        Iam::create_login_profile(self, user, password).await
    }

    /// ListAccessKeys and GetAccessKeyLastUsed only (an event run's read of a known user).
    async fn read_keys(&self, account_id: &str, name: &str) -> Result<Option<Vec<AccessKey>>, ReadError> {
        match Iam::read_keys(self, account_id, name).await {
            Ok(keys) => Ok(Some(keys)),
            Err(e) if e.code.as_deref() == Some("NoSuchEntity") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `account_id` is this client's account; [`crate::aws::accounts::Fleet`] routes by it.
    async fn deactivate(&self, _account_id: &str, user: &str, access_key_id: &str) -> Result<(), ServiceError> {
        self.set_status(user, access_key_id, StatusType::Inactive).await
    }

    async fn activate(&self, _account_id: &str, user: &str, access_key_id: &str) -> Result<(), ServiceError> {
        self.set_status(user, access_key_id, StatusType::Active).await
    }

    /// PutUserPolicy `keywarden-revoke-sessions`: AWS's documented revocation, a Deny of
    /// everything to tokens with `aws:TokenIssueTime` before the instant. Requests signed
    /// with a long-term key carry no token issue time, so the user's other keys still work.
    async fn revoke_sessions(&self, _account_id: &str, user: &str, before: Timestamp) -> Result<(), ServiceError> {
        let document = revoke_sessions_policy(before);
        let call = self
            .iam
            .put_user_policy()
            .user_name(user)
            .policy_name(REVOKE_SESSIONS_POLICY)
            .policy_document(document)
            .send();
        self.gated(call)
            .await
            .map(|_| ())
            .map_err(|e| named("PutUserPolicy", self.describe(&e)))
    }

    async fn restore_sessions(&self, _account_id: &str, user: &str) -> Result<bool, ServiceError> {
        let call = self
            .iam
            .delete_user_policy()
            .user_name(user)
            .policy_name(REVOKE_SESSIONS_POLICY)
            .send();
        match self.gated(call).await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("NoSuchEntity") => Ok(false),
            Err(e) => Err(named("DeleteUserPolicy", self.describe(&e))),
        }
    }
}

impl Iam {
    /// CreateAccessKey: the new key with its secret, which is wiped when dropped.
    pub async fn create_key(&self, user: &str) -> Result<crate::ports::NewKey, ServiceError> {
        let out = self
            .gated(self.iam.create_access_key().user_name(user).send())
            .await
            .map_err(|e| named("CreateAccessKey", self.describe(&e)))?;
        let key = out
            .access_key
            .ok_or_else(|| ServiceError::from("CreateAccessKey: no key in the answer"))?;
        Ok(crate::ports::NewKey {
            access_key_id: key.access_key_id,
            secret_access_key: zeroize::Zeroizing::new(key.secret_access_key),
        })
    }

    /// DeleteAccessKey, for a key a rotation made and could not hand over.
    pub async fn delete_key(&self, user: &str, access_key_id: &str) -> Result<(), ServiceError> {
        let call = self
            .iam
            .delete_access_key()
            .user_name(user)
            .access_key_id(access_key_id)
            .send();
        self.gated(call)
            .await
            .map(|_| ())
            .map_err(|e| named("DeleteAccessKey", self.describe(&e)))
    }
}

/// The inline policy that denies an exposed key's user every session issued before the
/// deactivation (removed by `keywarden reactivate`).
pub const REVOKE_SESSIONS_POLICY: &str = "keywarden-revoke-sessions";

/// The document of [`REVOKE_SESSIONS_POLICY`], as AWS documents revoking a role's sessions.
pub fn revoke_sessions_policy(before: Timestamp) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "KeywardenRevokeOlderSessions",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": crate::sys::timefmt::format(&before)}}
        }]
    })
    .to_string()
}

/// `e` with the operation in front, its code kept.
fn named(operation: &str, e: ServiceError) -> ServiceError {
    ServiceError {
        message: format!("{operation}: {e}"),
        code: e.code,
    }
}

impl Iam {
    /// UpdateAccessKey: the one mutating call keywarden makes (never a delete).
    async fn set_status(&self, user: &str, access_key_id: &str, status: StatusType) -> Result<(), ServiceError> {
        self.gated(
            self.iam
                .update_access_key()
                .user_name(user)
                .access_key_id(access_key_id)
                .status(status)
                .send(),
        )
        .await
        .map(|_| ())
        .map_err(|e| named("UpdateAccessKey", self.describe(&e)))
    }
}

/// Why a credential report cannot be this account's: it names another account, or its root
/// row disagrees with GetAccountSummary about root access keys.
fn foreign_report(account_id: &str, report: &CredentialReport, root_keys: Option<bool>) -> Option<String> {
    let others: Vec<&str> = report
        .accounts
        .iter()
        .map(String::as_str)
        .filter(|a| *a != account_id)
        .collect();
    if !others.is_empty() {
        return Some(format!(
            "the report names account(s) {} instead of {account_id}; nothing of it is used",
            others.join(", ")
        ));
    }
    match root_keys {
        Some(summary) if summary != report.root_access_keys_present => Some(format!(
            "the report says root access keys are {}present, GetAccountSummary says {}present",
            if report.root_access_keys_present { "" } else { "not " },
            if summary { "" } else { "not " },
        )),
        _ => None,
    }
}

pub(super) fn user_error(account_id: &str, user: &str, operation: &str, error: impl Into<ServiceError>) -> ReadError {
    let error = error.into();
    ReadError {
        account_id: account_id.to_string(),
        user: Some(user.to_string()),
        operation: operation.to_string(),
        message: error.message,
        code: error.code,
    }
}

pub fn account_error(account_id: &str, operation: &str, error: impl Into<ServiceError>) -> ReadError {
    let error = error.into();
    ReadError {
        account_id: account_id.to_string(),
        user: None,
        operation: operation.to_string(),
        message: error.message,
        code: error.code,
    }
}

pub(super) fn to_chrono(t: aws_sdk_iam::primitives::DateTime) -> Option<Timestamp> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

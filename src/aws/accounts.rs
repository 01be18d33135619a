//! Which accounts a run reads and how each is reached, then reading them concurrently.
//!
//! - Nothing configured: the account the ambient credentials belong to.
//! - `[[aws.accounts]]`: each entry, through its `role_arn` (AssumeRole) or, without one, the
//!   ambient credentials (which must then belong to `id`).
//! - `[aws.organization]`: every ACTIVE member account from organizations:ListAccounts that
//!   include/exclude select, through `role_name`; the credentials' own account is read with
//!   them directly (a management account has no member role). Explicit entries win.
//!
//! Failures are per account: a role that cannot be assumed, or ambient credentials that act
//! as another account than the one listed, become that account's error and the others are
//! still read. Each account's client has its own token bucket (IAM's rate is per account);
//! all clients share one semaphore of `max_concurrent_requests`, and at most
//! `max_concurrent_accounts` accounts are read at a time.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_iam::config::{ProvideCredentials, SharedCredentialsProvider};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::aws::{self, account_error, Member};
use crate::config::{AccountTarget, AwsSettings, Organization};
use crate::core::model::{AccessKey, AccountInventory, CredentialType, ReadError, ServiceError, Timestamp, User};
use crate::ports::{InventoryOptions, InventorySource, KeyActions, RequestObserver};

/// One account to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    pub name: Option<String>,
    pub access: Access,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Ambient,
    Role { arn: String, external_id: Option<String> },
}

/// Who the ambient credentials are (GetCallerIdentity).
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: String,
    pub arn: String,
}

impl Caller {
    /// `aws`, `aws-cn`, `aws-us-gov`: role ARNs are built in the caller's partition.
    fn partition(&self) -> &str {
        self.arn.split(':').nth(1).filter(|p| !p.is_empty()).unwrap_or("aws")
    }
}

/// Pure: the accounts to read, in a stable order (explicit entries, then members by id).
pub fn targets(
    explicit: &[AccountTarget],
    organization: Option<(&Organization, &[Member])>,
    caller: Option<&Caller>,
) -> Vec<Target> {
    let mut out: Vec<Target> = explicit
        .iter()
        .map(|a| Target {
            id: a.id.clone(),
            name: a.name.clone(),
            access: match &a.role_arn {
                Some(arn) => Access::Role {
                    arn: arn.clone(),
                    external_id: a.external_id.clone(),
                },
                None => Access::Ambient,
            },
        })
        .collect();
    if let Some((org, members)) = organization {
        let mut found: Vec<&Member> = members
            .iter()
            .filter(|m| m.active && org.selects(&m.id, &m.name))
            .filter(|m| !explicit.iter().any(|a| a.id == m.id))
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found.dedup_by(|a, b| a.id == b.id);
        for m in found {
            let own = caller.is_some_and(|c| c.account_id == m.id);
            let access = if own {
                Access::Ambient
            } else {
                let partition = caller.map_or("aws", Caller::partition);
                Access::Role {
                    arn: format!("arn:{partition}:iam::{}:role/{}", m.id, org.role_name),
                    external_id: org.external_id.clone(),
                }
            };
            out.push(Target {
                id: m.id.clone(),
                name: Some(m.name.clone()),
                access,
            });
        }
    }
    if explicit.is_empty() && organization.is_none() {
        if let Some(c) = caller {
            out.push(Target {
                id: c.account_id.clone(),
                name: None,
                access: Access::Ambient,
            });
        }
    }
    out
}

/// The access key keywarden signs with, when that is an IAM user's long-term key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnKey {
    pub account_id: String,
    pub user: String,
    pub access_key_id: String,
}

/// Pure: an IAM user's key when the caller is `arn:...:iam::ACCOUNT:user/[PATH/]NAME` and the
/// credentials carry no session token (a role session's temporary key is nobody's to
/// deactivate).
pub fn own_key(caller: &Caller, access_key_id: &str, has_session_token: bool) -> Option<OwnKey> {
    if has_session_token || access_key_id.is_empty() {
        return None;
    }
    let (_, resource) = caller.arn.split_once(":user/")?;
    let user = resource.rsplit('/').next().filter(|u| !u.is_empty())?;
    Some(OwnKey {
        account_id: caller.account_id.clone(),
        user: user.to_string(),
        access_key_id: access_key_id.to_string(),
    })
}

/// The connected accounts of one run: the inventory source and the key actions.
pub struct Fleet {
    /// Each connected account's IAM client, and its SDK settings and credentials (which the
    /// Security Hub export signs with).
    clients: Vec<(String, aws::Iam, SdkConfig)>,
    /// Who reads each account (the ambient caller's ARN, or the assumed role's), for the
    /// message of a denied call.
    principals: std::collections::BTreeMap<String, String>,
    own: Option<OwnKey>,
    /// Accounts that could not be reached, and discovery errors, as inventories with errors.
    failed: Vec<AccountInventory>,
    max_concurrent_accounts: usize,
}

impl Fleet {
    /// Discovers and connects every account; never fails as a whole.
    pub async fn connect(s: &AwsSettings, observer: Option<Arc<dyn RequestObserver>>) -> Fleet {
        let sdk = aws::sdk_config(s).await;
        let global = Arc::new(Semaphore::new(s.max_concurrent_requests.max(1)));
        let client = |sdk: &SdkConfig| aws::Iam::new(sdk, s, Arc::clone(&global), observer.clone());
        let ambient = client(&sdk);
        let mut failed = Vec::new();
        let caller = match aws::caller_identity(&sdk, observer.clone()).await {
            Ok((account_id, arn)) => Some(Caller { account_id, arn }),
            Err(e) => {
                let id = if s.accounts.is_empty() { "unknown" } else { "ambient" };
                if s.accounts.is_empty() || s.organization.is_some() {
                    failed.push(failed_account(id, "GetCallerIdentity", e));
                }
                None
            }
        };
        let members = match &s.organization {
            Some(org) if caller.is_some() => match aws::organization_members(&sdk, observer.clone()).await {
                Ok(m) => Some((org, m)),
                Err(e) => {
                    let id = caller.as_ref().map_or("unknown", |c| c.account_id.as_str());
                    failed.push(failed_account(id, "ListAccounts", e));
                    None
                }
            },
            _ => None,
        };
        let targets = targets(
            &s.accounts,
            members.as_ref().map(|(o, m)| (*o, m.as_slice())),
            caller.as_ref(),
        );
        let connected: Vec<_> = futures_util::stream::iter(targets)
            .map(|t| connect_one(t, &sdk, &ambient, caller.as_ref(), &global, &client))
            .buffer_unordered(s.max_concurrent_accounts.max(1))
            .collect()
            .await;
        let mut clients = Vec::new();
        for c in connected {
            match c {
                Ok(ok) => clients.push(ok),
                Err(inv) => failed.push(inv),
            }
        }
        clients.sort_by(|a, b| a.0.cmp(&b.0));
        let own = match &caller {
            Some(c) => signing_key(&sdk, c).await,
            None => None,
        };
        if let Some(o) = &own {
            tracing::debug!(account_id = %o.account_id, user = %o.user, access_key_id = %o.access_key_id, "keywarden signs with this access key; it is never deactivated");
        }
        let principals = clients
            .iter()
            .map(|(id, _, _)| {
                let role = s
                    .accounts
                    .iter()
                    .find(|a| &a.id == id)
                    .and_then(|a| a.role_arn.clone())
                    .or_else(|| {
                        let ambient = caller.as_ref().is_some_and(|c| &c.account_id == id);
                        match (&s.organization, ambient) {
                            (Some(o), false) => Some(format!("arn:aws:iam::{id}:role/{}", o.role_name)),
                            _ => None,
                        }
                    });
                let who = role.or_else(|| caller.as_ref().map(|c| c.arn.clone()));
                (id.clone(), who.unwrap_or_else(|| "these credentials".into()))
            })
            .collect();
        Fleet {
            clients,
            principals,
            own,
            failed,
            max_concurrent_accounts: s.max_concurrent_accounts.max(1),
        }
    }

    /// The accounts that could not be reached, and discovery errors, as inventories with
    /// errors.
    pub fn failed(&self) -> &[AccountInventory] {
        &self.failed
    }

    /// The connected accounts with their SDK settings, in account order.
    /// The key keywarden signs with in `account_id`, if it is an IAM user's there.
    pub fn own_access_key_id(&self, account_id: &str) -> Option<&str> {
        self.own
            .as_ref()
            .filter(|o| o.account_id == account_id)
            .map(|o| o.access_key_id.as_str())
    }

    pub fn sdks(&self) -> Vec<(&str, &SdkConfig)> {
        self.clients.iter().map(|(id, _, sdk)| (id.as_str(), sdk)).collect()
    }

    fn client(&self, account_id: &str) -> Option<&aws::Iam> {
        self.connected(account_id).map(|(_, c, _)| c)
    }

    /// The SDK settings (credentials) `account_id` is read with.
    fn sdk(&self, account_id: &str) -> Option<&SdkConfig> {
        self.connected(account_id).map(|(_, _, sdk)| sdk)
    }

    fn connected(&self, account_id: &str) -> Option<&(String, aws::Iam, SdkConfig)> {
        self.clients.iter().find(|(id, _, _)| id == account_id)
    }

    /// A denied change, naming who was denied what.
    fn name_denied(&self, account_id: &str, operation: &str, e: ServiceError) -> ServiceError {
        let who = self
            .principals
            .get(account_id)
            .map_or("these credentials", String::as_str);
        match crate::core::model::name_denied(e.code.as_deref(), &e.message, who, operation) {
            Some(message) => ServiceError { code: e.code, message },
            None => e,
        }
    }

    /// The client that changes keys in `account_id`.
    fn acting_client(&self, account_id: &str) -> Result<&aws::Iam, ServiceError> {
        self.client(account_id)
            .ok_or_else(|| format!("account {account_id} is not connected in this run").into())
    }
}

/// The key the ambient credentials sign with, when the caller is an IAM user. The
/// credentials are resolved only then: for a role session (instance role, web identity) there
/// is no user key to protect, and resolving them again would cost a metadata or STS call.
async fn signing_key(sdk: &SdkConfig, caller: &Caller) -> Option<OwnKey> {
    if !caller.arn.contains(":user/") {
        return None;
    }
    let creds = sdk.credentials_provider()?.provide_credentials().await.ok()?;
    own_key(caller, creds.access_key_id(), creds.session_token().is_some())
}

/// The client of one target. An ambient target must be the credentials' own account. A role
/// target acts in the account of its ARN, which is `id` by construction (checked at config
/// load for `[[aws.accounts]]`, built from the member id for the organization), so asking
/// GetCallerIdentity again would only repeat what the ARN says.
async fn connect_one(
    t: Target,
    sdk: &SdkConfig,
    ambient: &aws::Iam,
    caller: Option<&Caller>,
    global: &Semaphore,
    client: &impl Fn(&SdkConfig) -> aws::Iam,
) -> Result<(String, aws::Iam, SdkConfig), AccountInventory> {
    tracing::debug!(account_id = %t.id, name = t.name.as_deref().unwrap_or(""), access = ?t.access, "connecting");
    match (&t.access, caller) {
        (Access::Role { arn, external_id }, _) => match assume(sdk, global, arn, external_id.as_deref()).await {
            Ok(conf) => Ok((t.id, client(&conf), conf)),
            Err(e) => Err(failed_account(&t.id, "AssumeRole", format!("{arn}: {e}"))),
        },
        (Access::Ambient, Some(c)) if c.account_id == t.id => Ok((t.id, ambient.clone(), sdk.clone())),
        (Access::Ambient, Some(c)) => Err(failed_account(
            &t.id,
            "GetCallerIdentity",
            format!(
                "the ambient credentials belong to account {}, not {}",
                c.account_id, t.id
            ),
        )),
        (Access::Ambient, None) => Err(failed_account(
            &t.id,
            "GetCallerIdentity",
            "the ambient credentials do not work".into(),
        )),
    }
}

/// Credentials for `arn`, fetched once here so a role that cannot be assumed fails now, with
/// STS's own message, instead of on every IAM call.
/// The call takes a permit of the global bound like every other request (a refresh an hour
/// later, inside the SDK, does not).
async fn assume(
    sdk: &SdkConfig,
    global: &Semaphore,
    arn: &str,
    external_id: Option<&str>,
) -> Result<SdkConfig, String> {
    let mut b = aws_config::sts::AssumeRoleProvider::builder(arn)
        .session_name("keywarden")
        .configure(sdk);
    if let Some(x) = external_id {
        b = b.external_id(x);
    }
    let provider = b.build().await;
    let permit = global.acquire().await.ok();
    let first = provider
        .provide_credentials()
        .await
        .map_err(|e| crate::aws::credentials::assume_role_failed(&e, arn))?;
    drop(permit);
    let primed = Primed {
        first: std::sync::Mutex::new(Some(first)),
        role: provider,
    };
    // Its own cache: the shared one holds 64 partitions, and past 64 accounts every request
    // evicted another account's credentials and assumed its role again.
    Ok(sdk
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(primed))
        .identity_cache(aws_config::identity::IdentityCache::lazy().build())
        .build())
}

/// A role's provider that hands out the credentials already fetched by [`assume`] first, so
/// that checking the role costs no second AssumeRole per account and run; refreshes (a run
/// longer than the session) go to the role.
#[derive(Debug)]
struct Primed {
    first: std::sync::Mutex<Option<aws_credential_types::Credentials>>,
    role: aws_config::sts::AssumeRoleProvider,
}

impl ProvideCredentials for Primed {
    fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        use aws_credential_types::provider::future::ProvideCredentials as Future;
        match self.first.lock().ok().and_then(|mut f| f.take()) {
            Some(c) => Future::ready(Ok(c)),
            None => Future::new(self.role.provide_credentials()),
        }
    }
}

fn failed_account(account_id: &str, operation: &str, message: String) -> AccountInventory {
    AccountInventory {
        account_id: account_id.to_string(),
        errors: vec![account_error(account_id, operation, message)],
        ..Default::default()
    }
}

impl InventorySource for Fleet {
    async fn inventory(&self, opts: &InventoryOptions<'_>) -> Vec<AccountInventory> {
        // Boxed: the opaque future types of a closure over borrowed clients trip the
        // higher-ranked Send check of this trait method.
        let reads: Vec<BoxFuture<'_, AccountInventory>> = self
            .clients
            .iter()
            .map(|(id, iam, _)| -> BoxFuture<'_, AccountInventory> { Box::pin(iam.account(id, opts)) })
            .collect();
        let mut read: Vec<AccountInventory> = futures_util::stream::iter(reads)
            .buffer_unordered(self.max_concurrent_accounts)
            .collect()
            .await;
        if let Some(own) = &self.own {
            for a in read.iter_mut().filter(|a| a.account_id == own.account_id) {
                a.own_access_key_id = Some(own.access_key_id.clone());
            }
        }
        for a in read.iter_mut() {
            if let Some(who) = self.principals.get(&a.account_id) {
                a.errors.iter_mut().for_each(|e| e.name_denied(who));
            }
        }
        merge(read, self.failed.clone())
    }
}

/// One inventory per account id: a discovery error about an account that was also read is
/// added to that account's errors (a duplicate id would duplicate metric series).
fn merge(mut read: Vec<AccountInventory>, failed: Vec<AccountInventory>) -> Vec<AccountInventory> {
    for f in failed {
        match read.iter_mut().find(|a| a.account_id == f.account_id) {
            Some(a) => a.errors.extend(f.errors),
            None => read.push(f),
        }
    }
    read.sort_by(|a, b| a.account_id.cmp(&b.account_id));
    read
}

impl KeyActions for Fleet {
    async fn read_user(&self, account_id: &str, user: &str) -> Result<Option<User>, ReadError> {
        self.read_user_with(account_id, user, &[]).await
    }

    async fn read_user_with(
        &self,
        account_id: &str,
        user: &str,
        kinds: &[CredentialType],
    ) -> Result<Option<User>, ReadError> {
        match self.client(account_id) {
            Some(c) => c.read_user_with(account_id, user, kinds).await.map_err(|mut e| {
                if let Some(who) = self.principals.get(account_id) {
                    e.name_denied(who);
                }
                e
            }),
            None => Err(ReadError {
                account_id: account_id.to_string(),
                user: Some(user.to_string()),
                operation: "AssumeRole".into(),
                message: "the account is not connected in this run".into(),
                code: None,
            }),
        }
    }

    async fn read_keys(&self, account_id: &str, user: &str) -> Result<Option<Vec<AccessKey>>, ReadError> {
        match self.client(account_id) {
            Some(c) => c.read_keys(account_id, user).await,
            None => self.read_user(account_id, user).await.map(|u| u.map(|u| u.keys)),
        }
    }

    async fn quarantined(&self, account_id: &str) -> Result<BTreeMap<String, String>, ReadError> {
        match self.client(account_id) {
            Some(c) => c.quarantined(account_id).await.map_err(|mut e| {
                if let Some(who) = self.principals.get(account_id) {
                    e.name_denied(who);
                }
                e
            }),
            None => Err(ReadError {
                account_id: account_id.to_string(),
                user: None,
                operation: "AssumeRole".into(),
                message: "the account is not connected in this run".into(),
                code: None,
            }),
        }
    }

    async fn deactivate(&self, account_id: &str, user: &str, access_key_id: &str) -> Result<(), ServiceError> {
        let done = self
            .acting_client(account_id)?
            .deactivate(account_id, user, access_key_id)
            .await;
        done.map_err(|e| self.name_denied(account_id, "UpdateAccessKey", e))
    }

    async fn activate(&self, account_id: &str, user: &str, access_key_id: &str) -> Result<(), ServiceError> {
        self.acting_client(account_id)?
            .activate(account_id, user, access_key_id)
            .await
    }

    async fn set_credential_status(
        &self,
        account_id: &str,
        user: &str,
        credential: (CredentialType, &str),
        active: bool,
    ) -> Result<(), ServiceError> {
        let done = self
            .acting_client(account_id)?
            .set_credential_status(account_id, user, credential, active)
            .await;
        done.map_err(|e| {
            self.name_denied(
                account_id,
                crate::aws::user_credentials::update_operation(credential.0),
                e,
            )
        })
    }

    async fn revoke_sessions(&self, account_id: &str, user: &str, before: Timestamp) -> Result<(), ServiceError> {
        let done = self
            .acting_client(account_id)?
            .revoke_sessions(account_id, user, before)
            .await;
        done.map_err(|e| self.name_denied(account_id, "PutUserPolicy", e))
    }

    async fn restore_sessions(&self, account_id: &str, user: &str) -> Result<bool, ServiceError> {
        let done = self.acting_client(account_id)?.restore_sessions(account_id, user).await;
        done.map_err(|e| self.name_denied(account_id, "DeleteUserPolicy", e))
    }

    async fn delete_login_profile(
        &self,
        account_id: &str,
        user: &str,
    ) -> Result<crate::core::model::LoginProfile, ServiceError> {
        let done = self.acting_client(account_id)?.delete_login_profile(user).await;
        done.map_err(|e| self.name_denied(account_id, "DeleteLoginProfile", e))
    }

    async fn create_login_profile(&self, account_id: &str, user: &str, password: &str) -> Result<(), ServiceError> {
        let done = self
            .acting_client(account_id)?
            .create_login_profile(user, password)
            .await;
        done.map_err(|e| self.name_denied(account_id, "CreateLoginProfile", e))
    }
}

/// The fleet as rotations see it: keys made and (when the hand-over failed) deleted by each
/// account's client, secrets stored in each account's own Secrets Manager with its own
/// credentials (the application that reads the secret lives there).
pub struct FleetRotator<'a> {
    pub fleet: &'a Fleet,
    pub settings: &'a crate::config::RotationSettings,
}

/// The secret's value: the two fields applications read.
#[derive(serde::Serialize)]
struct SecretValue<'a> {
    #[serde(rename = "AccessKeyId")]
    access_key_id: &'a str,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: &'a str,
}

impl crate::ports::Rotator for FleetRotator<'_> {
    fn create_key<'a>(
        &'a self,
        account_id: &'a str,
        user: &'a str,
    ) -> crate::ports::BoxFuture<'a, Result<crate::ports::NewKey, ServiceError>> {
        Box::pin(async move {
            let made = self.fleet.acting_client(account_id)?.create_key(user).await;
            made.map_err(|e| self.fleet.name_denied(account_id, "CreateAccessKey", e))
        })
    }

    fn delete_new_key<'a>(
        &'a self,
        account_id: &'a str,
        user: &'a str,
        access_key_id: &'a str,
    ) -> crate::ports::BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let done = self
                .fleet
                .acting_client(account_id)?
                .delete_key(user, access_key_id)
                .await;
            done.map_err(|e| self.fleet.name_denied(account_id, "DeleteAccessKey", e))
        })
    }

    fn store<'a>(
        &'a self,
        account_id: &'a str,
        name: &'a str,
        key: &'a crate::ports::NewKey,
    ) -> crate::ports::BoxFuture<'a, Result<String, ServiceError>> {
        Box::pin(async move {
            let value = SecretValue {
                access_key_id: &key.access_key_id,
                secret_access_key: &key.secret_access_key,
            };
            let value =
                zeroize::Zeroizing::new(serde_json::to_string(&value).map_err(|e| ServiceError::from(e.to_string()))?);
            let description = "An IAM access key made by keywarden rotate (JSON: AccessKeyId, SecretAccessKey)";
            self.secret_store(account_id)?.put(name, description, &value).await
        })
    }

    fn store_password<'a>(
        &'a self,
        account_id: &'a str,
        name: &'a str,
        user: &'a str,
        password: &'a zeroize::Zeroizing<String>,
    ) -> crate::ports::BoxFuture<'a, Result<String, ServiceError>> {
        Box::pin(async move {
            let value = serde_json::json!({"UserName": user, "Password": password.as_str()});
            let value = zeroize::Zeroizing::new(value.to_string());
            let description = "A temporary IAM console password set by keywarden reactivate --password, to be changed at first sign-in (JSON: UserName, Password)";
            self.secret_store(account_id)?.put(name, description, &value).await
        })
    }
}

impl FleetRotator<'_> {
    /// `account_id`'s Secrets Manager, with that account's credentials. AWS's
    /// AccessDeniedException names the secretsmanager action itself.
    fn secret_store(&self, account_id: &str) -> Result<crate::aws::secrets::SecretStore, ServiceError> {
        let sdk = self
            .fleet
            .sdk(account_id)
            .ok_or_else(|| ServiceError::from(format!("account {account_id} is not connected in this run")))?;
        crate::aws::secrets::SecretStore::new(
            sdk,
            self.settings.region.as_deref(),
            self.settings.endpoint_url.as_deref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explicit(id: &str, role: Option<&str>) -> AccountTarget {
        AccountTarget {
            id: id.into(),
            name: None,
            role_arn: role.map(str::to_string),
            external_id: None,
        }
    }

    fn member(id: &str, name: &str, active: bool) -> Member {
        Member {
            id: id.into(),
            name: name.into(),
            active,
        }
    }

    fn org(exclude: &[&str]) -> Organization {
        Organization {
            role_name: "keywarden-audit".into(),
            external_id: Some("x-1".into()),
            include: Vec::new(),
            exclude: exclude.iter().map(|g| glob::Pattern::new(g).unwrap()).collect(),
        }
    }

    fn caller() -> Caller {
        Caller {
            account_id: "100000000000".into(),
            arn: "arn:aws-us-gov:iam::100000000000:user/ops".into(),
        }
    }

    #[test]
    fn nothing_configured_means_the_callers_account() {
        let t = targets(&[], None, Some(&caller()));
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].id.as_str(), &t[0].access), ("100000000000", &Access::Ambient));
        assert!(targets(&[], None, None).is_empty());
    }

    #[test]
    fn explicit_accounts_only_when_listed() {
        let arn = "arn:aws:iam::200000000000:role/r";
        let t = targets(&[explicit("200000000000", Some(arn))], None, Some(&caller()));
        assert_eq!(t.len(), 1, "the caller's own account is not added");
        assert!(matches!(&t[0].access, Access::Role { arn: a, .. } if a == arn));
    }

    #[test]
    fn organization_members_are_selected_and_reached_through_the_role() {
        let members = [
            member("300000000000", "dev", true),
            member("100000000000", "management", true),
            member("400000000000", "sandbox-1", true),
            member("500000000000", "closed", false),
            member("200000000000", "prod", true),
        ];
        let o = org(&["sandbox-*"]);
        let t = targets(&[explicit("200000000000", None)], Some((&o, &members)), Some(&caller()));
        let ids: Vec<_> = t.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["200000000000", "100000000000", "300000000000"]);
        assert_eq!(t[0].access, Access::Ambient, "the explicit entry wins");
        assert_eq!(
            t[1].access,
            Access::Ambient,
            "the caller's own account uses its credentials"
        );
        assert_eq!(
            t[2].access,
            Access::Role {
                arn: "arn:aws-us-gov:iam::300000000000:role/keywarden-audit".into(),
                external_id: Some("x-1".into()),
            }
        );
    }

    #[test]
    fn its_own_key_is_a_users_long_term_key_only() {
        let user = Caller {
            account_id: "100000000000".into(),
            arn: "arn:aws:iam::100000000000:user/service/keywarden-svc".into(),
        };
        assert_eq!(
            own_key(&user, "AKIAOWN", false),
            Some(OwnKey {
                account_id: "100000000000".into(),
                user: "keywarden-svc".into(),
                access_key_id: "AKIAOWN".into(),
            })
        );
        assert_eq!(own_key(&user, "ASIATEMP", true), None, "a session key");
        let role = Caller {
            account_id: "100000000000".into(),
            arn: "arn:aws:sts::100000000000:assumed-role/keywarden/i-0abc".into(),
        };
        assert_eq!(own_key(&role, "AKIAX", false), None);
    }

    #[test]
    fn discovery_errors_join_the_account_they_are_about() {
        let read = vec![AccountInventory {
            account_id: "100000000000".into(),
            ..Default::default()
        }];
        let merged = merge(
            read,
            vec![
                failed_account("100000000000", "ListAccounts", "denied".into()),
                failed_account("300000000000", "AssumeRole", "denied".into()),
            ],
        );
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].errors[0].operation, "ListAccounts");
        assert_eq!(merged[1].account_id, "300000000000");
    }
}

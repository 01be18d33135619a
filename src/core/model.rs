//! The inventory model: what one account's IAM users, their access keys and their other
//! long-lived credentials look like, as read, and
//! the names every layer shares (the rules, the enforcement mode).
//!
//! Plain data, no I/O. Every record is tied to an `account_id` so that nothing downstream
//! assumes a single account.

use chrono::{DateTime, Utc};

/// All instants are UTC; ages and deadlines are computed on this type only.
pub type Timestamp = DateTime<Utc>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Inactive,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "Active",
            KeyStatus::Inactive => "Inactive",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessKey {
    pub id: String,
    pub status: KeyStatus,
    pub created: Timestamp,
    /// `None` when the key was never used (or is inactive: last use is only read for active keys).
    pub last_used: Option<Timestamp>,
}

impl AccessKey {
    pub fn is_active(&self) -> bool {
        self.status == KeyStatus::Active
    }

    /// The stand-in id of a key known only by its credential-report slot (`user#slotN`; an
    /// IAM key id never has a `#`).
    pub fn placeholder_id(user: &str, slot: usize) -> String {
        format!("{user}#slot{slot}")
    }

    /// Whether the id is the key's real one, not a slot's stand-in.
    pub fn is_named(&self) -> bool {
        !self.id.contains('#')
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct User {
    pub name: String,
    /// IAM path, e.g. `/` or `/service/`.
    pub path: String,
    /// Only read when an exemption matches on tags; empty otherwise.
    pub tags: Vec<(String, String)>,
    pub keys: Vec<AccessKey>,
    /// Its other credentials (password, SSH keys, service-specific credentials, signing
    /// certificates), of the kinds an enabled rule needs: the others are not read.
    pub credentials: Vec<Credential>,
}

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
    pub fn parse(s: &str) -> Option<CredentialStatus> {
        [
            CredentialStatus::Active,
            CredentialStatus::Inactive,
            CredentialStatus::Expired,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// A console password's settings, journaled when keywarden deletes its login profile (a
/// password itself is never read: AWS does not give it out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginProfile {
    pub created: Timestamp,
    pub password_reset_required: bool,
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

impl User {
    /// Whether the user's credential `id` of `kind` is Active (`None`: not among what was read).
    /// An expired service-specific credential is not.
    pub fn is_active(&self, kind: CredentialType, id: &str) -> Option<bool> {
        match kind {
            CredentialType::AccessKey => self.keys.iter().find(|k| k.id == id).map(AccessKey::is_active),
            _ => self
                .credentials
                .iter()
                .find(|c| c.kind == kind && c.id == id)
                .map(|c| c.status == CredentialStatus::Active),
        }
    }
}

/// A read that failed. A user with any failed read is left out of `AccountInventory::users`
/// entirely, so no decision is ever made on a partial view of that user.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadError {
    pub account_id: String,
    /// `None` for account-level reads (ListUsers, GetAccountSummary, ...).
    pub user: Option<String>,
    pub operation: String,
    pub message: String,
    /// The service's error code (`AccessDenied`, `Throttling`, `NoSuchEntity`, ...) when it
    /// sent one: callers decide on this, never on the message text.
    pub code: Option<String>,
}

/// A failed call to a service: its error code when it sent one (decisions are made on it),
/// and the text for people (`Code: message`, or the transport error's chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub code: Option<String>,
    pub message: String,
}

impl ServiceError {
    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// The service refused the request (AccessDenied, an SCP, a permissions boundary): asking
    /// again soon gives the same answer. No answer, throttling and server errors are not
    /// refusals: the next attempt may well succeed.
    pub fn refused(&self) -> bool {
        const TRANSIENT: [&str; 8] = [
            "Throttling",
            "ThrottlingException",
            "RequestLimitExceeded",
            "TooManyRequestsException",
            "ServiceUnavailable",
            "ServiceFailure",
            "InternalFailure",
            "InternalError",
        ];
        self.code
            .as_deref()
            .is_some_and(|c| !TRANSIENT.contains(&c) && !c.starts_with("Http5"))
    }
}

/// A denied call's message, naming who was denied what: AWS's own text usually does ("User:
/// arn:... is not authorized to perform: iam:ListUsers ..."); where it does not, this says
/// `<principal> may not call iam:<operation>` before it.
pub fn name_denied(code: Option<&str>, message: &str, principal: &str, operation: &str) -> Option<String> {
    let denied = matches!(
        code,
        Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation")
    );
    let action = format!("iam:{operation}");
    (denied && !message.contains(&action) && !operation.contains(':'))
        .then(|| format!("{principal} may not call {action} ({message})"))
}

impl ReadError {
    /// [`name_denied`] applied to this read.
    pub fn name_denied(&mut self, principal: &str) {
        if let Some(m) = name_denied(self.code.as_deref(), &self.message, principal, &self.operation) {
            self.message = m;
        }
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServiceError {}

impl From<String> for ServiceError {
    fn from(message: String) -> ServiceError {
        ServiceError { code: None, message }
    }
}

impl From<&str> for ServiceError {
    fn from(message: &str) -> ServiceError {
        message.to_string().into()
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccountInventory {
    pub account_id: String,
    pub users: Vec<User>,
    /// `None` when GetAccountSummary could not be read.
    pub root_access_keys_present: Option<bool>,
    pub errors: Vec<ReadError>,
    /// Set when the inventory came from the IAM credential report.
    pub credential_report_generated: Option<Timestamp>,
    /// The access key keywarden itself signs with in this account, when it uses an IAM user's
    /// long-term key (none for roles): never deactivated.
    pub own_access_key_id: Option<String>,
    /// What AWS says was exposed in public (`rules.exposed_key`).
    pub exposure: Exposure,
    /// The last call of each access key that usage evidence shows (the usage profiles), by
    /// key id; filled only with `usage.hold_live_keys`. Evidence, not a read: it can only
    /// hold a deactivation back (`rules`), never make one due.
    pub last_calls: std::collections::BTreeMap<String, Timestamp>,
}

/// The names of AWS's compromised-key quarantine policies. AWS attaches one of them to a user
/// whose key it found in public (a commit, a paste).
pub const QUARANTINE_POLICIES: [&str; 3] = [
    "AWSCompromisedKeyQuarantine",
    "AWSCompromisedKeyQuarantineV2",
    "AWSCompromisedKeyQuarantineV3",
];

/// Which keys of an account AWS says are exposed. AWS quarantines the user, not the key, so
/// every active key of a quarantined user counts. An AWS Health event that names a key is a
/// claim, not a fact: anyone who may write to the events queue can forge one. It narrows a
/// quarantined user's exposure to the keys it names, and on its own exposes nothing
/// ([`Exposure::unconfirmed`] lists such claims, to be reported, never acted on).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Exposure {
    /// User name -> the quarantine policy attached to it (ListEntitiesForPolicy).
    pub quarantined: std::collections::BTreeMap<String, String>,
    /// Key ids an AWS Health event `AWS_RISK_CREDENTIALS_EXPOSED` named (this run only).
    pub reported_keys: std::collections::BTreeSet<String>,
}

/// A key an AWS Health event named exposed, that no live read confirms: its user carries no
/// quarantine policy, or no user of the account has the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnconfirmedExposure {
    pub access_key_id: String,
    /// `None`: no user of the inventory has this key.
    pub user: Option<String>,
}

impl Exposure {
    /// Why `key` of `user` is exposed, or `None`.
    pub fn of(&self, user: &User, key: &AccessKey) -> Option<String> {
        let policy = self.quarantined.get(&user.name)?;
        if self.reported_keys.contains(&key.id) {
            return Some(format!(
                "named by an AWS Health event AWS_RISK_CREDENTIALS_EXPOSED; the user has AWS's quarantine policy {policy}"
            ));
        }
        let narrowed = user.keys.iter().any(|k| self.reported_keys.contains(&k.id));
        (!narrowed).then(|| format!("the user has AWS's quarantine policy {policy}"))
    }

    /// The Health claims of this run that the quarantine policies do not confirm.
    pub fn unconfirmed(&self, users: &[User]) -> Vec<UnconfirmedExposure> {
        self.reported_keys
            .iter()
            .filter_map(|id| {
                let user = users.iter().find(|u| u.keys.iter().any(|k| &k.id == id));
                match user {
                    Some(u) if self.quarantined.contains_key(&u.name) => None,
                    _ => Some(UnconfirmedExposure {
                        access_key_id: id.clone(),
                        user: user.map(|u| u.name.clone()),
                    }),
                }
            })
            .collect()
    }
}

impl AccountInventory {
    /// True when every read succeeded: only then is the account's answer complete.
    pub fn is_complete(&self) -> bool {
        self.errors.is_empty()
    }
}

/// `enforcement.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    DryRun,
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::DryRun => "dry-run",
            Mode::Enforce => "enforce",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// A key AWS found exposed in public (its quarantine policy on the user, or a Health
    /// event naming the key). First in rule order: the cap takes it first.
    ExposedKey,
    MultipleActiveKeys,
    MaxKeyAge,
    UnusedKey,
    /// A console password not used for too long (never used: since the login profile's
    /// creation).
    UnusedPassword,
    /// An SSH public key, service-specific credential or signing certificate too old.
    MaxCredentialAge,
    /// A service-specific credential that never expires, or lives longer than allowed.
    LongTermServiceCredential,
}

impl Rule {
    pub const ALL: [Rule; 7] = [
        Rule::ExposedKey,
        Rule::MultipleActiveKeys,
        Rule::MaxKeyAge,
        Rule::UnusedKey,
        Rule::UnusedPassword,
        Rule::MaxCredentialAge,
        Rule::LongTermServiceCredential,
    ];

    /// The rules about access keys (the others are about a user's other credentials).
    pub fn is_about_keys(self) -> bool {
        matches!(
            self,
            Rule::ExposedKey | Rule::MultipleActiveKeys | Rule::MaxKeyAge | Rule::UnusedKey
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::ExposedKey => "exposed_key",
            Rule::MultipleActiveKeys => "multiple_active_keys",
            Rule::MaxKeyAge => "max_key_age",
            Rule::UnusedKey => "unused_key",
            Rule::UnusedPassword => "unused_password",
            Rule::MaxCredentialAge => "max_credential_age",
            Rule::LongTermServiceCredential => "long_term_service_credential",
        }
    }

    pub fn parse(s: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> AccessKey {
        AccessKey {
            id: id.into(),
            status: KeyStatus::Active,
            created: Timestamp::default(),
            last_used: None,
        }
    }

    #[test]
    fn a_quarantined_user_exposes_every_key_unless_health_named_one() {
        let u = User {
            name: "alice".into(),
            keys: vec![key("K1"), key("K2")],
            ..Default::default()
        };
        let mut e = Exposure::default();
        assert_eq!(e.of(&u, &u.keys[0]), None);
        e.quarantined
            .insert("alice".into(), "AWSCompromisedKeyQuarantineV3".into());
        assert!(e.of(&u, &u.keys[0]).is_some_and(|w| w.contains("V3")));
        assert!(e.of(&u, &u.keys[1]).is_some());
        e.reported_keys.insert("K2".into());
        assert_eq!(e.of(&u, &u.keys[0]), None, "Health named K2 alone");
        assert!(e.of(&u, &u.keys[1]).is_some_and(|w| w.contains("Health")));
        assert!(e.unconfirmed(std::slice::from_ref(&u)).is_empty(), "confirmed");
        e.quarantined.clear();
        assert_eq!(
            e.of(&u, &u.keys[1]),
            None,
            "a Health event alone is a claim, not a fact"
        );
        assert_eq!(
            e.unconfirmed(std::slice::from_ref(&u)),
            [UnconfirmedExposure {
                access_key_id: "K2".into(),
                user: Some("alice".into())
            }]
        );
        e.reported_keys.insert("NOBODYS".into());
        assert_eq!(e.unconfirmed(&[u]).len(), 2, "a key no user has is unconfirmed too");
    }

    #[test]
    fn a_denied_call_names_the_principal_and_the_action_once() {
        let who = "arn:aws:sts::123456789012:assumed-role/keywarden-audit/keywarden";
        assert_eq!(
            name_denied(Some("AccessDenied"), "AccessDenied: injected", who, "ListUsers").as_deref(),
            Some("arn:aws:sts::123456789012:assumed-role/keywarden-audit/keywarden may not call iam:ListUsers (AccessDenied: injected)")
        );
        let aws =
            "AccessDenied: User: arn:aws:iam::1:user/k is not authorized to perform: iam:ListUsers on resource: *";
        assert_eq!(
            name_denied(Some("AccessDenied"), aws, who, "ListUsers"),
            None,
            "AWS's text says it"
        );
        assert_eq!(name_denied(Some("Throttling"), "slow", who, "ListUsers"), None);
    }
}

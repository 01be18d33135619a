//! Which AWS actions a configuration needs, on which resources and with whose credentials
//! (`keywarden check-access`), and what the answers add up to.
//!
//! One table for the whole program: the packaged IAM policies are compared with it
//! (`packaging/iam-policy*.json`, unit tests below), so a feature that starts calling a new
//! action must add it here, and the policies follow.

use crate::core::model::CredentialType;

/// Whose credentials make the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// The credentials keywarden starts with (discovery, AssumeRole, the state table).
    Ambient,
    /// Each audited account's own credentials (the ambient ones, or its assumed role).
    Account,
}

/// What a configuration uses, as far as permissions go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// ListAccessKeys + GetAccessKeyLastUsed per user (`api` and `auto` modes).
    pub api_reads: bool,
    /// GenerateCredentialReport + GetCredentialReport (`credential-report` and `auto`).
    pub credential_report: bool,
    /// ListUserTags (owners from tags, tag exemptions, `user_tag` exemptions).
    pub tags: bool,
    /// `enforcement.mode = "enforce"`: the fresh re-read and UpdateAccessKey.
    pub enforce: bool,
    /// `rules.exposed_key`: who carries AWS's quarantine policies.
    pub exposure: bool,
    /// Enforcing `rules.exposed_key` with `revoke_sessions`: the inline policy that denies
    /// an exposed key's older sessions, put and (by `reactivate`) deleted.
    pub revoke_sessions: bool,
    /// `rotation.auto_before` > 0 (enforcing): the secrets' ARN pattern
    /// (`arn:...:secretsmanager:REGION:ACCOUNT:secret:PREFIX*`, per account).
    pub rotation: Option<RotationScope>,
    /// `[aws.organization]`: organizations:ListAccounts.
    pub organization: bool,
    /// Roles assumed into accounts (sts:AssumeRole on each).
    pub role_arns: Vec<String>,
    /// `state.backend = "dynamodb"`: the table's ARN.
    pub state_table: Option<String>,
    /// `[export.security_hub]`: the region findings are imported in.
    pub security_hub_region: Option<String>,
    /// `[events]`: the queue's ARN.
    pub events_queue: Option<String>,
    /// `[usage]` enabled with a queue: the usage queue's ARN.
    pub usage_queue: Option<String>,
    /// `[usage]` enabled: CloudTrail's LookupEvents in each account (`keywarden usage
    /// --backfill`, and the leader with `usage.backfill`).
    pub usage_backfill: bool,
    /// The kinds of credentials beyond access keys the enabled rules read
    /// (`Rules::credential_kinds`).
    pub credentials: Vec<CredentialType>,
    /// The kinds a rule with `action = "deactivate"` sets Inactive (enforcing).
    pub credential_deactivations: Vec<CredentialType>,
}

/// Where rotations hand keys over: Secrets Manager's region and the secrets' name prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationScope {
    pub region: String,
    pub secret_prefix: String,
}

/// One action a run needs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Need {
    pub scope: Scope,
    /// `service:Action`, as IAM policies name it.
    pub action: String,
    /// The resource the permission is checked on (`*` where the action has none).
    pub resource: String,
    /// The feature that needs it, in the config's words.
    pub why: &'static str,
}

pub const AUDIT: [&str; 3] = ["iam:GetAccountSummary", "iam:ListUsers", "iam:ListAccessKeys"];
pub const API_READS: [&str; 1] = ["iam:GetAccessKeyLastUsed"];
pub const CREDENTIAL_REPORT: [&str; 2] = ["iam:GenerateCredentialReport", "iam:GetCredentialReport"];
pub const TAGS: [&str; 1] = ["iam:ListUserTags"];
pub const ENFORCE: [&str; 2] = ["iam:GetUser", "iam:UpdateAccessKey"];
pub const EXPOSURE: [&str; 1] = ["iam:ListEntitiesForPolicy"];
pub const REVOKE_SESSIONS: [&str; 2] = ["iam:PutUserPolicy", "iam:DeleteUserPolicy"];
/// Rotation: the new key, and its deletion when the hand-over failed.
pub const ROTATION_KEYS: [&str; 2] = ["iam:CreateAccessKey", "iam:DeleteAccessKey"];
pub const ROTATION_SECRETS: [&str; 2] = ["secretsmanager:CreateSecret", "secretsmanager:PutSecretValue"];
pub const ORGANIZATION: [&str; 1] = ["organizations:ListAccounts"];
pub const ASSUME_ROLE: &str = "sts:AssumeRole";
/// The run's use of the table: transactions are authorized as their item actions.
pub const STATE_TABLE: [&str; 6] = [
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:ConditionCheckItem",
];
pub const SECURITY_HUB: [&str; 2] = ["securityhub:BatchImportFindings", "securityhub:GetFindings"];
/// The events queue: DeleteMessageBatch is authorized as DeleteMessage.
pub const EVENTS: [&str; 2] = ["sqs:ReceiveMessage", "sqs:DeleteMessage"];
/// The usage backfill (LookupEvents has no resource-level permission: `*`).
pub const USAGE_BACKFILL: [&str; 1] = ["cloudtrail:LookupEvents"];

/// The read of each kind beyond access keys: a password's comes with the credential report,
/// so GetLoginProfile is only needed where users are read through the API.
pub fn credential_read(kind: CredentialType) -> Option<&'static str> {
    match kind {
        CredentialType::AccessKey => None,
        CredentialType::Password => Some("iam:GetLoginProfile"),
        CredentialType::SshPublicKey => Some("iam:ListSSHPublicKeys"),
        CredentialType::ServiceSpecificCredential => Some("iam:ListServiceSpecificCredentials"),
        CredentialType::SigningCertificate => Some("iam:ListSigningCertificates"),
    }
}

/// The call that acts on a kind: sets it Inactive, or for a password (which has no status)
/// deletes its login profile. Access keys are in [`ENFORCE`].
pub fn credential_update(kind: CredentialType) -> Option<&'static str> {
    match kind {
        CredentialType::Password => Some("iam:DeleteLoginProfile"),
        CredentialType::SshPublicKey => Some("iam:UpdateSSHPublicKey"),
        CredentialType::ServiceSpecificCredential => Some("iam:UpdateServiceSpecificCredential"),
        CredentialType::SigningCertificate => Some("iam:UpdateSigningCertificate"),
        CredentialType::AccessKey => None,
    }
}

/// `keywarden reactivate USER --password`: a new login profile, its temporary password
/// handed over in Secrets Manager as `rotate` hands over a key (not a daemon's need: the
/// packaged password policy grants it for the operator who runs the command).
pub const PASSWORD_RESTORE: [&str; 1] = ["iam:CreateLoginProfile"];

/// Every action `f` needs in `account_id` (of `partition`), in a stable order. Account-scoped
/// needs are per audited account; ambient ones are listed once, whatever `account_id` is.
pub fn needs(f: &Features, account_id: &str, partition: &str) -> Vec<Need> {
    let mut out = Vec::new();
    let mut add = |scope, actions: &[&str], resource: &str, why| {
        for a in actions {
            out.push(Need {
                scope,
                action: a.to_string(),
                resource: resource.to_string(),
                why,
            });
        }
    };
    let users = format!("arn:{partition}:iam::{account_id}:user/*");
    add(Scope::Account, &AUDIT, "*", "audit");
    if f.api_reads {
        add(Scope::Account, &API_READS, "*", "audit (aws.inventory api or auto)");
    }
    if f.credential_report {
        add(
            Scope::Account,
            &CREDENTIAL_REPORT,
            "*",
            "audit (aws.inventory credential-report or auto)",
        );
    }
    if f.tags {
        add(Scope::Account, &TAGS, "*", "owners or exemptions from user tags");
    }
    if f.exposure {
        add(Scope::Account, &EXPOSURE, "*", "rules.exposed_key");
    }
    for kind in &f.credentials {
        let api_only = *kind == CredentialType::Password;
        if let Some(read) = credential_read(*kind).filter(|_| f.api_reads || !api_only) {
            add(Scope::Account, &[read], "*", credential_rule(*kind));
        }
    }
    if f.enforce {
        add(Scope::Account, &ENFORCE, &users, "enforcement.mode = \"enforce\"");
        changes(f, account_id, partition, &mut add);
    }
    if let Some(region) = &f.security_hub_region {
        let hub = format!("arn:{partition}:securityhub:{region}:{account_id}:product/{account_id}/default");
        add(Scope::Account, &SECURITY_HUB[..1], &hub, "[export.security_hub]");
        let hub = format!("arn:{partition}:securityhub:{region}:{account_id}:hub/default");
        add(Scope::Account, &SECURITY_HUB[1..], &hub, "[export.security_hub]");
    }
    if f.organization {
        add(Scope::Ambient, &ORGANIZATION, "*", "[aws.organization]");
    }
    for role in &f.role_arns {
        add(
            Scope::Ambient,
            &[ASSUME_ROLE],
            role,
            "[[aws.accounts]] role_arn / [aws.organization]",
        );
    }
    if let Some(table) = &f.state_table {
        add(Scope::Ambient, &STATE_TABLE, table, "state.backend = \"dynamodb\"");
    }
    if let Some(queue) = &f.events_queue {
        add(Scope::Ambient, &EVENTS, queue, "[events] queue_url");
    }
    if let Some(queue) = &f.usage_queue {
        add(Scope::Ambient, &EVENTS, queue, "[usage] queue_url");
    }
    if f.usage_backfill {
        add(
            Scope::Account,
            &USAGE_BACKFILL,
            "*",
            "[usage] (keywarden usage --backfill)",
        );
    }
    out
}

/// What enforcing does beyond deactivating: the exposed keys' session denial, and rotations.
fn changes(f: &Features, account_id: &str, partition: &str, add: &mut impl FnMut(Scope, &[&str], &str, &'static str)) {
    let users = format!("arn:{partition}:iam::{account_id}:user/*");
    if f.revoke_sessions {
        let why = "rules.exposed_key.revoke_sessions (enforcing)";
        add(Scope::Account, &REVOKE_SESSIONS, &users, why);
    }
    for kind in &f.credential_deactivations {
        if let Some(update) = credential_update(*kind) {
            add(Scope::Account, &[update], &users, credential_rule(*kind));
        }
    }
    if let Some(r) = &f.rotation {
        let why = "rotation.auto_before (enforcing)";
        add(Scope::Account, &ROTATION_KEYS, &users, why);
        let secrets = format!(
            "arn:{partition}:secretsmanager:{}:{account_id}:secret:{}*",
            r.region, r.secret_prefix
        );
        add(Scope::Account, &ROTATION_SECRETS, &secrets, why);
    }
}

/// The rule that reads (or acts on) a kind, for the `why` of its needs.
fn credential_rule(kind: CredentialType) -> &'static str {
    match kind {
        CredentialType::Password => "rules.unused_password",
        CredentialType::ServiceSpecificCredential => "rules.max_credential_age / rules.long_term_service_credential",
        _ => "rules.max_credential_age",
    }
}

/// What IAM's policy simulator (or the lack of it) says of one need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Denied: implicitly (no statement allows it) or explicitly (a Deny matches).
    Missing {
        explicit: bool,
    },
    /// The credentials could not say (no iam:SimulatePrincipalPolicy, a principal the
    /// simulator does not know); the reason.
    Unknown(String),
}

/// The exit code of `check-access` (docs/names.md, exit codes): 3 when anything is missing, else 1 when
/// anything could not be told, else 0.
pub fn exit_code<'a>(verdicts: impl IntoIterator<Item = &'a Verdict>) -> i32 {
    let mut unknown = false;
    for v in verdicts {
        match v {
            Verdict::Missing { .. } => return 3,
            Verdict::Unknown(_) => unknown = true,
            Verdict::Allowed => {}
        }
    }
    if unknown {
        1
    } else {
        0
    }
}

/// A queue's ARN from its URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`, or an
/// endpoint's `http://HOST/ACCOUNT/NAME` with `region`).
pub fn queue_arn(url: &str, region: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let mut parts = rest.split('/');
    let host = parts.next()?;
    let account = parts
        .next()
        .filter(|a| a.len() == 12 && a.chars().all(|c| c.is_ascii_digit()))?;
    let name = parts.next().filter(|n| !n.is_empty())?;
    let region = host
        .strip_prefix("sqs.")
        .and_then(|h| h.split('.').next())
        .unwrap_or(region);
    Some(format!(
        "arn:{}:sqs:{region}:{account}:{name}",
        crate::core::arn::partition(region)
    ))
}

/// The IAM ARN to simulate for a caller ARN (GetCallerIdentity's): a user's is itself; an
/// assumed role's is its role's, from `known_roles` when one has that name (it keeps the
/// path), else `None` (the caller must look it up).
pub fn simulation_arn(caller_arn: &str, known_roles: &[String]) -> Option<String> {
    let role_name = assumed_role_name(caller_arn)?;
    let account = caller_arn.split(':').nth(4)?;
    known_roles
        .iter()
        .find(|r| r.rsplit('/').next() == Some(role_name) && r.split(':').nth(4) == Some(account))
        .cloned()
}

/// Whether a caller ARN is an IAM user (simulated as itself).
pub fn is_user(caller_arn: &str) -> bool {
    caller_arn.split(':').nth(2) == Some("iam") && caller_arn.split(':').nth(5).is_some_and(|r| r.starts_with("user/"))
}

/// The role name of an assumed-role session ARN.
pub fn assumed_role_name(caller_arn: &str) -> Option<&str> {
    let (_, resource) = caller_arn.split_once(":assumed-role/")?;
    resource.split('/').next().filter(|n| !n.is_empty())
}

/// What one principal may do.
#[derive(Debug)]
pub struct Checked {
    pub scope: Scope,
    /// The account checked (for the ambient credentials: their own).
    pub account_id: String,
    /// GetCallerIdentity's ARN.
    pub caller: String,
    /// The ARN the simulator was asked about, or why there is none.
    pub simulated: Result<String, String>,
    pub results: Vec<(Need, Verdict)>,
}

/// The whole answer.
#[derive(Debug, Default)]
pub struct AccessReport {
    pub checked: Vec<Checked>,
    /// Accounts or principals that could not be reached at all.
    pub errors: Vec<String>,
}

impl AccessReport {
    /// Each missing action, as `action on resource (account, why)`.
    pub fn missing(&self) -> Vec<String> {
        self.checked
            .iter()
            .flat_map(|c| {
                c.results
                    .iter()
                    .filter(|(_, v)| matches!(v, Verdict::Missing { .. }))
                    .map(move |(n, _)| format!("{} on {} (account {}, {})", n.action, n.resource, c.account_id, n.why))
            })
            .collect()
    }

    /// 0 all allowed, 3 some missing, else 1 (something could not be told or reached).
    pub fn exit_code(&self) -> i32 {
        let code = exit_code(self.checked.iter().flat_map(|c| c.results.iter().map(|(_, v)| v)));
        if code == 0 && !self.errors.is_empty() {
            1
        } else {
            code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn all() -> Features {
        Features {
            api_reads: true,
            credential_report: true,
            tags: true,
            enforce: true,
            exposure: true,
            revoke_sessions: true,
            rotation: Some(RotationScope {
                region: "us-east-1".into(),
                secret_prefix: "keywarden/".into(),
            }),
            organization: true,
            role_arns: vec!["arn:aws:iam::111111111111:role/keywarden-audit".into()],
            state_table: Some("arn:aws:dynamodb:us-east-1:123456789012:table/keywarden".into()),
            security_hub_region: Some("us-east-1".into()),
            events_queue: Some("arn:aws:sqs:us-east-1:123456789012:keywarden-events".into()),
            usage_queue: Some("arn:aws:sqs:us-east-1:123456789012:keywarden-usage".into()),
            usage_backfill: true,
            credentials: CredentialType::ALL.to_vec(),
            credential_deactivations: CredentialType::ALL.to_vec(),
        }
    }

    fn actions(needs: &[Need], scope: Scope, prefix: &str) -> BTreeSet<String> {
        needs
            .iter()
            .filter(|n| n.scope == scope && n.action.starts_with(prefix))
            .map(|n| n.action.clone())
            .collect()
    }

    /// The actions of a packaged policy, optionally of one statement only.
    fn policy(text: &str, sid: Option<&str>) -> BTreeSet<String> {
        let p: serde_json::Value = serde_json::from_str(text).expect("policy JSON");
        p["Statement"]
            .as_array()
            .expect("statements")
            .iter()
            .filter(|s| sid.is_none_or(|id| s["Sid"] == id))
            .flat_map(|s| match &s["Action"] {
                serde_json::Value::String(a) => vec![a.clone()],
                v => v
                    .as_array()
                    .expect("actions")
                    .iter()
                    .map(|a| a.as_str().expect("action").to_string())
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn the_packaged_policies_grant_exactly_what_check_access_checks() {
        // The default rules read passwords, and nothing else beyond access keys.
        let audit = Features {
            api_reads: true,
            credential_report: true,
            tags: true,
            exposure: true,
            credentials: vec![CredentialType::Password],
            ..Features::default()
        };
        let a = needs(&audit, "123456789012", "aws");
        assert_eq!(
            actions(&a, Scope::Account, "iam:"),
            policy(include_str!("../../packaging/iam-policy.json"), None)
        );
        let e = needs(&all(), "123456789012", "aws");
        let revoke: BTreeSet<String> = REVOKE_SESSIONS.iter().map(|a| a.to_string()).collect();
        let mut rotation: BTreeSet<String> = ROTATION_KEYS.iter().map(|a| a.to_string()).collect();
        let credentials: BTreeSet<String> = CredentialType::ALL
            .into_iter()
            .filter(|k| *k != CredentialType::Password)
            .flat_map(|k| [credential_read(k), credential_update(k)])
            .flatten()
            .map(str::to_string)
            .collect();
        assert_eq!(
            credentials,
            policy(include_str!("../../packaging/iam-policy-credentials.json"), None)
        );
        let passwords: BTreeSet<String> = credential_update(CredentialType::Password)
            .into_iter()
            .map(str::to_string)
            .collect();
        let text = include_str!("../../packaging/iam-policy-passwords.json");
        assert_eq!(passwords, policy(text, Some("KeywardenPasswordsDelete")));
        let restore: BTreeSet<String> = PASSWORD_RESTORE
            .iter()
            .chain(&ROTATION_SECRETS)
            .map(|a| a.to_string())
            .collect();
        assert_eq!(restore, policy(text, Some("KeywardenPasswordsRestore")));
        assert_eq!(
            actions(&e, Scope::Account, "iam:")
                .difference(&revoke)
                .filter(|a| !rotation.contains(*a) && !credentials.contains(*a) && !passwords.contains(*a))
                .cloned()
                .collect::<BTreeSet<_>>(),
            policy(include_str!("../../packaging/iam-policy-enforce.json"), None)
        );
        rotation.extend(actions(&e, Scope::Account, "secretsmanager:"));
        assert_eq!(
            rotation,
            policy(include_str!("../../packaging/iam-policy-rotation.json"), None)
        );
        assert_eq!(
            revoke,
            policy(include_str!("../../packaging/iam-policy-revoke-sessions.json"), None)
        );
        let mut central = actions(&e, Scope::Ambient, "sts:");
        central.extend(actions(&e, Scope::Ambient, "organizations:"));
        assert_eq!(
            central,
            policy(include_str!("../../packaging/iam-policy-central.json"), None)
        );
        assert_eq!(
            actions(&e, Scope::Ambient, "dynamodb:"),
            policy(
                include_str!("../../packaging/iam-policy-dynamodb.json"),
                Some("KeywardenStateTable")
            )
        );
        assert_eq!(
            actions(&e, Scope::Account, "securityhub:"),
            policy(include_str!("../../packaging/iam-policy-securityhub.json"), None)
        );
        assert_eq!(
            actions(&e, Scope::Ambient, "sqs:"),
            policy(include_str!("../../packaging/iam-policy-events.json"), None)
        );
        let usage = include_str!("../../packaging/iam-policy-usage.json");
        assert_eq!(
            actions(&e, Scope::Ambient, "sqs:"),
            policy(usage, Some("KeywardenReadsItsUsageQueue"))
        );
        assert_eq!(
            actions(&e, Scope::Account, "cloudtrail:"),
            policy(usage, Some("KeywardenBackfillsUsage"))
        );
    }

    #[test]
    fn needs_follow_the_features() {
        let bare = needs(&Features::default(), "1", "aws");
        assert_eq!(bare.len(), 3, "{bare:?}");
        assert!(bare.iter().all(|n| n.scope == Scope::Account && n.resource == "*"));
        let e = needs(&all(), "123456789012", "aws");
        let update = e.iter().find(|n| n.action == "iam:UpdateAccessKey").expect("enforce");
        assert_eq!(update.resource, "arn:aws:iam::123456789012:user/*");
        let assume = e.iter().find(|n| n.action == ASSUME_ROLE).expect("assume");
        assert_eq!(assume.resource, "arn:aws:iam::111111111111:role/keywarden-audit");
        let cn = needs(&all(), "123456789012", "aws-cn");
        assert!(cn.iter().any(|n| n.resource.starts_with("arn:aws-cn:securityhub:")));
    }

    #[test]
    fn queue_arns_come_from_their_urls() {
        assert_eq!(
            queue_arn("https://sqs.eu-west-1.amazonaws.com/123456789012/kw", "us-east-1").as_deref(),
            Some("arn:aws:sqs:eu-west-1:123456789012:kw")
        );
        assert_eq!(
            queue_arn("http://127.0.0.1:5000/123456789012/kw", "us-east-1").as_deref(),
            Some("arn:aws:sqs:us-east-1:123456789012:kw")
        );
        assert_eq!(queue_arn("not a url", "us-east-1"), None);
    }

    #[test]
    fn the_packaged_rule_matches_exactly_the_events_keywarden_reads() {
        let member = include_str!("../../packaging/events/keywarden-events-member.yml");
        let central = include_str!("../../packaging/events/keywarden-events.yml");
        for template in [central, member] {
            rule_matches(template);
        }
        for a in EVENTS {
            assert!(central.contains(a), "the queue policy grants {a}");
        }
    }

    /// The statement of `template` whose `Sid` is `sid`, as its indented lines.
    fn statement<'a>(template: &'a str, sid: &str) -> Vec<&'a str> {
        let mut lines = template.lines().skip_while(|l| !l.contains(&format!("Sid: {sid}")));
        let first = lines.next().expect(sid);
        let indent = first.find('-').expect("a list item");
        std::iter::once(first)
            .chain(lines.take_while(|l| l.find(|c: char| c != ' ').is_some_and(|i| i > indent)))
            .collect()
    }

    #[test]
    fn only_the_rules_may_send_to_the_queue_or_forward_to_it() {
        let central = include_str!("../../packaging/events/keywarden-events.yml");
        let deny = statement(central, "NobodyElseSends").join("\n");
        for part in [
            "Effect: Deny",
            "Principal: \"*\"",
            "Action: sqs:SendMessage",
            "ArnNotEquals:",
            "aws:SourceArn: [!GetAtt KeyChanges.Arn, !GetAtt ExposedKeys.Arn]",
        ] {
            assert!(deny.contains(part), "{part} in\n{deny}");
        }
        let member = include_str!("../../packaging/events/keywarden-events-member.yml");
        let deny = statement(member, "NoOtherRuleForwards").join("\n");
        for part in [
            "Effect: Deny",
            "Action: sts:AssumeRole",
            "ArnNotEquals:",
            "rule/keywarden-key-changes",
            "rule/keywarden-exposed-keys",
        ] {
            assert!(deny.contains(part), "{part} in\n{deny}");
        }
        for name in ["Name: keywarden-key-changes", "Name: keywarden-exposed-keys"] {
            assert!(member.contains(name), "the rules the condition names: {name}");
        }
    }

    fn rule_matches(template: &str) {
        let line = template
            .lines()
            .find(|l| l.trim_start().starts_with("eventName:"))
            .expect("eventName");
        let listed: BTreeSet<&str> = line
            .split_once('[')
            .and_then(|(_, r)| r.split_once(']'))
            .map(|(l, _)| l.split(',').map(str::trim).collect())
            .expect("a list");
        let read: BTreeSet<&str> = crate::core::events::ACCESS_KEY_EVENTS
            .iter()
            .chain(crate::core::events::USER_EVENTS.iter())
            .chain(crate::core::events::CREDENTIAL_EVENTS.iter())
            .copied()
            .collect();
        assert_eq!(listed, read);
        assert!(template.contains(crate::core::events::EXPOSED));
    }

    #[test]
    fn exit_code_missing_wins_over_unknown() {
        let unknown = Verdict::Unknown("no iam:SimulatePrincipalPolicy".into());
        let missing = Verdict::Missing { explicit: false };
        assert_eq!(exit_code([&Verdict::Allowed]), 0);
        assert_eq!(exit_code([&Verdict::Allowed, &unknown]), 1);
        assert_eq!(exit_code([&unknown, &missing, &Verdict::Allowed]), 3);
    }

    #[test]
    fn callers_map_to_the_arn_the_simulator_knows() {
        let user = "arn:aws:iam::123456789012:user/ops/keywarden";
        assert!(is_user(user));
        assert!(!is_user("arn:aws:sts::123456789012:assumed-role/Audit/s"));
        let roles = vec!["arn:aws:iam::111111111111:role/sec/keywarden-audit".to_string()];
        assert_eq!(
            simulation_arn(
                "arn:aws:sts::111111111111:assumed-role/keywarden-audit/keywarden",
                &roles
            ),
            Some(roles[0].clone())
        );
        assert_eq!(
            simulation_arn(
                "arn:aws:sts::222222222222:assumed-role/keywarden-audit/keywarden",
                &roles
            ),
            None,
            "another account's role of the same name"
        );
        assert_eq!(
            assumed_role_name("arn:aws:sts::1:assumed-role/AWSReservedSSO_Audit_abc/alice"),
            Some("AWSReservedSSO_Audit_abc")
        );
    }
}

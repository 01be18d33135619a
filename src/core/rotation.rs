//! Guided rotation, as decisions: whether a user may be rotated (IAM allows two keys; keywarden
//! never rotates the user it runs as), where the new key is handed over (the secret's name),
//! and which tagged users the daemon rotates on its own (`rotation.auto_before` ahead of
//! `rules.max_key_age`). Pure: the edges create the key and store the secret
//! (`ports::Rotator`), `app::rotate` orders the steps.
//!
//! After a rotation the old key is an ordinary `multiple_active_keys` finding, held by the
//! rotation-aware rule until the new key is used (`core::rules`): there is no second path of
//! deactivation.

use chrono::TimeDelta;

use crate::core::model::{AccessKey, AccountInventory, Timestamp, User};

/// The user tag that opts a user into automatic rotation, and its one accepted value.
pub const ROTATE_TAG: &str = "keywarden:rotate";
pub const ROTATE_VALUE: &str = "secretsmanager";

/// Why a user is not rotated (`keywarden rotate` exits 4; nothing was changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NoSuchUser,
    /// IAM's limit: a third key cannot be made.
    TwoKeys,
    NoActiveKey,
    /// The user whose key keywarden signs with: rotating it is the operator's job, with
    /// keywarden's own credentials changed in the same step.
    OwnUser,
}

impl Refusal {
    pub fn message(&self, user: &str) -> String {
        match self {
            Refusal::NoSuchUser => format!("user {user} does not exist"),
            Refusal::TwoKeys => format!(
                "{user} has two access keys already (IAM's limit): delete the one that is no longer needed first"
            ),
            Refusal::NoActiveKey => format!("{user} has no active access key to rotate"),
            Refusal::OwnUser => format!(
                "{user} is the user keywarden runs as: rotate its key by hand and update keywarden's credentials"
            ),
        }
    }

    /// The `outcome` label of `keywarden_rotations_total` and the journal.
    pub const OUTCOME: &'static str = "refused";
}

/// The active key `user` would rotate away from, or why it may not be rotated. `own` is the
/// key keywarden signs with in that account.
pub fn rotatable<'a>(user: Option<&'a User>, own: Option<&str>) -> Result<&'a AccessKey, Refusal> {
    let user = user.ok_or(Refusal::NoSuchUser)?;
    if own.is_some_and(|own| user.keys.iter().any(|k| k.id == own)) {
        return Err(Refusal::OwnUser);
    }
    if user.keys.len() >= 2 {
        return Err(Refusal::TwoKeys);
    }
    user.keys.iter().find(|k| k.is_active()).ok_or(Refusal::NoActiveKey)
}

/// The default secret name: `<secret_prefix><account_id>/<user>`.
pub fn secret_name(prefix: &str, account_id: &str, user: &str) -> String {
    format!("{prefix}{account_id}/{user}")
}

/// Whether the user opted into automatic rotation.
pub fn opted_in(user: &User) -> bool {
    user.tags.iter().any(|(k, v)| k == ROTATE_TAG && v == ROTATE_VALUE)
}

/// Whether `key` is older than `max_age - before` at `now`: when the daemon rotates it (an
/// active key of a tagged user). `before` of zero or less: never.
pub fn nearing(key: &AccessKey, max_age: TimeDelta, before: TimeDelta, now: Timestamp) -> bool {
    before > TimeDelta::zero() && key.is_active() && now.signed_duration_since(key.created) > max_age - before
}

/// One automatic rotation the daemon should make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub account_id: String,
    pub user: String,
    /// The key rotated away from.
    pub access_key_id: String,
}

/// The opted-in users whose one active key is older than `max_age - before` at `now`, and
/// that were never rotated from that key (`rotated`: a journal entry names it): at most once
/// per key, also in dry-run. Refused users (two keys, own user) are left out: they are not
/// due, and the operator sees their `max_key_age` finding.
pub fn due(
    accounts: &[AccountInventory],
    max_age: TimeDelta,
    before: TimeDelta,
    now: Timestamp,
    rotated: &dyn Fn(&str) -> bool,
) -> Vec<Due> {
    let mut out = Vec::new();
    for a in accounts {
        for u in a.users.iter().filter(|u| opted_in(u)) {
            let Ok(key) = rotatable(Some(u), a.own_access_key_id.as_deref()) else {
                continue;
            };
            if key.is_named() && nearing(key, max_age, before, now) && !rotated(&key.id) {
                out.push(Due {
                    account_id: a.account_id.clone(),
                    user: u.name.clone(),
                    access_key_id: key.id.clone(),
                });
            }
        }
    }
    out
}

/// Why `keywarden rotate` cannot tell which account to act in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountChoice {
    /// The account (or every account) could not be reached: a runtime problem, with why.
    Unreachable(String),
    /// `--account` names an account the config does not read, or is needed and missing.
    Usage(String),
}

impl std::fmt::Display for AccountChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountChoice::Unreachable(why) => write!(f, "cannot reach the account: {why}"),
            AccountChoice::Usage(why) => f.write_str(why),
        }
    }
}

/// The account `rotate` acts in: `wanted` (`--account`), else the config's only one.
/// `reached` are the accounts connected; `unreached` the others, each with why.
pub fn account(
    reached: &[String],
    unreached: &[(String, String)],
    wanted: Option<&str>,
) -> Result<String, AccountChoice> {
    let known = |a: &str| reached.iter().any(|c| c == a);
    let why: Vec<String> = unreached
        .iter()
        .filter(|(id, _)| wanted.is_none_or(|w| id == w))
        .map(|(id, message)| format!("account {id}: {message}"))
        .collect();
    if !why.is_empty() && (reached.is_empty() || wanted.is_some_and(|a| !known(a))) {
        return Err(AccountChoice::Unreachable(why.join("; ")));
    }
    match (wanted, reached) {
        (Some(a), _) if known(a) => Ok(a.to_string()),
        (Some(a), _) => Err(AccountChoice::Usage(format!(
            "account {a} is not one the config reads ({})",
            reached.join(", ")
        ))),
        (None, [one]) => Ok(one.clone()),
        (None, _) => Err(AccountChoice::Usage(format!(
            "--account is needed: the config reads {} accounts ({})",
            reached.len(),
            reached.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::KeyStatus;
    use chrono::TimeZone;

    fn now() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
    }

    fn key(id: &str, active: bool, age_days: i64) -> AccessKey {
        AccessKey {
            id: id.into(),
            status: if active { KeyStatus::Active } else { KeyStatus::Inactive },
            created: now() - TimeDelta::days(age_days),
            last_used: None,
        }
    }

    fn user(name: &str, keys: Vec<AccessKey>, tagged: bool) -> User {
        User {
            credentials: vec![],
            name: name.into(),
            path: "/".into(),
            tags: if tagged {
                vec![(ROTATE_TAG.into(), ROTATE_VALUE.into())]
            } else {
                vec![]
            },
            keys,
        }
    }

    #[test]
    fn refusals_name_two_keys_no_active_key_and_the_own_user() {
        let one = user("a", vec![key("K1", true, 100)], false);
        assert_eq!(rotatable(Some(&one), None).map(|k| k.id.as_str()), Ok("K1"));
        assert_eq!(rotatable(None, None), Err(Refusal::NoSuchUser));
        let two = user("b", vec![key("K1", true, 100), key("K2", false, 1)], false);
        assert_eq!(rotatable(Some(&two), None), Err(Refusal::TwoKeys));
        let idle = user("c", vec![key("K1", false, 100)], false);
        assert_eq!(rotatable(Some(&idle), None), Err(Refusal::NoActiveKey));
        assert_eq!(
            rotatable(Some(&user("d", vec![], false)), None),
            Err(Refusal::NoActiveKey)
        );
        assert_eq!(rotatable(Some(&one), Some("K1")), Err(Refusal::OwnUser));
        assert!(Refusal::TwoKeys.message("b").contains("two access keys"));
    }

    #[test]
    fn the_daemon_rotates_tagged_users_ahead_of_max_age_once_per_key() {
        let accounts = vec![AccountInventory {
            account_id: "1".into(),
            users: vec![
                user("due", vec![key("OLD", true, 80)], true),
                user("young", vec![key("NEW", true, 70)], true),
                user("untagged", vec![key("U", true, 89)], false),
                user("pair", vec![key("P1", true, 89), key("P2", true, 1)], true),
                user("me", vec![key("OWN", true, 89)], true),
                user("done", vec![key("R", true, 85)], true),
            ],
            own_access_key_id: Some("OWN".into()),
            ..Default::default()
        }];
        let rotated = |k: &str| k == "R";
        let due = due(&accounts, TimeDelta::days(90), TimeDelta::days(14), now(), &rotated);
        let users: Vec<&str> = due.iter().map(|d| d.user.as_str()).collect();
        assert_eq!(users, ["due"]);
        assert_eq!(due[0].access_key_id, "OLD");
        let off = super::due(&accounts, TimeDelta::days(90), TimeDelta::zero(), now(), &rotated);
        assert!(off.is_empty(), "auto_before = 0s: off");
    }

    #[test]
    fn the_secret_is_named_by_prefix_account_and_user() {
        assert_eq!(
            secret_name("keywarden/", "123456789012", "ci"),
            "keywarden/123456789012/ci"
        );
    }

    #[test]
    fn the_account_is_the_one_named_or_the_only_one() {
        let two = ["111".to_string(), "222".to_string()];
        let down = [("333".to_string(), "AssumeRole: AccessDenied".to_string())];
        assert_eq!(account(&two[..1], &[], None), Ok("111".to_string()));
        assert_eq!(account(&two, &down, Some("222")), Ok("222".to_string()));
        assert!(matches!(account(&two, &[], None), Err(AccountChoice::Usage(m)) if m.contains("--account is needed")));
        assert!(
            matches!(account(&two, &[], Some("999")), Err(AccountChoice::Usage(m)) if m.contains("not one the config reads"))
        );
        assert_eq!(
            account(&two, &down, Some("333")),
            Err(AccountChoice::Unreachable(
                "account 333: AssumeRole: AccessDenied".into()
            ))
        );
        assert!(matches!(account(&[], &down, None), Err(AccountChoice::Unreachable(_))));
    }
}

//! The rules engine: pure functions from an inventory, a policy and an instant to findings.
//!
//! No I/O and no clock: the caller passes `now` (the real time, or `--at`) and a
//! [`FirstSeen`] lookup (the state file, or nothing). Semantics follow CONTRACT.md:
//! - only active keys are ever findings;
//! - a key exactly at a threshold is compliant, one second past it is not;
//! - a never-used key counts as unused from its creation;
//! - of several active keys, the one a person would keep is kept (see [`kept_key`]);
//! - exemptions always win: an exempt finding is reported, never acted on.

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

use crate::model::{AccessKey, AccountInventory, Timestamp, User};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    MultipleActiveKeys,
    MaxKeyAge,
    UnusedKey,
}

impl Rule {
    pub const ALL: [Rule; 3] = [Rule::MultipleActiveKeys, Rule::MaxKeyAge, Rule::UnusedKey];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::MultipleActiveKeys => "multiple_active_keys",
            Rule::MaxKeyAge => "max_key_age",
            Rule::UnusedKey => "unused_key",
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Deactivate,
    Report,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deactivate => "deactivate",
            Action::Report => "report",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RulePolicy {
    pub enabled: bool,
    pub action: Action,
    /// Threshold for `max_key_age` / `unused_key`; unused for `multiple_active_keys`.
    pub threshold: TimeDelta,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub multiple_active_keys: RulePolicy,
    pub max_key_age: RulePolicy,
    pub unused_key: RulePolicy,
}

impl Rules {
    pub fn get(&self, rule: Rule) -> &RulePolicy {
        match rule {
            Rule::MultipleActiveKeys => &self.multiple_active_keys,
            Rule::MaxKeyAge => &self.max_key_age,
            Rule::UnusedKey => &self.unused_key,
        }
    }
}

/// One `[[exemptions]]` entry, validated. Every matcher that is set must match (AND);
/// at least one is always set (the config layer guarantees it).
#[derive(Debug, Clone)]
pub struct Exemption {
    pub user: Option<glob::Pattern>,
    pub access_key_id: Option<String>,
    pub user_tag: Option<(String, String)>,
    pub path_prefix: Option<String>,
    /// `None`: every rule.
    pub rules: Option<Vec<Rule>>,
    pub reason: String,
    /// The exemption stops applying at this instant.
    pub expires: Option<Timestamp>,
}

impl Exemption {
    pub fn applies(&self, user: &User, key: &AccessKey, rule: Rule, now: Timestamp) -> bool {
        if self.expires.is_some_and(|e| now >= e) {
            return false;
        }
        if self.rules.as_ref().is_some_and(|rs| !rs.contains(&rule)) {
            return false;
        }
        if self.user.as_ref().is_some_and(|p| !p.matches(&user.name)) {
            return false;
        }
        if self.access_key_id.as_ref().is_some_and(|id| *id != key.id) {
            return false;
        }
        if let Some((k, v)) = &self.user_tag {
            if !user.tags.iter().any(|(tk, tv)| tk == k && tv == v) {
                return false;
            }
        }
        if let Some(prefix) = &self.path_prefix {
            if !user.path.starts_with(prefix.as_str()) {
                return false;
            }
        }
        true
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub rules: Rules,
    pub exemptions: Vec<Exemption>,
    pub grace_period: TimeDelta,
}

impl Policy {
    /// Tags cost one ListUserTags per user: only read them when an exemption needs them.
    pub fn needs_tags(&self) -> bool {
        self.exemptions.iter().any(|e| e.user_tag.is_some())
    }
}

/// Where a finding was first seen, if known (the state file).
pub trait FirstSeen: Sync {
    fn first_seen(&self, account_id: &str, access_key_id: &str, rule: Rule) -> Option<Timestamp>;
}

/// No history: every finding is first seen now.
pub struct NoHistory;

impl FirstSeen for NoHistory {
    fn first_seen(&self, _: &str, _: &str, _: Rule) -> Option<Timestamp> {
        None
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub account_id: String,
    pub user: String,
    pub access_key_id: String,
    pub rule: Rule,
    #[serde(with = "crate::timefmt")]
    pub created: Timestamp,
    #[serde(with = "crate::timefmt::option")]
    pub last_used: Option<Timestamp>,
    pub exempt: bool,
    pub exemption_reason: Option<String>,
    pub action: Action,
    #[serde(with = "crate::timefmt")]
    pub first_seen: Timestamp,
    #[serde(with = "crate::timefmt::option")]
    pub deactivate_after: Option<Timestamp>,
}

fn exceeds(since: Timestamp, now: Timestamp, threshold: TimeDelta) -> bool {
    now.signed_duration_since(since) > threshold
}

/// The rules other than `multiple_active_keys` that `key` breaks at `now`, in rule order.
fn age_rules_broken(key: &AccessKey, rules: &Rules, now: Timestamp) -> Vec<Rule> {
    let mut broken = Vec::new();
    let age = &rules.max_key_age;
    if age.enabled && exceeds(key.created, now, age.threshold) {
        broken.push(Rule::MaxKeyAge);
    }
    let unused = &rules.unused_key;
    if unused.enabled && exceeds(key.last_used.unwrap_or(key.created), now, unused.threshold) {
        broken.push(Rule::UnusedKey);
    }
    broken
}

/// The active key a person following the console procedure would keep: first a key that
/// breaks no enabled age or unused rule, then the most recent last use (never used ranks
/// below any use), then the newest creation. The key id breaks remaining ties so the choice
/// is deterministic.
pub fn kept_key<'a>(active: &[&'a AccessKey], rules: &Rules, now: Timestamp) -> Option<&'a AccessKey> {
    active.iter().copied().min_by(|a, b| {
        let a_bad = !age_rules_broken(a, rules, now).is_empty();
        let b_bad = !age_rules_broken(b, rules, now).is_empty();
        a_bad
            .cmp(&b_bad)
            // Option orders None below Some, so reverse to put the most recent use first.
            .then_with(|| b.last_used.cmp(&a.last_used))
            .then_with(|| b.created.cmp(&a.created))
            .then_with(|| a.id.cmp(&b.id))
    })
}

/// Evaluates one account. Findings come grouped by user (in inventory order), then by key,
/// then in rule order.
pub fn evaluate(inv: &AccountInventory, policy: &Policy, history: &dyn FirstSeen, now: Timestamp) -> Vec<Finding> {
    let mut findings = Vec::new();
    for user in &inv.users {
        evaluate_user(&inv.account_id, user, policy, history, now, &mut findings);
    }
    findings
}

fn evaluate_user(
    account_id: &str,
    user: &User,
    policy: &Policy,
    history: &dyn FirstSeen,
    now: Timestamp,
    out: &mut Vec<Finding>,
) {
    let rules = &policy.rules;
    let active: Vec<&AccessKey> = user.keys.iter().filter(|k| k.is_active()).collect();
    let kept = if rules.multiple_active_keys.enabled && active.len() > 1 {
        kept_key(&active, rules, now).map(|k| k.id.as_str())
    } else {
        None
    };
    for key in active {
        let mut broken = Vec::with_capacity(3);
        if kept.is_some_and(|id| id != key.id) {
            broken.push(Rule::MultipleActiveKeys);
        }
        broken.extend(age_rules_broken(key, rules, now));
        for rule in broken {
            out.push(finding(account_id, user, key, rule, policy, history, now));
        }
    }
}

fn finding(
    account_id: &str,
    user: &User,
    key: &AccessKey,
    rule: Rule,
    policy: &Policy,
    history: &dyn FirstSeen,
    now: Timestamp,
) -> Finding {
    let exemption = policy.exemptions.iter().find(|e| e.applies(user, key, rule, now));
    let first_seen = history.first_seen(account_id, &key.id, rule).unwrap_or(now);
    let action = match exemption {
        Some(_) => Action::Report,
        None => policy.rules.get(rule).action,
    };
    Finding {
        account_id: account_id.to_string(),
        user: user.name.clone(),
        access_key_id: key.id.clone(),
        rule,
        created: key.created,
        last_used: key.last_used,
        exempt: exemption.is_some(),
        exemption_reason: exemption.map(|e| e.reason.clone()),
        action,
        first_seen,
        deactivate_after: (action == Action::Deactivate).then(|| first_seen + policy.grace_period),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KeyStatus;
    use chrono::TimeZone;
    use std::collections::HashMap;

    fn t0() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
    }
    fn days(n: i64) -> TimeDelta {
        TimeDelta::days(n)
    }
    fn key(id: &str, active: bool, created_days_ago: i64, used_days_ago: Option<i64>) -> AccessKey {
        AccessKey {
            id: id.to_string(),
            status: if active { KeyStatus::Active } else { KeyStatus::Inactive },
            created: t0() - days(created_days_ago),
            last_used: used_days_ago.map(|d| t0() - days(d)),
        }
    }
    fn user(name: &str, keys: Vec<AccessKey>) -> User {
        User {
            name: name.to_string(),
            path: "/".to_string(),
            tags: vec![],
            keys,
        }
    }
    fn policy() -> Policy {
        Policy {
            rules: Rules {
                multiple_active_keys: RulePolicy {
                    enabled: true,
                    action: Action::Deactivate,
                    threshold: TimeDelta::zero(),
                },
                max_key_age: RulePolicy {
                    enabled: true,
                    action: Action::Report,
                    threshold: days(90),
                },
                unused_key: RulePolicy {
                    enabled: true,
                    action: Action::Deactivate,
                    threshold: days(45),
                },
            },
            exemptions: vec![],
            grace_period: days(7),
        }
    }
    fn exemption() -> Exemption {
        Exemption {
            user: None,
            access_key_id: None,
            user_tag: None,
            path_prefix: None,
            rules: None,
            reason: "because".to_string(),
            expires: None,
        }
    }
    fn inv(users: Vec<User>) -> AccountInventory {
        AccountInventory {
            account_id: "123456789012".to_string(),
            users,
            root_access_keys_present: Some(false),
            errors: vec![],
            credential_report_generated: None,
        }
    }
    fn eval_at(users: Vec<User>, policy: &Policy, now: Timestamp) -> Vec<(String, Rule)> {
        evaluate(&inv(users), policy, &NoHistory, now)
            .into_iter()
            .map(|f| (f.access_key_id, f.rule))
            .collect()
    }
    fn eval(users: Vec<User>, policy: &Policy) -> Vec<(String, Rule)> {
        eval_at(users, policy, t0())
    }
    fn pair(id: &str, rule: Rule) -> (String, Rule) {
        (id.to_string(), rule)
    }

    #[test]
    fn compliant_user_has_no_findings() {
        assert!(eval(vec![user("a", vec![key("K1", true, 10, Some(1))])], &policy()).is_empty());
        assert!(eval(vec![user("none", vec![])], &policy()).is_empty());
    }

    #[test]
    fn inactive_keys_are_never_findings() {
        let u = user("a", vec![key("OLD", false, 400, None), key("K1", true, 10, Some(1))]);
        assert!(eval(vec![u], &policy()).is_empty());
    }

    #[test]
    fn max_key_age_boundary_is_compliant_one_second_past_is_not() {
        let mut k = key("K1", true, 90, Some(0));
        k.last_used = Some(t0());
        let p = policy();
        assert!(eval(vec![user("a", vec![k.clone()])], &p).is_empty());
        let later = t0() + TimeDelta::seconds(1);
        assert_eq!(
            eval_at(vec![user("a", vec![k])], &p, later),
            vec![pair("K1", Rule::MaxKeyAge)]
        );
    }

    #[test]
    fn unused_key_boundary_and_never_used_counts_from_creation() {
        let p = policy();
        let used = key("K1", true, 60, Some(45));
        assert!(eval(vec![user("a", vec![used.clone()])], &p).is_empty());
        let later = t0() + TimeDelta::seconds(1);
        assert_eq!(
            eval_at(vec![user("a", vec![used])], &p, later),
            vec![pair("K1", Rule::UnusedKey)]
        );

        let never = key("K2", true, 46, None);
        assert_eq!(
            eval(vec![user("b", vec![never])], &p),
            vec![pair("K2", Rule::UnusedKey)]
        );
        let fresh_never = key("K3", true, 45, None);
        assert!(eval(vec![user("c", vec![fresh_never])], &p).is_empty());
    }

    #[test]
    fn one_key_can_break_several_rules() {
        let k = key("K1", true, 100, Some(50));
        assert_eq!(
            eval(vec![user("a", vec![k])], &policy()),
            vec![pair("K1", Rule::MaxKeyAge), pair("K1", Rule::UnusedKey)]
        );
    }

    #[test]
    fn disabled_rules_give_no_findings() {
        let mut p = policy();
        p.rules.max_key_age.enabled = false;
        p.rules.unused_key.enabled = false;
        p.rules.multiple_active_keys.enabled = false;
        let u = user("a", vec![key("K1", true, 100, None), key("K2", true, 100, None)]);
        assert!(eval(vec![u], &p).is_empty());
    }

    #[test]
    fn kept_key_prefers_most_recent_use() {
        let u = user(
            "a",
            vec![key("USED_OLD", true, 10, Some(5)), key("USED_NEW", true, 20, Some(1))],
        );
        assert_eq!(
            eval(vec![u], &policy()),
            vec![pair("USED_OLD", Rule::MultipleActiveKeys)]
        );
    }

    #[test]
    fn kept_key_never_used_ranks_below_used() {
        let u = user("a", vec![key("NEVER", true, 1, None), key("USED", true, 20, Some(10))]);
        assert_eq!(eval(vec![u], &policy()), vec![pair("NEVER", Rule::MultipleActiveKeys)]);
    }

    #[test]
    fn kept_key_prefers_compliant_over_recent_use() {
        // OLD was used today but is past max_key_age; NEW is compliant though used earlier.
        let u = user("a", vec![key("OLD", true, 100, Some(0)), key("NEW", true, 10, Some(3))]);
        assert_eq!(
            eval(vec![u], &policy()),
            vec![pair("OLD", Rule::MultipleActiveKeys), pair("OLD", Rule::MaxKeyAge)]
        );
    }

    #[test]
    fn kept_key_tie_on_use_goes_to_newest_creation() {
        let u = user("a", vec![key("NEWER", true, 5, None), key("OLDER", true, 10, None)]);
        assert_eq!(eval(vec![u], &policy()), vec![pair("OLDER", Rule::MultipleActiveKeys)]);
        let u = user(
            "b",
            vec![key("OLDER", true, 10, Some(2)), key("NEWER", true, 5, Some(2))],
        );
        assert_eq!(eval(vec![u], &policy()), vec![pair("OLDER", Rule::MultipleActiveKeys)]);
    }

    #[test]
    fn one_active_one_inactive_is_not_multiple() {
        let u = user("a", vec![key("K1", true, 10, Some(1)), key("K2", false, 10, Some(1))]);
        assert!(eval(vec![u], &policy()).is_empty());
    }

    fn exempt_flags(users: Vec<User>, p: &Policy, now: Timestamp) -> Vec<(String, Rule, bool)> {
        evaluate(&inv(users), p, &NoHistory, now)
            .into_iter()
            .map(|f| (f.access_key_id, f.rule, f.exempt))
            .collect()
    }

    #[test]
    fn exemption_by_user_glob() {
        let mut p = policy();
        p.exemptions.push(Exemption {
            user: Some(glob::Pattern::new("break-glass-*").unwrap()),
            ..exemption()
        });
        let users = vec![
            user("break-glass-1", vec![key("K1", true, 100, Some(1))]),
            user("alice", vec![key("K2", true, 100, Some(1))]),
        ];
        assert_eq!(
            exempt_flags(users, &p, t0()),
            vec![
                ("K1".into(), Rule::MaxKeyAge, true),
                ("K2".into(), Rule::MaxKeyAge, false)
            ]
        );
    }

    #[test]
    fn exemption_by_key_id_and_per_rule() {
        let mut p = policy();
        p.exemptions.push(Exemption {
            access_key_id: Some("K1".into()),
            rules: Some(vec![Rule::UnusedKey]),
            ..exemption()
        });
        let users = vec![user("a", vec![key("K1", true, 100, None)])];
        assert_eq!(
            exempt_flags(users, &p, t0()),
            vec![
                ("K1".into(), Rule::MaxKeyAge, false),
                ("K1".into(), Rule::UnusedKey, true)
            ]
        );
    }

    #[test]
    fn exemption_by_tag_and_path_prefix() {
        let mut p = policy();
        p.exemptions.push(Exemption {
            user_tag: Some(("keywarden".into(), "exempt".into())),
            ..exemption()
        });
        p.exemptions.push(Exemption {
            path_prefix: Some("/service/".into()),
            ..exemption()
        });
        let mut tagged = user("tagged", vec![key("K1", true, 100, Some(1))]);
        tagged.tags = vec![("keywarden".into(), "exempt".into())];
        let mut wrong_tag = user("wrongtag", vec![key("K2", true, 100, Some(1))]);
        wrong_tag.tags = vec![("keywarden".into(), "no".into())];
        let mut svc = user("svc", vec![key("K3", true, 100, Some(1))]);
        svc.path = "/service/ci/".into();
        let mut other = user("other", vec![key("K4", true, 100, Some(1))]);
        other.path = "/services/".into();
        assert_eq!(
            exempt_flags(vec![tagged, wrong_tag, svc, other], &p, t0()),
            vec![
                ("K1".into(), Rule::MaxKeyAge, true),
                ("K2".into(), Rule::MaxKeyAge, false),
                ("K3".into(), Rule::MaxKeyAge, true),
                ("K4".into(), Rule::MaxKeyAge, false),
            ]
        );
    }

    #[test]
    fn exemption_matchers_are_all_required() {
        let mut p = policy();
        p.exemptions.push(Exemption {
            user: Some(glob::Pattern::new("svc-*").unwrap()),
            path_prefix: Some("/service/".into()),
            ..exemption()
        });
        let mut both = user("svc-a", vec![key("K1", true, 100, Some(1))]);
        both.path = "/service/".into();
        let only_name = user("svc-b", vec![key("K2", true, 100, Some(1))]);
        let flags = exempt_flags(vec![both, only_name], &p, t0());
        assert!(flags[0].2);
        assert!(!flags[1].2);
    }

    #[test]
    fn expired_exemption_no_longer_applies() {
        let mut p = policy();
        p.exemptions.push(Exemption {
            user: Some(glob::Pattern::new("*").unwrap()),
            expires: Some(t0() + days(10)),
            ..exemption()
        });
        let users = || vec![user("a", vec![key("K1", true, 100, Some(1))])];
        assert!(exempt_flags(users(), &p, t0())[0].2);
        assert!(exempt_flags(users(), &p, t0() + days(10) - TimeDelta::seconds(1))[0].2);
        assert!(!exempt_flags(users(), &p, t0() + days(10))[0].2);
    }

    #[test]
    fn exempt_findings_are_reported_not_acted_on() {
        let mut p = policy();
        p.exemptions.push(Exemption {
            user: Some(glob::Pattern::new("a").unwrap()),
            reason: "SEC-1".into(),
            ..exemption()
        });
        let f = evaluate(
            &inv(vec![user("a", vec![key("K1", true, 50, None)])]),
            &p,
            &NoHistory,
            t0(),
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, Rule::UnusedKey);
        assert!(f[0].exempt);
        assert_eq!(f[0].exemption_reason.as_deref(), Some("SEC-1"));
        assert_eq!(f[0].action, Action::Report);
        assert_eq!(f[0].deactivate_after, None);
    }

    struct Known(HashMap<(String, Rule), Timestamp>);
    impl FirstSeen for Known {
        fn first_seen(&self, _: &str, key: &str, rule: Rule) -> Option<Timestamp> {
            self.0.get(&(key.to_string(), rule)).copied()
        }
    }

    #[test]
    fn deadline_is_first_seen_plus_grace() {
        let p = policy();
        let users = vec![user("a", vec![key("K1", true, 100, None)])];
        let seen = t0() - days(3);
        let history = Known(HashMap::from([(("K1".to_string(), Rule::UnusedKey), seen)]));
        let f = evaluate(&inv(users), &p, &history, t0());
        let age = f.iter().find(|f| f.rule == Rule::MaxKeyAge).unwrap();
        assert_eq!(
            (age.action, age.deactivate_after, age.first_seen),
            (Action::Report, None, t0())
        );
        let unused = f.iter().find(|f| f.rule == Rule::UnusedKey).unwrap();
        assert_eq!(unused.action, Action::Deactivate);
        assert_eq!(unused.first_seen, seen);
        assert_eq!(unused.deactivate_after, Some(seen + days(7)));
    }

    #[test]
    fn at_a_later_instant_forecasts_violations() {
        // `--at` 100 days ahead: every active key is then past 90 days.
        let users = || {
            vec![
                user("a", vec![key("K1", true, 1, Some(0))]),
                user("b", vec![key("K2", true, 30, Some(0)), key("K3", false, 30, None)]),
            ]
        };
        let p = policy();
        assert!(eval(users(), &p).is_empty());
        let at = t0() + days(100);
        let f = eval_at(users(), &p, at);
        assert!(f.contains(&pair("K1", Rule::MaxKeyAge)));
        assert!(f.contains(&pair("K2", Rule::MaxKeyAge)));
        assert!(!f.iter().any(|(id, _)| id == "K3"));
    }
}

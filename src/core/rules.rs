//! The rules engine: pure functions from an inventory, a policy and an instant to findings.
//!
//! No I/O and no clock: the caller passes `now` (the real time, or `--at`) and a
//! [`FirstSeen`] lookup (the state file, or nothing). Semantics (the README's rules table):
//! - only active keys (and active, unexpired other credentials) are ever findings;
//! - a key exactly at a threshold is compliant, one second past it is not;
//! - a never-used key counts as unused from its creation;
//! - of several active keys, the one a person would keep is kept (see [`kept_key`]);
//! - exemptions always win: an exempt finding is reported, never acted on;
//! - the key keywarden itself signs with is always its user's kept key, and its findings are
//!   only reported (a tool that deactivates its own key locks itself out);
//! - a used key that `multiple_active_keys` would deactivate waits until the kept key has been
//!   used as recently (the application has switched), unless `wait_for_kept_key` is off;
//! - a key AWS found exposed (`exposed_key`) is never held that way, has its own grace period
//!   (default none), ignores enforcement windows, and is exempted only by a config exemption
//!   that names the rule (never by a user's tags);
//! - a user's other credentials (password, SSH keys, service-specific credentials, signing
//!   certificates) are checked by `core::credentials` and then decided exactly like a key:
//!   the same exemptions, grace period, snooze and windows.

use chrono::TimeDelta;

use crate::core::credentials;
use crate::core::model::{AccessKey, AccountInventory, Credential, CredentialType, Exposure, Timestamp, User};
use crate::core::owners::TagExemption;
pub use crate::core::policy::{Action, Exemption, ExemptionSource, Policy, Rule, RulePolicy, Rules};

/// Where a finding was first seen, if known (the state file).
pub trait FirstSeen: Sync {
    fn first_seen(&self, account_id: &str, access_key_id: &str, rule: Rule) -> Option<Timestamp>;

    /// Until when, and why, an operator snoozed the key after reactivating it.
    fn snoozed(&self, _account_id: &str, _access_key_id: &str, _now: Timestamp) -> Option<(Timestamp, String)> {
        None
    }
}

/// No history: every finding is first seen now.
pub struct NoHistory;

impl FirstSeen for NoHistory {
    fn first_seen(&self, _: &str, _: &str, _: Rule) -> Option<Timestamp> {
        None
    }
}

/// Why a due deactivation is held back although its grace period may have passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// `multiple_active_keys`: the key was used, and the kept key has not been used since, so
    /// an application may still depend on this key.
    WaitingForKeptKeyUse,
    /// `usage.hold_live_keys`: usage evidence shows a call within `usage.live_window`, so a
    /// workload may still depend on the key. Bounded: `until` is the deadline plus one more
    /// grace period, after which the key is due whatever the evidence says, so that a forged
    /// or replayed event can delay an action, never cause one or postpone it for good.
    InLiveUse { until: Timestamp },
}

impl Hold {
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::WaitingForKeptKeyUse => "waiting_for_kept_key_use",
            Hold::InLiveUse { .. } => "in_live_use",
        }
    }

    /// Until when the hold lasts at most, where it is bounded by time.
    pub fn until(self) -> Option<Timestamp> {
        match self {
            Hold::WaitingForKeptKeyUse => None,
            Hold::InLiveUse { until } => Some(until),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub account_id: String,
    pub user: String,
    /// The credential's kind: `access_key` for the four key rules.
    pub credential_type: CredentialType,
    /// The credential's id: an access key's id (named so since keys were the only kind), an
    /// SSH key's `APKA...` id, a service-specific credential's or a certificate's id; for a
    /// password, the user's ARN.
    pub access_key_id: String,
    pub rule: Rule,
    pub created: Timestamp,
    pub last_used: Option<Timestamp>,
    pub exempt: bool,
    pub exemption_reason: Option<String>,
    pub exemption_source: Option<ExemptionSource>,
    /// Why the user's exemption tags were not honoured (malformed, past, too far ahead).
    pub tag_exemption_problem: Option<String>,
    /// A config exemption that would cover this finding but has expired: its reason and when
    /// it expired (the finding is not exempt).
    pub expired_exemption: Option<String>,
    /// The user's owner (`[owners]`): what warnings are routed by.
    pub owner: String,
    pub action: Action,
    pub first_seen: Timestamp,
    pub deactivate_after: Option<Timestamp>,
    /// The key keywarden signs with: reported, never acted on.
    pub own_credentials: bool,
    /// Set while a deactivation waits for something (then `deactivate_after` is null).
    pub held: Option<Hold>,
    /// `multiple_active_keys`: the key kept instead of this one.
    pub kept_access_key_id: Option<String>,
    /// Its grace period is over, but no enforcement window is open: `deactivate_after` is
    /// when the next one opens.
    pub waiting_for_window: bool,
}

fn exceeds(since: Timestamp, now: Timestamp, threshold: TimeDelta) -> bool {
    // signed_duration_since cannot overflow between two valid instants.
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
/// breaks no enabled age or unused rule and is not exposed, then the most recent last use
/// (never used ranks below any use), then the newest creation. The key id breaks remaining
/// ties so the choice is deterministic.
///
/// `own` (keywarden's own key) outranks everything: deactivating it would lock keywarden out.
pub fn kept_key<'a>(
    active: &[&'a AccessKey],
    rules: &Rules,
    now: Timestamp,
    own: Option<&str>,
    exposed: &dyn Fn(&AccessKey) -> bool,
) -> Option<&'a AccessKey> {
    let bad = |k: &AccessKey| !age_rules_broken(k, rules, now).is_empty() || exposed(k);
    active.iter().copied().min_by(|a, b| {
        let a_own = own != Some(a.id.as_str());
        let b_own = own != Some(b.id.as_str());
        a_own
            .cmp(&b_own)
            .then_with(|| bad(a).cmp(&bad(b)))
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
    let ctx = Ctx {
        account_id: &inv.account_id,
        own: inv.own_access_key_id.as_deref(),
        exposure: &inv.exposure,
        last_calls: &inv.last_calls,
        policy,
        history,
        now,
    };
    for user in &inv.users {
        evaluate_user(&ctx, user, &mut findings);
    }
    findings
}

/// What every finding of one account is decided with.
struct Ctx<'a> {
    account_id: &'a str,
    own: Option<&'a str>,
    exposure: &'a Exposure,
    /// The last call of each key that usage evidence shows (only read with `hold_live`).
    last_calls: &'a std::collections::BTreeMap<String, Timestamp>,
    policy: &'a Policy,
    history: &'a dyn FirstSeen,
    now: Timestamp,
}

fn evaluate_user(ctx: &Ctx<'_>, user: &User, out: &mut Vec<Finding>) {
    let rules = &ctx.policy.rules;
    let active: Vec<&AccessKey> = user.keys.iter().filter(|k| k.is_active()).collect();
    let exposed = |k: &AccessKey| rules.exposed_key.enabled && ctx.exposure.of(user, k).is_some();
    let kept = if rules.multiple_active_keys.enabled && active.len() > 1 {
        kept_key(&active, rules, ctx.now, ctx.own, &exposed)
    } else {
        None
    };
    let mut facts = None;
    for key in active {
        let mut broken = Vec::with_capacity(4);
        if exposed(key) {
            broken.push(Rule::ExposedKey);
        }
        if kept.is_some_and(|k| k.id != key.id) {
            broken.push(Rule::MultipleActiveKeys);
        }
        broken.extend(age_rules_broken(key, rules, ctx.now));
        for rule in broken {
            let kept = kept.filter(|_| rule == Rule::MultipleActiveKeys);
            let facts = facts.get_or_insert_with(|| UserFacts::of(ctx, user));
            out.push(finding(ctx, user, facts, &Credential::from(key), rule, kept));
        }
    }
    for cred in &user.credentials {
        for rule in credential_rules_broken(cred, rules, ctx.now) {
            let facts = facts.get_or_insert_with(|| UserFacts::of(ctx, user));
            out.push(finding(ctx, user, facts, cred, rule, None));
        }
    }
}

/// The rules a credential other than an access key breaks at `now`, in rule order.
fn credential_rules_broken(c: &Credential, rules: &Rules, now: Timestamp) -> Vec<Rule> {
    let mut broken = Vec::new();
    let r = &rules.unused_password;
    if r.enabled && credentials::unused_password(c, r.threshold, now).is_some() {
        broken.push(Rule::UnusedPassword);
    }
    let r = &rules.max_credential_age;
    if r.enabled && credentials::too_old(c, &rules.credential_types, r.threshold, now) {
        broken.push(Rule::MaxCredentialAge);
    }
    let r = &rules.long_term_service_credential;
    if r.enabled && credentials::long_term(c, &rules.services, r.threshold, now) {
        broken.push(Rule::LongTermServiceCredential);
    }
    broken
}

/// What is decided once per user with findings: the owner and the tag exemption.
struct UserFacts {
    owner: String,
    tag_exemption: Option<TagExemption>,
}

impl UserFacts {
    fn of(ctx: &Ctx<'_>, user: &User) -> UserFacts {
        UserFacts {
            owner: ctx.policy.owners.owner_of(user).to_string(),
            tag_exemption: ctx.policy.tag_exemptions.read(user, ctx.now),
        }
    }

    /// The exemption that decides `rule` for `key`, if any: the config's always wins.
    fn exemption(&self, ctx: &Ctx<'_>, user: &User, id: &str, rule: Rule) -> Option<(ExemptionSource, String)> {
        if let Some(e) = ctx
            .policy
            .exemptions
            .iter()
            .find(|e| e.applies(user, id, rule, ctx.now))
        {
            return Some((ExemptionSource::Config, e.reason.clone()));
        }
        match &self.tag_exemption {
            // A user's own tag never keeps a leaked key alive.
            Some(TagExemption::Active { until, reason })
                if rule != Rule::ExposedKey && ctx.policy.tag_exemptions.covers(rule) =>
            {
                Some((
                    ExemptionSource::Tag,
                    format!("{reason} (user tag, until {})", until.format("%Y-%m-%dT%H:%M:%SZ")),
                ))
            }
            _ => None,
        }
    }
}

/// The config exemption that would cover `key` for `rule` had it not expired: its reason and
/// when it expired, so that the finding says why it is no longer exempt.
fn expired_exemption(ctx: &Ctx<'_>, user: &User, id: &str, rule: Rule) -> Option<String> {
    ctx.policy.exemptions.iter().find_map(|e| {
        let expired = e.expires.filter(|t| ctx.now >= *t)?;
        let before = expired.checked_sub_signed(chrono::TimeDelta::seconds(1))?;
        e.applies(user, id, rule, before)
            .then(|| format!("{} (expired {})", e.reason, expired.format("%Y-%m-%dT%H:%M:%SZ")))
    })
}

/// `usage.hold_live_keys`: a due deactivation of a key that usage evidence shows called
/// within `usage.live_window` waits, at most one more grace period past its deadline. The
/// evidence can only delay: outside that bound, without evidence or for a leaked key, the
/// decision is the live read's alone.
fn live_hold(ctx: &Ctx<'_>, id: &str, rule: Rule, action: Action, deadline: Timestamp) -> Option<Hold> {
    let window = ctx.policy.hold_live?;
    if !action.acts() || rule == Rule::ExposedKey || deadline > ctx.now {
        return None;
    }
    let last_call = *ctx.last_calls.get(id)?;
    // A call "from the future" (a forged or skewed event) is as live as one now: the bound
    // below is what limits it.
    if ctx.now.signed_duration_since(last_call) > window {
        return None;
    }
    let until = deadline.checked_add_signed(ctx.policy.grace_period(rule))?;
    (ctx.now < until).then_some(Hold::InLiveUse { until })
}

/// A key that was used is only safe to deactivate for `multiple_active_keys` once the kept
/// key has been used at or after that last use: only then has every caller evidently moved
/// to the kept key. A key never used breaks nothing when it goes, so it never waits.
fn waits_for_kept_key(key: &Credential, kept: &AccessKey) -> bool {
    match (key.last_used, kept.last_used) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(used), Some(kept_used)) => kept_used < used,
    }
}

/// One finding, every field of it in one place; long because they depend on each other in
/// this order (exemption, action, hold, deadline, snooze, window).
fn finding(
    ctx: &Ctx<'_>,
    user: &User,
    facts: &UserFacts,
    key: &Credential,
    rule: Rule,
    kept: Option<&AccessKey>,
) -> Finding {
    let (policy, now, account_id) = (ctx.policy, ctx.now, ctx.account_id);
    let exemption = facts.exemption(ctx, user, &key.id, rule);
    let expired_exemption = exemption
        .is_none()
        .then(|| expired_exemption(ctx, user, &key.id, rule))
        .flatten();
    let first_seen = ctx.history.first_seen(account_id, &key.id, rule).unwrap_or(now);
    let own_credentials = ctx.own == Some(key.id.as_str());
    let action = match exemption {
        Some(_) => Action::Report,
        None if own_credentials => Action::Report,
        None => policy.rules.get(rule).action,
    };
    let held = match kept {
        Some(k) if action.acts() && policy.wait_for_kept_key && waits_for_kept_key(key, k) => {
            Some(Hold::WaitingForKeptKeyUse)
        }
        _ => None,
    };
    // Durations are bounded by the config (100 years); saturate anyway rather than panic.
    let mut deadline = first_seen
        .checked_add_signed(policy.grace_period(rule))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    // A reactivated key is not deactivated again before its snooze ends: the deadline moves.
    let snooze = match (&exemption, action) {
        (None, a) if a.acts() => ctx.history.snoozed(account_id, &key.id, now),
        _ => None,
    };
    if let Some((until, _)) = &snooze {
        deadline = deadline.max(*until);
    }
    let held = held.or_else(|| live_hold(ctx, &key.id, rule, action, deadline));
    let exemption = exemption.or_else(|| snooze.map(|(_, reason)| (ExemptionSource::Snooze, reason)));
    // Outside every window nothing is deactivated: the deadline is the next window's opening
    // (from now, for a deadline already past). The cap and the plan need no other check.
    // A leaked key is an incident, not hygiene: it does not wait for a window.
    let mut waiting_for_window = false;
    if !policy.windows.is_always_open() && rule != Rule::ExposedKey {
        let from = deadline.max(now);
        let open = policy
            .windows
            .next_open(from)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        waiting_for_window = deadline <= now && open > now;
        deadline = open;
    }
    Finding {
        account_id: account_id.to_string(),
        user: user.name.clone(),
        credential_type: key.kind,
        access_key_id: key.id.clone(),
        rule,
        created: key.created,
        last_used: key.last_used,
        // A snooze only moves the deadline: the finding stays a violation.
        exempt: exemption
            .as_ref()
            .is_some_and(|(source, _)| *source != ExemptionSource::Snooze),
        exemption_source: exemption.as_ref().map(|(source, _)| *source),
        exemption_reason: exemption.map(|(_, reason)| reason),
        tag_exemption_problem: facts
            .tag_exemption
            .as_ref()
            .and_then(|t| t.problem())
            .map(str::to_string),
        expired_exemption,
        owner: facts.owner.clone(),
        action,
        first_seen,
        deactivate_after: (action.acts() && held.is_none()).then_some(deadline),
        own_credentials,
        held,
        kept_access_key_id: kept.map(|k| k.id.clone()),
        waiting_for_window: waiting_for_window && action.acts() && held.is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::KeyStatus;
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
            credentials: vec![],
        }
    }
    fn policy() -> Policy {
        Policy {
            rules: Rules {
                exposed_key: RulePolicy {
                    enabled: true,
                    action: Action::Deactivate,
                    threshold: TimeDelta::zero(),
                    grace_period: Some(TimeDelta::zero()),
                },
                multiple_active_keys: RulePolicy {
                    enabled: true,
                    action: Action::Deactivate,
                    threshold: TimeDelta::zero(),
                    grace_period: None,
                },
                max_key_age: RulePolicy {
                    enabled: true,
                    action: Action::Report,
                    threshold: days(90),
                    grace_period: None,
                },
                unused_key: RulePolicy {
                    enabled: true,
                    action: Action::Deactivate,
                    threshold: days(45),
                    grace_period: None,
                },
                unused_password: RulePolicy {
                    enabled: true,
                    action: Action::Report,
                    threshold: days(45),
                    grace_period: None,
                },
                max_credential_age: RulePolicy {
                    enabled: true,
                    action: Action::Deactivate,
                    threshold: days(90),
                    grace_period: None,
                },
                credential_types: vec![
                    CredentialType::SshPublicKey,
                    CredentialType::ServiceSpecificCredential,
                    CredentialType::SigningCertificate,
                ],
                long_term_service_credential: RulePolicy {
                    enabled: true,
                    action: Action::Report,
                    threshold: days(90),
                    grace_period: None,
                },
                services: vec![],
            },
            exemptions: vec![],
            owners: Default::default(),
            tag_exemptions: Default::default(),
            windows: Default::default(),
            grace_period: days(7),
            wait_for_kept_key: true,
            revoke_sessions: true,
            hold_live: None,
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
            own_access_key_id: None,
            exposure: Default::default(),
            last_calls: Default::default(),
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

    fn with_exemption(e: Exemption) -> Policy {
        let mut p = policy();
        p.exemptions.push(e);
        p
    }

    fn owned(flags: &[(&str, Rule, bool)]) -> Vec<(String, Rule, bool)> {
        flags.iter().map(|(k, r, e)| (k.to_string(), *r, *e)).collect()
    }

    fn exempt_flags(users: Vec<User>, p: &Policy, now: Timestamp) -> Vec<(String, Rule, bool)> {
        evaluate(&inv(users), p, &NoHistory, now)
            .into_iter()
            .map(|f| (f.access_key_id, f.rule, f.exempt))
            .collect()
    }

    #[test]
    fn exemption_by_user_glob() {
        let p = with_exemption(Exemption {
            user: Some(glob::Pattern::new("break-glass-*").unwrap()),
            ..exemption()
        });
        let users = vec![
            user("break-glass-1", vec![key("K1", true, 100, Some(1))]),
            user("alice", vec![key("K2", true, 100, Some(1))]),
        ];
        let expected = [("K1", Rule::MaxKeyAge, true), ("K2", Rule::MaxKeyAge, false)];
        assert_eq!(exempt_flags(users, &p, t0()), owned(&expected));
    }

    #[test]
    fn exemption_by_key_id_and_per_rule() {
        let p = with_exemption(Exemption {
            access_key_id: Some("K1".into()),
            rules: Some(vec![Rule::UnusedKey]),
            ..exemption()
        });
        let users = vec![user("a", vec![key("K1", true, 100, None)])];
        let expected = [("K1", Rule::MaxKeyAge, false), ("K1", Rule::UnusedKey, true)];
        assert_eq!(exempt_flags(users, &p, t0()), owned(&expected));
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
        let after = evaluate(&inv(users()), &p, &NoHistory, t0() + days(10));
        assert!(after
            .iter()
            .all(|f| !f.exempt && f.expired_exemption.as_deref().is_some_and(|e| e.contains("(expired "))));
        let before = evaluate(&inv(users()), &p, &NoHistory, t0());
        assert!(before.iter().all(|f| f.expired_exemption.is_none()), "not expired yet");
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

    /// K1 unused for 50 days, its `unused_key` finding first seen 10 days before t0 (due
    /// since t0 - 3d with the 7-day grace period), its last call `called` before t0 in the
    /// usage evidence, evaluated at `at` with holds on (a 24h live window).
    fn live(called: Option<TimeDelta>, at: Timestamp, exposed: bool) -> Finding {
        let mut p = policy();
        p.hold_live = Some(TimeDelta::hours(24));
        let mut account = inv(vec![user("a", vec![key("K1", true, 50, Some(50))])]);
        if let Some(ago) = called {
            account.last_calls.insert("K1".into(), t0() - ago);
        }
        if exposed {
            account
                .exposure
                .quarantined
                .insert("a".into(), "AWSCompromisedKeyQuarantineV3".into());
        }
        let seen = t0() - days(10);
        let history = Known(HashMap::from([
            (("K1".to_string(), Rule::UnusedKey), seen),
            (("K1".to_string(), Rule::ExposedKey), seen),
        ]));
        let rule = if exposed { Rule::ExposedKey } else { Rule::UnusedKey };
        evaluate(&account, &p, &history, at)
            .into_iter()
            .find(|f| f.rule == rule)
            .unwrap()
    }

    #[test]
    fn a_due_key_in_live_use_is_held_for_at_most_one_more_grace_period() {
        let until = t0() - days(3) + days(7);
        let f = live(Some(TimeDelta::hours(1)), t0(), false);
        assert_eq!((f.held, f.deactivate_after), (Some(Hold::InLiveUse { until }), None));
        assert!(!crate::core::plan::is_due(&f, t0()));
        // The hold's end: due whatever the evidence says, even a call a second ago.
        let end = live(Some(-(until - t0()) + TimeDelta::seconds(1)), until, false);
        assert_eq!(end.held, None);
        assert!(crate::core::plan::is_due(&end, until));
        let just_before = live(
            Some(t0() - until + TimeDelta::hours(1)),
            until - TimeDelta::seconds(1),
            false,
        );
        assert!(just_before.held.is_some());
    }

    #[test]
    fn a_forged_call_from_the_future_holds_no_longer() {
        // An event claiming a call a year ahead is "live", and still bounded.
        let f = live(Some(-days(365)), t0(), false);
        assert_eq!(f.held, Some(Hold::InLiveUse { until: t0() + days(4) }));
        let later = live(Some(-days(365)), t0() + days(4), false);
        assert!(crate::core::plan::is_due(&later, t0() + days(4)));
    }

    #[test]
    fn without_live_evidence_or_holds_the_live_read_decides() {
        let stale = live(Some(TimeDelta::hours(25)), t0(), false);
        assert_eq!(stale.held, None);
        assert!(crate::core::plan::is_due(&stale, t0()));
        assert!(crate::core::plan::is_due(&live(None, t0(), false), t0()));
        // A leaked key is never held for live use: its use is the incident.
        let exposed = live(Some(TimeDelta::hours(1)), t0(), true);
        assert_eq!(exposed.held, None);
        // Holds off: the evidence is not read at all.
        let mut account = inv(vec![user("a", vec![key("K1", true, 50, Some(50))])]);
        account.last_calls.insert("K1".into(), t0());
        let history = Known(HashMap::from([(("K1".to_string(), Rule::UnusedKey), t0() - days(10))]));
        let f = evaluate(&account, &policy(), &history, t0());
        assert!(f.iter().all(|f| f.held.is_none() && crate::core::plan::is_due(f, t0())));
    }

    #[test]
    fn a_key_not_yet_due_is_not_held() {
        let mut p = policy();
        p.hold_live = Some(TimeDelta::hours(24));
        let mut account = inv(vec![user("a", vec![key("K1", true, 50, Some(50))])]);
        account.last_calls.insert("K1".into(), t0());
        let f = evaluate(&account, &p, &NoHistory, t0());
        assert!(f
            .iter()
            .all(|f| f.held.is_none() && f.deactivate_after == Some(t0() + days(7))));
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
    fn its_own_key_is_kept_and_only_reported() {
        let mut i = inv(vec![user(
            "svc",
            vec![key("OWN", true, 100, Some(0)), key("NEW", true, 1, Some(0))],
        )]);
        let mut p = policy();
        p.rules.max_key_age.action = Action::Deactivate;
        let without = evaluate(&i, &p, &NoHistory, t0());
        assert!(without
            .iter()
            .any(|f| f.access_key_id == "OWN" && f.rule == Rule::MultipleActiveKeys));
        i.own_access_key_id = Some("OWN".into());
        let f = evaluate(&i, &p, &NoHistory, t0());
        let own: Vec<&Finding> = f.iter().filter(|f| f.access_key_id == "OWN").collect();
        assert_eq!(own.len(), 1, "{f:?}");
        assert_eq!(own[0].rule, Rule::MaxKeyAge);
        assert!(own[0].own_credentials);
        assert_eq!((own[0].action, own[0].deactivate_after), (Action::Report, None));
        let new = f
            .iter()
            .find(|f| f.access_key_id == "NEW")
            .expect("NEW is the other key now");
        assert_eq!(new.rule, Rule::MultipleActiveKeys);
        assert_eq!(new.kept_access_key_id.as_deref(), Some("OWN"));
    }

    #[test]
    fn a_used_key_waits_until_the_kept_key_is_used() {
        // OLD (120 d, used 2 d ago) and NEW (5 d, never used): NEW is kept (compliant).
        let users = |new_used: Option<i64>| {
            vec![user(
                "app",
                vec![key("OLD", true, 120, Some(2)), key("NEW", true, 5, new_used)],
            )]
        };
        let multiple = |users, p: &Policy| {
            evaluate(&inv(users), p, &NoHistory, t0())
                .into_iter()
                .find(|f| f.rule == Rule::MultipleActiveKeys)
                .expect("a multiple_active_keys finding")
        };
        let p = policy();
        let f = multiple(users(None), &p);
        assert_eq!(f.access_key_id, "OLD");
        assert_eq!(f.held, Some(Hold::WaitingForKeptKeyUse));
        assert_eq!((f.action, f.deactivate_after), (Action::Deactivate, None));
        assert_eq!(f.kept_access_key_id.as_deref(), Some("NEW"));
        // Used before OLD's last use: still not proven.
        assert!(multiple(users(Some(3)), &p).held.is_some());
        // Used at or after: the application has switched.
        let f = multiple(users(Some(2)), &p);
        assert_eq!((f.held, f.deactivate_after), (None, Some(t0() + days(7))));
        // Off: the blunt behaviour.
        let mut blunt = policy();
        blunt.wait_for_kept_key = false;
        assert_eq!(multiple(users(None), &blunt).held, None);
        // A key never used never waits: nothing can break.
        let idle = vec![user(
            "b",
            vec![key("IDLE", true, 10, None), key("USED", true, 20, Some(1))],
        )];
        let f = multiple(idle, &p);
        assert_eq!((f.access_key_id.as_str(), f.held), ("IDLE", None));
    }

    #[test]
    fn a_hold_is_named_in_the_report_vocabulary() {
        assert_eq!(Hold::WaitingForKeptKeyUse.as_str(), "waiting_for_kept_key_use");
    }

    #[test]
    fn the_longest_grace_period_does_not_overflow() {
        let mut p = policy();
        p.grace_period = TimeDelta::MAX;
        let f = evaluate(
            &inv(vec![user("a", vec![key("K1", true, 100, None)])]),
            &p,
            &NoHistory,
            t0(),
        );
        let unused = f.iter().find(|f| f.rule == Rule::UnusedKey).expect("unused_key");
        assert!(unused.deactivate_after.is_some_and(|d| d > t0()));
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

    fn tagged(name: &str, tags: &[(&str, &str)], keys: Vec<AccessKey>) -> User {
        User {
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..user(name, keys)
        }
    }

    fn with_tag_exemptions(rules: Option<Vec<Rule>>) -> Policy {
        let mut p = policy();
        p.tag_exemptions = crate::core::owners::TagExemptions {
            enabled: true,
            max_duration: days(90),
            rules,
        };
        p.owners.tags = vec!["team".into()];
        p
    }

    const UNTIL: &str = crate::core::owners::EXEMPT_UNTIL_TAG;
    const REASON: &str = crate::core::owners::EXEMPT_REASON_TAG;

    #[test]
    fn a_valid_tag_exemption_exempts_the_rules_it_covers_and_names_its_source() {
        // Unused for 60 days and 100 days old: unused_key and max_key_age.
        let u = tagged(
            "u",
            &[(UNTIL, "2027-01-15"), (REASON, "SEC-7 batch job"), ("team", "data")],
            vec![key("AK1", true, 100, Some(60))],
        );
        let p = with_tag_exemptions(Some(vec![Rule::UnusedKey]));
        let fs = evaluate(&inv(vec![u]), &p, &NoHistory, t0());
        let unused = fs.iter().find(|f| f.rule == Rule::UnusedKey).unwrap();
        assert!(unused.exempt);
        assert_eq!(unused.exemption_source, Some(ExemptionSource::Tag));
        assert_eq!(unused.action, Action::Report);
        assert!(unused
            .exemption_reason
            .as_deref()
            .unwrap()
            .starts_with("SEC-7 batch job"));
        let age = fs.iter().find(|f| f.rule == Rule::MaxKeyAge).unwrap();
        assert!(!age.exempt, "the tag exemption does not cover max_key_age");
        assert!(fs
            .iter()
            .all(|f| f.owner == "data" && f.tag_exemption_problem.is_none()));
    }

    #[test]
    fn an_invalid_tag_exemption_exempts_nothing_and_says_why() {
        let u = tagged(
            "u",
            &[(UNTIL, "2099-01-01"), (REASON, "forever")],
            vec![key("AK1", true, 10, Some(60))],
        );
        let fs = evaluate(&inv(vec![u]), &with_tag_exemptions(None), &NoHistory, t0());
        assert_eq!(fs.len(), 1);
        assert!(!fs[0].exempt);
        assert_eq!(fs[0].exemption_source, None);
        assert_eq!(fs[0].action, Action::Deactivate);
        assert!(fs[0]
            .tag_exemption_problem
            .as_deref()
            .unwrap()
            .contains("more than 90 days"));
        assert_eq!(fs[0].owner, "unowned");
    }

    #[test]
    fn a_config_exemption_wins_over_a_tag_exemption() {
        let u = tagged(
            "u",
            &[(UNTIL, "2027-01-15"), (REASON, "tag reason")],
            vec![key("AK1", true, 10, Some(60))],
        );
        let mut p = with_tag_exemptions(None);
        p.exemptions = vec![Exemption {
            user: Some(glob::Pattern::new("u").unwrap()),
            ..exemption()
        }];
        let fs = evaluate(&inv(vec![u]), &p, &NoHistory, t0());
        assert_eq!(fs[0].exemption_source, Some(ExemptionSource::Config));
        assert_eq!(fs[0].exemption_reason.as_deref(), Some("because"));
    }

    #[test]
    fn tag_exemptions_are_ignored_while_the_feature_is_off() {
        let u = tagged(
            "u",
            &[(UNTIL, "2027-01-15"), (REASON, "r")],
            vec![key("AK1", true, 10, Some(60))],
        );
        let fs = evaluate(&inv(vec![u]), &policy(), &NoHistory, t0());
        assert!(!fs[0].exempt);
        assert_eq!(fs[0].tag_exemption_problem, None);
    }

    struct Snoozed(Timestamp);

    impl FirstSeen for Snoozed {
        fn first_seen(&self, _: &str, _: &str, _: Rule) -> Option<Timestamp> {
            Some(t0() - days(30))
        }
        fn snoozed(&self, _: &str, key: &str, now: Timestamp) -> Option<(Timestamp, String)> {
            (key == "AK1" && self.0 > now).then(|| (self.0, "INC-1".to_string()))
        }
    }

    #[test]
    fn a_snooze_moves_the_deadline_but_the_finding_stays_a_violation() {
        let u = user("u", vec![key("AK1", true, 10, Some(60))]);
        let until = t0() + days(3);
        let fs = evaluate(&inv(vec![u.clone()]), &policy(), &Snoozed(until), t0());
        assert_eq!(fs.len(), 1);
        assert!(!fs[0].exempt);
        assert_eq!(fs[0].action, Action::Deactivate);
        assert_eq!(fs[0].exemption_source, Some(ExemptionSource::Snooze));
        assert_eq!(fs[0].exemption_reason.as_deref(), Some("INC-1"));
        assert_eq!(
            fs[0].deactivate_after,
            Some(until),
            "not the grace deadline (in the past)"
        );
        // Once the snooze ends, the deadline is the grace period's again.
        let later = until + days(1);
        let fs = evaluate(&inv(vec![u.clone()]), &policy(), &Snoozed(until), later);
        assert_eq!(fs[0].exemption_source, None);
        assert_eq!(fs[0].deactivate_after, Some(t0() - days(30) + policy().grace_period));
        // An exemption still wins over a snooze.
        let mut p = policy();
        p.exemptions = vec![exemption()];
        let fs = evaluate(&inv(vec![u]), &p, &Snoozed(until), t0());
        assert_eq!(fs[0].exemption_source, Some(ExemptionSource::Config));
        assert!(fs[0].exempt);
    }

    #[test]
    fn outside_every_window_the_deadline_is_the_next_opening() {
        // t0 is Tuesday 2026-12-01 00:00 UTC; the window opens at 09:00.
        let mut p = policy();
        p.windows = crate::core::windows::Windows {
            list: vec![crate::core::windows::Window::parse("Mon-Fri 09:00-16:00").unwrap()],
            tz: chrono_tz::Tz::UTC,
        };
        let u = user("u", vec![key("AK1", true, 10, Some(60))]);
        let history = Snoozed(t0()); // first seen 30 days ago: the grace period is over
        let fs = evaluate(&inv(vec![u.clone()]), &p, &history, t0());
        assert!(fs[0].waiting_for_window);
        assert_eq!(fs[0].deactivate_after, Some(t0() + TimeDelta::hours(9)));
        // Inside the window it is due now.
        let ten = t0() + TimeDelta::hours(10);
        let fs = evaluate(&inv(vec![u]), &p, &history, ten);
        assert!(!fs[0].waiting_for_window);
        assert_eq!(fs[0].deactivate_after, Some(ten));
    }

    fn quarantined(users: Vec<User>, who: &str) -> AccountInventory {
        let mut i = inv(users);
        i.exposure
            .quarantined
            .insert(who.into(), "AWSCompromisedKeyQuarantineV3".into());
        i
    }

    #[test]
    fn an_exposed_key_is_due_at_once_and_never_waits_for_the_kept_key() {
        // LEAK used yesterday, NEW never used: multiple_active_keys alone would hold LEAK.
        let u = user("alice", vec![key("LEAK", true, 20, Some(1)), key("NEW", true, 1, None)]);
        let mut i = quarantined(vec![u], "alice");
        i.exposure.reported_keys.insert("LEAK".into());
        let fs = evaluate(&i, &policy(), &NoHistory, t0());
        let exposed: Vec<&Finding> = fs.iter().filter(|f| f.rule == Rule::ExposedKey).collect();
        assert_eq!(exposed.len(), 1, "Health named LEAK alone: {fs:?}");
        assert_eq!(exposed[0].access_key_id, "LEAK");
        assert_eq!(exposed[0].held, None);
        assert_eq!(exposed[0].deactivate_after, Some(t0()), "no grace period");
        // An exposed key is never the kept one.
        let multiple = fs.iter().find(|f| f.rule == Rule::MultipleActiveKeys).unwrap();
        assert_eq!(
            (multiple.access_key_id.as_str(), multiple.kept_access_key_id.as_deref()),
            ("LEAK", Some("NEW"))
        );
        assert!(crate::core::plan::is_due(exposed[0], t0()));
    }

    #[test]
    fn every_active_key_of_a_quarantined_user_is_exposed() {
        let u = user(
            "bob",
            vec![
                key("A", true, 20, Some(1)),
                key("B", true, 1, None),
                key("C", false, 5, None),
            ],
        );
        let fs = evaluate(
            &quarantined(vec![u, user("carol", vec![key("D", true, 1, None)])], "bob"),
            &policy(),
            &NoHistory,
            t0(),
        );
        let mut ids: Vec<&str> = fs
            .iter()
            .filter(|f| f.rule == Rule::ExposedKey)
            .map(|f| f.access_key_id.as_str())
            .collect();
        ids.sort();
        assert_eq!(ids, ["A", "B"]);
        let mut off = policy();
        off.rules.exposed_key.enabled = false;
        let fs = evaluate(
            &quarantined(vec![user("bob", vec![key("A", true, 2, Some(1))])], "bob"),
            &off,
            &NoHistory,
            t0(),
        );
        assert!(fs.is_empty(), "{fs:?}");
    }

    #[test]
    fn only_an_exemption_naming_exposed_key_exempts_a_leaked_key() {
        let u = || {
            tagged(
                "bob",
                &[(UNTIL, "2027-01-15"), (REASON, "SEC-7")],
                vec![key("A", true, 2, Some(1))],
            )
        };
        let all_rules = with_exemption(Exemption {
            user: Some(glob::Pattern::new("bob").unwrap()),
            ..exemption()
        });
        let f = evaluate(&quarantined(vec![u()], "bob"), &all_rules, &NoHistory, t0());
        assert!(!f[0].exempt, "an exemption of every rule does not cover a leak");
        let named = with_exemption(Exemption {
            user: Some(glob::Pattern::new("bob").unwrap()),
            rules: Some(vec![Rule::ExposedKey]),
            ..exemption()
        });
        let f = evaluate(&quarantined(vec![u()], "bob"), &named, &NoHistory, t0());
        assert!(f[0].exempt && f[0].action == Action::Report);
        let tags = with_tag_exemptions(None);
        let f = evaluate(&quarantined(vec![u()], "bob"), &tags, &NoHistory, t0());
        assert!(!f[0].exempt, "tags never exempt a leaked key: {:?}", f[0]);
    }

    #[test]
    fn a_leaked_key_does_not_wait_for_a_window_and_its_own_key_is_only_reported() {
        let mut p = policy();
        p.windows = crate::core::windows::Windows {
            list: vec![crate::core::windows::Window::parse("Sat 09:00-10:00").unwrap()],
            ..Default::default()
        };
        let mut i = quarantined(vec![user("bob", vec![key("A", true, 2, Some(1))])], "bob");
        let f = evaluate(&i, &p, &NoHistory, t0());
        assert_eq!((f[0].deactivate_after, f[0].waiting_for_window), (Some(t0()), false));
        i.own_access_key_id = Some("A".into());
        let f = evaluate(&i, &p, &NoHistory, t0());
        assert!(f[0].own_credentials && f[0].action == Action::Report && f[0].rule == Rule::ExposedKey);
    }

    fn cred(kind: CredentialType, id: &str, created_days_ago: i64, used_days_ago: Option<i64>) -> Credential {
        Credential {
            kind,
            id: id.to_string(),
            status: crate::core::model::CredentialStatus::Active,
            created: t0() - days(created_days_ago),
            last_used: used_days_ago.map(|d| t0() - days(d)),
            service: None,
            expires: None,
        }
    }

    fn holder(credentials: Vec<Credential>) -> User {
        User {
            credentials,
            ..user("dana", vec![key("K1", true, 10, Some(1))])
        }
    }

    const ARN: &str = "arn:aws:iam::123456789012:user/dana";

    #[test]
    fn other_credentials_are_findings_of_their_own_rules_named_by_kind_and_id() {
        use CredentialType::*;
        let bedrock = Credential {
            service: Some("bedrock.amazonaws.com".into()),
            ..cred(ServiceSpecificCredential, "ACCA1", 1, None)
        };
        let u = holder(vec![
            cred(Password, ARN, 400, Some(46)),
            cred(SshPublicKey, "APKA1", 91, None),
            bedrock,
            cred(SigningCertificate, "CERT1", 90, None),
        ]);
        let f = evaluate(&inv(vec![u]), &policy(), &NoHistory, t0());
        let got: Vec<_> = f
            .iter()
            .map(|f| (f.credential_type, f.access_key_id.as_str(), f.rule, f.action))
            .collect();
        assert_eq!(
            got,
            [
                (Password, ARN, Rule::UnusedPassword, Action::Report),
                (SshPublicKey, "APKA1", Rule::MaxCredentialAge, Action::Deactivate),
                (
                    ServiceSpecificCredential,
                    "ACCA1",
                    Rule::LongTermServiceCredential,
                    Action::Report
                ),
            ],
            "a certificate exactly at max_age is compliant; the key K1 breaks nothing"
        );
        assert_eq!(
            f[1].deactivate_after,
            Some(t0() + days(7)),
            "the grace period, as for keys"
        );
        assert_eq!(f[0].last_used, Some(t0() - days(46)));
    }

    #[test]
    fn inactive_or_expired_credentials_and_disabled_rules_are_never_findings() {
        use crate::core::model::CredentialStatus;
        use CredentialType::*;
        let inactive = Credential {
            status: CredentialStatus::Inactive,
            ..cred(SshPublicKey, "APKA1", 400, None)
        };
        let expired = Credential {
            expires: Some(t0() - days(1)),
            ..cred(ServiceSpecificCredential, "ACCA1", 400, None)
        };
        let listed_expired = Credential {
            status: CredentialStatus::Expired,
            ..cred(ServiceSpecificCredential, "ACCA2", 400, None)
        };
        assert!(eval(vec![holder(vec![inactive, expired, listed_expired])], &policy()).is_empty());
        let old = || {
            holder(vec![
                cred(Password, ARN, 400, None),
                cred(SshPublicKey, "APKA1", 400, None),
            ])
        };
        assert_eq!(eval(vec![old()], &policy()).len(), 2);
        let mut p = policy();
        p.rules.unused_password.enabled = false;
        p.rules.max_credential_age.enabled = false;
        p.rules.long_term_service_credential.enabled = false;
        assert!(eval(vec![old()], &p).is_empty());
        assert!(p.rules.credential_kinds().is_empty(), "nothing more is read");
        p.rules.max_credential_age.enabled = true;
        p.rules.credential_types = vec![SigningCertificate];
        assert!(eval(vec![old()], &p).is_empty(), "SSH keys are not among the types");
        assert_eq!(p.rules.credential_kinds(), [SigningCertificate]);
    }

    #[test]
    fn exemptions_and_snoozes_decide_other_credentials_as_they_decide_keys() {
        use CredentialType::*;
        let u = || {
            holder(vec![
                cred(SshPublicKey, "APKA1", 100, None),
                cred(SshPublicKey, "APKA2", 100, None),
            ])
        };
        let p = with_exemption(Exemption {
            access_key_id: Some("APKA2".into()),
            rules: Some(vec![Rule::MaxCredentialAge]),
            ..exemption()
        });
        let f = evaluate(&inv(vec![u()]), &p, &NoHistory, t0());
        let exempt: Vec<_> = f.iter().map(|f| (f.access_key_id.as_str(), f.exempt)).collect();
        assert_eq!(exempt, [("APKA1", false), ("APKA2", true)]);
        assert_eq!((f[1].action, f[1].deactivate_after), (Action::Report, None));
        struct Snoozed;
        impl FirstSeen for Snoozed {
            fn first_seen(&self, _: &str, _: &str, _: Rule) -> Option<Timestamp> {
                Some(t0() - days(30))
            }
            fn snoozed(&self, _: &str, id: &str, _: Timestamp) -> Option<(Timestamp, String)> {
                (id == "APKA1").then(|| (t0() + days(3), "reactivated".to_string()))
            }
        }
        let f = evaluate(&inv(vec![u()]), &policy(), &Snoozed, t0());
        assert_eq!(
            f[0].deactivate_after,
            Some(t0() + days(3)),
            "the snooze moves the deadline"
        );
        assert_eq!(
            f[1].deactivate_after,
            Some(t0() - days(23)),
            "first seen 30 days ago + 7"
        );
    }
}

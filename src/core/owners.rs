//! Who a user's keys belong to, and the exemptions a team grants itself with user tags.
//!
//! The owner is what warnings are routed by (an `owner` label on the alerts), so it is one
//! string per user, decided in this order: the first of `owners.tags` the user carries, else
//! the first `[[owners.map]]` entry that matches, else `owners.default`. Tags are only known
//! when they were read (see `Policy::needs_tags`); a user whose tags were not read falls through
//! to the map and the default.
//!
//! A self-service exemption is the pair of user tags `keywarden:exempt-until` and
//! `keywarden:exempt-reason`. It is honoured only while it is well-formed, in the future and
//! no further ahead than `max_duration`: anyone allowed to tag a user can grant it, so the bound
//! is what keeps it from becoming a permanent opt-out.

use chrono::{NaiveDate, TimeDelta};

use crate::core::model::Rule;
use crate::core::model::{Timestamp, User};

pub const EXEMPT_UNTIL_TAG: &str = "keywarden:exempt-until";
pub const EXEMPT_REASON_TAG: &str = "keywarden:exempt-reason";

/// One `[[owners.map]]` entry: every matcher that is set must match (at least one is set).
#[derive(Debug, Clone)]
pub struct OwnerRule {
    pub user: Option<glob::Pattern>,
    pub path_prefix: Option<String>,
    pub owner: String,
}

impl OwnerRule {
    fn matches(&self, user: &User) -> bool {
        self.user.as_ref().is_none_or(|p| p.matches(&user.name))
            && self
                .path_prefix
                .as_ref()
                .is_none_or(|prefix| user.path.starts_with(prefix.as_str()))
    }
}

#[derive(Debug, Clone)]
pub struct Owners {
    /// IAM user tag keys, in order of precedence.
    pub tags: Vec<String>,
    pub map: Vec<OwnerRule>,
    pub default: String,
}

impl Default for Owners {
    fn default() -> Owners {
        Owners {
            tags: Vec::new(),
            map: Vec::new(),
            default: "unowned".into(),
        }
    }
}

impl Owners {
    /// Borrowed, not built: the metrics page asks this for every user at every audit.
    pub fn owner_of<'a>(&'a self, user: &'a User) -> &'a str {
        let tagged = self
            .tags
            .iter()
            .find_map(|k| user.tags.iter().find(|(tk, tv)| tk == k && !tv.trim().is_empty()));
        if let Some((_, v)) = tagged {
            return v.trim();
        }
        match self.map.iter().find(|r| r.matches(user)) {
            Some(r) => &r.owner,
            None => &self.default,
        }
    }
}

/// `[exemptions_from_tags]`.
#[derive(Debug, Clone)]
pub struct TagExemptions {
    pub enabled: bool,
    pub max_duration: TimeDelta,
    /// `None`: every rule.
    pub rules: Option<Vec<Rule>>,
}

impl Default for TagExemptions {
    fn default() -> TagExemptions {
        TagExemptions {
            enabled: false,
            max_duration: TimeDelta::days(90),
            rules: None,
        }
    }
}

/// What a user's exemption tags amount to at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagExemption {
    Active {
        until: Timestamp,
        reason: String,
    },
    /// Malformed, missing its reason or its date, or already past: not an exemption.
    Invalid {
        problem: String,
    },
    /// Further ahead than `max_duration`: not an exemption.
    TooLong {
        problem: String,
    },
}

impl TagExemption {
    /// Every value of [`TagExemption::state`].
    pub const STATES: [&'static str; 3] = ["active", "invalid", "too_long"];

    /// The `state` label of `keywarden_tag_exemptions`.
    pub fn state(&self) -> &'static str {
        match self {
            TagExemption::Active { .. } => "active",
            TagExemption::Invalid { .. } => "invalid",
            TagExemption::TooLong { .. } => "too_long",
        }
    }

    /// Why it is not honoured (`None` when it is).
    pub fn problem(&self) -> Option<&str> {
        match self {
            TagExemption::Active { .. } => None,
            TagExemption::Invalid { problem } | TagExemption::TooLong { problem } => Some(problem),
        }
    }
}

impl TagExemptions {
    /// The user's exemption tags read at `now`; `None` when the feature is off or the user
    /// carries neither tag.
    pub fn read(&self, user: &User, now: Timestamp) -> Option<TagExemption> {
        if !self.enabled {
            return None;
        }
        let tag = |k: &str| user.tags.iter().find(|(tk, _)| tk == k).map(|(_, v)| v.trim());
        let (until, reason) = (tag(EXEMPT_UNTIL_TAG), tag(EXEMPT_REASON_TAG));
        if until.is_none() && reason.is_none() {
            return None;
        }
        let invalid = |problem: String| Some(TagExemption::Invalid { problem });
        let Some(until_text) = until else {
            return invalid(format!("{EXEMPT_REASON_TAG} without {EXEMPT_UNTIL_TAG}"));
        };
        let reason = match reason {
            Some(r) if !r.is_empty() => r.to_string(),
            _ => return invalid(format!("{EXEMPT_UNTIL_TAG} without a non-empty {EXEMPT_REASON_TAG}")),
        };
        let Some(until) = parse_until(until_text) else {
            return invalid(format!(
                "{EXEMPT_UNTIL_TAG} {until_text:?} is not a date (YYYY-MM-DD) or an RFC 3339 date-time"
            ));
        };
        if until <= now {
            return invalid(format!("{EXEMPT_UNTIL_TAG} {until_text:?} has passed"));
        }
        if until - now > self.max_duration {
            return Some(TagExemption::TooLong {
                problem: format!(
                    "{EXEMPT_UNTIL_TAG} {until_text:?} is more than {} days ahead (exemptions_from_tags.max_duration)",
                    self.max_duration.num_days()
                ),
            });
        }
        Some(TagExemption::Active { until, reason })
    }

    pub fn covers(&self, rule: Rule) -> bool {
        self.rules.as_ref().is_none_or(|rs| rs.contains(&rule))
    }
}

/// `YYYY-MM-DD` means through that day (UTC): exempt until the next midnight. An RFC 3339
/// date-time means that instant.
pub fn parse_until(s: &str) -> Option<Timestamp> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.succ_opt()?.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
    }
    fn user(name: &str, path: &str, tags: &[(&str, &str)]) -> User {
        User {
            credentials: vec![],
            name: name.into(),
            path: path.into(),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            keys: vec![],
        }
    }
    fn owners() -> Owners {
        Owners {
            tags: vec!["owner".into(), "team".into()],
            map: vec![
                OwnerRule {
                    user: Some(glob::Pattern::new("ci-*").unwrap()),
                    path_prefix: None,
                    owner: "platform".into(),
                },
                OwnerRule {
                    user: None,
                    path_prefix: Some("/service/".into()),
                    owner: "services".into(),
                },
                OwnerRule {
                    user: Some(glob::Pattern::new("ci-*").unwrap()),
                    path_prefix: Some("/legacy/".into()),
                    owner: "never-reached".into(),
                },
            ],
            default: "unowned".into(),
        }
    }

    #[test]
    fn the_first_listed_tag_the_user_has_names_the_owner() {
        let o = owners();
        assert_eq!(
            o.owner_of(&user("a", "/", &[("team", "t1"), ("owner", "alice")])),
            "alice"
        );
        assert_eq!(o.owner_of(&user("a", "/", &[("team", "t1")])), "t1");
        // An empty tag value names nobody: the next source decides.
        assert_eq!(o.owner_of(&user("a", "/", &[("owner", " "), ("team", "t1")])), "t1");
        // Tags win over the map.
        assert_eq!(o.owner_of(&user("ci-1", "/", &[("team", "t1")])), "t1");
    }

    #[test]
    fn then_the_first_matching_map_entry_then_the_default() {
        let o = owners();
        assert_eq!(o.owner_of(&user("ci-1", "/service/", &[])), "platform");
        assert_eq!(o.owner_of(&user("bob", "/service/x/", &[])), "services");
        assert_eq!(o.owner_of(&user("bob", "/", &[("other", "x")])), "unowned");
        // Both matchers of an entry must match.
        let only_both = Owners {
            map: vec![o.map[2].clone()],
            ..Owners::default()
        };
        assert_eq!(only_both.owner_of(&user("ci-1", "/", &[])), "unowned");
        assert_eq!(only_both.owner_of(&user("ci-1", "/legacy/", &[])), "never-reached");
    }

    fn tag_policy() -> TagExemptions {
        TagExemptions {
            enabled: true,
            ..TagExemptions::default()
        }
    }
    fn read(tags: &[(&str, &str)]) -> Option<TagExemption> {
        tag_policy().read(&user("u", "/", tags), now())
    }

    #[test]
    fn a_dated_reasoned_exemption_within_the_bound_is_active() {
        let got = read(&[(EXEMPT_UNTIL_TAG, "2027-01-31"), (EXEMPT_REASON_TAG, "SEC-9 migration")]);
        assert_eq!(
            got,
            Some(TagExemption::Active {
                until: chrono::Utc.with_ymd_and_hms(2027, 2, 1, 0, 0, 0).unwrap(),
                reason: "SEC-9 migration".into()
            })
        );
        let got = read(&[
            (EXEMPT_UNTIL_TAG, "2026-12-02T08:00:00+02:00"),
            (EXEMPT_REASON_TAG, "r"),
        ]);
        assert_eq!(got.as_ref().map(TagExemption::state), Some("active"));
        // Exactly max_duration ahead is still within the bound.
        let edge = (now() + TimeDelta::days(90)).to_rfc3339();
        assert_eq!(
            read(&[(EXEMPT_UNTIL_TAG, &edge), (EXEMPT_REASON_TAG, "r")])
                .unwrap()
                .state(),
            "active"
        );
    }

    #[test]
    fn every_malformed_exemption_is_reported_not_honoured() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: [Case<'_>; 8] = [
            (&[(EXEMPT_UNTIL_TAG, "2027-01-31")], "invalid", "without a non-empty"),
            (
                &[(EXEMPT_UNTIL_TAG, "2027-01-31"), (EXEMPT_REASON_TAG, "  ")],
                "invalid",
                "without a non-empty",
            ),
            (&[(EXEMPT_REASON_TAG, "r")], "invalid", "without keywarden:exempt-until"),
            (
                &[(EXEMPT_UNTIL_TAG, "2027-13-01"), (EXEMPT_REASON_TAG, "r")],
                "invalid",
                "is not a date",
            ),
            (
                &[(EXEMPT_UNTIL_TAG, "soon"), (EXEMPT_REASON_TAG, "r")],
                "invalid",
                "is not a date",
            ),
            (
                &[(EXEMPT_UNTIL_TAG, "2026-11-30"), (EXEMPT_REASON_TAG, "r")],
                "invalid",
                "has passed",
            ),
            (
                &[(EXEMPT_UNTIL_TAG, "2026-12-01T12:00:00Z"), (EXEMPT_REASON_TAG, "r")],
                "invalid",
                "has passed",
            ),
            (
                &[(EXEMPT_UNTIL_TAG, "2027-12-01"), (EXEMPT_REASON_TAG, "r")],
                "too_long",
                "more than 90 days",
            ),
        ];
        for (tags, state, problem) in cases {
            let got = read(tags).unwrap_or_else(|| panic!("{tags:?}: no exemption read"));
            assert_eq!(got.state(), state, "{tags:?}");
            assert!(got.problem().unwrap().contains(problem), "{tags:?}: {got:?}");
        }
    }

    #[test]
    fn no_tags_or_the_feature_off_is_no_exemption_at_all() {
        assert_eq!(read(&[("owner", "x")]), None);
        let off = TagExemptions::default();
        let tagged = user("u", "/", &[(EXEMPT_UNTIL_TAG, "2027-01-01"), (EXEMPT_REASON_TAG, "r")]);
        assert_eq!(off.read(&tagged, now()), None);
    }

    #[test]
    fn rules_limit_what_a_tag_exemption_covers() {
        let p = TagExemptions {
            rules: Some(vec![Rule::MaxKeyAge]),
            ..tag_policy()
        };
        assert!(p.covers(Rule::MaxKeyAge));
        assert!(!p.covers(Rule::UnusedKey));
        assert!(tag_policy().covers(Rule::UnusedKey));
    }
}

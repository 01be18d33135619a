//! The forms of `keywarden usage`: a JSON array (one object per key: `account_id`, `user`,
//! `access_key_id`, `workload`, `reasons`, `events` (calls in 30 days), `first_event`,
//! `last_event`, `last_source`, `sources` (`[{"address","count"}]`), `user_agents`
//! (`[{"value","count"}]`), `services`, `regions`, `actions` (`service:Action`),
//! `actions_complete`, `backfill`, `replacement` (`{"kind","detail"}`, with `trust_policy` for
//! a GitHub OIDC role)), a text block per key for people, and the least-privilege policy
//! (`--policy`) as an IAM policy document.

use std::fmt::Write;

use serde_json::{json, Value};

use crate::core::usage::least_privilege::Draft;
use crate::core::usage::replacement::GithubTrust;
use crate::core::usage::summary::KeyUsage;

fn time(t: Option<crate::core::model::Timestamp>) -> Value {
    t.map_or(Value::Null, |t| {
        json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    })
}

/// The trust policy of a role GitHub Actions assumes through GitHub's OIDC provider.
pub fn trust_policy(t: &GithubTrust) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": t.provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
                "StringLike": {"token.actions.githubusercontent.com:sub": t.subject}
            }
        }]
    })
}

/// One key as JSON.
pub fn key_json(account_id: &str, u: &KeyUsage) -> Value {
    let p = &u.profile;
    let mut replacement = json!({"kind": u.replacement.kind.as_str(), "detail": u.replacement.detail});
    if let Some(t) = &u.replacement.github_trust {
        replacement["trust_policy"] = trust_policy(t);
    }
    json!({
        "account_id": account_id,
        "user": u.user,
        "access_key_id": p.access_key_id,
        "workload": u.verdict.workload.as_str(),
        "reasons": u.verdict.reasons,
        "events": u.recent_events,
        "events_total": p.events,
        "first_event": time(p.first_event),
        "last_event": time(p.last_event),
        "last_source": p.last_source.as_deref(),
        "sources": p.sources.iter().map(|c| json!({"address": &*c.value, "count": c.count})).collect::<Vec<_>>(),
        "user_agents": p.user_agents.iter().map(|c| json!({"value": &*c.value, "count": c.count})).collect::<Vec<_>>(),
        "services": p.services(),
        "regions": p.regions.iter().collect::<Vec<_>>(),
        "actions": p.actions.iter().collect::<Vec<_>>(),
        "actions_complete": p.actions_complete,
        "backfill": p.backfill.state.as_str(),
        "replacement": replacement,
    })
}

pub fn to_json(keys: &[(String, KeyUsage)]) -> String {
    let all: Vec<Value> = keys.iter().map(|(a, u)| key_json(a, u)).collect();
    serde_json::to_string_pretty(&all).unwrap_or_else(|_| "[]".into())
}

/// `s` cut to `n` characters, with `…` when cut.
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `text` in lines of at most `width` characters, broken at spaces (a word longer than that
/// is cut).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines.into_iter().map(|l| cut(&l, width)).collect()
}

/// A block per key, at most 80 columns wide.
pub fn to_table(keys: &[(String, KeyUsage)]) -> String {
    if keys.is_empty() {
        return "No active access key matched.\n".into();
    }
    let mut out = String::new();
    for (account_id, u) in keys {
        let p = &u.profile;
        let _ = writeln!(
            out,
            "{} {} ({account_id})  {}",
            u.user,
            p.access_key_id,
            u.verdict.workload.as_str()
        );
        for reason in &u.verdict.reasons {
            for (i, line) in wrap(reason, 68).iter().enumerate() {
                let _ = writeln!(out, "  {:<10}{line}", if i == 0 { "why:" } else { "" });
            }
        }
        if let Some(last) = p.last_event {
            let _ = writeln!(
                out,
                "  calls:    {} in 30 days; last {} from {}",
                u.recent_events,
                last.format("%Y-%m-%d %H:%M"),
                cut(p.last_source.as_deref().unwrap_or("?"), 24)
            );
            let services: Vec<&str> = p.services().into_iter().collect();
            let _ = writeln!(
                out,
                "  calling:  {} ({} action{})",
                cut(&services.join(", "), 50),
                p.actions.len(),
                if p.actions.len() == 1 { "" } else { "s" }
            );
        }
        if let Some(agent) = p.user_agents.first() {
            let _ = writeln!(out, "  agent:    {}", cut(&agent.value, 68));
        }
        let _ = writeln!(out, "  replace:  {}", u.replacement.kind.as_str());
        for line in wrap(&u.replacement.detail, 68) {
            let _ = writeln!(out, "            {line}");
        }
        let _ = writeln!(out, "  backfill: {}", p.backfill.state.as_str());
        out.push('\n');
    }
    out
}

/// An IAM policy document, its members in the order IAM's own documents use.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct PolicyDoc<'a> {
    version: &'static str,
    statement: Vec<StatementDoc<'a>>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct StatementDoc<'a> {
    sid: &'a str,
    effect: &'static str,
    action: &'a [String],
    resource: &'static str,
}

/// The draft as an IAM policy document (its notes are printed apart: a policy document has no
/// field for them).
pub fn policy_json(d: &Draft) -> String {
    let doc = PolicyDoc {
        version: "2012-10-17",
        statement: d
            .statements
            .iter()
            .map(|s| StatementDoc {
                sid: &s.sid,
                effect: "Allow",
                action: &s.actions,
                resource: "*",
            })
            .collect(),
    };
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::usage::least_privilege::Statement;

    #[test]
    fn the_policy_is_an_iam_policy_document() {
        let d = Draft {
            statements: vec![Statement {
                sid: "AllowS3".into(),
                actions: vec!["s3:GetObject".into()],
            }],
            notes: vec![],
        };
        let text = policy_json(&d);
        assert!(
            text.find("\"Version\"") < text.find("\"Statement\""),
            "IAM's order: {text}"
        );
        assert!(text.find("\"Sid\"") < text.find("\"Effect\""), "IAM's order: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["Version"], "2012-10-17");
        assert_eq!(v["Statement"][0]["Action"][0], "s3:GetObject");
        assert_eq!(v["Statement"][0]["Resource"], "*");
    }

    #[test]
    fn long_sentences_wrap_at_spaces() {
        let text = "sign in through IAM Identity Center (aws configure sso): short sessions, no key to keep";
        let lines = wrap(text, 30);
        assert!(
            lines.len() > 1 && lines.iter().all(|l| l.chars().count() <= 30),
            "{lines:?}"
        );
        assert_eq!(lines.join(" "), text);
    }

    #[test]
    fn the_trust_policy_names_the_provider_audience_and_subject() {
        let t = GithubTrust {
            provider_arn: "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com".into(),
            subject: "repo:OWNER/REPO:*".into(),
        };
        let v = trust_policy(&t);
        let cond = &v["Statement"][0]["Condition"];
        assert_eq!(
            cond["StringEquals"]["token.actions.githubusercontent.com:aud"],
            "sts.amazonaws.com"
        );
        assert_eq!(
            cond["StringLike"]["token.actions.githubusercontent.com:sub"],
            "repo:OWNER/REPO:*"
        );
    }
}

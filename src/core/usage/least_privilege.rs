//! A least-privilege policy of the actions a key was seen calling, like IAM Access Analyzer's
//! policy generation but from the usage profile instead of a trail in S3. A draft for a person
//! to review: the rendering (`output`) writes it as an IAM policy document.
//!
//! Its limits, said in its notes: the resource is `*` (management events do not always name
//! the resource, and a profile keeps none); data events (S3 object calls, Lambda invokes) are
//! in it only if the trail delivers them; a CloudTrail event name is the IAM action name for
//! management events, which is what a profile holds; calls that need no permission
//! (`sts:GetCallerIdentity`) are left out.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::usage::profile::Profile;

/// Actions every principal may call: no statement is needed for them.
const NEED_NO_PERMISSION: [&str; 1] = ["sts:GetCallerIdentity"];

/// One statement: every action seen of one service, on every resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// `AllowS3`, from the service prefix.
    pub sid: String,
    /// `service:Action`, sorted.
    pub actions: Vec<String>,
}

/// The draft policy and what a reviewer must know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub statements: Vec<Statement>,
    pub notes: Vec<String>,
}

/// The draft for the keys of `profiles` together (a user's keys: one policy for the user).
pub fn draft(profiles: &[&Profile]) -> Draft {
    let mut by_service: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for action in profiles.iter().flat_map(|p| p.actions.iter()) {
        if NEED_NO_PERMISSION.contains(&action) {
            continue;
        }
        let service = action.split(':').next().unwrap_or(action);
        by_service.entry(service).or_default().insert(action.to_string());
    }
    let statements = by_service
        .into_iter()
        .map(|(service, actions)| Statement {
            sid: sid(service),
            actions: actions.into_iter().collect(),
        })
        .collect();
    let mut notes = vec![
        "Resource is \"*\": narrow it to the resources the workload uses before attaching the policy.".to_string(),
    ];
    if profiles.iter().any(|p| !p.actions_complete) {
        notes.push(format!(
            "More actions were called than a profile keeps ({}): the policy lacks some of them.",
            crate::core::usage::profile::ACTIONS
        ));
    }
    if profiles.iter().all(|p| p.events == 0) {
        notes.push("No call was seen: the policy allows nothing.".to_string());
    }
    Draft { statements, notes }
}

/// `Allow` and the service prefix without its punctuation, first letters upper-case
/// (`execute-api` -> `AllowExecuteApi`): a statement id allows letters and digits only.
fn sid(service: &str) -> String {
    let words = service
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty());
    let mut out = String::from("Allow");
    for w in words {
        let mut chars = w.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(actions: &[&str]) -> Profile {
        let mut p = Profile::new("123456789012", "AKIAIOSFODNN7EXAMPLE");
        p.events = actions.len() as u64;
        p.actions = actions.iter().map(|a| a.to_string()).collect();
        p
    }

    #[test]
    fn one_statement_per_service_with_the_actions_seen_by_every_key() {
        let a = profile(&["s3:PutObject", "execute-api:Invoke", "sts:GetCallerIdentity"]);
        let b = profile(&["s3:GetObject", "s3:PutObject"]);
        let d = draft(&[&a, &b]);
        assert_eq!(
            d.statements,
            [
                Statement {
                    sid: "AllowExecuteApi".into(),
                    actions: vec!["execute-api:Invoke".into()]
                },
                Statement {
                    sid: "AllowS3".into(),
                    actions: vec!["s3:GetObject".into(), "s3:PutObject".into()]
                },
            ]
        );
        assert_eq!(d.notes.len(), 1, "{:?}", d.notes);
    }

    #[test]
    fn an_incomplete_or_empty_profile_says_so() {
        let mut p = profile(&["s3:GetObject"]);
        p.actions_complete = false;
        assert!(draft(&[&p]).notes.iter().any(|n| n.contains("lacks some")));
        let d = draft(&[&profile(&[])]);
        assert!(d.statements.is_empty());
        assert!(d.notes.iter().any(|n| n.contains("allows nothing")));
    }
}

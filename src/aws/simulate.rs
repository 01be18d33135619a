//! `iam:SimulatePrincipalPolicy`: whether a principal may call actions on resources, asked
//! of IAM's policy simulator with the principal's own credentials (`keywarden check-access`).
//!
//! The simulator takes an IAM user or role ARN, not a session: an assumed role is mapped to
//! its role (the configured `role_arn` when it has that name, else iam:GetRole, else the ARN
//! with the path `/`). When the credentials may not call the simulator, or it does not know
//! the principal, every answer is `Unknown` with the reason: keywarden says it cannot tell
//! rather than guess.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_iam::types::PolicyEvaluationDecisionType as Decision;

use crate::core::access::{self, Need, Verdict};

/// Who the credentials of `sdk` are: (caller ARN, the ARN to simulate), or why it cannot tell.
pub async fn principal(sdk: &SdkConfig, known_roles: &[String]) -> Result<(String, Result<String, String>), String> {
    let (account_id, caller) = crate::aws::caller_identity(sdk, None).await?;
    if access::is_user(&caller) {
        return Ok((caller.clone(), Ok(caller)));
    }
    if caller.ends_with(":root") {
        let why = "the account's root user: every action is allowed, and keywarden should not run as root".to_string();
        return Ok((caller, Err(why)));
    }
    if let Some(known) = access::simulation_arn(&caller, known_roles) {
        return Ok((caller, Ok(known)));
    }
    let Some(role) = access::assumed_role_name(&caller) else {
        let why = format!("the policy simulator takes IAM users and roles, not {caller}");
        return Ok((caller, Err(why)));
    };
    let found = aws_sdk_iam::Client::new(sdk).get_role().role_name(role).send().await;
    let arn = match found.ok().and_then(|r| r.role.map(|r| r.arn)) {
        Some(arn) => arn,
        // Without iam:GetRole: right whenever the role's path is `/` (the simulator answers
        // NoSuchEntity otherwise, and that is said).
        None => {
            let partition = caller.split(':').nth(1).unwrap_or("aws");
            format!("arn:{partition}:iam::{account_id}:role/{role}")
        }
    };
    Ok((caller, Ok(arn)))
}

/// Each need's verdict for `principal`, in the order of `needs`: one request per resource.
pub async fn simulate(sdk: &SdkConfig, principal: &str, needs: &[Need]) -> Vec<Verdict> {
    let client = aws_sdk_iam::Client::new(sdk);
    let mut by_resource: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for n in needs {
        by_resource.entry(&n.resource).or_default().push(&n.action);
    }
    let mut decided: BTreeMap<(String, String), Verdict> = BTreeMap::new();
    for (resource, actions) in by_resource {
        let mut marker: Option<String> = None;
        loop {
            let mut req = client
                .simulate_principal_policy()
                .policy_source_arn(principal)
                .set_action_names(Some(actions.iter().map(|a| a.to_string()).collect()))
                .set_marker(marker.clone());
            if resource != "*" {
                req = req.resource_arns(resource);
            }
            let page = match req.send().await {
                Ok(p) => p,
                Err(e) => {
                    let why = unknown_because(principal, e.code(), &crate::aws::errors::describe(&e).message);
                    for a in &actions {
                        decided.insert((a.to_string(), resource.to_string()), Verdict::Unknown(why.clone()));
                    }
                    break;
                }
            };
            for r in page.evaluation_results() {
                let verdict = match r.eval_decision() {
                    Decision::Allowed => Verdict::Allowed,
                    Decision::ExplicitDeny => Verdict::Missing { explicit: true },
                    Decision::ImplicitDeny => Verdict::Missing { explicit: false },
                    other => Verdict::Unknown(format!("the simulator answered {}", other.as_str())),
                };
                decided.insert((r.eval_action_name().to_string(), resource.to_string()), verdict);
            }
            match (page.is_truncated(), page.marker()) {
                (true, Some(m)) => marker = Some(m.to_string()),
                _ => break,
            }
        }
    }
    needs
        .iter()
        .map(|n| {
            decided
                .remove(&(n.action.clone(), n.resource.clone()))
                .unwrap_or_else(|| Verdict::Unknown("the simulator did not answer for it".into()))
        })
        .collect()
}

/// Why the simulator could not answer, in words a user can act on.
fn unknown_because(principal: &str, code: Option<&str>, message: &str) -> String {
    match code {
        Some("AccessDenied" | "AccessDeniedException") => format!(
            "these credentials may not call iam:SimulatePrincipalPolicy on {principal} (grant packaging/iam-policy-check-access.json to check)"
        ),
        Some("NoSuchEntity") => format!("the policy simulator does not know {principal}"),
        _ => format!("iam:SimulatePrincipalPolicy failed: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::unknown_because;

    #[test]
    fn a_denied_simulator_says_what_to_grant() {
        let why = unknown_because("arn:aws:iam::1:user/k", Some("AccessDenied"), "x");
        assert!(why.contains("may not call iam:SimulatePrincipalPolicy"), "{why}");
        assert!(unknown_because("p", Some("NoSuchEntity"), "x").contains("does not know p"));
        assert!(unknown_because("p", None, "timeout").ends_with("failed: timeout"));
    }
}

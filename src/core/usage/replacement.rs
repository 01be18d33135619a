//! What should replace a long-term key, from the verdict on what uses it: a credential that
//! AWS hands out for a moment and renews itself, so that nothing long-lived is left to leak.
//!
//! | workload | replacement |
//! |---|---|
//! | `person` | IAM Identity Center (`aws configure sso`), short sessions per person |
//! | `terraform` | GitHub's OIDC role when the Terraform runs in GitHub Actions, else Identity Center |
//! | `github_actions` | an IAM role trusted by GitHub's OIDC provider ([`GithubTrust`]) |
//! | `ci` | none of AWS's own: the CI system's OIDC provider, with a role that trusts it |
//! | `aws_lambda`, `aws_codebuild` | the function's execution role, the project's service role |
//! | `aws_ecs` | the task role (`taskRoleArn`) |
//! | `aws_ec2` | an instance profile |
//! | `on_premises` | IAM Roles Anywhere, a certificate per host |
//! | `unknown` | none until the evidence says more |

use crate::core::usage::profile::Profile;
use crate::core::usage::workload::{Verdict, Workload};

/// The kinds of replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    IdentityCenter,
    GithubOidcRole,
    ExecutionRole,
    TaskRole,
    InstanceProfile,
    RolesAnywhere,
    None,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::IdentityCenter => "identity_center",
            Kind::GithubOidcRole => "github_oidc_role",
            Kind::ExecutionRole => "execution_role",
            Kind::TaskRole => "task_role",
            Kind::InstanceProfile => "instance_profile",
            Kind::RolesAnywhere => "roles_anywhere",
            Kind::None => "none",
        }
    }
}

/// The trust of a role for GitHub Actions: who may assume it through GitHub's OIDC provider.
/// The output writes it as a trust policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubTrust {
    /// `arn:aws:iam::ACCOUNT:oidc-provider/token.actions.githubusercontent.com`.
    pub provider_arn: String,
    /// The `sub` claim allowed: `repo:OWNER/REPO:*`, with `OWNER/REPO` left for the operator
    /// when the evidence does not name the repository (CloudTrail never does).
    pub subject: String,
}

/// What should replace a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    pub kind: Kind,
    /// One sentence for a person.
    pub detail: String,
    /// For `github_oidc_role`.
    pub github_trust: Option<GithubTrust>,
}

/// GitHub's OIDC issuer, as IAM names its provider.
pub const GITHUB_OIDC_HOST: &str = "token.actions.githubusercontent.com";
/// What the operator fills in: the evidence cannot name the repository.
pub const REPOSITORY_PLACEHOLDER: &str = "OWNER/REPO";

/// The replacement for the key of `p`, given the verdict on what uses it.
pub fn replacement(p: &Profile, v: &Verdict) -> Replacement {
    let (kind, detail) = match v.workload {
        Workload::Person => (
            Kind::IdentityCenter,
            "sign in through IAM Identity Center (aws configure sso): short sessions, no key to keep",
        ),
        Workload::Terraform if from_github(p) => github_detail(),
        Workload::Terraform => (
            Kind::IdentityCenter,
            "run Terraform with an Identity Center session, or from CI with the CI system's OIDC role",
        ),
        Workload::GithubActions => github_detail(),
        Workload::Ci => (
            Kind::None,
            "a role trusted by the CI system's OIDC provider (GitLab, CircleCI and others issue tokens)",
        ),
        Workload::AwsLambda => (
            Kind::ExecutionRole,
            "the function's execution role: Lambda hands its credentials to the code",
        ),
        Workload::AwsCodebuild => (Kind::ExecutionRole, "the CodeBuild project's service role"),
        Workload::AwsEcs => (
            Kind::TaskRole,
            "the task's role (taskRoleArn); for a CodeBuild build, the project's service role",
        ),
        Workload::AwsEc2 => (
            Kind::InstanceProfile,
            "an instance profile: the SDK finds its credentials itself",
        ),
        Workload::OnPremises => (
            Kind::RolesAnywhere,
            "IAM Roles Anywhere: a certificate per host exchanged for temporary credentials",
        ),
        Workload::Unknown => (Kind::None, "none until the profile shows what uses the key"),
    };
    let github_trust = (kind == Kind::GithubOidcRole).then(|| GithubTrust {
        provider_arn: format!("arn:aws:iam::{}:oidc-provider/{GITHUB_OIDC_HOST}", p.account_id),
        subject: format!("repo:{REPOSITORY_PLACEHOLDER}:*"),
    });
    Replacement {
        kind,
        detail: detail.to_string(),
        github_trust,
    }
}

fn github_detail() -> (Kind, &'static str) {
    (
        Kind::GithubOidcRole,
        "a role trusted by GitHub's OIDC provider (aws-actions/configure-aws-credentials with role-to-assume)",
    )
}

fn from_github(p: &Profile) -> bool {
    p.user_agents
        .iter()
        .any(|a| a.value.starts_with("configure-aws-credentials-for-github-actions"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::usage::profile::Counted;
    use crate::core::usage::workload::classify;

    fn profile(agents: &[&str]) -> Profile {
        let mut p = Profile::new("123456789012", "AKIAIOSFODNN7EXAMPLE");
        p.user_agents = agents
            .iter()
            .map(|a| Counted {
                value: (*a).into(),
                count: 1,
            })
            .collect();
        p.sources = vec![Counted {
            value: "198.51.100.7".into(),
            count: 1,
        }];
        p.events = agents.len() as u64;
        p
    }

    #[test]
    fn every_workload_has_a_replacement_with_a_sentence() {
        for w in Workload::ALL {
            let r = replacement(
                &profile(&["x"]),
                &Verdict {
                    workload: w,
                    reasons: vec![],
                },
            );
            assert!(!r.detail.is_empty(), "{w:?}");
            assert_eq!(r.github_trust.is_some(), r.kind == Kind::GithubOidcRole, "{w:?}");
        }
    }

    #[test]
    fn github_actions_gets_a_trust_with_the_repository_left_to_fill_in() {
        let p = profile(&["configure-aws-credentials-for-github-actions"]);
        let r = replacement(&p, &classify(&p));
        assert_eq!(r.kind, Kind::GithubOidcRole);
        let trust = r.github_trust.unwrap();
        assert_eq!(
            trust.provider_arn,
            "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
        );
        assert_eq!(trust.subject, "repo:OWNER/REPO:*");
    }

    #[test]
    fn terraform_in_github_actions_gets_the_oidc_role_elsewhere_identity_center() {
        let tf = "APN/1.0 HashiCorp/1.0 Terraform/1.11.4 (+https://www.terraform.io) terraform-provider-aws/5.98.0";
        let mut p = profile(&[tf, "configure-aws-credentials-for-github-actions"]);
        p.user_agents[0].count = 50;
        let v = classify(&p);
        assert_eq!(v.workload, Workload::Terraform);
        assert_eq!(replacement(&p, &v).kind, Kind::GithubOidcRole);
        let alone = profile(&[tf]);
        assert_eq!(replacement(&alone, &classify(&alone)).kind, Kind::IdentityCenter);
    }
}

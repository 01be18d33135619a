//! What kind of program uses a key, from its usage profile, each verdict with its reasons.
//! The rules are one table ([`RULES`]), tried in order, the first that matches wins; each
//! row has a test built from user agents as CloudTrail records them.
//!
//! The evidence is mostly the user agent the key is used with most, which the AWS SDKs build
//! from their name and version, the operating system, and `exec-env/` followed by the
//! `AWS_EXECUTION_ENV` variable that AWS's compute services set: `AWS_Lambda_<runtime>` on
//! Lambda, `AWS_ECS_FARGATE` and `AWS_ECS_EC2` on ECS. CodeBuild sets `AWS_ECS_EC2` as well,
//! so a build and an ECS task on EC2 look alike: the verdict is `aws_ecs` and its reason says
//! so (`aws_codebuild` is never guessed). EC2 sets no variable: an Amazon Linux kernel in the
//! user agent (`...amzn2.x86_64`, `...amzn2023...`) without one is the EC2 evidence.
//! Terraform's AWS provider says `Terraform/<version>` (OpenTofu passes its own version under
//! that name). GitHub's `configure-aws-credentials` action signs its own STS call with the
//! user agent `configure-aws-credentials-for-github-actions`. Where the agent says nothing,
//! the addresses speak: many (short-lived CI machines) or a few fixed ones (on-premises hosts).
//! A user agent is the caller's claim: a verdict is advice for a person, never a decision.

use crate::core::usage::profile::Profile;

/// The kinds of workload a verdict names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    Person,
    Terraform,
    GithubActions,
    Ci,
    AwsLambda,
    AwsEcs,
    AwsEc2,
    AwsCodebuild,
    OnPremises,
    Unknown,
}

impl Workload {
    pub const ALL: [Workload; 10] = [
        Workload::Person,
        Workload::Terraform,
        Workload::GithubActions,
        Workload::Ci,
        Workload::AwsLambda,
        Workload::AwsEcs,
        Workload::AwsEc2,
        Workload::AwsCodebuild,
        Workload::OnPremises,
        Workload::Unknown,
    ];

    /// The name in JSON, metrics and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::Person => "person",
            Workload::Terraform => "terraform",
            Workload::GithubActions => "github_actions",
            Workload::Ci => "ci",
            Workload::AwsLambda => "aws_lambda",
            Workload::AwsEcs => "aws_ecs",
            Workload::AwsEc2 => "aws_ec2",
            Workload::AwsCodebuild => "aws_codebuild",
            Workload::OnPremises => "on_premises",
            Workload::Unknown => "unknown",
        }
    }
}

/// A verdict and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub workload: Workload,
    pub reasons: Vec<String>,
}

/// More different addresses than this in a profile: short-lived machines (hosted CI runners).
pub const MANY_ADDRESSES: usize = 8;
/// At most this many different addresses, every one an IP address: fixed hosts.
pub const FEW_ADDRESSES: usize = 3;

/// One row: the workload, and the test that says why it matches (or `None`).
pub struct Rule {
    pub workload: Workload,
    pub test: fn(&Evidence) -> Option<String>,
}

/// What the rules look at, taken from a profile.
pub struct Evidence<'a> {
    /// The user agent used most.
    pub main_agent: &'a str,
    /// Every user agent kept.
    pub agents: Vec<&'a str>,
    /// Different addresses (at most the profile's bound).
    pub addresses: usize,
    /// Whether every address is an IP address (not an AWS service name or unparsable).
    pub only_ip_addresses: bool,
}

/// The rules, in the order they are tried.
pub const RULES: [Rule; 9] = [
    Rule {
        workload: Workload::AwsLambda,
        test: lambda,
    },
    Rule {
        workload: Workload::AwsEcs,
        test: ecs,
    },
    Rule {
        workload: Workload::AwsEc2,
        test: ec2,
    },
    Rule {
        workload: Workload::Terraform,
        test: terraform,
    },
    Rule {
        workload: Workload::GithubActions,
        test: github_actions,
    },
    Rule {
        workload: Workload::Ci,
        test: many_addresses,
    },
    Rule {
        workload: Workload::Person,
        test: person,
    },
    Rule {
        workload: Workload::OnPremises,
        test: fixed_hosts,
    },
    Rule {
        workload: Workload::Unknown,
        test: anything,
    },
];

/// The verdict on `p`: the first rule that matches, with its reason and the size of the
/// evidence.
pub fn classify(p: &Profile) -> Verdict {
    if p.events == 0 {
        return Verdict {
            workload: Workload::Unknown,
            reasons: vec!["no call seen".to_string()],
        };
    }
    let e = evidence(p);
    let (workload, reason) = RULES
        .iter()
        .find_map(|r| (r.test)(&e).map(|why| (r.workload, why)))
        .unwrap_or((Workload::Unknown, String::new()));
    let mut reasons = vec![reason];
    // A full list kept only the most frequent addresses: there were at least that many.
    let at_least = if e.addresses >= crate::core::usage::profile::SOURCES {
        " or more"
    } else {
        ""
    };
    reasons.push(format!(
        "{} call{} from {}{at_least} address{}",
        p.events,
        if p.events == 1 { "" } else { "s" },
        e.addresses,
        if e.addresses == 1 && at_least.is_empty() {
            ""
        } else {
            "es"
        }
    ));
    Verdict { workload, reasons }
}

/// The evidence in `p`.
pub fn evidence(p: &Profile) -> Evidence<'_> {
    Evidence {
        main_agent: p.main_user_agent().unwrap_or(""),
        agents: p.user_agents.iter().map(|c| &*c.value).collect(),
        addresses: p.sources.len(),
        only_ip_addresses: p.sources.iter().all(|s| is_ip_address(&s.value)),
    }
}

/// The value of the user agent's `exec-env/` token.
fn exec_env(agent: &str) -> Option<&str> {
    agent.split_whitespace().find_map(|t| t.strip_prefix("exec-env/"))
}

fn lambda(e: &Evidence) -> Option<String> {
    let env = exec_env(e.main_agent)?;
    env.starts_with("AWS_Lambda_")
        .then(|| format!("user agent says exec-env/{env}: an AWS Lambda function"))
}

fn ecs(e: &Evidence) -> Option<String> {
    match exec_env(e.main_agent)? {
        "AWS_ECS_FARGATE" => Some("user agent says exec-env/AWS_ECS_FARGATE: an ECS task on Fargate".to_string()),
        "AWS_ECS_EC2" => Some(
            "user agent says exec-env/AWS_ECS_EC2: an ECS task on EC2, or a CodeBuild build (it sets the same)"
                .to_string(),
        ),
        _ => None,
    }
}

fn ec2(e: &Evidence) -> Option<String> {
    if exec_env(e.main_agent).is_some() {
        return None;
    }
    let kernel = e
        .main_agent
        .split_whitespace()
        .find(|t| (t.starts_with("Linux/") || t.starts_with("os/linux#")) && t.contains(".amzn"))?;
    Some(format!(
        "user agent names an Amazon Linux kernel ({kernel}) and no execution environment: an EC2 instance"
    ))
}

fn terraform(e: &Evidence) -> Option<String> {
    let token = e
        .main_agent
        .split_whitespace()
        .find(|t| t.starts_with("Terraform/") || t.starts_with("OpenTofu/"))?;
    Some(format!("user agent says {token}: Terraform or OpenTofu"))
}

fn github_actions(e: &Evidence) -> Option<String> {
    e.agents
        .iter()
        .any(|a| a.starts_with("configure-aws-credentials-for-github-actions"))
        .then(|| "GitHub's configure-aws-credentials action called with the key".to_string())
}

fn many_addresses(e: &Evidence) -> Option<String> {
    (e.addresses > MANY_ADDRESSES).then(|| {
        format!("calls from more than {MANY_ADDRESSES} different addresses: short-lived machines, as CI runners are")
    })
}

fn person(e: &Evidence) -> Option<String> {
    let a = e.main_agent;
    if a.starts_with("aws-cli/") {
        if exec_env(a) == Some("CloudShell") {
            return Some("the AWS CLI in AWS CloudShell".to_string());
        }
        return Some(format!(
            "user agent {}: the AWS CLI",
            a.split_whitespace().next().unwrap_or(a)
        ));
    }
    if a.starts_with("Mozilla/") {
        return Some("a web browser's user agent".to_string());
    }
    a.starts_with("AWSPowerShell/")
        .then(|| "AWS Tools for PowerShell".to_string())
}

fn fixed_hosts(e: &Evidence) -> Option<String> {
    (e.only_ip_addresses && e.addresses <= FEW_ADDRESSES).then(|| {
        format!(
            "an SDK calling from {} fixed address{}: a host outside AWS",
            e.addresses,
            if e.addresses == 1 { "" } else { "es" }
        )
    })
}

fn anything(_: &Evidence) -> Option<String> {
    Some("no rule matched the user agent or the addresses".to_string())
}

/// Whether `s` is an IPv4 or IPv6 address (what the profile keeps is canonical).
fn is_ip_address(s: &str) -> bool {
    s.parse::<::core::net::IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::usage::profile::Counted;

    /// User agents as CloudTrail records show them; OPENTOFU_BACKEND and GITHUB as those tools'
    /// sources build them.
    const CLI_V2: &str = "aws-cli/2.17.46 md/awscrt#0.21.2 ua/2.0 os/macos#24.1.0 md/arch#arm64 lang/python#3.11.10 md/pyimpl#CPython cfg/retry-mode#standard md/installer#source md/prompt#off md/command#ec2.stop-instances";
    const CLI_V1: &str = "aws-cli/1.3.23 Python/2.7.6 Linux/2.6.18-164.el5";
    const CLOUDSHELL: &str = "aws-cli/2.13.5 Python/3.11.4 Linux/4.14.255-314-253.539.amzn2.x86_64 exec-env/CloudShell exe/x86_64.amzn.2 prompt/off command/ec2.start-instances";
    const LAMBDA: &str = "Boto3/1.34.145 md/Botocore#1.34.145 ua/2.0 os/linux#5.10.233-244.887.amzn2.x86_64 md/arch#x86_64 lang/python#3.11.10 md/pyimpl#CPython exec-env/AWS_Lambda_python3.11 cfg/retry-mode#legacy Botocore/1.34.145";
    const LAMBDA_JS: &str = "aws-sdk-js/3.632.0 ua/2.0 os/linux#5.10.227-239.884.amzn2.x86_64 lang/js md/nodejs#20.18.0 api/connect#3.632.0 exec-env/AWS_Lambda_nodejs20.x";
    const FARGATE: &str = "aws-sdk-java/2.28.29 md/io#async md/http#NettyNio md/internal ua/2.0 os/Linux#5.10.226 lang/java#17.0.13 exec-env/AWS_ECS_FARGATE cfg/retry-mode#legacy";
    const ECS_EC2: &str = "aws-cli/2.34.11 md/awscrt#0.31.2 ua/2.1 os/linux#4.14.355-280.714.amzn2.x86_64 md/arch#x86_64 lang/python#3.13.11 md/pyimpl#CPython exec-env/AWS_ECS_EC2 m/b,E,W,G,Z cfg/retry-mode#standard md/installer#exe md/distrib#amzn.2023 md/prompt#off md/command#s3.sync";
    const EC2: &str = "Boto3/1.34.145 md/Botocore#1.34.145 ua/2.0 os/linux#5.10.233-244.887.amzn2.x86_64 md/arch#x86_64 lang/python#3.11.10 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.145";
    const TERRAFORM: &str = "APN/1.0 HashiCorp/1.0 Terraform/1.11.4 (+https://www.terraform.io) terraform-provider-aws/5.98.0 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.36.3 ua/2.1 os/macos lang/go#1.23.8 md/GOOS#darwin md/GOARCH#arm64 api/s3#1.79.3 m/Z,g";
    const OPENTOFU_BACKEND: &str = "APN/1.0 OpenTofu-S3-Backend/1.0 OpenTofu/1.8.1 aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22.5 md/GOOS#linux md/GOARCH#amd64 api/s3#1.58.2";
    const GITHUB: &str = "configure-aws-credentials-for-github-actions";
    const JAVA_SDK: &str = "aws-sdk-java/2.20.162 Mac_OS_X/13.5.2 OpenJDK_64-Bit_Server_VM/18.0.1+10-FR Java/18.0.1 vendor/Amazon.com_Inc. io/sync http/UrlConnection cfg/retry-mode/legacy";
    const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";

    fn profile(agents: &[(&str, u64)], addresses: &[&str]) -> Profile {
        let mut p = Profile::new("123456789012", "AKIAIOSFODNN7EXAMPLE");
        p.user_agents = agents
            .iter()
            .map(|(v, n)| Counted {
                value: (*v).into(),
                count: *n,
            })
            .collect();
        p.sources = addresses
            .iter()
            .map(|a| Counted {
                value: (*a).into(),
                count: 1,
            })
            .collect();
        p.events = agents.iter().map(|(_, n)| n).sum();
        p
    }

    fn verdict(agents: &[(&str, u64)], addresses: &[&str]) -> Verdict {
        classify(&profile(agents, addresses))
    }

    const ONE: [&str; 1] = ["198.51.100.7"];

    #[test]
    fn lambda_row() {
        for agent in [LAMBDA, LAMBDA_JS] {
            let v = verdict(&[(agent, 3)], &ONE);
            assert_eq!(v.workload, Workload::AwsLambda, "{agent}");
            assert!(v.reasons[0].contains("exec-env/AWS_Lambda_"), "{v:?}");
        }
    }

    #[test]
    fn ecs_row_fargate_and_ec2_which_codebuild_shares() {
        assert_eq!(verdict(&[(FARGATE, 1)], &ONE).workload, Workload::AwsEcs);
        let v = verdict(&[(ECS_EC2, 1)], &ONE);
        assert_eq!(v.workload, Workload::AwsEcs);
        assert!(v.reasons[0].contains("CodeBuild"), "{v:?}");
    }

    #[test]
    fn ec2_row_an_amazon_linux_kernel_without_an_execution_environment() {
        let v = verdict(&[(EC2, 10)], &ONE);
        assert_eq!(v.workload, Workload::AwsEc2);
        assert!(v.reasons[0].contains("amzn2"), "{v:?}");
        // CloudShell runs Amazon Linux too, but says so.
        assert_eq!(verdict(&[(CLOUDSHELL, 1)], &ONE).workload, Workload::Person);
    }

    #[test]
    fn terraform_row_terraform_and_opentofu() {
        for agent in [TERRAFORM, OPENTOFU_BACKEND] {
            let v = verdict(
                &[(agent, 40)],
                &["203.0.113.5", "203.0.113.6", "203.0.113.7", "203.0.113.8"],
            );
            assert_eq!(v.workload, Workload::Terraform, "{agent}");
        }
    }

    #[test]
    fn github_actions_row_the_action_anywhere_among_the_agents() {
        let v = verdict(&[(CLI_V2, 50), (GITHUB, 5)], &ONE);
        assert_eq!(v.workload, Workload::GithubActions);
    }

    #[test]
    fn ci_row_many_addresses() {
        let addresses: Vec<String> = (0..9).map(|i| format!("20.1.2.{i}")).collect();
        let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
        assert_eq!(verdict(&[(CLI_V2, 9)], &addresses).workload, Workload::Ci);
        assert_eq!(
            verdict(&[(CLI_V2, 8)], &addresses[..8]).workload,
            Workload::Person,
            "8 is not many"
        );
        let full: Vec<String> = (0..16).map(|i| format!("20.1.3.{i}")).collect();
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        let v = verdict(&[(CLI_V2, 30)], &full);
        assert_eq!(
            v.reasons[1], "30 calls from 16 or more addresses",
            "a full list is a lower bound"
        );
    }

    #[test]
    fn person_row_cli_browser_powershell() {
        for agent in [CLI_V2, CLI_V1, BROWSER, "AWSPowerShell/4.1.500.0 .NET_Runtime/4.0"] {
            assert_eq!(verdict(&[(agent, 2)], &ONE).workload, Workload::Person, "{agent}");
        }
    }

    #[test]
    fn on_premises_row_an_sdk_from_a_few_fixed_addresses() {
        let v = verdict(&[(JAVA_SDK, 700)], &["198.51.100.7", "198.51.100.8"]);
        assert_eq!(v.workload, Workload::OnPremises);
        assert_eq!(v.reasons[1], "700 calls from 2 addresses");
        // An AWS service's name is not a host of the operator's.
        assert_eq!(
            verdict(&[(JAVA_SDK, 1)], &["cloudformation.amazonaws.com"]).workload,
            Workload::Unknown
        );
    }

    #[test]
    fn unknown_row_garbage_and_no_calls() {
        let addresses: Vec<String> = (0..5).map(|i| format!("192.0.2.{i}")).collect();
        let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
        assert_eq!(
            verdict(&[("\u{1F600} garbage", 1)], &addresses).workload,
            Workload::Unknown
        );
        assert_eq!(verdict(&[("", 1)], &["(unparsable)"]).workload, Workload::Unknown);
        let v = verdict(&[], &[]);
        assert_eq!(
            (v.workload, v.reasons),
            (Workload::Unknown, vec!["no call seen".to_string()])
        );
    }

    #[test]
    fn every_workload_has_its_own_name() {
        let names: std::collections::BTreeSet<_> = Workload::ALL.iter().map(|w| w.as_str()).collect();
        assert_eq!(names.len(), Workload::ALL.len());
    }
}

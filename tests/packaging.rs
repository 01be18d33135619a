//! The monitoring and IAM artefacts in packaging/ checked against the running code, so they
//! cannot drift: every metric the Grafana dashboard queries is exported by the daemon, and the
//! IAM policies allow every IAM action keywarden calls (and the audit policy nothing that
//! changes anything).

use std::collections::BTreeSet;

use crate::common::*;

fn metric_names_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("keywarden_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        out.push(expr[start..end].to_string());
        i = end;
    }
    out
}

fn dashboard_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("packaging/grafana/keywarden-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut names = BTreeSet::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            names.extend(metric_names_in(t["expr"].as_str().expect("expr")));
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"].as_str() {
            names.extend(metric_names_in(q));
        }
    }
    names
}

fn policy_actions(file: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("packaging").join(file)).unwrap();
    let p: serde_json::Value = serde_json::from_str(&text).expect("policy is JSON");
    p["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Action"].as_array().unwrap().iter())
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

async fn seed(moto: &Moto) {
    let iam = moto.iam();
    for u in ["a", "b", "c", "exempt-tagged"] {
        create_user(&iam, u, None).await;
    }
    moto.set_clock_days(-100.0);
    for u in ["a", "a", "b", "c", "exempt-tagged"] {
        create_key(&iam, u).await;
    }
    moto.set_clock_days(0.0);
    tag_user(&iam, "exempt-tagged", "keywarden", "exempt").await;
    // Console access for one user: the series of credentials other than keys exist too.
    create_login_profile(&iam, "b").await;
}

const EXTRA: &str = "[[exemptions]]\nuser_tag = \"keywarden=exempt\"\nreason = \"t\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_metric_is_exported() {
    let moto = Moto::start();
    seed(&moto).await;
    let dir = TempDir::new("dash");
    let port = free_port();
    // Dry-run with grace 0 and a cap of 1: deadlines, decisions and held-back keys all exist.
    let config = moto_config(
        &dir,
        &moto,
        &format!(
            "[enforcement]\nmode = \"dry-run\"\ngrace_period = \"0s\"\nmax_deactivations_per_run = 1\n\
             [schedule]\ncron = \"0 0 0 1 1 *\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n{EXTRA}"
        ),
    );
    let d = DaemonProcess::spawn(
        keywarden(&["run", "--config", config.to_str().unwrap()]),
        port,
        dir.0.join("log"),
    );
    let page = d
        .wait_metrics(30, "a run with a decision", |m| {
            metric(m, "keywarden_deactivations_total", &[("outcome", "dry_run")]).is_some()
        })
        .await;
    let exported: BTreeSet<&str> = page
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let wanted = dashboard_metrics();
    assert!(wanted.len() >= 10, "{wanted:?}");
    let missing: Vec<&String> = wanted.iter().filter(|m| !exported.contains(m.as_str())).collect();
    assert!(
        missing.is_empty(),
        "dashboard queries metrics the daemon does not export: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn iam_policies_allow_exactly_what_the_code_calls() {
    let moto = Moto::start();
    seed(&moto).await;
    let dir = TempDir::new("policy");
    let audit_policy = policy_actions("iam-policy.json");
    let enforce_policy = policy_actions("iam-policy-enforce.json");
    let called = |stats: serde_json::Value| -> BTreeSet<String> {
        stats
            .as_object()
            .unwrap()
            .keys()
            // GetCallerIdentity needs no permission.
            .filter(|a| *a != "GetCallerIdentity")
            .map(|a| format!("iam:{a}"))
            .collect()
    };

    moto.take_stats();
    let (code, _, _) = audit_json(&moto_config(&dir, &moto, EXTRA), &[]);
    assert_eq!(code, 3);
    let mut audit_calls = called(moto.take_stats());
    assert!(audit_calls.contains("iam:ListUserTags"), "{audit_calls:?}");
    // The credential-report mode (`auto` takes it in large accounts) reads IAM its own way.
    let (code, _, _) = audit_json(
        &moto_config_aws(&dir, &moto, "inventory = \"credential-report\"\n", EXTRA),
        &[],
    );
    assert_eq!(code, 3);
    let report_calls = called(moto.take_stats());
    assert!(report_calls.contains("iam:GetCredentialReport"), "{report_calls:?}");
    audit_calls.extend(report_calls);
    let not_allowed: Vec<_> = audit_calls.difference(&audit_policy).collect();
    assert!(
        not_allowed.is_empty(),
        "audit calls outside iam-policy.json: {not_allowed:?}"
    );

    let config = moto_config(
        &dir,
        &moto,
        &format!("[enforcement]\nmode = \"enforce\"\ngrace_period = \"0s\"\n{EXTRA}"),
    );
    let out = run(&mut keywarden(&["run", "--once", "--config", config.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let enforce_calls = called(moto.take_stats());
    assert!(enforce_calls.contains("iam:UpdateAccessKey"), "{enforce_calls:?}");
    let not_allowed: Vec<_> = enforce_calls.difference(&enforce_policy).collect();
    assert!(
        not_allowed.is_empty(),
        "enforce calls outside iam-policy-enforce.json: {not_allowed:?}"
    );

    // Least privilege: nothing granted that the code never calls, and no write in the audit one.
    let all_calls: BTreeSet<String> = enforce_calls.union(&audit_calls).cloned().collect();
    let unused: Vec<_> = enforce_policy.difference(&all_calls).collect();
    assert!(unused.is_empty(), "granted but never called: {unused:?}");
    assert!(!audit_policy.contains("iam:UpdateAccessKey"));
    assert!(
        enforce_policy.iter().all(|a| !a.contains("Delete")),
        "keys are never deleted"
    );
}

/// The central account's policy (where keywarden runs with several accounts) allows exactly
/// the calls that are not made inside an audited account: AssumeRole and ListAccounts.
#[tokio::test(flavor = "multi_thread")]
async fn central_policy_allows_exactly_discovery_and_assume_role() {
    let moto = Moto::start();
    let org = moto.organizations();
    org.create_organization().send().await.expect("CreateOrganization");
    org.create_account()
        .account_name("member")
        .email("member@example.com")
        .send()
        .await
        .expect("CreateAccount");
    seed(&moto).await;
    let dir = TempDir::new("central-policy");
    let config = moto_config(
        &dir,
        &moto,
        &format!("[aws.organization]\nrole_name = \"keywarden-audit\"\n{EXTRA}"),
    );
    moto.take_stats();
    let (code, report, stderr) = audit_json(&config, &[]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(report["accounts"].as_array().map(Vec::len), Some(2), "{report}");
    let outside_accounts: BTreeSet<String> = moto
        .take_stats()
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|a| match a.as_str() {
            "AssumeRole" => Some("sts:AssumeRole".to_string()),
            "ListAccounts" => Some("organizations:ListAccounts".to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(outside_accounts, policy_actions("iam-policy-central.json"));
}

/// A minimal Debian (debootstrap minbase) has no procps, so no `/bin/kill`: the unit may run
/// only keywarden itself and what every system has (the POSIX shell, whose `kill` is built in).
#[test]
fn the_unit_runs_nothing_outside_the_package_and_the_essential_system() {
    let unit = std::fs::read_to_string(repo().join("systemd/keywarden.service")).expect("unit");
    let mut checked = 0;
    for line in unit.lines().map(str::trim) {
        let Some((key, command)) = line.split_once('=') else {
            continue;
        };
        if !key.starts_with("Exec") {
            continue;
        }
        // Prefixes such as `-`, `+`, `!`, `@` modify how systemd runs the command.
        let program = command
            .trim_start_matches(['-', '+', '!', '@', ':'])
            .split_whitespace()
            .next();
        assert!(
            matches!(program, Some("/usr/bin/keywarden") | Some("/bin/sh")),
            "{key} runs {program:?}, which the package does not bring"
        );
        checked += 1;
    }
    assert!(
        checked >= 4,
        "ExecStartPre, ExecStart and both ExecReload lines are checked"
    );
}

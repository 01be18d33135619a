//! `keywarden check-access` through the real binary against moto: IAM users whose policies are
//! the packaged ones, one of them short of one action, one that may not call the policy
//! simulator. The launcher serves `SimulatePrincipalPolicy` with moto's own policy engine
//! (moto lacks the action), and requires the caller to be allowed it.

use crate::common::*;
use serde_json::Value;

/// A policy document with these statements' actions allowed on these resources.
fn policy(statements: &[(&[&str], &str)]) -> String {
    let statements: Vec<Value> = statements
        .iter()
        .map(|(actions, resource)| serde_json::json!({"Effect": "Allow", "Action": actions, "Resource": resource}))
        .collect();
    serde_json::json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

/// A user with `document` as its only (inline) policy, and its access key.
async fn principal(moto: &Moto, name: &str, document: &str) -> SeededKey {
    let iam = moto.iam();
    create_user(&iam, name, None).await;
    iam.put_user_policy()
        .user_name(name)
        .policy_name("keywarden")
        .policy_document(document)
        .send()
        .await
        .expect("PutUserPolicy");
    create_key(&iam, name).await
}

/// The packaged policy file's statements, as they are.
fn packaged(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("packaging").join(file)).unwrap();
    let p: Value = serde_json::from_str(&text).unwrap();
    p["Statement"].as_array().unwrap().clone()
}

fn document(statements: Vec<Value>) -> String {
    serde_json::json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

fn check_access(config: &std::path::Path, key: &SeededKey) -> (i32, Value, String) {
    let mut cmd = keywarden(&["check-access", "--config", config.to_str().unwrap(), "--format", "json"]);
    cmd.env("AWS_ACCESS_KEY_ID", &key.id)
        .env("AWS_SECRET_ACCESS_KEY", &key.secret);
    let (code, out, err) = outputs(&mut cmd);
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}\nstderr: {err}"));
    (code, json, err)
}

fn decisions(report: &Value) -> Vec<(String, String)> {
    report["checked"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["results"].as_array().unwrap().iter())
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_string(),
                r["decision"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const ENFORCE: &str = "[enforcement]\nmode = \"enforce\"\n[owners]\ntags = [\"owner\"]\n";

#[tokio::test]
async fn the_packaged_enforce_policy_passes_and_one_action_short_is_named() {
    let moto = Moto::start();
    let dir = TempDir::new("check-access");
    // `auto` reads with the credential report in large accounts: both ways are checked.
    let config = moto_config_aws(&dir, &moto, "inventory = \"auto\"\n", ENFORCE);
    let mut full = packaged("iam-policy-enforce.json");
    full.extend(packaged("iam-policy-check-access.json"));
    // rules.exposed_key.revoke_sessions is on by default.
    full.extend(packaged("iam-policy-revoke-sessions.json"));
    let complete = principal(&moto, "complete", &document(full)).await;

    let (code, report, err) = check_access(&config, &complete);
    assert_eq!(code, 0, "{report:#}\n{err}");
    let all = decisions(&report);
    assert!(all.len() >= 9, "every audit and enforcement action is checked: {all:?}");
    assert!(all.iter().all(|(_, d)| d == "allowed"), "{all:?}");
    for a in [
        "iam:ListUsers",
        "iam:ListUserTags",
        "iam:GetCredentialReport",
        "iam:UpdateAccessKey",
    ] {
        assert!(all.iter().any(|(x, _)| x == a), "{a} is checked: {all:?}");
    }

    // The same, without UpdateAccessKey.
    let short = policy(&[
        (
            &[
                "iam:GetAccountSummary",
                "iam:ListUsers",
                "iam:ListAccessKeys",
                "iam:GenerateCredentialReport",
                "iam:GetCredentialReport",
                "iam:GetAccessKeyLastUsed",
                "iam:GetLoginProfile",
                "iam:ListUserTags",
                "iam:ListEntitiesForPolicy",
                "iam:SimulatePrincipalPolicy",
            ],
            "*",
        ),
        (
            &["iam:GetUser", "iam:PutUserPolicy", "iam:DeleteUserPolicy"],
            "arn:aws:iam::*:user/*",
        ),
    ]);
    let short = principal(&moto, "short", &short).await;
    let api_only = dir.write(
        "api.toml",
        &std::fs::read_to_string(&config)
            .unwrap()
            .replace("inventory = \"auto\"", ""),
    );
    let (code, report, err) = check_access(&api_only, &short);
    assert_eq!(code, 3, "{report:#}\n{err}");
    let missing: Vec<&str> = report["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(
        missing[0].starts_with("iam:UpdateAccessKey on arn:aws:iam::123456789012:user/*"),
        "{missing:?}"
    );
    assert!(err.contains("missing permission: iam:UpdateAccessKey"), "{err}");

    // Dry-run needs no UpdateAccessKey: the same principal passes.
    let dry = dir.write(
        "dry.toml",
        &std::fs::read_to_string(&config)
            .unwrap()
            .replace("mode = \"enforce\"", "mode = \"dry-run\"")
            .replace("inventory = \"auto\"", ""),
    );
    let (code, report, err) = check_access(&dry, &short);
    assert_eq!(code, 0, "{report:#}\n{err}");
}

#[tokio::test]
async fn without_the_simulator_it_says_it_cannot_tell() {
    let moto = Moto::start();
    let dir = TempDir::new("check-access-blind");
    let config = moto_config(&dir, &moto, ENFORCE);
    let blind = principal(&moto, "blind", &document(packaged("iam-policy-enforce.json"))).await;
    let (code, report, err) = check_access(&config, &blind);
    assert_eq!(code, 1, "{report:#}\n{err}");
    let all = decisions(&report);
    assert!(!all.is_empty() && all.iter().all(|(_, d)| d == "unknown"), "{all:?}");
    let detail = report["checked"][0]["results"][0]["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(detail.contains("may not call iam:SimulatePrincipalPolicy"), "{detail}");
    assert_eq!(report["missing"], serde_json::json!([]));

    // The table says so first, and never ends with "nothing missing".
    let mut cmd = keywarden(&["check-access", "--config", config.to_str().unwrap()]);
    cmd.env("AWS_ACCESS_KEY_ID", &blind.id)
        .env("AWS_SECRET_ACCESS_KEY", &blind.secret);
    let (code, table, err) = outputs(&mut cmd);
    assert_eq!(code, 1, "{err}");
    let first = table.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("CANNOT TELL: ") && first.contains("could not be checked"),
        "{table}"
    );
    assert!(
        table.contains("because: ") && table.contains("iam:SimulatePrincipalPolicy"),
        "{table}"
    );
    assert!(!table.contains("nothing missing"), "{table}");
    assert!(table.trim_end().ends_with("(see the reason at the top)"), "{table}");
}

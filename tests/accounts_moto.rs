//! Several accounts against moto: `[[aws.accounts]]` through AssumeRole, `[aws.organization]`
//! discovery, one account failing without stopping the others, and enforcement acting in the
//! account the key belongs to.

use std::collections::BTreeSet;

use crate::common::*;
use serde_json::Value;

const A: &str = "111111111111";
const B: &str = "222222222222";
const DENIED: &str = "333333333333";

fn role(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/keywarden-audit")
}

/// A user with two active keys (one `multiple_active_keys` finding) in `iam`'s account.
async fn seed_pair(iam: &aws_sdk_iam::Client, user: &str) -> (SeededKey, SeededKey) {
    create_user(iam, user, None).await;
    (create_key(iam, user).await, create_key(iam, user).await)
}

/// (account_id, user) of every finding.
fn finding_owners(report: &Value) -> BTreeSet<(String, String)> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["account_id"].as_str().unwrap().into(),
                f["user"].as_str().unwrap().into(),
            )
        })
        .collect()
}

fn owners(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter().map(|(a, u)| (a.to_string(), u.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn listed_accounts_are_read_through_their_roles_and_a_denied_one_is_reported() {
    let moto = Moto::start();
    seed_pair(&moto.iam(), "ambient-pair").await;
    seed_pair(&moto.iam_in(A).await, "a-pair").await;
    seed_pair(&moto.iam_in(B).await, "b-pair").await;
    create_user(&moto.iam_in(B).await, "b-clean", None).await;
    moto.set_faults(&format!(r#"{{"AssumeRole": ["{}"]}}"#, role(DENIED)));

    let dir = TempDir::new("accounts");
    let accounts = format!(
        "[[aws.accounts]]\nid = \"{A}\"\nrole_arn = \"{}\"\nname = \"prod\"\n\n\
         [[aws.accounts]]\nid = \"{B}\"\nrole_arn = \"{}\"\nexternal_id = \"kw-1\"\n\n\
         [[aws.accounts]]\nid = \"{DENIED}\"\nrole_arn = \"{}\"\n",
        role(A),
        role(B),
        role(DENIED)
    );
    let config = moto_config_aws(&dir, &moto, "max_concurrent_accounts = 2\n", &accounts);

    moto.take_stats();
    let (code, report, stderr) = audit_json(&config, &[]);
    assert_eq!(code, 1, "an unreadable account makes the audit incomplete: {stderr}");
    // One AssumeRole per account: the check's credentials are the ones the reads use.
    assert_eq!(moto.take_stats()["AssumeRole"], 3, "AssumeRole calls");
    assert_eq!(
        finding_owners(&report),
        owners(&[(A, "a-pair"), (B, "b-pair")]),
        "only the listed accounts, each under its own id: {report}"
    );
    assert_eq!(report["summary"]["users"], 3, "a-pair, b-pair, b-clean: {report}");
    let errors = report["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{report}");
    assert_eq!(errors[0]["account_id"], DENIED);
    assert_eq!(errors[0]["operation"], "AssumeRole");
    assert!(
        errors[0]["message"].as_str().unwrap().contains("AccessDenied"),
        "STS's own error reaches the report: {report}"
    );
    let per_account: Vec<(String, bool)> = report["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|a| {
            (
                a["account_id"].as_str().unwrap().into(),
                a["complete"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        per_account,
        [(A.into(), true), (B.into(), true), (DENIED.into(), false)],
        "{report}"
    );

    // Without the fault the third account is read too (it has no users).
    moto.set_faults("{}");
    let (code, report, stderr) = audit_json(&config, &[]);
    assert_eq!(code, 3, "complete, with violations: {stderr}");
    assert_eq!(report["errors"].as_array().map(Vec::len), Some(0), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn organization_members_are_discovered_and_filtered() {
    let moto = Moto::start();
    let org = moto.organizations();
    org.create_organization().send().await.expect("CreateOrganization");
    let mut ids = std::collections::BTreeMap::new();
    for name in ["prod", "sandbox-1"] {
        org.create_account()
            .account_name(name)
            .email(format!("{name}@example.com"))
            .send()
            .await
            .expect("CreateAccount");
    }
    for a in org
        .list_accounts()
        .send()
        .await
        .expect("ListAccounts")
        .accounts
        .unwrap_or_default()
    {
        ids.insert(a.name.unwrap_or_default(), a.id.unwrap_or_default());
    }
    let (prod, sandbox) = (ids["prod"].clone(), ids["sandbox-1"].clone());
    seed_pair(&moto.iam(), "management-pair").await;
    seed_pair(&moto.iam_in(&prod).await, "prod-pair").await;
    seed_pair(&moto.iam_in(&sandbox).await, "sandbox-pair").await;

    let dir = TempDir::new("organization");
    let config = moto_config(
        &dir,
        &moto,
        "[aws.organization]\nrole_name = \"OrganizationAccountAccessRole\"\nexclude = [\"sandbox-*\"]\n",
    );
    let (code, report, stderr) = audit_json(&config, &[]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(
        finding_owners(&report),
        owners(&[(ACCOUNT, "management-pair"), (&prod, "prod-pair")]),
        "the management account with its own credentials, prod through the role, sandbox excluded: {report}"
    );

    // Discovery that is denied is an error of the management account, not a silent empty audit.
    moto.set_faults(r#"{"_unavailable": {"ListAccounts": 1.0}}"#);
    let (code, report, _) = audit_json(&config, &[]);
    assert_eq!(code, 1);
    assert_eq!(report["errors"][0]["operation"], "ListAccounts", "{report}");
    assert_eq!(report["errors"][0]["account_id"], ACCOUNT, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn enforcement_acts_in_the_account_the_key_belongs_to() {
    let moto = Moto::start();
    let (_, ambient_newer) = seed_pair(&moto.iam(), "pair").await;
    let b = moto.iam_in(B).await;
    let (_, b_newer) = seed_pair(&b, "pair").await;

    let dir = TempDir::new("accounts-enforce");
    let config = moto_config(
        &dir,
        &moto,
        &format!(
            "[enforcement]\nmode = \"enforce\"\ngrace_period = \"0s\"\n\n\
             [[aws.accounts]]\nid = \"{B}\"\nrole_arn = \"{}\"\n",
            role(B)
        ),
    );
    let out = run(&mut keywarden(&["run", "--once", "--config", config.to_str().unwrap()]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Of B's pair the older key is deactivated (the newer one is kept); the same-named user in
    // the unlisted default account is untouched.
    let in_b = key_statuses(&b, &["pair"]).await;
    let inactive = in_b.values().filter(|s| *s == "Inactive").count();
    assert_eq!(inactive, 1, "one key of B's pair deactivated: {in_b:?}");
    assert_eq!(in_b[&b_newer.id], "Active");
    let ambient = key_statuses(&moto.iam(), &["pair"]).await;
    assert!(
        ambient.values().all(|s| s == "Active"),
        "the default account is not listed, so nothing changes there: {ambient:?}"
    );
    assert_eq!(ambient[&ambient_newer.id], "Active");
}

#[tokio::test(flavor = "multi_thread")]
async fn accounts_are_read_at_once_within_the_global_request_bound() {
    let moto = Moto::start();
    let accounts = [A, B, DENIED];
    let mut entries = String::new();
    for a in accounts {
        let iam = moto.iam_in(a).await;
        for i in 0..2 {
            create_user(&iam, &format!("u{i}"), None).await;
        }
        entries += &format!("[[aws.accounts]]\nid = \"{a}\"\nrole_arn = \"{}\"\n", role(a));
    }
    // Slow ListAccessKeys so that requests overlap whenever the bounds allow it.
    moto.set_faults(r#"{"_delay": {"ListAccessKeys": 0.15}}"#);
    let dir = TempDir::new("accounts-bounds");
    // (max_concurrent_requests, max_concurrent_accounts, least and most requests in flight):
    // each account has two slow users, so more than two in flight means accounts overlap.
    for (global, at_once, least, most_allowed) in [(2, 3, 2, 2), (8, 3, 3, 6), (8, 1, 1, 2)] {
        let aws = format!("max_concurrent_requests = {global}\nmax_concurrent_accounts = {at_once}\n");
        let config = moto_config_aws(&dir, &moto, &aws, &entries);
        moto.take_max_in_flight();
        let (code, report, stderr) = audit_json(&config, &[]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(report["summary"]["users"], 6, "{report}");
        let most = moto.take_max_in_flight();
        assert!(
            (least..=most_allowed).contains(&most),
            "{most} in flight with max_concurrent_requests = {global}, max_concurrent_accounts = {at_once}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_exports_each_accounts_success_and_findings_under_its_id() {
    let moto = Moto::start();
    seed_pair(&moto.iam_in(A).await, "a-pair").await;
    moto.set_faults(&format!(r#"{{"AssumeRole": ["{}"]}}"#, role(DENIED)));
    let dir = TempDir::new("accounts-daemon");
    let port = free_port();
    let config = moto_config(
        &dir,
        &moto,
        &format!(
            "[schedule]\ncron = \"0 0 0 1 1 *\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[aws.accounts]]\nid = \"{A}\"\nrole_arn = \"{}\"\n\n[[aws.accounts]]\nid = \"{DENIED}\"\nrole_arn = \"{}\"\n",
            role(A),
            role(DENIED)
        ),
    );
    let d = DaemonProcess::spawn(
        keywarden(&["run", "--config", config.to_str().unwrap()]),
        port,
        dir.0.join("log"),
    );
    let page = d
        .wait_metrics(30, "the first audit", |m| {
            // Gauges exist (at 0) from the start; the run counter appears once a run ended.
            metric(m, "keywarden_audit_runs_total", &[("outcome", "failed")]).is_some()
        })
        .await;
    let success = |id: &str| metric(&page, "keywarden_account_audit_success", &[("account_id", id)]);
    assert_eq!(success(A), Some(1.0), "{page}");
    assert_eq!(success(DENIED), Some(0.0), "{page}");
    assert_eq!(metric(&page, "keywarden_audit_success", &[]), Some(0.0));
    assert_eq!(
        metric(
            &page,
            "keywarden_violations",
            &[("account_id", A), ("rule", "multiple_active_keys")]
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        metric(
            &page,
            "keywarden_user_active_access_keys",
            &[("account_id", A), ("user", "a-pair")]
        ),
        Some(2.0)
    );
    assert!(
        !page.contains(&format!("account_id=\"{ACCOUNT}\"")),
        "the unlisted default account is not read"
    );
}

/// More accounts than the SDK's shared credentials cache has room for (64): each account's role
/// is still assumed once per run, not again whenever another account's credentials evicted it.
#[tokio::test(flavor = "multi_thread")]
async fn seventy_accounts_assume_each_role_once() {
    let moto = Moto::start();
    let ids: Vec<String> = (1..=70).map(|i| format!("{}", 400_000_000_000_u64 + i)).collect();
    let accounts: String = ids
        .iter()
        .map(|id| format!("[[aws.accounts]]\nid = \"{id}\"\nrole_arn = \"{}\"\n\n", role(id)))
        .collect();
    let dir = TempDir::new("accounts-70");
    let config = moto_config_aws(&dir, &moto, "max_concurrent_accounts = 16\n", &accounts);
    moto.take_stats();
    let (code, report, stderr) = audit_json(&config, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["accounts"].as_array().map(Vec::len), Some(70), "{report}");
    let stats = moto.take_stats();
    assert_eq!(stats["AssumeRole"], 70, "AssumeRole calls: {stats}");
}

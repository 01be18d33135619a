//! A user's credentials beyond access keys, governed end to end through the real binary
//! against moto (and the launcher's service-specific credentials): one account holding every
//! kind, audited in both inventory modes to the same findings; an enforcing run that sets the
//! old SSH key, service-specific credential and signing certificate Inactive, journals each
//! with its kind, and leaves the reported ones alone; `reactivate` undoing one of them.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::*;

/// The ids of what `dev` holds (100 days old unless named otherwise).
struct Held {
    ssh: String,
    git: String,
    /// A Bedrock API key made today without an expiry: young, but long-term.
    bedrock: String,
    cert: String,
    /// The user's ARN: the password's id.
    arn: String,
}

async fn seed(moto: &Moto, dir: &TempDir) -> Held {
    let iam = moto.iam();
    // moto dates a login profile by its user's creation, and every upload by its clock.
    moto.set_clock_days(-100.0);
    create_user(&iam, "dev", None).await;
    create_login_profile(&iam, "dev").await;
    let ssh = upload_ssh_key(&iam, "dev").await;
    let git = create_service_credential(&iam, "dev", "codecommit.amazonaws.com", None).await;
    let cert = upload_signing_certificate(&iam, dir, "dev").await;
    moto.set_clock_days(0.0);
    // A person with console access who never signed in: created today, so not yet unused.
    create_user(&iam, "ops", None).await;
    create_login_profile(&iam, "ops").await;
    let bedrock = create_service_credential(&iam, "dev", "bedrock.amazonaws.com", None).await;
    let arn = iam
        .get_user()
        .user_name("dev")
        .send()
        .await
        .expect("GetUser")
        .user
        .expect("the user")
        .arn;
    Held {
        ssh,
        git: git.service_specific_credential_id,
        bedrock: bedrock.service_specific_credential_id,
        cert,
        arn,
    }
}

const RULES: &str = "[rules.max_credential_age]\nenabled = true\naction = \"deactivate\"\n\
    [rules.long_term_service_credential]\nenabled = true\nservices = [\"bedrock.amazonaws.com\"]\n";

/// (credential_type, credential_id, rule, whether access_key_id is null) of each finding.
fn findings(report: &Value) -> BTreeSet<(String, String, String, bool)> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            (
                s("credential_type"),
                s("credential_id"),
                s("rule"),
                f["access_key_id"].is_null(),
            )
        })
        .collect()
}

/// What IAM says of `dev`'s credentials: id -> status.
async fn statuses(moto: &Moto) -> std::collections::BTreeMap<String, String> {
    let iam = moto.iam();
    let mut out = std::collections::BTreeMap::new();
    let ssh = iam.list_ssh_public_keys().user_name("dev").send().await.expect("ssh");
    for k in ssh.ssh_public_keys.unwrap_or_default() {
        out.insert(k.ssh_public_key_id, k.status.as_str().to_string());
    }
    let sscs = iam
        .list_service_specific_credentials()
        .user_name("dev")
        .send()
        .await
        .expect("sscs");
    for c in sscs.service_specific_credentials.unwrap_or_default() {
        out.insert(c.service_specific_credential_id, c.status.as_str().to_string());
    }
    let certs = iam
        .list_signing_certificates()
        .user_name("dev")
        .send()
        .await
        .expect("certs");
    for c in certs.certificates {
        out.insert(c.certificate_id, c.status.as_str().to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_is_audited_alike_in_both_modes_enforced_journaled_and_undone() {
    let moto = Moto::start();
    let dir = TempDir::new("credential-rules");
    let held = seed(&moto, &dir).await;
    let rules = |kind: &str, id: &str, rule: &str| (kind.to_string(), id.to_string(), rule.to_string(), true);
    let expected: BTreeSet<_> = [
        rules("password", &held.arn, "unused_password"),
        rules("ssh_public_key", &held.ssh, "max_credential_age"),
        rules("service_specific_credential", &held.git, "max_credential_age"),
        rules(
            "service_specific_credential",
            &held.bedrock,
            "long_term_service_credential",
        ),
        rules("signing_certificate", &held.cert, "max_credential_age"),
    ]
    .into();

    for mode in ["api", "credential-report"] {
        let config = moto_config_aws(&dir, &moto, &format!("inventory = \"{mode}\"\n"), RULES);
        let (code, report, err) = audit_json(&config, &[]);
        assert_eq!(code, 3, "violations: {err}");
        assert_eq!(findings(&report), expected, "{mode}: {report:#}");
        let deactivating: BTreeSet<&str> = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["action"] == "deactivate")
            .filter_map(|f| f["credential_id"].as_str())
            .collect();
        assert_eq!(
            deactivating,
            [held.ssh.as_str(), held.git.as_str(), held.cert.as_str()].into()
        );
    }

    let config = moto_config(
        &dir,
        &moto,
        &format!("[enforcement]\nmode = \"enforce\"\ngrace_period = \"0s\"\n{RULES}"),
    );
    let out = run(&mut keywarden(&["run", "--once", "--config", config.to_str().unwrap()]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let now = statuses(&moto).await;
    for (id, want) in [
        (&held.ssh, "Inactive"),
        (&held.git, "Inactive"),
        (&held.cert, "Inactive"),
        (&held.bedrock, "Active"),
    ] {
        assert_eq!(now.get(id).map(String::as_str), Some(want), "{id}: {now:?}\n{stderr}");
    }
    let journal = std::fs::read_to_string(dir.0.join("actions.jsonl")).expect("the journal");
    let lines: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let done: BTreeSet<(&str, &str)> = lines
        .iter()
        .filter(|l| l["action"] == "deactivate" && l["outcome"] == "success")
        .map(|l| {
            (
                l["credential_type"].as_str().unwrap(),
                l["credential_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        done,
        [
            ("ssh_public_key", held.ssh.as_str()),
            ("service_specific_credential", held.git.as_str()),
            ("signing_certificate", held.cert.as_str()),
        ]
        .into()
    );
    assert!(lines.iter().all(|l| l.get("access_key_id").is_none()), "{journal}");

    let (code, stdout, err) = outputs(
        keywarden(&[
            "reactivate",
            &held.ssh,
            "--reason",
            "CodeCommit mirror still pushes with it",
            "--snooze",
            "7d",
            "--config",
            config.to_str().unwrap(),
        ])
        .env("SUDO_USER", "alice-oncall"),
    );
    assert_eq!(code, 0, "{stdout}{err}");
    let now = statuses(&moto).await;
    assert_eq!(now[&held.ssh], "Active", "{now:?}");
    assert_eq!(now[&held.git], "Inactive", "only the one named");
    assert!(
        stdout.contains(&held.ssh) && stdout.contains("snoozed until"),
        "{stdout}"
    );
    let journal = std::fs::read_to_string(dir.0.join("actions.jsonl")).expect("the journal");
    let last: Value = serde_json::from_str(journal.lines().last().unwrap()).unwrap();
    assert_eq!(
        (&last["action"], &last["credential_type"], &last["operator"]),
        (&"reactivate".into(), &"ssh_public_key".into(), &"alice-oncall".into())
    );

    // The next run leaves the snoozed key alone, and has nothing else left to do.
    let out = run(&mut keywarden(&["run", "--once", "--config", config.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(statuses(&moto).await[&held.ssh], "Active", "snoozed");
}

/// (GetLoginProfile, ListSSHPublicKeys, ListSigningCertificates) requests since the last call.
fn credential_reads(moto: &Moto) -> (u64, u64, u64) {
    let s = moto.take_stats();
    let n = |k: &str| s.get(k).and_then(Value::as_u64).unwrap_or(0);
    (
        n("GetLoginProfile"),
        n("ListSSHPublicKeys"),
        n("ListSigningCertificates"),
    )
}

/// Between full refreshes a daemon run takes a user's other credentials from the state: no
/// request per user and kind in either mode. In credential-report mode a changed count of
/// active certificates lists them again at once; `keywarden audit` always reads live.
#[tokio::test(flavor = "multi_thread")]
async fn runs_between_full_refreshes_list_no_credential_and_a_changed_certificate_count_does() {
    let moto = Moto::start();
    let dir = TempDir::new("credential-memory");
    let iam = moto.iam();
    moto.set_clock_days(-100.0);
    create_user(&iam, "dev", None).await;
    create_login_profile(&iam, "dev").await;
    upload_ssh_key(&iam, "dev").await;
    upload_signing_certificate(&iam, &dir, "dev").await;
    moto.set_clock_days(0.0);
    let rules = "[rules.max_credential_age]\nenabled = true\n";
    let run_once = |config: &std::path::Path| {
        let out = run(&mut keywarden(&["run", "--once", "--config", config.to_str().unwrap()]));
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    };

    let api = moto_config_aws(&dir, &moto, "inventory = \"api\"\n", rules);
    credential_reads(&moto);
    run_once(&api);
    assert_eq!(credential_reads(&moto), (1, 1, 1), "no state yet: a full refresh");
    run_once(&api);
    assert_eq!(credential_reads(&moto), (0, 0, 0), "remembered");
    let (code, report, err) = audit_json(&api, &[]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(report["summary"]["violations_by_rule"]["max_credential_age"], 2);
    assert_eq!(credential_reads(&moto), (1, 1, 1), "audit reads IAM as it is now");

    std::fs::remove_file(dir.0.join("state.json")).expect("a state to forget");
    let report_mode = moto_config_aws(&dir, &moto, "inventory = \"credential-report\"\n", rules);
    run_once(&report_mode);
    assert_eq!(credential_reads(&moto), (0, 1, 1), "the report has the password");
    run_once(&report_mode);
    assert_eq!(credential_reads(&moto), (0, 0, 0), "remembered");
    moto.set_clock_days(-100.0);
    upload_signing_certificate(&iam, &dir, "dev").await;
    moto.set_clock_days(0.0);
    run_once(&report_mode);
    assert_eq!(
        credential_reads(&moto),
        (0, 0, 1),
        "two active certificates in the report, one remembered"
    );
    let state: Value = serde_json::from_str(&std::fs::read_to_string(dir.0.join("state.json")).unwrap()).unwrap();
    let certs = state["listings"][0]["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["credential_type"] == "signing_certificate")
        .count();
    assert_eq!(certs, 2, "{state:#}");
}

//! Console passwords end to end, through the real binary against moto: an unused password's
//! login profile deleted by an enforcing run (its settings journaled), and given back by
//! `reactivate USER --password` as a temporary password handed over in Secrets Manager; the
//! refusals that change nothing (a password a person made again, a hand-over that cannot
//! work, a user name without --password).

use serde_json::{json, Value};

use crate::common::*;

/// The login profile `user` has now: `Some(password_reset_required)`, or `None`.
async fn login_profile(moto: &Moto, user: &str) -> Option<bool> {
    match moto.iam().get_login_profile().user_name(user).send().await {
        Ok(a) => Some(a.login_profile.expect("LoginProfile").password_reset_required),
        Err(e) => {
            let code = aws_sdk_iam::error::ProvideErrorMetadata::code(&e).map(str::to_string);
            assert_eq!(code.as_deref(), Some("NoSuchEntity"), "{e:?}");
            None
        }
    }
}

fn secret(moto: &Moto, name: &str) -> Option<Value> {
    let (status, answer) = moto.json_call(
        "secretsmanager",
        "secretsmanager.GetSecretValue",
        "application/x-amz-json-1.1",
        &json!({"SecretId": name, "VersionStage": "AWSCURRENT"}),
    );
    if !status.contains(" 200") {
        return None;
    }
    serde_json::from_str(answer["SecretString"].as_str()?).ok()
}

fn journal(dir: &TempDir) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.0.join("actions.jsonl")).expect("the journal");
    text.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect()
}

fn reactivate(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["reactivate"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--reason", "back from leave", "--snooze", "7d"]);
    all.extend_from_slice(&["--config", config.to_str().unwrap()]);
    outputs(keywarden(&all).env("SUDO_USER", "alice-oncall"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unused_password_is_deleted_journaled_and_given_back_through_secrets_manager() {
    let moto = Moto::start();
    let dir = TempDir::new("passwords");
    let iam = moto.iam();
    // moto dates a login profile by its user's creation: both unused for 100 days.
    moto.set_clock_days(-100.0);
    for user in ["dev", "ann"] {
        create_user(&iam, user, None).await;
        create_login_profile(&iam, user).await;
    }
    moto.set_clock_days(0.0);
    let rules = "[enforcement]\nmode = \"enforce\"\ngrace_period = \"0s\"\n\
        [rules.unused_password]\naction = \"delete_login_profile\"\n";
    let config = moto_config(&dir, &moto, rules);

    let (code, report, err) = audit_json(&config, &[]);
    assert_eq!(code, 3, "{err}");
    let actions: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["delete_login_profile", "delete_login_profile"], "{report:#}");

    let out = run(&mut keywarden(&["run", "--once", "--config", config.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(login_profile(&moto, "dev").await, None, "deleted");
    assert_eq!(login_profile(&moto, "ann").await, None, "deleted");
    let deleted: Vec<Value> = journal(&dir)
        .into_iter()
        .filter(|l| l["action"] == "delete_login_profile" && l["outcome"] == "success")
        .collect();
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    for l in &deleted {
        assert_eq!(l["credential_type"], "password");
        assert!(l["credential_id"].as_str().unwrap().ends_with(":user/dev") || l["user"] == "ann");
        assert_eq!(l["login_profile"]["password_reset_required"], false, "{l}");
        assert!(l["login_profile"]["created"].is_string(), "{l}");
    }

    // A person gives ann a console password again: it is theirs.
    create_login_profile(&iam, "ann").await;
    let (code, _, err) = reactivate(&config, &["ann", "--password"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("has a console password again"), "{err}");

    // A user name without --password is not an id the journal knows, and says what to do.
    let (code, _, err) = reactivate(&config, &["dev"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("--password"), "{err}");

    // A hand-over that cannot work changes nothing.
    let text = std::fs::read_to_string(&config).unwrap();
    let unreachable = dir.write(
        "nowhere.toml",
        &format!("{text}\n[rotation]\nendpoint_url = \"http://127.0.0.1:9\"\n"),
    );
    let (code, _, err) = reactivate(&unreachable, &["dev", "--password"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(login_profile(&moto, "dev").await, None, "no login profile made");

    let (code, stdout, err) = reactivate(&config, &["dev", "--password"]);
    assert_eq!(code, 0, "{stdout}{err}");
    assert_eq!(login_profile(&moto, "dev").await, Some(true), "reset required");
    let name = format!("keywarden/{ACCOUNT}/dev/password");
    let stored = secret(&moto, &name).expect("the secret");
    let password = stored["Password"].as_str().expect("Password").to_string();
    assert_eq!((stored["UserName"].as_str(), password.len()), (Some("dev"), 32));
    assert!(stdout.contains(&name) && stdout.contains("first sign-in"), "{stdout}");
    for (what, text) in [("stdout", &stdout), ("stderr", &err)] {
        assert!(!text.contains(&password), "the password leaked into {what}");
    }
    let raw = std::fs::read_to_string(dir.0.join("actions.jsonl")).unwrap();
    assert!(!raw.contains(&password), "the password leaked into the journal");
    let last = journal(&dir).pop().unwrap();
    assert_eq!(
        (&last["action"], &last["credential_type"], &last["outcome"]),
        (&json!("reactivate"), &json!("password"), &json!("success"))
    );
    assert!(last["secret_arn"].as_str().unwrap().contains(&name), "{last}");

    // The next run leaves the new password alone: new, and snoozed.
    let out = run(&mut keywarden(&["run", "--once", "--config", config.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(login_profile(&moto, "dev").await, Some(true));
}

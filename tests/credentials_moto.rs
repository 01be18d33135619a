//! The credential sources people really use, through the real binary against moto: a HOME
//! of its own with `.aws/config`, no static keys in the environment. `credential_process`
//! (a script printing keys, and one that fails), `source_profile` + `role_arn` (AssumeRole
//! at moto), SSO with a cached token in both profile styles (`sso_session` and the legacy
//! `sso_start_url`) against the launcher's fake of the SSO portal, an expired SSO token, web
//! identity (AssumeRoleWithWebIdentity at moto), and the launcher's fakes of the ECS/EKS
//! container endpoint and of IMDSv2.
//! moto records which access key id signed each request, so each test sees that the keys
//! came from the source it configured.

use std::path::PathBuf;
use std::process::Command;

use crate::common::*;

/// A HOME with `.aws/config` = `aws_config`, and keywarden's config for moto.
struct Home {
    dir: TempDir,
    config: PathBuf,
}

impl Home {
    fn new(tag: &str, moto: &Moto, aws_config: &str) -> Home {
        let dir = TempDir::new(tag);
        std::fs::create_dir_all(dir.0.join(".aws/sso/cache")).unwrap();
        dir.write(".aws/config", aws_config);
        dir.write(".aws/credentials", "");
        let config = moto_config(&dir, moto, "");
        Home { dir, config }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.0.join(rel)
    }

    /// An executable script under HOME.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let p = self.dir.write(name, &format!("#!/bin/sh\n{body}\n"));
        std::process::Command::new("chmod").arg("+x").arg(&p).status().unwrap();
        p
    }

    /// `keywarden audit` with AWS_PROFILE=`profile` and only this HOME's files to go on.
    fn audit(&self, moto: &Moto, profile: &str) -> (i32, String, String) {
        outputs(&mut self.command(moto, profile))
    }

    fn command(&self, moto: &Moto, profile: &str) -> Command {
        let mut cmd: Command = keywarden(&["audit", "--config", self.config.to_str().unwrap(), "--format", "json"]);
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("HOME", &self.dir.0)
            .env("AWS_CONFIG_FILE", self.path(".aws/config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.path(".aws/credentials"))
            .env("AWS_PROFILE", profile)
            // STS (role_arn) and the SSO portal are reached where the SDK's own endpoint
            // settings say, as with any emulator or VPC endpoint.
            .env("AWS_ENDPOINT_URL", moto.endpoint());
        cmd
    }
}

/// The actions moto saw signed by `key_id`.
fn calls_by(moto: &Moto, key_id: &str) -> serde_json::Value {
    moto.callers()[key_id].clone()
}

fn assert_complete(code: i32, out: &str, err: &str) {
    let report: serde_json::Value =
        serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}\nstderr: {err}"));
    assert_eq!(report["complete"], true, "{out}\nstderr: {err}");
    assert!(code == 0 || code == 3, "exit {code}\n{out}\nstderr: {err}");
}

/// What a user reads: no cargo features, no SDK type names.
fn assert_readable(text: &str) {
    for bad in [
        "cargo",
        "feature",
        "CredentialsError",
        "DispatchFailure",
        "ProviderError",
        "ConnectorError",
    ] {
        assert!(!text.contains(bad), "the message names {bad:?}:\n{text}");
    }
}

#[tokio::test]
async fn credential_process_profiles_work_and_a_failing_one_shows_its_stderr() {
    let moto = Moto::start();
    create_user(&moto.iam(), "alice", None).await;
    let home = Home::new("cred-process", &moto, "");
    let ok = home.script(
        "creds.sh",
        r#"echo '{"Version": 1, "AccessKeyId": "AKIAPROCESS000000001", "SecretAccessKey": "process-secret"}'"#,
    );
    let broken = home.script("broken.sh", "echo 'vault is locked: run vault login' >&2\nexit 3");
    home.dir.write(
        ".aws/config",
        &format!(
            "[profile vault]\ncredential_process = {}\nregion = us-east-1\n\n[profile broken]\ncredential_process = {}\nregion = us-east-1\n",
            ok.display(),
            broken.display()
        ),
    );

    let (code, out, err) = home.audit(&moto, "vault");
    assert_complete(code, &out, &err);
    let calls = calls_by(&moto, "AKIAPROCESS000000001");
    assert!(
        calls["ListUsers"].as_u64() >= Some(1),
        "the process's key read IAM: {calls}"
    );

    let (code, out, err) = home.audit(&moto, "broken");
    assert_eq!(code, 1, "{out}\n{err}");
    let all = format!("{out}\n{err}");
    assert!(
        all.contains("the credential_process of profile broken failed")
            && all.contains("vault is locked: run vault login"),
        "{all}"
    );
    assert!(all.contains("3"), "the exit code is named: {all}");
    assert_readable(&all);
}

#[tokio::test]
async fn a_role_profile_with_source_profile_assumes_the_role_with_the_source_keys() {
    let moto = Moto::start();
    create_user(&moto.iam(), "alice", None).await;
    let home = Home::new("cred-role", &moto, "");
    home.dir.write(
        ".aws/credentials",
        "[base]\naws_access_key_id = AKIABASE000000000001\naws_secret_access_key = base-secret\n",
    );
    home.dir.write(
        ".aws/config",
        &format!(
            "[profile base]\nregion = us-east-1\n\n[profile audit]\nrole_arn = arn:aws:iam::{ACCOUNT}:role/keywarden-audit\nsource_profile = base\nrole_session_name = keywarden\nregion = us-east-1\n"
        ),
    );
    let (code, out, err) = home.audit(&moto, "audit");
    assert_complete(code, &out, &err);
    let callers = moto.callers();
    assert_eq!(callers["AKIABASE000000000001"]["AssumeRole"], 1, "{callers}");
    assert!(
        callers["AKIABASE000000000001"]["ListUsers"].is_null(),
        "the source keys only assume the role: {callers}"
    );
    let role_reads = callers
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.as_str() != "AKIABASE000000000001")
        .any(|(_, v)| v["ListUsers"].as_u64() >= Some(1));
    assert!(role_reads, "the role's session keys read IAM: {callers}");
}

/// The SSO cache file of an `sso_session` (named by the SHA-1 of the session name) or of a
/// legacy profile (the SHA-1 of the start URL).
fn sso_cache_name(identifier: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s '{identifier}' | sha1sum"))
        .output()
        .expect("sha1sum");
    let hex = String::from_utf8_lossy(&out.stdout);
    format!("{}.json", hex.split_whitespace().next().expect("a digest"))
}

fn sso_config() -> String {
    format!(
        "[profile corp-audit]\nsso_session = corp\nsso_account_id = {ACCOUNT}\nsso_role_name = SecurityAudit\nregion = us-east-1\n\n\
         [sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = us-east-1\nsso_registration_scopes = sso:account:access\n\n\
         [profile legacy-audit]\nsso_start_url = https://legacy.awsapps.com/start\nsso_region = us-east-1\nsso_account_id = {ACCOUNT}\nsso_role_name = SecurityAudit\nregion = us-east-1\n"
    )
}

fn cached_token(token: &str, start_url: &str, expires_in_hours: i64) -> String {
    let expires = (chrono::Utc::now() + chrono::TimeDelta::hours(expires_in_hours))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!(
        r#"{{"accessToken": "{token}", "expiresAt": "{expires}", "region": "us-east-1", "startUrl": "{start_url}"}}"#
    )
}

#[tokio::test]
async fn sso_profiles_of_both_styles_work_with_a_cached_token() {
    let moto = Moto::start();
    create_user(&moto.iam(), "alice", None).await;
    moto.set_sso_tokens(r#"{"session-token": "AKIASSOSESSION000001", "legacy-token": "AKIASSOLEGACY0000001"}"#);
    let home = Home::new("cred-sso", &moto, &sso_config());
    home.dir.write(
        &format!(".aws/sso/cache/{}", sso_cache_name("corp")),
        &cached_token("session-token", "https://corp.awsapps.com/start", 8),
    );
    home.dir.write(
        &format!(".aws/sso/cache/{}", sso_cache_name("https://legacy.awsapps.com/start")),
        &cached_token("legacy-token", "https://legacy.awsapps.com/start", 8),
    );

    for (profile, key) in [
        ("corp-audit", "AKIASSOSESSION000001"),
        ("legacy-audit", "AKIASSOLEGACY0000001"),
    ] {
        let (code, out, err) = home.audit(&moto, profile);
        assert_complete(code, &out, &err);
        let calls = calls_by(&moto, key);
        assert!(
            calls["ListUsers"].as_u64() >= Some(1),
            "{profile}: the portal's keys read IAM: {calls}"
        );
    }
}

#[tokio::test]
async fn an_expired_sso_login_says_to_run_aws_sso_login() {
    let moto = Moto::start();
    // Only the legacy token is known to the portal; the session's cached token is expired.
    moto.set_sso_tokens(r#"{"other-token": "AKIASSOOTHER00000001"}"#);
    let home = Home::new("cred-sso-expired", &moto, &sso_config());
    home.dir.write(
        &format!(".aws/sso/cache/{}", sso_cache_name("corp")),
        &cached_token("session-token", "https://corp.awsapps.com/start", -2),
    );
    // The legacy profile's token is not expired locally but the portal no longer knows it.
    home.dir.write(
        &format!(".aws/sso/cache/{}", sso_cache_name("https://legacy.awsapps.com/start")),
        &cached_token("revoked-token", "https://legacy.awsapps.com/start", 8),
    );
    for profile in ["corp-audit", "legacy-audit"] {
        let (code, out, err) = home.audit(&moto, profile);
        assert_eq!(code, 1, "{profile}: {out}\n{err}");
        let all = format!("{out}\n{err}");
        assert!(
            all.contains(&format!("run `aws sso login --profile {profile}`")),
            "{profile}: {all}"
        );
        assert_readable(&all);
    }
}

#[tokio::test]
async fn no_credentials_at_all_says_where_it_looked() {
    let moto = Moto::start();
    let home = Home::new("cred-none", &moto, "");
    let (code, out, err) = home.audit(&moto, "default");
    assert_eq!(code, 1, "{out}\n{err}");
    let all = format!("{out}\n{err}");
    assert!(all.contains("no AWS credentials found"), "{all}");
    assert_readable(&all);
}

#[tokio::test]
async fn web_identity_container_and_instance_credentials_work() {
    let moto = Moto::start();
    create_user(&moto.iam(), "alice", None).await;
    let home = Home::new("cred-hosts", &moto, "");
    let token = home.dir.write(
        "web-identity-token",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJrZXl3YXJkZW4ifQ.c2ln",
    );

    // Web identity (EKS IRSA, GitHub Actions OIDC): AssumeRoleWithWebIdentity at moto.
    let _ = moto.take_stats();
    let mut cmd = home.command(&moto, "default");
    cmd.env("AWS_WEB_IDENTITY_TOKEN_FILE", &token)
        .env("AWS_ROLE_ARN", format!("arn:aws:iam::{ACCOUNT}:role/keywarden-web"))
        .env("AWS_ROLE_SESSION_NAME", "keywarden");
    let (code, out, err) = outputs(&mut cmd);
    assert_complete(code, &out, &err);
    let stats = moto.take_stats();
    assert_eq!(stats["AssumeRoleWithWebIdentity"], 1, "{stats}");

    // ECS task role / EKS pod identity: the container credentials endpoint, with its token.
    moto.set_faults(r#"{"_container_token": "container-auth"}"#);
    let mut cmd = home.command(&moto, "default");
    cmd.env(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        format!("{}/_keywarden/container-credentials", moto.endpoint()),
    )
    .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container-auth");
    let (code, out, err) = outputs(&mut cmd);
    assert_complete(code, &out, &err);
    assert!(calls_by(&moto, "AKIACONTAINER0000001")["ListUsers"].as_u64() >= Some(1));

    // EC2 instance role: IMDSv2.
    let mut cmd = home.command(&moto, "default");
    cmd.env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", moto.endpoint());
    let (code, out, err) = outputs(&mut cmd);
    assert_complete(code, &out, &err);
    assert!(calls_by(&moto, "AKIAINSTANCE00000001")["ListUsers"].as_u64() >= Some(1));
}

#[tokio::test]
async fn a_denied_call_names_the_action_and_the_principal() {
    let moto = Moto::start();
    create_user(&moto.iam(), "alice", None).await;
    moto.set_faults(r#"{"ListUsers": ["*"]}"#);
    let dir = TempDir::new("cred-denied");
    let (code, report, err) = audit_json(&moto_config(&dir, &moto, ""), &[]);
    assert_eq!(code, 1, "{report:#}\n{err}");
    let message = report["errors"][0]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("may not call iam:ListUsers"), "{message}");
    assert!(message.starts_with("arn:aws:"), "the principal first: {message}");
    assert_readable(&message);
}

/// An `aws configure sso` profile (sso_session) that never logged in has no cached token at
/// all: the same hint as an expired one. A profile that no file defines is named as missing,
/// not hidden behind the instance-metadata error of the rest of the chain.
#[tokio::test]
async fn a_never_logged_in_sso_session_and_a_missing_profile_say_what_to_do() {
    let moto = Moto::start();
    let home = Home::new("cred-never", &moto, &sso_config());
    let (code, out, err) = home.audit(&moto, "corp-audit");
    assert_eq!(code, 1, "{out}\n{err}");
    let all = format!("{out}\n{err}");
    assert!(all.contains("run `aws sso login --profile corp-audit`"), "{all}");
    assert_readable(&all);
    let (code, out, err) = home.audit(&moto, "nope");
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("FAILED: nothing could be read: GetCallerIdentity: profile nope does not exist"),
        "{err}"
    );
    assert!(!err.contains("IMDS"), "{err}");
}

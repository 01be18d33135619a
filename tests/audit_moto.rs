//! `keywarden audit` against a real moto server over HTTP, checked field by field.

use crate::common::*;
use serde_json::Value;

fn ts(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    chrono::DateTime::parse_from_rfc3339(s).expect("RFC 3339").timestamp()
}

/// (user, key, rule) -> finding
fn by_key(report: &Value) -> std::collections::BTreeMap<(String, String, String), Value> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                (
                    f["user"].as_str().unwrap().to_string(),
                    f["access_key_id"].as_str().unwrap().to_string(),
                    f["rule"].as_str().unwrap().to_string(),
                ),
                f.clone(),
            )
        })
        .collect()
}

const EXEMPTIONS: &str = r#"
[[exemptions]]
user_tag = "keywarden=exempt"
reason = "tag-exempt"

[[exemptions]]
path_prefix = "/service/legacy/"
rules = ["unused_key"]
reason = "path-exempt"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn report_fields_for_every_kind_of_user() {
    let moto = Moto::start();
    let iam = moto.iam();
    for (name, path) in [
        ("zero", None),
        ("one-fresh", None),
        ("two-active", None),
        ("active-inactive", None),
        ("old-used", None),
        ("tagged", None),
        ("svc", Some("/service/legacy/")),
    ] {
        create_user(&iam, name, path).await;
    }
    tag_user(&iam, "tagged", "keywarden", "exempt").await;

    moto.set_clock_days(-100.0);
    let inactive_old = create_key(&iam, "active-inactive").await;
    deactivate(&iam, "active-inactive", &inactive_old).await;
    let old_used = create_key(&iam, "old-used").await;
    let tagged = create_key(&iam, "tagged").await;
    moto.set_clock_days(-60.0);
    let two_a = create_key(&iam, "two-active").await;
    let svc = create_key(&iam, "svc").await;
    moto.set_clock_days(-10.0);
    let two_b = create_key(&iam, "two-active").await;
    moto.set_clock_days(-1.0);
    use_key(&moto, &two_b).await;
    moto.set_clock_days(0.0);
    let fresh = create_key(&iam, "one-fresh").await;
    use_key(&moto, &fresh).await;
    let active_new = create_key(&iam, "active-inactive").await;
    use_key(&moto, &active_new).await;
    use_key(&moto, &old_used).await;

    let dir = TempDir::new("fields");
    let config = moto_config(&dir, &moto, EXEMPTIONS);
    let (code, report, stderr) = audit_json(&config, &[]);
    assert_eq!(code, 3, "violations found -> exit 3; stderr: {stderr}");
    assert_eq!(report["complete"], true);
    let evaluated = ts(&report["evaluated_at"]);
    let grace = 7 * 86_400;

    let s = &report["summary"];
    assert_eq!(s["users"], 7);
    assert_eq!(s["access_keys"], 8);
    assert_eq!(s["active_access_keys"], 7);
    assert_eq!(s["root_access_keys_present"], false);
    assert_eq!(report["accounts"][0]["account_id"], ACCOUNT);

    let f = by_key(&report);
    let keys: Vec<_> = f.keys().map(|(u, k, r)| (u.as_str(), k.as_str(), r.as_str())).collect();
    assert_eq!(
        keys,
        {
            let mut expected = vec![
                ("old-used", old_used.id.as_str(), "max_key_age"),
                ("svc", svc.id.as_str(), "unused_key"),
                ("tagged", tagged.id.as_str(), "max_key_age"),
                ("tagged", tagged.id.as_str(), "unused_key"),
                ("two-active", two_a.id.as_str(), "multiple_active_keys"),
                ("two-active", two_a.id.as_str(), "unused_key"),
            ];
            expected.sort();
            expected
        },
        "exactly these findings"
    );

    for finding in f.values() {
        assert_eq!(finding["account_id"], ACCOUNT);
    }
    // The older, never-used key of two is the one to go; the recently used one is kept.
    let multi = &f[&("two-active".into(), two_a.id.clone(), "multiple_active_keys".into())];
    assert_eq!(ts(&multi["created"]), two_a.created);
    assert!(multi["last_used"].is_null());
    assert_eq!(multi["exempt"], false);
    assert!(multi["exemption_reason"].is_null());
    assert_eq!(multi["action"], "deactivate");
    assert_eq!(ts(&multi["deactivate_after"]), evaluated + grace);

    let age = &f[&("old-used".into(), old_used.id.clone(), "max_key_age".into())];
    assert_eq!(age["action"], "report");
    assert!(age["deactivate_after"].is_null());
    assert!((ts(&age["last_used"]) - evaluated).abs() < 120, "used just now: {age}");
    assert!((evaluated - ts(&age["created"]) - 100 * 86_400).abs() < 120);

    for rule in ["max_key_age", "unused_key"] {
        let t = &f[&("tagged".into(), tagged.id.clone(), rule.into())];
        assert_eq!(t["exempt"], true, "{t}");
        assert_eq!(t["exemption_reason"], "tag-exempt");
        assert!(t["deactivate_after"].is_null());
    }
    let p = &f[&("svc".into(), svc.id.clone(), "unused_key".into())];
    assert_eq!(
        (p["exempt"].clone(), p["exemption_reason"].clone()),
        (Value::Bool(true), "path-exempt".into())
    );

    assert_eq!(s["violations"], 3);
    assert_eq!(s["exempt"], 3);
    assert_eq!(s["planned_deactivations"], 1);

    // The table shows the same findings for people.
    let out = run(&mut keywarden(&["audit", "--config", config.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(3));
    let table = String::from_utf8_lossy(&out.stdout);
    for line in table.lines() {
        assert!(line.chars().count() <= 80, "{line}");
    }
    assert!(
        table.contains(&two_a.id) && table.contains("multiple_active_keys"),
        "{table}"
    );
    assert!(table.contains("exempt: tag-exempt"), "{table}");
}

#[tokio::test(flavor = "multi_thread")]
async fn many_users_are_paginated_and_read_once_each() {
    let moto = Moto::start();
    let iam = moto.iam();
    for i in 0..130 {
        let name = format!("user-{i:03}");
        create_user(&iam, &name, None).await;
        if i % 2 == 0 {
            create_key(&iam, &name).await;
        }
    }
    moto.take_stats();
    let dir = TempDir::new("many");
    let (code, report, stderr) = audit_json(&moto_config(&dir, &moto, ""), &[]);
    assert_eq!(code, 0, "fresh keys are compliant; stderr: {stderr}");
    assert_eq!(report["summary"]["users"], 130);
    assert_eq!(report["summary"]["access_keys"], 65);
    assert_eq!(report["findings"].as_array().unwrap().len(), 0);
    let stats = moto.take_stats();
    assert_eq!(stats["ListUsers"], 2, "two pages of at most 100: {stats}");
    assert_eq!(stats["ListAccessKeys"], 130);
    assert_eq!(stats["GetAccessKeyLastUsed"], 65, "only active keys");
    assert!(
        stats.get("ListUserTags").is_none(),
        "no tag exemption, no tag reads: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn at_a_hundred_days_ahead_every_active_key_is_too_old() {
    let moto = Moto::start();
    let iam = moto.iam();
    let mut active = Vec::new();
    for name in ["a", "b", "c"] {
        create_user(&iam, name, None).await;
        let k = create_key(&iam, name).await;
        use_key(&moto, &k).await;
        active.push(k.id);
    }
    let inactive = create_key(&iam, "c").await;
    deactivate(&iam, "c", &inactive).await;

    let dir = TempDir::new("at");
    let config = moto_config(&dir, &moto, "");
    let (code, _, _) = audit_json(&config, &[]);
    assert_eq!(code, 0);

    let at = chrono::Utc::now() + chrono::TimeDelta::days(100);
    let at_s = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (code, report, _) = audit_json(&config, &["--at", &at_s]);
    assert_eq!(code, 3);
    assert_eq!(report["evaluated_at"], at_s.as_str());
    let f = by_key(&report);
    let mut too_old: Vec<&str> = f
        .keys()
        .filter(|(_, _, r)| r == "max_key_age")
        .map(|(_, k, _)| k.as_str())
        .collect();
    too_old.sort();
    let mut expected: Vec<&str> = active.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(too_old, expected);
    assert!(
        !f.keys().any(|(_, k, _)| *k == inactive.id),
        "inactive keys are never findings"
    );
    // Used "today", so 100 days idle by then too; deadlines count from the evaluation instant.
    let unused = f.values().find(|v| v["rule"] == "unused_key").expect("unused finding");
    assert_eq!(ts(&unused["deactivate_after"]), at.timestamp() + 7 * 86_400);
}

#[tokio::test(flavor = "multi_thread")]
async fn first_seen_comes_from_the_state_file() {
    let moto = Moto::start();
    let iam = moto.iam();
    create_user(&iam, "idle", None).await;
    moto.set_clock_days(-50.0);
    let k = create_key(&iam, "idle").await;
    moto.set_clock_days(0.0);

    let dir = TempDir::new("state");
    let config = moto_config(&dir, &moto, "");
    dir.write(
        "state.json",
        &format!(
            r#"{{"schema_version": 1, "findings": [{{"account_id": "{ACCOUNT}", "user": "idle",
               "access_key_id": "{}", "rule": "unused_key", "first_seen": "2026-01-01T00:00:00Z"}}]}}"#,
            k.id
        ),
    );
    let before = std::fs::read(dir.0.join("state.json")).unwrap();
    let (code, report, _) = audit_json(&config, &[]);
    assert_eq!(code, 3);
    assert_eq!(report["findings"][0]["deactivate_after"], "2026-01-08T00:00:00Z");
    assert_eq!(
        std::fs::read(dir.0.join("state.json")).unwrap(),
        before,
        "audit never writes state"
    );

    dir.write("state.json", "{ not json");
    let out = run(&mut keywarden(&["audit", "--config", config.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("state.json"), "names the file: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_users_fail_closed() {
    let moto = Moto::start();
    let iam = moto.iam();
    for name in ["alice", "bob", "carol"] {
        create_user(&iam, name, None).await;
        moto.set_clock_days(-60.0);
        create_key(&iam, name).await;
        moto.set_clock_days(0.0);
    }
    moto.set_faults(r#"{"ListAccessKeys": ["bob"]}"#);
    let dir = TempDir::new("faults");
    let (code, report, stderr) = audit_json(&moto_config(&dir, &moto, ""), &[]);
    assert_eq!(code, 1, "incomplete -> exit 1 even with violations");
    assert_eq!(report["complete"], false);
    assert!(
        stderr.contains("INCOMPLETE: 1 of 3 user(s) could not be read"),
        "{stderr}"
    );
    assert_eq!(report["summary"]["violations"], Value::Null, "not known: {report:#}");
    assert_eq!(report["summary"]["violations_found"], 2, "alice's and carol's");
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["user"], "bob");
    assert_eq!(errors[0]["operation"], "ListAccessKeys");
    assert!(
        errors[0]["message"].as_str().unwrap().contains("AccessDenied"),
        "{}",
        errors[0]
    );
    let users: std::collections::BTreeSet<_> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["user"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        users,
        ["alice", "carol"].map(String::from).into(),
        "nothing decided for bob"
    );
    assert_eq!(report["summary"]["unreadable_users"], 1);
    // The table says it first, with what to do, and shows no count as the answer.
    let (code, table, _) = outputs(&mut keywarden(&[
        "audit",
        "--config",
        dir.0.join("keywarden.toml").to_str().unwrap(),
    ]));
    assert_eq!(code, 1);
    let mut lines = table.lines();
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("INCOMPLETE: 1 of 3 user(s) could not be read")),
        "{table}"
    );
    assert!(
        lines.next().is_some_and(|l| l.starts_with("What to do: grant")),
        "{table}"
    );
    assert!(
        table.contains("Violations not known (incomplete); among what was read 2"),
        "{table}"
    );
    assert!(table.contains("Users 2 (1 could not be read)"), "{table}");

    moto.set_faults(r#"{"GetAccessKeyLastUsed": ["*"]}"#);
    let (code, report, _) = audit_json(&moto_config(&dir, &moto, ""), &[]);
    assert_eq!(code, 1);
    assert_eq!(report["errors"].as_array().unwrap().len(), 3);
    assert_eq!(report["findings"].as_array().unwrap().len(), 0);
    assert_eq!(report["summary"]["planned_deactivations"], 0);
}

#[test]
fn unreachable_endpoint_is_a_runtime_error() {
    // A port nobody listens on: bind, learn the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new("unreachable");
    let config = dir.write(
        "keywarden.toml",
        &format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"http://127.0.0.1:{port}\"\nmax_attempts = 1\n[state]\npath = \"{}\"\n",
            dir.0.join("state.json").display()
        ),
    );
    let (code, report, _) = audit_json(&config, &[]);
    assert_eq!(code, 1);
    assert_eq!(report["complete"], false);
    let ops: Vec<_> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    // Without an identity there is no account to label anything with: nothing else is read.
    assert_eq!(ops, ["GetCallerIdentity"], "{report}");
    assert_eq!(report["errors"][0]["account_id"], "unknown", "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_report_mode_gives_the_same_findings_as_api_mode() {
    let moto = Moto::start();
    let iam = moto.iam();
    for (name, path) in [
        ("fresh", None),
        ("two", None),
        ("idle", None),
        ("tagged", None),
        ("svc", Some("/service/legacy/")),
        ("none", None),
    ] {
        create_user(&iam, name, path).await;
    }
    tag_user(&iam, "tagged", "keywarden", "exempt").await;
    moto.set_clock_days(-100.0);
    create_key(&iam, "tagged").await;
    let old = create_key(&iam, "two").await;
    moto.set_clock_days(-60.0);
    create_key(&iam, "idle").await;
    create_key(&iam, "svc").await;
    moto.set_clock_days(-3.0);
    use_key(&moto, &old).await;
    moto.set_clock_days(0.0);
    let fresh = create_key(&iam, "fresh").await;
    use_key(&moto, &fresh).await;
    let newer = create_key(&iam, "two").await;
    use_key(&moto, &newer).await;

    let dir = TempDir::new("report-mode");
    let config = moto_config(&dir, &moto, EXEMPTIONS);
    let comparable = |report: &Value| -> Vec<String> {
        let mut v: Vec<String> = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                format!(
                    "{} {} {} {} {} {} {} {}",
                    f["user"],
                    f["access_key_id"],
                    f["rule"],
                    f["created"],
                    f["last_used"],
                    f["exempt"],
                    f["exemption_reason"],
                    f["action"]
                )
            })
            .collect();
        v.sort();
        v
    };
    moto.take_stats();
    let (code, api, _) = audit_json(&config, &[]);
    assert_eq!(code, 3);
    let api_stats = moto.take_stats();
    assert!(api_stats["GetAccessKeyLastUsed"].as_u64().unwrap() >= 6);

    let out = run(
        keywarden(&["audit", "--config", config.to_str().unwrap(), "--format", "json"])
            .env("KEYWARDEN_AWS__INVENTORY", "credential-report"),
    );
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["complete"], true);
    assert_eq!(comparable(&report), comparable(&api));
    assert!(comparable(&api).len() >= 5, "{:?}", comparable(&api));
    assert_eq!(report["summary"], api["summary"]);

    // At most 10 requests plus one ListAccessKeys per user with findings.
    let stats = moto.take_stats();
    let users_with_findings: std::collections::BTreeSet<_> = api["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["user"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        stats["ListAccessKeys"].as_u64(),
        Some(users_with_findings.len() as u64),
        "{stats}"
    );
    assert!(
        stats.get("ListUsers").is_none() && stats.get("GetAccessKeyLastUsed").is_none(),
        "{stats}"
    );
    let total: u64 = stats.as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    let tag_reads = stats.get("ListUserTags").and_then(|v| v.as_u64()).unwrap_or(0);
    assert!(
        total - stats["ListAccessKeys"].as_u64().unwrap() - tag_reads <= 10,
        "{stats}"
    );
}

/// A typo in an exemption's user name exempts nobody: the audit says so, with the user it
/// probably meant, and the report stands.
#[tokio::test]
async fn an_exemption_naming_nobody_is_a_warning_with_a_suggestion() {
    let moto = Moto::start();
    idle_users(&moto, &["break-glass"]).await;
    let dir = TempDir::new("audit-typo");
    let config = moto_config(
        &dir,
        &moto,
        "[[exemptions]]\nuser = \"brak-glass\"\nreason = \"SEC-9 break-glass\"\n",
    );
    let (code, json, err) = audit_json(&config, &[]);
    assert_eq!(code, 3, "the key is a finding, not exempt: {err}");
    assert_eq!(json["complete"], true, "{json}");
    assert!(
        err.contains("warning: ")
            && err.contains("key `exemptions.0`")
            && err.contains("\"brak-glass\" matches no user")
            && err.contains("did you mean \"break-glass\"?"),
        "{err}"
    );
}

//! Owners and self-service tag exemptions through the real binary against moto: the JSON
//! report, the /metrics page, and the ListUserTags requests they cost in each inventory mode.

use crate::common::*;
use serde_json::Value;

const OWNERS: &str = r#"
[owners]
tags = ["owner", "team"]
default = "security"

[[owners.map]]
user = "ci-*"
owner = "platform"

[exemptions_from_tags]
enabled = true
max_duration = "90d"

[[exemptions]]
user = "exempt-config"
reason = "config reason"
"#;

fn date_in_days(days: i64) -> String {
    (chrono::Utc::now() + chrono::TimeDelta::days(days))
        .format("%Y-%m-%d")
        .to_string()
}

/// Every user below has one key unused for 60 days (unused_key), except `clean` (used today).
async fn seed(moto: &Moto) {
    let names = [
        "alice",
        "ci-build",
        "svc",
        "nobody",
        "exempt-ok",
        "exempt-long",
        "exempt-noreason",
        "exempt-config",
    ];
    idle_users(moto, &names).await;
    let iam = moto.iam();
    tag_user(&iam, "alice", "owner", "alice-team").await;
    tag_user(&iam, "alice", "team", "not-this-one").await;
    tag_user(&iam, "svc", "team", "data").await;
    tag_user(&iam, "exempt-ok", "keywarden:exempt-until", &date_in_days(30)).await;
    tag_user(&iam, "exempt-ok", "keywarden:exempt-reason", "SEC-1 quarterly batch").await;
    tag_user(&iam, "exempt-long", "keywarden:exempt-until", &date_in_days(200)).await;
    tag_user(&iam, "exempt-long", "keywarden:exempt-reason", "forever").await;
    tag_user(&iam, "exempt-noreason", "keywarden:exempt-until", &date_in_days(10)).await;
    tag_user(&iam, "exempt-config", "keywarden:exempt-until", &date_in_days(10)).await;
    tag_user(&iam, "exempt-config", "keywarden:exempt-reason", "tag reason").await;
    create_user(&iam, "clean", None).await;
    tag_user(&iam, "clean", "owner", "clean-team").await;
    let k = create_key(&iam, "clean").await;
    use_key(moto, &k).await;
}

fn by_user(report: &Value) -> std::collections::BTreeMap<String, Value> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| (f["user"].as_str().unwrap().to_string(), f.clone()))
        .collect()
}

fn check_findings(report: &Value) {
    let f = by_user(report);
    let owner = |u: &str| f[u]["owner"].as_str().unwrap().to_string();
    assert_eq!(owner("alice"), "alice-team", "the first listed tag wins");
    assert_eq!(owner("svc"), "data", "the second tag when the first is absent");
    assert_eq!(owner("ci-build"), "platform", "then the map");
    assert_eq!(owner("nobody"), "security", "then the default");

    assert_eq!(f["exempt-ok"]["exempt"], true, "{}", f["exempt-ok"]);
    assert_eq!(f["exempt-ok"]["exemption_source"], "tag");
    assert!(f["exempt-ok"]["exemption_reason"]
        .as_str()
        .unwrap()
        .starts_with("SEC-1 quarterly batch"));
    assert_eq!(f["exempt-ok"]["action"], "report");

    assert_eq!(f["exempt-long"]["exempt"], false);
    assert_eq!(f["exempt-long"]["exemption_source"], Value::Null);
    assert!(f["exempt-long"]["tag_exemption_problem"]
        .as_str()
        .unwrap()
        .contains("more than 90 days"));
    assert_eq!(f["exempt-long"]["action"], "deactivate");
    assert!(f["exempt-noreason"]["tag_exemption_problem"]
        .as_str()
        .unwrap()
        .contains("exempt-reason"));
    assert_eq!(f["exempt-noreason"]["exempt"], false);

    assert_eq!(
        f["exempt-config"]["exemption_source"], "config",
        "the config's exemption wins"
    );
    assert_eq!(f["exempt-config"]["exemption_reason"], "config reason");
    assert_eq!(f["alice"]["exemption_source"], Value::Null);
    assert!(!f.contains_key("clean"));
}

#[tokio::test(flavor = "multi_thread")]
async fn owners_and_tag_exemptions_in_the_report_in_both_inventory_modes() {
    let moto = Moto::start();
    seed(&moto).await;
    let dir = TempDir::new("owners");
    let api = moto_config(&dir, &moto, OWNERS);
    moto.take_stats();
    let (code, report, err) = audit_json(&api, &[]);
    assert_eq!(code, 3, "{err}");
    check_findings(&report);
    // api mode: every user with keys has its tags read (the per-user series carry the owner).
    assert_eq!(moto.take_stats()["ListUserTags"], 9, "api mode");

    let dir2 = TempDir::new("owners-report");
    let report_mode = moto_config_aws(&dir2, &moto, "inventory = \"credential-report\"\n", OWNERS);
    let (code, report, err) = audit_json(&report_mode, &[]);
    assert_eq!(code, 3, "{err}");
    check_findings(&report);
    // credential-report mode: only the users with findings (not `clean`).
    assert_eq!(moto.take_stats()["ListUserTags"], 8, "credential-report mode");

    // Nothing that needs tags configured: no tag is read.
    let dir3 = TempDir::new("owners-off");
    let plain = moto_config(&dir3, &moto, "");
    let (_, report, _) = audit_json(&plain, &[]);
    assert!(moto.take_stats().get("ListUserTags").is_none());
    let f = by_user(&report);
    assert_eq!(f["alice"]["owner"], "unowned", "the default owner");
    assert_eq!(f["exempt-ok"]["exempt"], false, "tag exemptions are off by default");
    assert_eq!(f["exempt-ok"]["tag_exemption_problem"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn owner_labels_and_tag_exemption_counts_on_the_metrics_page() {
    let moto = Moto::start();
    seed(&moto).await;
    let dir = TempDir::new("owners-metrics");
    let port = free_port();
    let config = moto_config(
        &dir,
        &moto,
        &format!("{OWNERS}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n[schedule]\ncron = \"0 0 0 1 1 *\"\n"),
    );
    let mut cmd = keywarden(&["run", "--config", config.to_str().unwrap()]);
    cmd.env("RUST_LOG", "info");
    let d = DaemonProcess::spawn(cmd, port, dir.0.join("log"));
    let page = d.first_audit().await;
    let acct = ("account_id", "123456789012");
    let violations = |owner: &str| {
        metric(
            &page,
            "keywarden_owner_violations",
            &[acct, ("owner", owner), ("rule", "unused_key")],
        )
    };
    assert_eq!(violations("alice-team"), Some(1.0), "{page}");
    assert_eq!(violations("platform"), Some(1.0));
    // nobody, exempt-long and exempt-noreason: not exempt, default owner.
    assert_eq!(violations("security"), Some(3.0));
    assert_eq!(violations("clean-team"), None, "no findings, no series");
    let tags = |state: &str| metric(&page, "keywarden_tag_exemptions", &[acct, ("state", state)]);
    // exempt-ok and exempt-config hold valid tags.
    assert_eq!(tags("active"), Some(2.0), "{page}");
    assert_eq!(tags("invalid"), Some(1.0));
    assert_eq!(tags("too_long"), Some(1.0));
    assert_eq!(
        metric(
            &page,
            "keywarden_user_active_access_keys",
            &[acct, ("user", "clean"), ("owner", "clean-team")]
        ),
        Some(1.0)
    );
    let deadline = page
        .lines()
        .find(|l| {
            l.starts_with("keywarden_access_key_deactivation_deadline_timestamp_seconds{") && l.contains("user=\"svc\"")
        })
        .unwrap_or_else(|| panic!("no deadline series for svc: {page}"));
    assert!(deadline.contains("owner=\"data\""), "{deadline}");
    let age = page
        .lines()
        .find(|l| l.starts_with("keywarden_access_key_age_seconds{") && l.contains("user=\"alice\""))
        .expect("age series");
    assert!(age.contains("owner=\"alice-team\""), "{age}");
    let logs = d.logs();
    assert!(
        logs.contains("exemption tags not honoured") && logs.contains("exempt-long"),
        "{logs}"
    );
}

//! Hostile conditions against moto: throttling, unavailable service, slow answers, truncated
//! bodies and dropped connections, injected by the test launcher; the audit must come out the
//! same as on a calm day, or fail closed.

use crate::common::*;
use serde_json::Value;

fn findings(report: &Value) -> Vec<String> {
    let mut v: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{} {} {} {}", f["user"], f["access_key_id"], f["rule"], f["action"]))
        .collect();
    v.sort();
    v
}

async fn seed(moto: &Moto) {
    let iam = moto.iam();
    for i in 0..8 {
        let name = format!("user-{i:02}");
        create_user(&iam, &name, None).await;
        moto.set_clock_days(if i % 4 == 1 { -100.0 } else { 0.0 });
        for _ in 0..(i % 3) {
            create_key(&iam, &name).await;
        }
    }
    moto.set_clock_days(0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_503s_slow_truncated_and_dropped_answers_change_nothing() {
    let moto = Moto::start();
    seed(&moto).await;
    let dir = TempDir::new("throttle");
    let config = moto_config(&dir, &moto, "");
    let (code, calm, _) = audit_json(&config, &[]);
    assert_eq!(code, 3);
    assert!(findings(&calm).len() >= 3, "{:?}", findings(&calm));

    for faults in [
        r#"{"_throttle": {"*": 0.3}}"#,
        r#"{"_unavailable": {"*": 0.2}}"#,
        // 3 s against a 1 s attempt timeout: the attempt is abandoned and retried.
        r#"{"_slow": {"*": [0.2, 3.0]}}"#,
        r#"{"_truncate": {"*": 0.2}}"#,
        r#"{"_drop": {"*": 0.2}}"#,
    ] {
        moto.set_faults(faults);
        moto.take_stats();
        let out = run(
            keywarden(&["audit", "--config", config.to_str().unwrap(), "--format", "json"])
                .env("KEYWARDEN_AWS__MAX_ATTEMPTS", "10")
                .env("KEYWARDEN_AWS__ATTEMPT_TIMEOUT", "1s"),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{faults}: {stderr}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["complete"], true, "{faults}");
        assert_eq!(
            findings(&report),
            findings(&calm),
            "{faults}: the same findings as without faults"
        );
        assert_eq!(report["summary"], calm["summary"]);
        let stats = moto.take_stats();
        let injected: u64 = stats
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.contains(':'))
            .map(|(_, v)| v.as_u64().unwrap())
            .sum();
        assert!(injected >= 3, "{faults}: faults were injected: {stats}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn when_retries_run_out_the_audit_fails_closed() {
    let moto = Moto::start();
    seed(&moto).await;
    moto.set_faults(r#"{"_throttle": {"ListAccessKeys": 1.0}}"#);
    let dir = TempDir::new("exhausted");
    let (code, report, _) = audit_json(&moto_config(&dir, &moto, ""), &[]);
    assert_eq!(code, 1, "incomplete, not clean");
    assert_eq!(report["complete"], false);
    assert_eq!(
        report["findings"].as_array().unwrap().len(),
        0,
        "no finding from partial data"
    );
    assert_eq!(report["errors"].as_array().unwrap().len(), 8);
    assert!(
        report["errors"][0]["message"].as_str().unwrap().contains("Throttling"),
        "{}",
        report["errors"][0]
    );
}

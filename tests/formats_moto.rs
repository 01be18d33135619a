//! The report's other forms through the real binary against moto: `audit --format csv` read
//! back by a CSV parser (one row per JSON finding, every field, quoting), and the control ids
//! every finding carries.

use crate::common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn csv_rows_are_the_json_findings_field_for_field() {
    let moto = Moto::start();
    let iam = moto.iam();
    // A comma and an equals sign are valid in IAM user names; the comma must be quoted.
    for name in ["plain", "with,comma", "two=keys"] {
        create_user(&iam, name, None).await;
    }
    moto.set_clock_days(-100.0);
    for name in ["plain", "with,comma", "two=keys", "two=keys"] {
        create_key(&iam, name).await;
    }
    moto.set_clock_days(0.0);
    let dir = TempDir::new("formats");
    let config = moto_config(
        &dir,
        &moto,
        "[[exemptions]]\nuser = \"plain\"\nreason = \"INC-1, \\\"quoted\\\"\"\n",
    );
    // Both forms at one instant: without a state, first_seen is the evaluation time.
    let at = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (code, json, err) = audit_json(&config, &["--at", &at]);
    assert_eq!(code, 3, "{err}");
    let findings = json["findings"].as_array().expect("findings").clone();
    assert!(findings.len() >= 6, "{findings:?}");

    let (code, out, err) = outputs(&mut keywarden(&[
        "audit",
        "--config",
        config.to_str().unwrap(),
        "--format",
        "csv",
        "--at",
        &at,
    ]));
    assert_eq!(code, 3, "{err}");
    assert!(out.contains("\r\n"), "RFC 4180 line ends");
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    let header: Vec<String> = reader.headers().expect("header").iter().map(str::to_string).collect();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a valid CSV row")).collect();
    assert_eq!(rows.len(), findings.len());
    let keys: Vec<&String> = findings[0].as_object().unwrap().keys().collect();
    for k in &keys {
        assert!(header.contains(k), "JSON field {k} is not a CSV column");
    }
    let cell = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
            .join(";"),
        other => other.to_string(),
    };
    for (f, row) in findings.iter().zip(&rows) {
        for (i, column) in header.iter().enumerate() {
            match column.as_str() {
                "evaluated_at" => assert_eq!(&row[i], json["evaluated_at"].as_str().unwrap()),
                "mode" => assert_eq!(&row[i], json["mode"].as_str().unwrap()),
                k => assert_eq!(row[i], cell(&f[k]), "{k} of {f}"),
            }
        }
    }
    assert!(rows.iter().any(|r| &r[1] == "with,comma"));
    assert!(rows.iter().any(|r| r.iter().any(|c| c == "INC-1, \"quoted\"")));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_finding_names_its_controls_in_each_benchmark_version() {
    let moto = Moto::start();
    let iam = moto.iam();
    create_user(&iam, "old", None).await;
    moto.set_clock_days(-100.0);
    create_key(&iam, "old").await;
    create_key(&iam, "old").await;
    moto.set_clock_days(0.0);
    let dir = TempDir::new("controls");
    let (_, json, _) = audit_json(&moto_config(&dir, &moto, ""), &[]);
    let controls = |rule: &str| -> Vec<String> {
        let f = json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["rule"] == rule)
            .unwrap_or_else(|| panic!("no {rule} finding: {json}"));
        f["controls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        controls("max_key_age"),
        [
            "CIS-v1.4.0:1.14",
            "CIS-v3.0.0:1.14",
            "CIS-v5.0.0:1.13",
            "SecurityHub:IAM.3"
        ]
    );
    assert_eq!(
        controls("unused_key"),
        [
            "CIS-v1.4.0:1.12",
            "CIS-v3.0.0:1.12",
            "CIS-v5.0.0:1.11",
            "CIS-v7.0.0:2.11",
            "SecurityHub:IAM.22"
        ]
    );
    assert_eq!(
        controls("multiple_active_keys"),
        ["CIS-v1.4.0:1.13", "CIS-v3.0.0:1.13", "CIS-v5.0.0:1.12"]
    );
}

/// OCSF 1.3.0 Detection Finding (class 2004): the attributes the schema marks required, for
/// the event and for the objects it requires (schema.ocsf.io, classes/detection_finding,
/// objects/finding_info, objects/metadata).
const OCSF_REQUIRED: [&str; 8] = [
    "activity_id",
    "category_uid",
    "class_uid",
    "finding_info",
    "metadata",
    "severity_id",
    "time",
    "type_uid",
];

#[tokio::test(flavor = "multi_thread")]
async fn ocsf_events_carry_the_required_attributes_on_the_access_key() {
    let moto = Moto::start();
    let iam = moto.iam();
    create_user(&iam, "old", None).await;
    create_user(&iam, "exempted", None).await;
    moto.set_clock_days(-100.0);
    let k1 = create_key(&iam, "old").await;
    let k2 = create_key(&iam, "old").await;
    create_key(&iam, "exempted").await;
    moto.set_clock_days(0.0);
    let dir = TempDir::new("ocsf");
    let config = moto_config(&dir, &moto, "[[exemptions]]\nuser = \"exempted\"\nreason = \"t\"\n");
    let (_, json, _) = audit_json(&config, &[]);
    let (code, out, err) = outputs(&mut keywarden(&[
        "audit",
        "--config",
        config.to_str().unwrap(),
        "--format",
        "ocsf",
    ]));
    assert_eq!(code, 3, "{err}");
    let events: Vec<Value> = serde_json::from_str(&out).expect("a JSON array");
    assert_eq!(events.len(), json["findings"].as_array().unwrap().len());
    let mut uids = std::collections::BTreeSet::new();
    for e in &events {
        for attr in OCSF_REQUIRED {
            assert!(!e[attr].is_null(), "{attr} missing in {e}");
        }
        assert_eq!(e["class_uid"], 2004);
        assert_eq!(e["category_uid"], 2);
        assert_eq!(
            e["type_uid"].as_i64().unwrap(),
            2004 * 100 + e["activity_id"].as_i64().unwrap()
        );
        assert!(e["time"].as_i64().unwrap() > 1_700_000_000_000, "epoch milliseconds");
        assert!((0..=6).contains(&e["severity_id"].as_i64().unwrap()));
        for attr in ["uid", "title"] {
            assert!(e["finding_info"][attr].is_string(), "finding_info.{attr} in {e}");
        }
        for attr in ["product", "version"] {
            assert!(!e["metadata"][attr].is_null(), "metadata.{attr}");
        }
        assert_eq!(e["metadata"]["version"], "1.3.0");
        assert!(
            uids.insert(e["finding_info"]["uid"].as_str().unwrap().to_string()),
            "uids are unique"
        );
        let r = &e["resources"][0];
        assert_eq!(r["type"], "AwsIamAccessKey");
        assert_eq!(r["uid"], r["name"]);
        assert!(e["remediation"]["desc"]
            .as_str()
            .unwrap()
            .contains("keep one key less than 90 days old"));
        assert!(e["finding_info"]["types"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().starts_with("CIS-v5.0.0:")));
    }
    // Per key, not per user: both keys of `old` are resources of their own findings.
    for k in [&k1.id, &k2.id] {
        assert!(
            events.iter().any(|e| e["resources"][0]["uid"] == k.as_str()),
            "no event on {k}"
        );
    }
    let exempt = events
        .iter()
        .find(|e| e["resources"][0]["data"]["user"] == "exempted")
        .expect("exempt event");
    assert_eq!(exempt["status_id"], 3, "an exempt finding is suppressed");
    assert_eq!(exempt["severity_id"], 1);
    assert!(events.iter().any(|e| e["status_id"] == 1));
}

//! Crash safety: `kill -9` of an enforcing `run --once` at many points never leaves a corrupt
//! state file, never deactivates a key that should stay, and the next run converges.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_any_point_loses_nothing() {
    let moto = Moto::start();
    let iam = moto.iam();
    let mut due = Vec::new();
    let mut keep = Vec::new();
    for i in 0..12 {
        let name = format!("user-{i:02}");
        create_user(&iam, &name, None).await;
        moto.set_clock_days(-60.0);
        due.push((name.clone(), create_key(&iam, &name).await.id)); // never used: unused_key
        moto.set_clock_days(0.0);
        let k = create_key(&iam, &name).await; // used today: the kept key
        use_key(&moto, &k).await;
        keep.push((name.clone(), k.id));
    }
    create_user(&iam, "exempt-1", None).await;
    moto.set_clock_days(-60.0);
    let exempt = create_key(&iam, "exempt-1").await;
    moto.set_clock_days(0.0);
    // Every UpdateAccessKey is slowed down so kills land mid-run, between and during calls.
    moto.set_faults(r#"{"_delay": {"UpdateAccessKey": 0.05, "GetUser": 0.02}}"#);

    let dir = TempDir::new("crash");
    let config = moto_config(
        &dir,
        &moto,
        "[enforcement]\nmode = \"enforce\"\ngrace_period = \"0s\"\nmax_deactivations_per_run = 3\n\
         [[exemptions]]\nuser = \"exempt-*\"\nreason = \"r\"\n",
    );
    let state_path = dir.0.join("state.json");
    let status = |map: &BTreeMap<String, String>, id: &str| map.get(id).cloned().unwrap_or_default();
    let users: Vec<String> = (0..12)
        .map(|i| format!("user-{i:02}"))
        .chain(["exempt-1".to_string()])
        .collect();
    let statuses = || key_statuses(&iam, &users);

    for round in 0..20u64 {
        let mut child = keywarden(&["run", "--once", "--config", config.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kills over the run: start-up, audit, state write, deactivations (a debug
        // run reaches its first UpdateAccessKey after ~0.5 s and takes ~0.2 s per key).
        std::thread::sleep(Duration::from_millis(20 + (round * 53) % 800));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();

        if state_path.exists() {
            let text = std::fs::read_to_string(&state_path).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("round {round}: state file is not valid JSON ({e}): {text}"));
            assert_eq!(v["schema_version"], 1, "round {round}");
        }
        let st = statuses().await;
        for (_, id) in &keep {
            assert_eq!(status(&st, id), "Active", "round {round}: a kept key was deactivated");
        }
        assert_eq!(
            status(&st, &exempt.id),
            "Active",
            "round {round}: an exempt key was deactivated"
        );
        assert_eq!(st.len(), 25, "round {round}: no key is ever deleted");
    }

    let st = statuses().await;
    let done_while_killed = due.iter().filter(|(_, id)| status(&st, id) == "Inactive").count();
    eprintln!(
        "due keys deactivated by the killed runs: {done_while_killed} of {}",
        due.len()
    );
    assert!(done_while_killed > 0, "the kills landed after enforcement had started");

    // Runs to completion converge: every due key inactive, the state empty.
    for _ in 0..5 {
        let out = run(&mut keywarden(&["run", "--once", "--config", config.to_str().unwrap()]));
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let st = statuses().await;
    for (_, id) in &due {
        assert_eq!(status(&st, id), "Inactive");
    }
    for (_, id) in &keep {
        assert_eq!(status(&st, id), "Active");
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    assert_eq!(v["findings"].as_array().unwrap().len(), 0);
    // Killed writes never pile up temp files: at most the one fixed name.
    let temps = std::fs::read_dir(&dir.0)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".state.json.tmp"))
        .count();
    assert!(temps <= 1, "{temps} temp files");
}

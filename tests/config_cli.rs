//! `check-config` and config errors through the real binary.

use crate::common::*;

fn check(text: &str) -> (i32, String, String) {
    let dir = TempDir::new("cfg");
    let path = dir.write("k.toml", text);
    outputs(&mut keywarden(&["check-config", path.to_str().unwrap()]))
}

#[test]
fn the_shipped_example_is_valid() {
    let out = run(&mut keywarden(&[
        "check-config",
        repo().join("config/keywarden.toml").to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("configuration is valid"));
    assert!(stdout.contains("max_deactivations_per_run = 25"), "{stdout}");
    assert!(stdout.contains("mode = \"dry-run\""), "{stdout}");
    assert!(
        !stdout.contains("[[exemptions]]"),
        "no exemption is active in the shipped config"
    );

    // The commented exemption examples are valid too once uncommented.
    let text = std::fs::read_to_string(repo().join("config/keywarden.toml")).unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| {
            let keys = [
                "[[exemptions]]",
                "user =",
                "rules =",
                "reason =",
                "expires =",
                "path_prefix =",
                "map =",
            ];
            match l.strip_prefix("# ") {
                Some(rest) if keys.iter().any(|k| rest.starts_with(k)) => rest.to_string(),
                _ => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let (code, stdout, err) = check(&uncommented);
    assert_eq!(code, 0, "{err}");
    assert_eq!(stdout.matches("[[exemptions]]").count(), 2, "{stdout}");
    assert_eq!(stdout.matches("[[owners.map]]").count(), 2, "{stdout}");
}

#[test]
fn wrong_type_names_the_key_and_line() {
    let (code, _, err) = check("[enforcement]\nmode = \"enforce\"\nmax_deactivations_per_run = \"lots\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("k.toml:3"), "{err}");
    assert!(err.contains("enforcement.max_deactivations_per_run"), "{err}");
}

#[test]
fn unknown_key_names_the_key() {
    let (code, _, err) = check("[rules.max_key_age]\nmax_age = \"90d\"\nmaxage = \"30d\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("rules.max_key_age.maxage"), "{err}");
    assert!(err.contains("k.toml:3"), "{err}");
    let (code, _, err) = check("[metrics]\nlisten = \"127.0.0.1:1\"\n[metric]\nper_key = true\n");
    assert_eq!(code, 2);
    assert!(err.contains("`metric`"), "{err}");
}

#[test]
fn bad_duration_names_the_key() {
    let (code, _, err) = check("[rules.unused_key]\nmax_unused = \"45 dayz\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("k.toml:2: key `rules.unused_key.max_unused`"), "{err}");
    let (code, _, err) = check("[enforcement]\ngrace_period = \"soon\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("enforcement.grace_period"), "{err}");
}

#[test]
fn bad_cron_names_the_key() {
    let (code, _, err) = check("[schedule]\ncron = \"0 * * * *\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("schedule.cron") && err.contains("6"), "{err}");
    let (code, _, err) = check("[schedule]\ncron = \"0 0 99 * * *\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("schedule.cron"), "{err}");
}

#[test]
fn bad_exemptions_are_rejected() {
    let (code, _, err) = check(
        "[[exemptions]]\nuser = \"a\"\nreason = \"r\"\n[[exemptions]]\nreason = \"r\"\nuser_tag = \"novalue\"\nexpires = \"next year\"\nrules = [\"max_age\"]\n",
    );
    assert_eq!(code, 2);
    for k in ["exemptions.1.user_tag", "exemptions.1.expires", "exemptions.1.rules"] {
        assert!(err.contains(k), "{k}: {err}");
    }
    let (code, _, err) = check("[[exemptions]]\nreason = \"no matcher\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("at least one of"), "{err}");
}

#[test]
fn environment_overrides_the_file_and_is_named_in_errors() {
    let dir = TempDir::new("env");
    let path = dir.write("k.toml", "[enforcement]\nmode = \"dry-run\"\n");
    let out = run(keywarden(&["check-config", path.to_str().unwrap()]).env("KEYWARDEN_ENFORCEMENT__MODE", "enforce"));
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("mode = \"enforce\""));

    let out = run(keywarden(&["check-config", path.to_str().unwrap()]).env("KEYWARDEN_ENFORCEMENT__MODE", "yolo"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("KEYWARDEN_ENFORCEMENT__MODE"), "{err}");

    // KEYWARDEN_CONFIG picks the file and is not itself a key.
    let out = run(keywarden(&["check-config"]).env("KEYWARDEN_CONFIG", &path));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn missing_explicit_file_and_bad_usage_exit_2() {
    let out = run(&mut keywarden(&["check-config", "/nonexistent/keywarden.toml"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/keywarden.toml"));
    let out = run(&mut keywarden(&["audit", "--format", "yaml"]));
    assert_eq!(out.status.code(), Some(2));
    let out = run(&mut keywarden(&["audit", "--config", "/dev/null", "--at", "tomorrow"]));
    assert_eq!(out.status.code(), Some(2));
    let out = run(&mut keywarden(&["--version"]));
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("keywarden "));
}

#[test]
fn the_shipped_account_examples_are_valid_once_uncommented() {
    let text = std::fs::read_to_string(repo().join("config/keywarden.toml")).unwrap();
    let keys = [
        "[[aws.accounts]]",
        "[aws.organization]",
        "id =",
        "role_arn =",
        "external_id =",
        "name =",
        "role_name =",
        "include =",
        "exclude =",
    ];
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if keys.iter().any(|k| rest.starts_with(k)) => rest.to_string(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let (code, stdout, err) = check(&uncommented);
    assert_eq!(code, 0, "{err}");
    assert_eq!(stdout.matches("[[aws.accounts]]").count(), 2, "{stdout}");
    assert!(stdout.contains("[aws.organization]"), "{stdout}");
}

#[test]
fn bad_account_entries_name_the_entry_and_line() {
    let (code, _, err) = check(
        "[[aws.accounts]]\nid = \"1234\"\n\n[[aws.accounts]]\nid = \"111122223333\"\n\
         role_arn = \"arn:aws:iam::999988887777:role/x\"\n\n[aws.organization]\nrole_name = \"\"\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("k.toml:2: key `aws.accounts.0.id`"), "{err}");
    assert!(err.contains("not a 12-digit account id"), "{err}");
    assert!(err.contains("k.toml:6: key `aws.accounts.1.role_arn`"), "{err}");
    assert!(err.contains("belongs to account 999988887777"), "{err}");
    assert!(err.contains("k.toml:9: key `aws.organization.role_name`"), "{err}");
}

#[test]
fn durations_past_100_years_are_rejected_naming_the_key() {
    // 300000y once passed and then panicked the first run on date overflow.
    let (code, _, err) =
        check("[enforcement]\ngrace_period = \"300000y\"\n\n[rules.max_key_age]\nmax_age = \"200y\"\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("enforcement.grace_period"), "{err}");
    assert!(err.contains("rules.max_key_age.max_age"), "{err}");
    assert!(err.contains("100 years"), "{err}");
    let (code, _, err) = check("[enforcement]\ngrace_period = \"36500d\"\n");
    assert_eq!(code, 0, "100 years is the limit, inclusive: {err}");
}

#[test]
fn owner_and_tag_exemption_settings_are_checked_all_at_once() {
    let (code, _, err) = check(
        "[owners]\ntags = [\"owner\", \"\"]\ndefault = \"\"\n\
         [[owners.map]]\nowner = \"platform\"\n\
         [[owners.map]]\nuser = \"ci-[\"\nowner = \" \"\n\
         [exemptions_from_tags]\nenabled = true\nmax_duration = \"soon\"\nrules = [\"unused_key\", \"max_age\"]\n",
    );
    assert_eq!(code, 2, "{err}");
    for key in [
        "owners.tags.1",
        "owners.default",
        "owners.map.0",
        "owners.map.1.user",
        "owners.map.1.owner",
        "exemptions_from_tags.max_duration",
        "exemptions_from_tags.rules",
    ] {
        assert!(err.contains(key), "{key} not named in:\n{err}");
    }
    assert!(err.contains("\"max_age\""), "{err}");
}

#[test]
fn owners_and_tag_exemptions_show_in_the_effective_config() {
    let (code, out, err) =
        check("[owners]\ntags = [\"team\"]\n[[owners.map]]\npath_prefix = \"/ci/\"\nowner = \"platform\"\n");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("default = \"unowned\""), "{out}");
    assert!(
        out.contains("[exemptions_from_tags]") && out.contains("enabled = false"),
        "{out}"
    );
    assert!(out.contains("max_duration = \"90d\""), "{out}");
}

#[test]
fn bad_windows_and_zones_are_named() {
    let (code, _, err) = check(
        "[enforcement]\nwindows = [\"Mon-Fri 09:00-16:00\", \"Funday 10:00-11:00\", \"Sat 10:00\"]\ntimezone = \"Mars/Olympus\"\n\
         [schedule]\ntimezone = \"Europe/Berlinn\"\n",
    );
    assert_eq!(code, 2, "{err}");
    for key in [
        "enforcement.windows.1",
        "enforcement.windows.2",
        "enforcement.timezone",
        "schedule.timezone",
    ] {
        assert!(err.contains(key), "{key} not named in:\n{err}");
    }
    assert!(!err.contains("enforcement.windows.0"), "{err}");
    let (code, out, err) = check("[enforcement]\nwindows = [\"Fri 22:00-02:00\"]\ntimezone = \"Europe/Berlin\"\n");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Fri 22:00-02:00") && out.contains("Europe/Berlin"),
        "{out}"
    );
}

#[test]
fn security_hub_settings_are_checked_with_their_line() {
    let (code, _, err) =
        check("[export.security_hub]\nenabled = true\nregion = \"EU west\"\n[export.security_hub.x]\n");
    assert_eq!(code, 2);
    assert!(err.contains("export.security_hub.x"), "{err}");
    let (code, _, err) = check("[export.security_hub]\nenabled = true\nregion = \"EU west\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("k.toml:3: key `export.security_hub.region`"), "{err}");
    let (code, _, err) = check("[export.security_hub]\nendpoint_url = \"localhost:5000\"\n");
    assert_eq!(code, 2, "checked even while the export is off");
    assert!(
        err.contains("k.toml:2: key `export.security_hub.endpoint_url`"),
        "{err}"
    );
    let (code, out, err) = check("[export.security_hub]\nenabled = true\nregion = \"eu-west-1\"\n");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[export.security_hub]"), "{out}");
}

#[test]
fn full_refresh_every_must_be_at_least_one_and_organizations_read_more_accounts_at_once() {
    let (code, _, err) = check("[aws]\nfull_refresh_every = 0\n");
    assert_eq!(code, 2);
    assert!(err.contains("k.toml:2: key `aws.full_refresh_every`"), "{err}");
    let (code, out, err) = check("[aws.organization]\nrole_name = \"keywarden-audit\"\n");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("full_refresh_every = 24"), "{out}");
    // The effective value is shown only when set; the default follows the organization.
    assert!(!out.contains("max_concurrent_accounts"), "{out}");
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = run(&mut keywarden(&["--version"]));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo())
        .output()
        .expect("git");
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    assert_eq!(head.len(), 12, "a checkout: {head:?}");
    assert!(
        text.starts_with(&format!("keywarden {} (commit {head}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
}

#[test]
fn sns_topics_of_the_events_queue_must_be_topic_arns() {
    let (code, _, err) = check(
        "[events]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/123456789012/q\"\n\
         sns_topic_arns = [\"keywarden\"]\n",
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("k.toml:3: key `events.sns_topic_arns`") && err.contains("\"keywarden\""),
        "{err}"
    );
    let (code, out, err) = check(
        "[events]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/123456789012/q\"\n\
         sns_topic_arns = [\"arn:aws:sns:us-east-1:123456789012:keywarden\"]\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("arn:aws:sns:us-east-1:123456789012:keywarden"), "{out}");
}

/// A reader that leaves early (`| head`) ends the output quietly with the command's own exit
/// code; a full disk is exit 1 with a sentence. Neither is a panic (exit 101).
#[test]
fn a_closed_pipe_or_a_full_disk_is_never_a_panic() {
    let example = repo().join("config/keywarden.toml");
    let mut child = keywarden(&["check-config", example.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Closed before the command writes a line: its first write meets a closed pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = keywarden(&["check-config", example.to_str().unwrap()])
        .stdout(full)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write the output to stdout"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn mistakes_that_load_are_named_and_typos_get_a_suggestion() {
    let (code, _, err) = check("[rules.max_key_age]\nmax_agee = \"30d\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("did you mean `max_age`?"), "{err}");
    let (code, _, err) = check("[enforcement]\nmax_deactivations_per_run = 0\n");
    assert_eq!(code, 2);
    assert!(
        err.contains("k.toml:2: key `enforcement.max_deactivations_per_run`") && err.contains("dry-run"),
        "{err}"
    );
    let (code, _, err) = check("[schedule]\ncron = \"0 0 25 * * *\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("field 3 (hour) \"25\"") && err.contains("0-23"), "{err}");
}

#[test]
fn exemption_expiry_takes_a_date_or_a_toml_datetime_and_an_expired_one_is_a_warning() {
    for expires in ["\"2027-06-30\"", "2027-06-30T00:00:00Z", "\"2027-06-30T00:00:00Z\""] {
        let (code, _, err) = check(&format!(
            "[[exemptions]]\nuser = \"break-glass\"\nreason = \"SEC-1\"\nexpires = {expires}\n"
        ));
        assert_eq!(code, 0, "{expires}: {err}");
        assert!(!err.contains("warning"), "{expires}: {err}");
    }
    let (code, _, err) = check("[[exemptions]]\nuser = \"x\"\nreason = \"SEC-1\"\nexpires = \"30 June\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("k.toml:4: key `exemptions.0.expires`"), "{err}");
    let (code, _, err) = check(
        "[[exemptions]]\nuser = \"a\"\nreason = \"SEC-1\"\n\n[[exemptions]]\nuser = \"old\"\nreason = \"SEC-2\"\nexpires = \"2020-01-01\"\n",
    );
    assert_eq!(code, 0, "still valid: {err}");
    assert!(
        err.contains("warning: ")
            && err.contains("k.toml:5: key `exemptions.1`")
            && err.contains("expired at 2020-01-02T00:00:00Z"),
        "{err}"
    );
}

/// Commands that read the journal say when there is none at all (a forgotten `--config` reads
/// the default config's), and `reactivate` refuses a snooze of 0s (the next run would
/// deactivate the key again at once).
#[test]
fn a_missing_journal_and_a_zero_snooze_are_said_not_hidden() {
    let dir = TempDir::new("nojournal");
    let state = dir.0.join("state.json");
    let config = dir.write(
        "k.toml",
        &format!(
            "[state]\npath = \"{}\"\n[enforcement]\ngrace_period = \"0s\"\n",
            state.display()
        ),
    );
    let (code, out, err) = outputs(&mut keywarden(&["history", "--config", config.to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("No actions"), "{out}");
    assert!(
        err.contains("there is no action journal at") && err.contains("actions.jsonl") && err.contains("--config"),
        "{err}"
    );
    let (code, _, err) = outputs(&mut keywarden(&[
        "reactivate",
        "AKIAEXAMPLE",
        "--reason",
        "INC-1",
        "--snooze",
        "1h",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("there is no action journal at"), "{err}");
    let (code, _, err) = outputs(&mut keywarden(&[
        "reactivate",
        "AKIAEXAMPLE",
        "--reason",
        "INC-1",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("snooze of 0s") && err.contains("--snooze"), "{err}");
}

#[test]
fn the_credential_rules_take_their_own_keys_and_say_which_rule_takes_another() {
    // The defaults: unused_password on (reported), the other two off until asked for.
    let (code, stdout, err) = check("");
    assert_eq!(code, 0, "{err}");
    for line in [
        "[rules.unused_password]",
        "max_unused = \"45d\"",
        "[rules.max_credential_age]",
        "\"service_specific_credential\"",
        "[rules.long_term_service_credential]",
        "max_lifetime = \"90d\"",
    ] {
        assert!(stdout.contains(line), "{line} in {stdout}");
    }
    let (code, _, err) = check(
        "[rules.unused_password]\naction = \"deactivate\"\nmax_age = \"30d\"\n\
         [rules.max_credential_age]\ntypes = [\"password\", \"ssh_public_key\", \"ssh_public_key\", \"gpg\"]\n\
         [rules.long_term_service_credential]\nservices = [\"\"]\nmax_lifetime = \"soon\"\n\
         [rules.unused_key]\nservices = [\"bedrock.amazonaws.com\"]\n",
    );
    assert_eq!(code, 2);
    for needle in [
        "k.toml:2: key `rules.unused_password.action`: a console password cannot be deactivated, only deleted: \"delete_login_profile\"",
        "k.toml:3: key `rules.unused_password.max_age`: unknown key for rule unused_password (only max_key_age and max_credential_age have it)",
        "`rules.max_credential_age.types.0`: password has rules of its own",
        "`rules.max_credential_age.types.2`: ssh_public_key is listed twice",
        "`rules.max_credential_age.types.3`: \"gpg\" is not",
        "`rules.long_term_service_credential.services.0`: \"\" is not a service name",
        "`rules.long_term_service_credential.max_lifetime`: invalid duration \"soon\"",
        "`rules.unused_key.services`: unknown key for rule unused_key (only long_term_service_credential has it)",
    ] {
        assert!(err.contains(needle), "{needle} in {err}");
    }
    let (code, _, err) = check("[rules.max_key_age]\naction = \"delete_login_profile\"\n");
    assert_eq!(code, 2);
    assert!(
        err.contains("\"delete_login_profile\" is not \"deactivate\" or \"report\""),
        "{err}"
    );
    let (code, _, err) = check(
        "[rules.unused_password]\naction = \"delete_login_profile\"\n\
         [rules.max_credential_age]\nenabled = true\naction = \"deactivate\"\ntypes = [\"signing_certificate\"]\n\
         [rules.long_term_service_credential]\nenabled = true\nservices = [\"bedrock.amazonaws.com\"]\n",
    );
    assert_eq!(code, 0, "{err}");
}

//! `scripts/demo` cannot rot: its Python part runs here against the test build of the binary
//! (the wrapper only builds first), and each step's key lines must be there.

use crate::common::*;

#[test]
fn the_demo_shows_the_whole_job() {
    let python = repo().join(".venv/bin/python");
    let out = std::process::Command::new(&python)
        .arg(repo().join("scripts/demo.py"))
        .arg(env!("CARGO_BIN_EXE_keywarden"))
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (scripts/test-deps makes the venv)",
                python.display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the demo failed:\n{stdout}\n{stderr}");
    let steps: [(&str, &[&str]); 6] = [
        (
            "== 1. keywarden audit",
            &[
                "alice  owner: security",
                "multiple_active_keys",
                "(exit code 3",
                "\"violations\":",
                "max_key_age only reports by default",
            ],
        ),
        (
            "== 2. keywarden run",
            &[
                "landing page: http://127.0.0.1:",
                "keywarden_owner_violations{",
                "keywarden_access_key_deactivation_deadline_timestamp_seconds{",
                "  held ",
            ],
        ),
        (
            "== 3. enforce",
            &["configuration reloaded", "  deactivated ", "  held ", "  capped "],
        ),
        (
            "== 4. keywarden history",
            &[
                "$ keywarden history",
                "deactivate",
                "success",
                "reactivated",
                "is Active; its finding: exemption_source=snooze",
            ],
        ),
        (
            "== 5. keywarden rotate",
            &[
                "$ keywarden rotate carol",
                "new access key AKIA",
                "stored in secret keywarden/",
            ],
        ),
        ("== 6. a clean stop", &["keywarden run exited with 0", "docs/owners.md"]),
    ];
    let mut rest: &str = &stdout;
    for (heading, lines) in steps {
        let at = rest
            .find(heading)
            .unwrap_or_else(|| panic!("step {heading:?} missing or out of order:\n{stdout}"));
        rest = &rest[at..];
        let end = rest[heading.len()..]
            .find("\n== ")
            .map_or(rest.len(), |i| i + heading.len());
        let section = &rest[..end];
        for line in lines {
            assert!(section.contains(line), "{heading}: {line:?} missing in:\n{section}");
        }
    }
}

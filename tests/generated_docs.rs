//! The man pages and shell completions the packages install are generated from the CLI
//! definition (`keywarden::cli::Cli`), and committed so that packaging needs no build step of
//! its own. This test renders them again and fails when a committed file differs, so they
//! cannot drift from the binary. After changing the CLI:
//!
//! ```text
//! KEYWARDEN_REGENERATE=1 cargo test --test integration generated_docs
//! ```

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging")
}

/// Every generated file: its path under packaging/ and its content.
fn generated() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    // The man pages name the version, not the commit (`--version` adds it): they would differ
    // at every commit.
    let mut cmd = keywarden::cli::Cli::command().long_version(None::<&str>);
    // Built, the command has its `help` subcommand too (the main page lists it).
    cmd.build();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .expect("render the man page");
    files.push((PathBuf::from("man/keywarden.1"), page));
    // One page per subcommand (`man keywarden-audit`), as git and cargo do.
    for sub in cmd.get_subcommands() {
        let name = format!("keywarden-{}", sub.get_name());
        // clap names commands with &'static str (its `string` feature is off); a test may leak.
        let sub = sub.clone().name(&*Box::leak(name.clone().into_boxed_str()));
        let mut page = Vec::new();
        clap_mangen::Man::new(sub).render(&mut page).expect("render a man page");
        files.push((PathBuf::from(format!("man/{name}.1")), page));
    }
    for (shell, file) in [
        (Shell::Bash, "keywarden.bash"),
        (Shell::Zsh, "_keywarden"),
        (Shell::Fish, "keywarden.fish"),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "keywarden", &mut script);
        files.push((PathBuf::from("completions").join(file), script));
    }
    files
}

#[test]
fn man_pages_and_completions_are_generated_from_the_cli() {
    let regenerate = std::env::var_os("KEYWARDEN_REGENERATE").is_some();
    let mut stale = Vec::new();
    for (rel, content) in generated() {
        let path = packaging().join(&rel);
        if regenerate {
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&path, &content).expect("write");
        } else if std::fs::read(&path).ok().as_deref() != Some(content.as_slice()) {
            stale.push(rel.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "out of date with the CLI: packaging/{stale:?}; run KEYWARDEN_REGENERATE=1 cargo test --test integration generated_docs"
    );
}

#[test]
fn the_man_page_documents_what_an_operator_looks_up() {
    let (_, page) = generated().remove(0);
    let page = String::from_utf8(page).expect("utf-8");
    for needle in [
        "check\\-config",
        "Exit codes",
        "/etc/keywarden/keywarden.toml",
        "SIGHUP",
        "ACCESS_KEY_ID",
        "KEYWARDEN_",
    ] {
        assert!(page.contains(needle), "the man page lacks {needle:?}");
    }
}

#[test]
fn both_packages_install_every_generated_file() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).expect("Cargo.toml");
    for (rel, _) in generated() {
        let source = format!("packaging/{}", rel.display());
        let count = manifest.matches(&format!("\"{source}\"")).count();
        assert_eq!(
            count, 2,
            "{source} is listed {count} times in Cargo.toml's deb and rpm assets (want 2)"
        );
    }
}

//! The layering of ARCHITECTURE.md, checked: the core imports nothing outside `core` and no
//! crate that does I/O, runs async code, talks to AWS or fixes a wire format; the ports import
//! only the core. Test modules (`#[cfg(test)]`) are exempt: they may use whatever they test with.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read src dir") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The code of a file without its test module and comments.
fn production_lines(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).expect("read source");
    let code = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    code.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("").to_string()))
        .collect()
}

/// Every `crate::x` path and external crate a line names.
fn violations(path: &Path, allowed_crate_modules: &[&str], forbidden_crates: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (n, line) in production_lines(path) {
        let mut rest = line.as_str();
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let module: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let qualified = i >= 1 && rest[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_');
            if !qualified && !allowed_crate_modules.contains(&module.as_str()) {
                out.push(format!("{}:{n}: imports crate::{module}", path.display()));
            }
            rest = after;
        }
        let trimmed = line.trim_start();
        for c in forbidden_crates {
            let uses = trimmed.starts_with(&format!("use {c}"))
                || line.contains(&format!(" {c}::"))
                || line.contains(&format!("({c}::"))
                || line.contains(&format!("<{c}::"))
                || line.contains(&format!("#[derive({c}"));
            if uses {
                out.push(format!("{}:{n}: uses {c}", path.display()));
            }
        }
    }
    out
}

const EDGE_CRATES: [&str; 14] = [
    "tokio",
    "aws_config",
    "aws_sdk_iam",
    "aws_sdk_sts",
    "aws_sdk_organizations",
    "hyper",
    "serde",
    "serde_json",
    "prometheus",
    "figment",
    "tracing",
    "libc",
    "std::fs",
    "std::net",
];

#[test]
fn the_core_imports_nothing_outside_the_core() {
    let files = rust_files(&repo().join("src/core"));
    assert!(files.len() >= 7, "the core is where ARCHITECTURE.md says: {files:?}");
    let found: Vec<String> = files
        .iter()
        .flat_map(|f| violations(f, &["core"], &EDGE_CRATES))
        .collect();
    assert!(
        found.is_empty(),
        "the core reaches out of its layer:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_ports_import_only_the_core() {
    let found = violations(&repo().join("src/ports.rs"), &["core"], &EDGE_CRATES);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_check_finds_an_edge_import() {
    // The check itself must be able to fail.
    let dir = std::env::temp_dir().join(format!("keywarden-arch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.rs");
    std::fs::write(
        &f,
        "use crate::aws::Iam;\nuse tokio::sync::Mutex;\nfn x() { let _ = crate::core::model::KeyStatus::Active; }\n#[cfg(test)]\nuse crate::state::x;\n",
    )
    .unwrap();
    let found = violations(&f, &["core"], &EDGE_CRATES);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].ends_with("imports crate::aws"), "{found:?}");
    assert!(found[1].ends_with("uses tokio"), "{found:?}");
}

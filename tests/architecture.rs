//! The layering of ARCHITECTURE.md, checked: the core imports nothing outside `core` and no
//! crate that does I/O, runs async code, talks to AWS or fixes a wire format; the ports import
//! only the core. Test modules (`#[cfg(test)]`) are exempt: they may use whatever they test with.
//! Also: no circle between the folders of `src/`, no function over 80 lines without a reason,
//! and no reference to a document the repository does not have. Each check has a planted
//! violation it must catch.

use std::path::{Path, PathBuf};

use crate::common::repo;

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

/// The files under `dir` (or the file `dir`) whose production code names `needle`.
fn naming(dir: &Path, needle: &str) -> Vec<String> {
    let files = if dir.is_file() {
        vec![dir.to_path_buf()]
    } else {
        rust_files(dir)
    };
    files
        .into_iter()
        .filter(|f| production_lines(f).iter().any(|(_, l)| l.contains(needle)))
        .map(|f| f.display().to_string())
        .collect()
}

#[test]
fn usage_evidence_reaches_no_decision() {
    // ARCHITECTURE.md invariant 34: the rules, the plans and the acting code never read a
    // usage profile, so a forged event can change no decision. The one piece of evidence
    // they see is a key's last call (`AccountInventory::last_calls`), and the rules read it
    // in one function only, which can only hold a deactivation back.
    let src = repo().join("src");
    let rules = production_lines(&src.join("core/rules.rs"));
    let start = rules
        .iter()
        .position(|(_, l)| l.starts_with("fn live_hold("))
        .expect("rules::live_hold");
    let end = rules[start + 1..]
        .iter()
        .position(|(_, l)| l.starts_with("fn ") || l.starts_with("pub fn "))
        .map_or(rules.len(), |i| start + 1 + i);
    let outside: Vec<_> = rules
        .iter()
        .enumerate()
        .filter(|(i, (_, l))| l.contains("ctx.last_calls") && !(start..end).contains(i))
        .collect();
    assert!(
        outside.is_empty(),
        "the rules read usage evidence outside live_hold: {outside:?}"
    );
    assert!(
        rules[start..end].iter().any(|(_, l)| l.contains("ctx.last_calls")),
        "the check looks where the evidence is read"
    );
    let mut deciders = naming(&src.join("core"), "usage::");
    deciders.retain(|f| f.ends_with("rules.rs") || f.ends_with("plan.rs") || f.ends_with("windows.rs"));
    for file in ["app/execute.rs", "app/cycle.rs", "app/events.rs"] {
        deciders.extend(naming(&src.join(file), "usage::"));
    }
    assert!(deciders.is_empty(), "usage profiles reach a decision: {deciders:?}");
    let usage = naming(&src.join("core/usage"), "core::rules");
    assert!(usage.is_empty(), "{usage:?}");
    assert!(
        !naming(&src.join("app/usage.rs"), "usage::").is_empty(),
        "the check looks where usage is used"
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

/// The top-level module of `src/` a file belongs to: its folder, or its own name.
fn top_module(path: &Path) -> String {
    let rel = path.strip_prefix(repo().join("src")).expect("under src");
    let first = rel.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

/// The module names `code` reaches through `prefix` (`crate::x`, `super::x`): the first name
/// after it, or each name in braces (`use super::{x, y::Z}`); a qualified path (`a::crate::`)
/// is not one.
fn named_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let qualified = i >= 1 && rest[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        let after = &rest[i + prefix.len()..];
        let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect() };
        if !qualified {
            match after.strip_prefix('{') {
                Some(inner) => out.extend(
                    inner
                        .split('}')
                        .next()
                        .unwrap_or("")
                        .split(',')
                        .map(|n| ident(n.trim())),
                ),
                None => out.push(ident(after)),
            }
        }
        rest = after;
    }
    out.retain(|n| !n.is_empty());
    out
}

/// Which top-level modules each one's production code names (`crate::x`), itself left out.
fn module_graph(files: &[PathBuf]) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut graph: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for f in files {
        let from = top_module(f);
        let deps = graph.entry(from.clone()).or_default();
        let code: String = production_lines(f).into_iter().map(|(_, l)| l + "\n").collect();
        deps.extend(named_after(&code, "crate::").into_iter().filter(|to| *to != from));
    }
    graph
}

/// The circles of a graph: each strongly connected component of more than one module.
fn circles(graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>) -> Vec<Vec<String>> {
    let reaches = |from: &str, to: &str| {
        let mut seen = std::collections::BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(n) = todo.pop() {
            for d in graph.get(&n).into_iter().flatten() {
                if d == to {
                    return true;
                }
                if seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        false
    };
    let mut out: Vec<Vec<String>> = Vec::new();
    for m in graph.keys() {
        if out.iter().any(|c| c.contains(m)) {
            continue;
        }
        let component: Vec<String> = graph
            .keys()
            .filter(|o| *o == m || (reaches(m, o) && reaches(o, m)))
            .cloned()
            .collect();
        if component.len() > 1 {
            out.push(component);
        }
    }
    out
}

fn print_graph(graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>) -> String {
    graph
        .iter()
        .map(|(m, deps)| format!("{m} -> {}", deps.iter().cloned().collect::<Vec<_>>().join(", ")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_circle_between_the_folders_of_src() {
    let graph = module_graph(&rust_files(&repo().join("src")));
    let text = print_graph(&graph);
    println!("{text}");
    let found = circles(&graph);
    assert!(
        found.is_empty(),
        "modules that import each other in a ring: {found:?}\nthe graph:\n{text}"
    );
}

#[test]
fn the_circle_check_finds_a_ring() {
    let graph = [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")].iter().fold(
        std::collections::BTreeMap::new(),
        |mut g, (f, t)| {
            g.entry(f.to_string())
                .or_insert_with(std::collections::BTreeSet::new)
                .insert(t.to_string());
            g.entry(t.to_string()).or_default();
            g
        },
    );
    assert_eq!(circles(&graph), [["a", "b", "c"]]);
}

/// A function of more than this many lines needs a doc comment saying why it is long.
const MAX_FUNCTION_LINES: usize = 80;

/// Functions (rustfmt'ed: the body ends at the first `}` at the `fn` line's indentation) over
/// the limit whose doc comment does not say why they are long (a doc line with the word "long").
fn long_functions(path: &Path) -> Vec<String> {
    let lines: Vec<String> = production_lines_with_docs(path);
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((indent, name)) = fn_start(line) else { continue };
        let Some(open) = (i..lines.len()).find(|&j| {
            let l = lines[j].split("//").next().unwrap_or("").trim_end();
            l.ends_with('{') || l.ends_with(';')
        }) else {
            continue;
        };
        if lines[open].split("//").next().unwrap_or("").trim_end().ends_with(';') {
            continue; // a declaration without a body (trait method)
        }
        let close = format!("{indent}}}");
        let Some(end) = (open + 1..lines.len()).find(|&j| lines[j] == close) else {
            continue;
        };
        let length = end - i + 1;
        if length <= MAX_FUNCTION_LINES {
            continue;
        }
        let doc: Vec<&String> = lines[..i]
            .iter()
            .rev()
            .take_while(|l| l.trim_start().starts_with("///") || l.trim_start().starts_with("#["))
            .collect();
        let says_why = doc.iter().any(|l| {
            l.trim_start().starts_with("///")
                && l.to_lowercase()
                    .split(|c: char| !c.is_alphanumeric())
                    .any(|w| w == "long")
        });
        if !says_why {
            out.push(format!("{}:{}: fn {name} has {length} lines", path.display(), i + 1));
        }
    }
    out
}

/// The lines of a file before its test module, comments kept (doc comments are read).
fn production_lines_with_docs(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read source");
    let code = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    code.lines().map(str::to_string).collect()
}

/// `(indentation, name)` when a line starts a function.
fn fn_start(line: &str) -> Option<(String, String)> {
    let indent: String = line.chars().take_while(|c| *c == ' ').collect();
    let mut rest = line[indent.len()..].trim_start();
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
        "extern \"C\" ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    for prefix in ["const ", "async ", "unsafe "] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let name: String = rest
        .strip_prefix("fn ")?
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some((indent, name))
}

#[test]
fn no_function_over_80_lines_without_a_reason() {
    let found: Vec<String> = rust_files(&repo().join("src"))
        .iter()
        .flat_map(|f| long_functions(f))
        .collect();
    assert!(
        found.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines whose doc comment does not say why they are long:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_length_check_finds_a_long_function_and_accepts_a_reason() {
    let dir = std::env::temp_dir().join(format!("keywarden-arch-len-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let body = "    let x = 1;\n".repeat(85);
    let method_body = "        let x = 1;\n".repeat(85);
    let text = format!(
        "/// Short doc.\npub async fn too_long() {{\n{body}}}\n\n\
         /// Long because it declares every item in one place.\nfn reasoned() {{\n{body}}}\n\n\
         impl X {{\n    pub fn method(&self) {{\n{method_body}    }}\n}}\n\n\
         fn short() {{\n    let y = 2;\n}}\n"
    );
    let f = dir.join("long.rs");
    std::fs::write(&f, text).unwrap();
    let found = long_functions(&f);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("fn too_long has 87 lines"), "{found:?}");
    assert!(found[1].contains("fn method has 87 lines"), "{found:?}");
}

/// Every file under `dir` (no hidden ones, no build output), sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        let hidden = p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden || p.ends_with("target") {
            continue;
        }
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The `NAME.md` files `text` refers to (relative names only: an installed path such as
/// `/usr/share/doc/keywarden/README.md`, or a package asset's `usr/...`, names the package's
/// copy) that `exists` does not know.
fn missing_documents(text: &str, exists: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut out: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || "_-./".contains(c)))
        .filter(|w| w.ends_with(".md") && !w.starts_with('/') && !w.starts_with("usr/") && w.len() > 3)
        .filter(|w| !exists(w))
        .map(str::to_string)
        .collect();
    out.dedup();
    out
}

#[test]
fn no_reference_to_a_document_that_is_not_in_the_repository() {
    let root = repo();
    let all = files_under(&root);
    let names: std::collections::BTreeSet<String> = all
        .iter()
        .filter_map(|p| p.strip_prefix(&root).ok())
        .flat_map(|p| {
            [
                p.display().to_string(),
                p.file_name().unwrap_or_default().to_string_lossy().to_string(),
            ]
        })
        .collect();
    let mut found = Vec::new();
    for path in all
        .iter()
        .filter(|p| !p.ends_with("tests/architecture.rs") && !p.ends_with("tests/docs.rs"))
    {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue; // not text
        };
        // `../X.md` is relative to the file that says it (a docs/ page linking up).
        let exists = |w: &str| {
            names.contains(w.trim_start_matches("./"))
                || (w.starts_with("../") && path.parent().is_some_and(|d| d.join(w).exists()))
        };
        for name in missing_documents(&text, &exists) {
            found.push(format!("{}: {name}", path.display()));
        }
    }
    assert!(
        found.is_empty(),
        "references to documents the repository does not have (describe the names here instead):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_reference_check_finds_a_missing_document() {
    let exists = |w: &str| w == "README.md";
    let text = "see README.md and NOTES.md (`docs/x.md`); installed: /usr/share/doc/k/README.md, usr/share/doc/k/X.md";
    assert_eq!(missing_documents(text, &exists), ["NOTES.md", "docs/x.md"]);
}

/// The files of one folder as modules (`mod.rs` is the folder itself and left out), and which
/// of them each one's production code names: `super::x`, `crate::<folder>::x`, and the names
/// inside braces (`use super::{x, y::Z}`).
fn file_graph(dir: &Path, folder_path: &str) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read a source folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs") && !p.ends_with("mod.rs"))
        .collect();
    files.sort();
    let stem = |p: &Path| p.file_stem().unwrap_or_default().to_string_lossy().to_string();
    let modules: std::collections::BTreeSet<String> = files.iter().map(|p| stem(p)).collect();
    let prefixes = ["super::".to_string(), format!("crate::{folder_path}::")];
    let mut graph: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for f in &files {
        let from = stem(f);
        let code: String = production_lines(f).into_iter().map(|(_, l)| l + "\n").collect();
        let deps = graph.entry(from.clone()).or_default();
        for prefix in &prefixes {
            deps.extend(
                named_after(&code, prefix)
                    .into_iter()
                    .filter(|n| modules.contains(n) && *n != from),
            );
        }
    }
    graph
}

#[test]
fn no_circle_between_the_files_of_one_folder() {
    let src = repo().join("src");
    let mut found = Vec::new();
    let mut folders = vec![src.clone()];
    while let Some(dir) = folders.pop() {
        for e in std::fs::read_dir(&dir).expect("read src").flatten() {
            if e.path().is_dir() {
                folders.push(e.path());
            }
        }
        if dir == src {
            continue; // the top level is the folder check's
        }
        let rel = dir.strip_prefix(&src).expect("under src").display().to_string();
        let graph = file_graph(&dir, &rel.replace('/', "::"));
        for circle in circles(&graph) {
            found.push(format!("src/{rel}: {circle:?}\n{}", print_graph(&graph)));
        }
    }
    assert!(
        found.is_empty(),
        "files that import each other in a ring:\n{}",
        found.join("\n\n")
    );
}

#[test]
fn the_file_circle_check_finds_a_ring_through_super_crate_and_braces() {
    let dir = std::env::temp_dir().join(format!("keywarden-arch-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mod.rs"), "pub mod a;\npub mod b;\npub mod c;\n").unwrap();
    std::fs::write(dir.join("a.rs"), "use super::{b::X, other};\n").unwrap();
    std::fs::write(dir.join("b.rs"), "fn f() { crate::app::c::g(); }\n").unwrap();
    std::fs::write(dir.join("c.rs"), "use super::a;\n#[cfg(test)]\nuse super::b;\n").unwrap();
    std::fs::write(dir.join("d.rs"), "// super::a in a comment\nuse crate::app::a;\n").unwrap();
    let graph = file_graph(&dir, "app");
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(circles(&graph), [["a", "b", "c"]], "{}", print_graph(&graph));
}

/// The paths the admin listener routes (match arms that start with a path literal) that its
/// module doc does not list as "`GET <path>`".
fn unlisted_routes(source: &str) -> Vec<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or("");
    let doc: String = code
        .lines()
        .filter(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut routes = std::collections::BTreeSet::new();
    for line in code.lines().map(str::trim_start).filter(|l| l.starts_with("\"/")) {
        for literal in line.split('"').skip(1).step_by(2).filter(|s| s.starts_with('/')) {
            routes.insert(literal.to_string());
        }
    }
    routes
        .into_iter()
        .filter(|r| !doc.contains(&format!("`GET {r} ")) && !doc.contains(&format!("`GET {r}`")))
        .collect()
}

#[test]
fn every_routed_path_is_listed_in_the_servers_module_doc() {
    let source = std::fs::read_to_string(repo().join("src/server/http.rs")).expect("read http.rs");
    let missing = unlisted_routes(&source);
    assert!(
        missing.is_empty(),
        "routed but not in src/server/http.rs's endpoint list: {missing:?}"
    );
}

#[test]
fn the_route_check_finds_an_unlisted_path() {
    let source = "//! - `GET /metrics`  the metrics\n//! - `GET /`  landing\nfn route(p: &str) {\n    match p {\n        \"/\" | \"/metrics\" | \"/secret\" => {}\n        \"/api/x\" => {}\n        _ => {}\n    }\n}\n#[cfg(test)]\nmod t { fn x() { let _ = \"/test-only\"; } }\n";
    assert_eq!(unlisted_routes(source), ["/api/x", "/secret"]);
}

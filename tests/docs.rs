//! The manual (README.md and docs/) checked against the repository and the binary: every
//! relative link reaches a file (and a heading, when it names one), and every `keywarden ...`
//! command line in a code block parses with today's command line. Each check has a planted
//! violation it must catch.

use std::path::{Path, PathBuf};

use crate::common::repo;

use clap::Parser;

/// README.md and every page under docs/.
fn pages() -> Vec<PathBuf> {
    let mut out = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    assert!(docs.len() >= 10, "the manual is in docs/, one topic a page: {docs:?}");
    out.extend(docs);
    out
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.push(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// The relative links of `text` (a page in `dir`) that reach no file, or no heading of it.
fn broken_links(text: &str, dir: &Path, read: &dyn Fn(&Path) -> Option<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let target = after.split(')').next().unwrap_or("");
        rest = after;
        let target = target.split_whitespace().next().unwrap_or(""); // [x](url "title")
        if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
            continue;
        }
        let (file, fragment) = match target.split_once('#') {
            Some((f, a)) => (f, Some(a)),
            None => (target, None),
        };
        let body = if file.is_empty() {
            Some(text.to_string())
        } else {
            read(&dir.join(file))
        };
        match (body, fragment) {
            (None, _) => out.push(format!("{target}: no such file")),
            (Some(body), Some(a))
                if (file.is_empty() || file.ends_with(".md")) && !anchors(&body).iter().any(|h| h == a) =>
            {
                out.push(format!("{target}: no heading #{a}"));
            }
            _ => {}
        }
    }
    out
}

fn read_any(p: &Path) -> Option<String> {
    if p.is_dir() {
        return Some(String::new());
    }
    std::fs::read_to_string(p).ok()
}

#[test]
fn every_relative_link_reaches_a_file_and_heading() {
    let mut found = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("read a page");
        let dir = page.parent().expect("a folder");
        for broken in broken_links(&text, dir, &read_any) {
            found.push(format!("{}: {broken}", page.display()));
        }
    }
    assert!(found.is_empty(), "broken links:\n{}", found.join("\n"));
}

#[test]
fn the_link_check_finds_a_missing_file_and_heading() {
    let read = |p: &Path| (p == Path::new("d/ok.md")).then(|| "# Ok page\n## Sub, part\n".to_string());
    let text = "[a](ok.md) [b](ok.md#sub-part) [c](nope.md) [d](ok.md#gone) [e](https://x/y) [f](#here)\n# Here\n";
    assert_eq!(
        broken_links(text, Path::new("d"), &read),
        ["nope.md: no such file", "ok.md#gone: no heading #gone"]
    );
}

/// The `keywarden ...` command lines of a page's code blocks and inline code, as words: `$ ` and `sudo `
/// prompts and leading `VAR=value` assignments dropped, a comment or pipe ends the line.
fn command_lines(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut in_code = false;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let spans: Vec<&str> = if in_code {
            vec![line]
        } else if line.trim_start().starts_with('|') {
            Vec::new() // a table row names commands and flags, one per cell
        } else {
            // Inline code: the odd pieces between backticks.
            line.split('`').skip(1).step_by(2).collect()
        };
        for span in spans {
            let Some(words) = command(span) else { continue };
            // Inline, `keywarden rotate` names a command, `keywarden 0.1.0 (...)` is output and
            // `[--config PATH]` a synopsis; a command line has arguments.
            let invocation = words.len() >= 3 || words.get(1).is_some_and(|w| w.starts_with('-'));
            let output_or_synopsis = words
                .get(1)
                .is_some_and(|w| w.starts_with(|c: char| c.is_ascii_digit()))
                || words.iter().any(|w| w.starts_with('['));
            if in_code || (invocation && !output_or_synopsis) {
                out.push((n + 1, words));
            }
        }
    }
    out
}

fn command(span: &str) -> Option<Vec<String>> {
    let mut words = split_words(span);
    while words
        .first()
        .is_some_and(|w| w == "$" || w == "sudo" || (w.contains('=') && !w.starts_with('-')))
    {
        words.remove(0);
    }
    words.first().is_some_and(|w| w == "keywarden").then_some(words)
}

/// Shell-like words: quotes group, `#`, `|`, `>`, `&&` and `;` end the command.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    for c in line.trim().chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                started = true;
            }
            (None, ' ' | '\t') => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (None, '#' | '|' | '>' | ';' | '&') if !started => break,
            (None, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

fn parse_error(words: &[String]) -> Option<String> {
    match keywarden::cli::Cli::try_parse_from(words) {
        Ok(_) => None,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            None
        }
        Err(e) => Some(e.to_string().lines().next().unwrap_or("").to_string()),
    }
}

#[test]
fn every_documented_command_line_parses() {
    let mut checked = 0;
    let mut found = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("read a page");
        for (n, words) in command_lines(&text) {
            checked += 1;
            if let Some(e) = parse_error(&words) {
                found.push(format!("{}:{n}: {}: {e}", page.display(), words.join(" ")));
            }
        }
    }
    assert!(
        checked >= 20,
        "the docs show the commands they describe ({checked} found)"
    );
    assert!(
        found.is_empty(),
        "command lines today's CLI refuses:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_command_check_finds_a_line_the_cli_refuses() {
    let text = "```sh\n$ sudo keywarden audit --format json | jq .  # ok\nAWS_PROFILE=x keywarden history --since 7d\nkeywarden reactivate AKIA... --reason \"a b\" [--force]\nkeywarden audit --colour\necho keywarden\n```\nkeywarden not-in-code, `keywarden run --once` inline, `keywarden rotate` named, `keywarden 0.1.0 (commit x)` printed, `keywarden history [--since D]` a synopsis\n| `keywarden state import` | `FILE` |\n";
    let lines = command_lines(text);
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[4].1, ["keywarden", "run", "--once"]);
    assert_eq!(lines[0].1, ["keywarden", "audit", "--format", "json"]);
    assert_eq!(lines[2].1[4], "a b");
    let refused: Vec<usize> = lines
        .iter()
        .filter(|(_, w)| parse_error(w).is_some())
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(refused, [4, 5]);
}

/// The metric names a source file declares (string literals `"keywarden_..."`) that `page`
/// does not name.
fn undocumented_metrics(source: &str, page: &str) -> Vec<String> {
    let mut out: Vec<String> = source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("keywarden_") && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .filter(|name| {
            !page
                .match_indices(*name)
                .any(|(i, _)| !page[i + name.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
        })
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn every_metric_is_a_stable_name() {
    let page = std::fs::read_to_string(repo().join("docs/names.md")).expect("docs/names.md");
    let mut missing = Vec::new();
    for file in ["src/server/metrics.rs", "src/server/audit_page.rs"] {
        let source = std::fs::read_to_string(repo().join(file)).expect("read a metrics source");
        missing.extend(undocumented_metrics(&source, &page));
    }
    assert!(missing.is_empty(), "metrics docs/names.md does not list: {missing:?}");
}

#[test]
fn the_metric_check_finds_an_unlisted_name() {
    let source = r#"opts("keywarden_a_total", "help"); opts("keywarden_ab", "h"); let s = "keywarden_a";"#;
    assert_eq!(
        undocumented_metrics(source, "`keywarden_a_total`, `keywarden_a`"),
        ["keywarden_ab"]
    );
}

//! Records the commit keywarden is built from, for `keywarden --version` and
//! `keywarden_build_info{revision}`: `GIT_COMMIT` when set (builds from a source
//! tarball, distribution packaging), else `git rev-parse` of the checkout (with `-dirty` when
//! tracked files differ from it), else `unknown`.
//!
//! Neither name starts with `KEYWARDEN_`: cargo also sets `rustc-env` variables for the
//! binaries it runs (`cargo test`, `cargo run`), and keywarden reads every `KEYWARDEN_*`
//! variable as a config override (an unknown key is a config error).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=GIT_COMMIT");
    // A new commit or a checkout changes HEAD or the ref it names (a loose file, or a line of
    // packed-refs); an edit changes the index. Only files that exist are named: cargo takes a
    // missing one as changed, and would build keywarden again on every command (a checkout
    // whose refs were never packed has no packed-refs).
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let mut watched = vec!["HEAD".to_string(), "index".into(), "packed-refs".into()];
        watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
        for f in watched {
            let path = std::path::Path::new(&dir).join(f);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    let commit = std::env::var("GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            let id = git(&["rev-parse", "--short=12", "HEAD"])?;
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            Some(if dirty { format!("{id}-dirty") } else { id })
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=BUILT_FROM_COMMIT={commit}");
}

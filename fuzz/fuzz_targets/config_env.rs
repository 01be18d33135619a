//! `KEYWARDEN_*` variables over a valid config file: each input line `NAME=value` is set as
//! `KEYWARDEN_NAME` (up to four). The config then loads, or the error names a variable or the
//! file, never a panic.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn config() -> &'static std::path::Path {
    static P: OnceLock<std::path::PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kw-fuzz-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("k.toml");
        std::fs::write(
            &path,
            "[enforcement]\nmode = \"dry-run\"\n[state]\npath = \"/tmp/kw-fuzz-state.json\"\n",
        )
        .expect("config");
        path
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut set = Vec::new();
    for line in text.lines().take(4) {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let name = format!("KEYWARDEN_{name}");
        if name.contains('\0') || value.contains('\0') || set.contains(&name) {
            continue;
        }
        // SAFETY: the fuzz target is single-threaded.
        unsafe { std::env::set_var(&name, value) };
        set.push(name);
    }
    if let Err(e) = keywarden::config::load(config(), true) {
        let said = e.to_string();
        assert!(
            said.contains("KEYWARDEN_") || said.contains("environment variable") || said.contains("k.toml"),
            "an error that names nothing: {said}"
        );
    }
    for name in set {
        // SAFETY: as above.
        unsafe { std::env::remove_var(name) };
    }
});

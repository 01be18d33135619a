//! The config file: any bytes are a config or an error that names the file (or a
//! `KEYWARDEN_*` variable), never a panic. The first line of the input, when it starts with
//! `KEYWARDEN_`, is set as a variable (`NAME=value`), so the variables are fuzzed too.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("kw-fuzz-config-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("k.toml");
    let mut text = data;
    let mut var = None;
    if let Some(nl) = data.iter().position(|b| *b == b'\n') {
        if let Ok(line) = std::str::from_utf8(&data[..nl]) {
            if let Some((name, value)) = line.split_once('=') {
                if name.starts_with("KEYWARDEN_") && !name.contains('\0') && !value.contains('\0') {
                    var = Some(name.to_string());
                    // SAFETY: the fuzz target is single-threaded.
                    unsafe { std::env::set_var(name, value) };
                    text = &data[nl + 1..];
                }
            }
        }
    }
    std::fs::write(&path, text).unwrap();
    if let Err(e) = keywarden::config::load(&path, true) {
        let said = e.to_string();
        assert!(
            said.contains("k.toml") || said.contains("environment variable"),
            "an error that names nothing: {said}"
        );
    }
    if let Some(name) = var {
        // SAFETY: as above.
        unsafe { std::env::remove_var(name) };
    }
});

//! The state file: any bytes are a state or an error, never a panic; a state that loads is
//! saved and loads again to the same state (parse, print, parse).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("kw-fuzz-state-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("state.json");
    std::fs::write(&path, data).unwrap();
    if let Ok(Some(state)) = keywarden::state::load(&path) {
        let again = dir.join("again.json");
        keywarden::state::save(&again, &state).unwrap();
        let back = keywarden::state::load(&again).unwrap().unwrap();
        assert_eq!(back, state);
    }
});

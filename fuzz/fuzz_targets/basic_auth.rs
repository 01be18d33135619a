//! The admin listener's `Authorization` header: any text is credentials or none, never a
//! panic; credentials that parse, written again, parse to the same user and password.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else { return };
    if let Some((user, password)) = keywarden::sys::web::parse_basic(header) {
        assert!(!user.contains(':'));
        let again = format!("Basic {}", keywarden::sys::web::encode_basic(&user, &password));
        assert_eq!(keywarden::sys::web::parse_basic(&again), Some((user, password)));
    }
});

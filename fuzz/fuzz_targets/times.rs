//! Times, durations and enforcement windows as the config, the state and AWS write them: any
//! text is a value or an error; a time that parses prints to text that parses to the same
//! instant, a window that parses prints to one that parses the same.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    use keywarden::sys::timefmt;
    if let Ok(t) = timefmt::parse(text) {
        let printed = timefmt::format(&t);
        let back = timefmt::parse(&printed).expect("a printed time parses");
        assert_eq!(back.timestamp(), t.timestamp(), "{text:?} -> {printed}");
    }
    let _ = timefmt::parse_delta(text);
    if let Ok(w) = keywarden::core::windows::Window::parse(text) {
        let printed = w.to_string();
        assert_eq!(
            keywarden::core::windows::Window::parse(&printed).ok(),
            Some(w),
            "{text:?} -> {printed}"
        );
    }
});

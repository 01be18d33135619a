//! EventBridge envelopes from the events and usage queues (SNS-wrapped too), with their
//! CloudTrail and Health details: any text is an envelope or an error. A usage record that
//! parses and is admitted names a long-term key and a well-formed action.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else { return };
    let _ = keywarden::aws::eventbridge::parse(body);
    if let Ok(raw) = keywarden::aws::eventbridge::usage_event(body) {
        if let Ok(e) = keywarden::core::usage::event::admit(&raw, chrono::Utc::now()) {
            assert!(keywarden::core::usage::event::is_long_term_key(&e.access_key_id));
            assert!(!e.action.is_empty() && !e.service.is_empty());
        }
    }
});

//! EventBridge envelopes from the events and usage queues (SNS-wrapped too), with their
//! CloudTrail and Health details: any text is an envelope or an error. What an envelope
//! decides is bounded by what it says: a re-audit only of an account keywarden reads, only of
//! a user or key the message itself names, never through an SNS topic the config does not
//! list. A usage record that parses and is admitted names a long-term key and a well-formed
//! action.
#![no_main]
use std::collections::BTreeSet;

use keywarden::core::events::{decide, Decision, Subject, Trusted};
use libfuzzer_sys::fuzz_target;

const ACCOUNT: &str = "123456789012";
const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:keywarden";

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else { return };
    if let Ok(env) = keywarden::aws::eventbridge::parse(body) {
        let accounts = BTreeSet::from([ACCOUNT.to_string()]);
        let topics = [TOPIC.to_string()];
        let trusted = Trusted {
            accounts: &accounts,
            sns_topics: &topics,
        };
        if let Decision::Changes(changes) = decide(&env, &trusted) {
            assert!(
                env.sns_topic.as_deref().is_none_or(|t| t == TOPIC),
                "through an unlisted topic: {env:?}"
            );
            for c in changes {
                assert_eq!(c.account_id, ACCOUNT, "another account's event acted on: {env:?}");
                match &c.subject {
                    Subject::User(u) => assert!(
                        env.request_user.as_ref() == Some(u) || env.identity_user.as_ref() == Some(u),
                        "a user the message does not name: {u} in {env:?}"
                    ),
                    Subject::Key(k) => assert!(
                        env.affected_entities.contains(k) || env.access_key_id.as_ref() == Some(k),
                        "a key the message does not name: {k} in {env:?}"
                    ),
                }
            }
        }
    }
    if let Ok(raw) = keywarden::aws::eventbridge::usage_event(body) {
        if let Ok(e) = keywarden::core::usage::event::admit(&raw, chrono::Utc::now()) {
            assert!(keywarden::core::usage::event::is_long_term_key(&e.access_key_id));
            assert!(!e.action.is_empty() && !e.service.is_empty());
        }
    }
});

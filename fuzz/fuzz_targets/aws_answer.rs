//! The answers of the services keywarden signs by hand (SQS, Security Hub, Secrets Manager,
//! CloudTrail): any status, error header and body give a code and a message, and an SQS
//! ReceiveMessage answer gives its messages (or none), never a panic. Input: the first byte
//! picks the status, the first line is the `x-amzn-ErrorType` header, the rest the body.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use keywarden::aws::sigv4::Answer;
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let status = [200u16, 400, 403, 404, 429, 500, 503][*first as usize % 7];
    let (header, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(nl) => (std::str::from_utf8(&rest[..nl]).ok(), rest[nl + 1..].to_vec()),
        None => (None, rest.to_vec()),
    };
    let answer = Answer::read(status, header.filter(|h| !h.is_empty()), body);
    assert!(!answer.code().is_empty());
    let _ = answer.message();
    let listed = answer.json["Messages"].as_array().map_or(0, Vec::len);
    assert!(keywarden::aws::sqs::messages(&answer.json).len() <= listed);
});

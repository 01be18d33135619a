//! The shared leaf every edge may use (it imports only `core`): the sd-notify protocol
//! (`notify`), logging to journald or stderr (`logging`), RFC 3339 time formats (`timefmt`),
//! who is acting (`host`: host name, run id, operator), the admin listener's TLS and basic
//! auth (`web`, loaded with the config so that `check-config` names a bad file) and temporary
//! console passwords (`password`), and reading the files keywarden is pointed at (`files`: regular
//! files only, bounded).

pub mod files;
pub mod host;
pub mod logging;
pub mod notify;
pub mod password;
pub mod timefmt;
pub mod web;

/// `name`, or its first `shown` bytes and its length when it is longer: an error echoes what
/// it refuses, and a megabyte name is not a megabyte error.
pub fn cut(name: &str, shown: usize) -> String {
    if name.len() <= shown {
        return name.to_string();
    }
    let mut end = shown;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &name[..end], name.len())
}

//! Talking to the host: the sd-notify protocol (`notify`), logging to journald or stderr
//! (`logging`), RFC 3339 time formats (`timefmt`) and who is acting (`host`: host name, run id,
//! operator).

pub mod host;
pub mod logging;
pub mod notify;
pub mod timefmt;

//! Talking to the host: the sd-notify protocol (`notify`), logging to journald or stderr
//! (`logging`) and RFC 3339 time formats (`timefmt`).

pub mod logging;
pub mod notify;
pub mod timefmt;

//! The shared leaf every edge may use (it imports only `core`): the sd-notify protocol
//! (`notify`), logging to journald or stderr (`logging`), RFC 3339 time formats (`timefmt`),
//! who is acting (`host`: host name, run id, operator), the admin listener's TLS and basic
//! auth (`web`, loaded with the config so that `check-config` names a bad file) and temporary
//! console passwords (`password`).

pub mod host;
pub mod logging;
pub mod notify;
pub mod password;
pub mod timefmt;
pub mod web;

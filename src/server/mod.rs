//! The admin HTTP listener (`http`) and what it serves: the live metrics (`metrics`) and the
//! last audit's page of per-account, per-user and per-key gauges (`audit_page`); its TLS and
//! basic auth are `sys::web`, built when the config is loaded.

pub mod audit_page;
pub mod http;
pub mod metrics;

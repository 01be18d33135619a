//! The admin HTTP listener (`http`) and the metrics it serves (`metrics`); its TLS and basic
//! auth are `sys::web`, built when the config is loaded.

pub mod http;
pub mod metrics;

//! The admin HTTP listener (`http`), its TLS and basic auth (`web`) and the metrics it serves
//! (`metrics`).

pub mod http;
pub mod metrics;
pub mod web;

//! RFC 3339 in and out, always UTC with whole seconds (`2026-12-01T10:00:00Z`), the form the
//! JSON report and the state file use; and the humantime durations of the command line and the
//! API (`24h`, `7d`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serializer};

use crate::core::model::Timestamp;

pub fn format(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Accepts any RFC 3339 offset and converts to UTC.
pub fn parse(s: &str) -> Result<Timestamp, chrono::ParseError> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
}

/// A humantime duration (`24h`, `7d`) as a `TimeDelta`: `history --since`, `reactivate
/// --snooze`, `/api/v1/actions?since=`.
pub fn parse_delta(s: &str) -> Option<chrono::TimeDelta> {
    humantime::parse_duration(s)
        .ok()
        .and_then(|d| chrono::TimeDelta::from_std(d).ok())
}

pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(t))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| parse(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

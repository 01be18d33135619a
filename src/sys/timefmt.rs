//! RFC 3339 in and out, always UTC with whole seconds (`2026-12-01T10:00:00Z`), the form the
//! JSON report and the state file use; and the humantime durations of the command line and the
//! API (`24h`, `7d`).

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serializer};

use crate::core::model::Timestamp;

pub fn format(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Accepts any RFC 3339 offset and converts to UTC. A time whose UTC form falls outside the
/// years 0000-9999 is refused: RFC 3339 cannot write it (`format` would print `-0001-...`),
/// so it could not be written to the state, the journal or a report and read back.
pub fn parse(s: &str) -> Result<Timestamp, TimeError> {
    let t = DateTime::parse_from_rfc3339(s)
        .map_err(TimeError::Syntax)?
        .with_timezone(&Utc);
    if writable(&t) {
        Ok(t)
    } else {
        Err(TimeError::OutOfRange)
    }
}

/// Whether `format` prints `t` as RFC 3339, which `parse` reads back: its UTC year is
/// 0000-9999. A time computed from a user's duration (a snooze) must be checked before it is
/// kept; `serialize` refuses the rest, so that a save fails instead of writing a state or a
/// journal no command could read.
pub fn writable(t: &Timestamp) -> bool {
    (0..=9999).contains(&t.year())
}

/// Why a text is not a time `parse` accepts.
#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    #[error("{0}")]
    Syntax(chrono::ParseError),
    #[error("in UTC it falls outside the years 0000-9999, which RFC 3339 cannot write")]
    OutOfRange,
}

/// A humantime duration (`24h`, `7d`) as a `TimeDelta`: `history --since`, `reactivate
/// --snooze`, `/api/v1/actions?since=`.
pub fn parse_delta(s: &str) -> Option<chrono::TimeDelta> {
    humantime::parse_duration(s)
        .ok()
        .and_then(|d| chrono::TimeDelta::from_std(d).ok())
}

pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    if !writable(t) {
        return Err(serde::ser::Error::custom(format!(
            "{} {}",
            format(t),
            TimeError::OutOfRange
        )));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_that_parses_prints_to_text_that_parses_to_the_same_instant() {
        for s in [
            "2026-12-01T10:00:00Z",
            "2026-12-01T10:00:00+02:00",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
        ] {
            let t = parse(s).expect(s);
            assert_eq!(parse(&format(&t)).expect(s), t, "{s}");
        }
    }

    /// Found by the `times` fuzz target: an offset moved the instant out of the years RFC 3339
    /// can write, so keywarden accepted a time it would print as `-0001-12-31T12:04:05Z` (or
    /// `+10000-...`) and could not read back, from the state, the journal or a report.
    #[test]
    fn a_time_outside_the_years_0000_to_9999_in_utc_is_refused_with_its_reason() {
        for s in ["0000-01-01T03:04:05+15:00", "9999-12-31T23:00:00-02:00"] {
            let e = parse(s).expect_err(s);
            assert!(e.to_string().contains("0000-9999"), "{s}: {e}");
        }
        #[derive(serde::Serialize)]
        struct Doc {
            #[serde(with = "super")]
            at: Timestamp,
        }
        let late = parse("9999-12-31T23:59:59Z").unwrap() + chrono::TimeDelta::days(1);
        let e = serde_json::to_string(&Doc { at: late }).expect_err("not written");
        assert!(
            e.to_string().contains("+10000-01-01T23:59:59Z") && e.to_string().contains("0000-9999"),
            "{e}"
        );
    }
}

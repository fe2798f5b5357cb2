//! Timestamps as the store keeps them: RFC 3339 UTC with exactly six
//! fractional digits and `Z` (`2025-01-31T02:30:00.000000Z`), so that the TEXT
//! columns sort and compare chronologically on every backend. Also the serde
//! helpers that give the JSON output (runs, audit events) the same shape.

use chrono::{DateTime, SubsecRound, Utc};

const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// Formats `t` as stored: `2025-01-31T02:30:00.000000Z`.
pub fn format_ts(t: &DateTime<Utc>) -> String {
    t.format(FORMAT).to_string()
}

/// Parses any RFC 3339 timestamp (the stored form included) into UTC.
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Now, UTC, truncated to microseconds (what the store can represent).
pub fn now_micros() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// `#[serde(with = "crate::store::time::serde_ts")]` for `DateTime<Utc>`.
pub mod serde_ts {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_ts(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_ts(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid RFC 3339 timestamp '{s}'")))
    }
}

/// `#[serde(with = "crate::store::time::serde_ts_opt")]` for `Option<DateTime<Utc>>`.
pub mod serde_ts_opt {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::format_ts(t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => super::parse_ts(&s).map(Some).ok_or_else(|| {
                serde::de::Error::custom(format!("invalid RFC 3339 timestamp '{s}'"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_digits_and_z() {
        let t = parse_ts("2025-01-31T02:30:00Z").unwrap();
        assert_eq!(format_ts(&t), "2025-01-31T02:30:00.000000Z");
        let t = parse_ts("2025-01-31T03:30:00.1234567+01:00").unwrap();
        assert_eq!(format_ts(&t), "2025-01-31T02:30:00.123456Z");
        let n = now_micros();
        assert_eq!(parse_ts(&format_ts(&n)), Some(n));
    }
}

//! `"30s"`-style durations, as users write them in manifests.
//!
//! A newtype rather than `std::time::Duration` so that the manifest, the CRD schema and error
//! messages all speak the same human form, and so a typo is caught at parse time.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration written as an integer and a unit: `500ms`, `30s`, `5m`, `6h`, `7d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(std::time::Duration);

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseDurationError {
    /// The string is not `<integer><unit>`.
    #[error("invalid duration `{0}`: expected an integer and a unit (ms, s, m, h, d), e.g. `30s`")]
    Syntax(String),
    /// The unit is not one of ms, s, m, h, d.
    #[error("invalid duration `{input}`: unknown unit `{unit}`; expected ms, s, m, h or d")]
    Unit {
        /// The whole input.
        input: String,
        /// The unit that was given.
        unit: String,
    },
}

impl Duration {
    /// A duration of `ms` milliseconds.
    #[must_use]
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    /// A duration of `s` seconds.
    #[must_use]
    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }

    /// The duration as `std::time::Duration`.
    #[must_use]
    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    /// Whole milliseconds, saturating; event time in Weir is milliseconds.
    #[must_use]
    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| ParseDurationError::Syntax(s.to_string()))?;
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| ParseDurationError::Syntax(s.to_string()))?;
        let ms = match unit {
            "ms" => Some(n),
            "s" => n.checked_mul(1_000),
            "m" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            "d" => n.checked_mul(86_400_000),
            _ => {
                return Err(ParseDurationError::Unit {
                    input: s.to_string(),
                    unit: unit.to_string(),
                });
            }
        };
        ms.map(Self::from_millis)
            .ok_or_else(|| ParseDurationError::Syntax(s.to_string()))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        let units = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        for (size, unit) in units {
            if ms != 0 && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9]+(ms|s|m|h|d)$",
            // Bounded so the apiserver can cost the CEL rules that compare durations.
            "maxLength": 24,
            "description": "A duration: an integer and a unit (ms, s, m, h, d), e.g. `30s`."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_prints_the_largest_exact_unit() {
        let cases: &[(&str, u64, &str)] = &[
            ("500ms", 500, "500ms"),
            ("30s", 30_000, "30s"),
            ("60s", 60_000, "1m"),
            ("5m", 300_000, "5m"),
            ("6h", 21_600_000, "6h"),
            ("2d", 172_800_000, "2d"),
            ("0s", 0, "0ms"),
        ];
        for (input, ms, shown) in cases {
            let d: Duration = input.parse().expect("valid duration");
            assert_eq!(d.get().as_millis(), u128::from(*ms), "{input}");
            assert_eq!(d.to_string(), *shown, "{input}");
        }
    }

    #[test]
    fn rejects_missing_unit_unknown_unit_and_garbage() {
        assert!(matches!(
            "30".parse::<Duration>(),
            Err(ParseDurationError::Syntax(_))
        ));
        assert!(matches!(
            "3x".parse::<Duration>(),
            Err(ParseDurationError::Unit { .. })
        ));
        assert!(matches!(
            "s".parse::<Duration>(),
            Err(ParseDurationError::Syntax(_))
        ));
        assert!(matches!(
            "-1s".parse::<Duration>(),
            Err(ParseDurationError::Syntax(_))
        ));
    }
}

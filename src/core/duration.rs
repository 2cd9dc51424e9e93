//! Human durations as written in policy and on the command line: `90s`, `15m`, `4h`, `1h30m`, `2d`.

use std::fmt;

/// Why a duration does not parse; each names the text as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("negative duration `{0}`")]
    Negative(String),
    #[error("invalid duration `{input}`: expected a number before `{rest}` (e.g. 90s, 15m, 4h, 1h30m, 2d)")]
    NoNumber { input: String, rest: String },
    #[error("invalid duration `{0}`: number too large")]
    NumberTooLarge(String),
    #[error("invalid duration `{input}`: a unit is missing after {number}")]
    NoUnit { input: String, number: i64 },
    #[error("invalid duration `{input}`: unknown unit `{unit}` (use ms, s, m, h or d)")]
    UnknownUnit { input: String, unit: String },
    #[error("invalid duration `{0}`: too large")]
    TooLarge(String),
}

/// A non-negative span of time, kept in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub i64);

impl Dur {
    /// `s` seconds, saturating at the largest span a `Dur` holds (so a huge number can
    /// never wrap round to a short one); parsing refuses such numbers instead.
    pub fn from_secs(s: i64) -> Self {
        Dur(s.saturating_mul(1000))
    }
    /// `s` seconds, or `None` where that many milliseconds do not fit.
    pub fn checked_from_secs(s: i64) -> Option<Self> {
        s.checked_mul(1000).map(Dur)
    }
    pub fn millis(self) -> i64 {
        self.0
    }
    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.max(0) as u64)
    }

    /// Parses `1h30m`, `45s`, `250ms`, `2d`. A bare number is seconds.
    pub fn parse(s: &str) -> Result<Dur, DurationError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(DurationError::Empty);
        }
        if let Ok(n) = t.parse::<i64>() {
            if n < 0 {
                return Err(DurationError::Negative(s.into()));
            }
            return Dur::checked_from_secs(n).ok_or_else(|| DurationError::TooLarge(s.into()));
        }
        let mut total: i64 = 0;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if digits == 0 {
                return Err(DurationError::NoNumber {
                    input: s.into(),
                    rest: rest.into(),
                });
            }
            let n: i64 = rest[..digits]
                .parse()
                .map_err(|_| DurationError::NumberTooLarge(s.into()))?;
            rest = &rest[digits..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let ms = match unit {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "" => {
                    return Err(DurationError::NoUnit {
                        input: s.into(),
                        number: n,
                    });
                }
                other => {
                    return Err(DurationError::UnknownUnit {
                        input: s.into(),
                        unit: other.into(),
                    });
                }
            };
            total = n
                .checked_mul(ms)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| DurationError::TooLarge(s.into()))?;
        }
        Ok(Dur(total))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0;
        if ms == 0 {
            return write!(f, "0s");
        }
        for (unit, len) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
            if ms >= len {
                write!(f, "{}{}", ms / len, unit)?;
                ms %= len;
            }
        }
        if ms > 0 {
            write!(f, "{ms}ms")?;
        }
        Ok(())
    }
}

impl<'de> serde::Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 90s, 15m, 4h or 1h30m")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dur, E> {
                Dur::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Dur, E> {
                i64::try_from(v)
                    .ok()
                    .and_then(Dur::checked_from_secs)
                    .ok_or_else(|| E::custom(format!("duration too large: {v} seconds")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Dur, E> {
                if v < 0 {
                    return Err(E::custom("negative duration"));
                }
                Dur::checked_from_secs(v).ok_or_else(|| E::custom(format!("duration too large: {v} seconds")))
            }
        }
        d.deserialize_any(V)
    }
}

impl serde::Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Milliseconds since the Unix epoch, the one clock reading the server takes: this
/// machine's clock corrected by [`set_clock_offset`] (replicas on PostgreSQL follow the
/// database's clock, so a replica whose clock is off cannot expire a request early).
pub fn now_ms() -> i64 {
    system_now_ms().saturating_add(CLOCK_OFFSET_MS.load(std::sync::atomic::Ordering::Relaxed))
}

/// This machine's clock, uncorrected.
pub fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

static CLOCK_OFFSET_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// What [`now_ms`] adds to this machine's clock: the shared clock minus this one's.
pub fn set_clock_offset(ms: i64) {
    CLOCK_OFFSET_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
}

/// RFC 3339 text for a millisecond timestamp, as shown to people and in records: UTC
/// with `Z`, fractional seconds only when there are some, without trailing zeros
/// (`2023-11-14T22:13:20Z`, `2023-11-14T22:13:20.5Z`). Outside the years -9999..=9999
/// the Unix epoch is printed; a year before 0000 prints nothing (RFC 3339 has none).
pub fn rfc3339(ms: i64) -> String {
    // Civil time rather than `jiff::Timestamp`: its range is the same as the `time` crate's
    // that this replaced, to the millisecond.
    let epoch = jiff::civil::date(1970, 1, 1).at(0, 0, 0, 0);
    let t = epoch
        .checked_add(jiff::SignedDuration::from_millis(ms))
        .unwrap_or(epoch);
    if t.year() < 0 {
        return String::new();
    }
    format!("{t}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_and_units() {
        assert_eq!(Dur::parse("1h30m").unwrap(), Dur(5_400_000));
        assert_eq!(Dur::parse("90").unwrap(), Dur(90_000));
        assert_eq!(Dur::parse("250ms").unwrap(), Dur(250));
        assert_eq!(Dur::parse("2d").unwrap(), Dur(172_800_000));
        assert!(Dur::parse("5x").unwrap_err().to_string().contains("unknown unit `x`"));
        assert!(Dur::parse("h").is_err());
        assert!(Dur::parse("").is_err());
        assert!(Dur::parse("-3").is_err());
    }

    #[test]
    fn huge_numbers_of_seconds_are_refused_not_wrapped() {
        let max_secs = i64::MAX / 1000;
        assert_eq!(Dur::parse(&max_secs.to_string()).unwrap(), Dur(max_secs * 1000));
        let over = (max_secs + 1).to_string();
        assert_eq!(Dur::parse(&over), Err(DurationError::TooLarge(over.clone())));
        assert_eq!(
            Dur::parse("18446744073709552"),
            Err(DurationError::TooLarge("18446744073709552".into()))
        );
        assert_eq!(Dur::from_secs(i64::MAX), Dur(i64::MAX));
        assert_eq!(Dur::from_secs(max_secs + 1), Dur(i64::MAX));
        assert_eq!(Dur::checked_from_secs(max_secs + 1), None);
        let e = serde_norway::from_str::<Dur>(&over).unwrap_err().to_string();
        assert!(e.contains("duration too large"), "{e}");
        let e = serde_norway::from_str::<Dur>("18446744073709551615")
            .unwrap_err()
            .to_string();
        assert!(e.contains("duration too large"), "{e}");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = |s: &str| Dur::parse(s).unwrap_err().to_string();
        assert_eq!(e(" "), "empty duration");
        assert_eq!(e("-3"), "negative duration `-3`");
        assert_eq!(
            e("h"),
            "invalid duration `h`: expected a number before `h` (e.g. 90s, 15m, 4h, 1h30m, 2d)"
        );
        assert_eq!(
            e("99999999999999999999s"),
            "invalid duration `99999999999999999999s`: number too large"
        );
        assert_eq!(e("1h30"), "invalid duration `1h30`: a unit is missing after 30");
        assert_eq!(
            e("5x"),
            "invalid duration `5x`: unknown unit `x` (use ms, s, m, h or d)"
        );
        assert_eq!(
            e("9999999999999999d"),
            "invalid duration `9999999999999999d`: too large"
        );
    }

    #[test]
    fn rfc3339_is_utc_with_z_and_only_the_digits_needed() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(1_700_000_000_500), "2023-11-14T22:13:20.5Z");
        assert_eq!(rfc3339(1_700_000_000_120), "2023-11-14T22:13:20.12Z");
        assert_eq!(rfc3339(1_700_000_000_001), "2023-11-14T22:13:20.001Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(-62_167_219_200_000), "0000-01-01T00:00:00Z");
        assert_eq!(rfc3339(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        // Out of range, as the `time` crate printed it.
        assert_eq!(rfc3339(-62_167_219_200_001), "");
        assert_eq!(rfc3339(253_402_300_800_000), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MIN), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn displays_round_trip() {
        for s in ["1h30m", "15m", "2d", "1s", "1m250ms"] {
            assert_eq!(Dur::parse(s).unwrap().to_string(), s);
        }
    }
}

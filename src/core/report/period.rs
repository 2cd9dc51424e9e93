//! The period of a report, `[from, to)` in Unix milliseconds, from what people type: a
//! date (`2026-10-01`, a whole UTC day; as `--to`, that day is included) or an RFC 3339
//! time (`2026-10-01T08:00:00Z`, exact; as `--to`, excluded).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub from: i64,
    pub to: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeriodError {
    #[error("{which}: `{given}` is neither a date (2026-10-31) nor an RFC 3339 time (2026-10-31T17:00:00Z)")]
    Unreadable { which: &'static str, given: String },
    #[error("the period is empty: `to` ({to}) is not after `from` ({from})")]
    Empty { from: String, to: String },
}

const DAY_MS: i64 = 86_400_000;

/// One bound: a date's midnight UTC (the next midnight for an end), or a time.
fn bound(which: &'static str, given: &str, end: bool) -> Result<i64, PeriodError> {
    let given = given.trim();
    if let Ok(t) = given.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    if let Ok(d) = given.parse::<jiff::civil::Date>()
        && let Ok(t) = format!("{d}T00:00:00Z").parse::<jiff::Timestamp>()
    {
        let ms = t.as_millisecond();
        return Ok(if end { ms + DAY_MS } else { ms });
    }
    Err(PeriodError::Unreadable {
        which,
        given: given.to_string(),
    })
}

impl Period {
    /// `from` and `to` as given on the command line or in a query.
    pub fn parse(from: &str, to: &str) -> Result<Period, PeriodError> {
        let p = Period {
            from: bound("from", from, false)?,
            to: bound("to", to, true)?,
        };
        if p.to <= p.from {
            return Err(PeriodError::Empty {
                from: from.to_string(),
                to: to.to_string(),
            });
        }
        Ok(p)
    }

    pub fn contains(&self, t: i64) -> bool {
        self.from <= t && t < self.to
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_whole_days_and_times_exact() {
        let p = Period::parse("2026-10-01", "2026-10-31").unwrap();
        assert_eq!(crate::core::duration::rfc3339(p.from), "2026-10-01T00:00:00Z");
        assert_eq!(crate::core::duration::rfc3339(p.to), "2026-11-01T00:00:00Z");
        assert!(p.contains(p.from) && !p.contains(p.to) && p.contains(p.to - 1));
        let p = Period::parse("2026-10-01T08:00:00Z", "2026-10-01T09:00:00.5+01:00").unwrap();
        assert_eq!(p.to - p.from, 500);
        assert_eq!(
            Period::parse("October", "2026-10-31").unwrap_err(),
            PeriodError::Unreadable {
                which: "from",
                given: "October".into()
            }
        );
        assert!(matches!(
            Period::parse("2026-10-02", "2026-10-01"),
            Err(PeriodError::Empty { .. })
        ));
        // A date as `to` includes its day, so one day is a period.
        Period::parse("2026-10-01", "2026-10-01").unwrap();
    }
}

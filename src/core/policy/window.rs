//! Change windows (`windows: { allow: "Mon-Fri 08:00-18:00 America/New_York" }`):
//! when an approval may be used. Pure: the caller passes the instant.
//!
//! A window is `DAYS HH:MM-HH:MM ZONE`:
//! - `DAYS`: `Mon`..`Sun`, ranges (`Mon-Fri`, wrapping `Fri-Mon`), comma lists
//!   (`Mon,Wed,Fri-Sat`) or `daily`;
//! - times are wall-clock in `ZONE`, start inclusive, end exclusive; `24:00` ends at
//!   midnight; a start after the end (`22:00-02:00`) runs overnight and `DAYS` names the
//!   day it starts on;
//! - `ZONE` is an IANA name (`Europe/Zurich`, `UTC`), from the tz database built in.
//!
//! Daylight saving time follows the wall clock: a window edge in a skipped hour
//! opens or closes when the clock jumps past it; a repeated hour is inside the window both times.

use jiff::Timestamp;
use jiff::tz::TimeZone;

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// One parsed window.
#[derive(Debug, Clone)]
pub struct Window {
    /// Monday = 0.
    days: [bool; 7],
    /// Minutes after local midnight.
    start: u16,
    end: u16,
    tz: TimeZone,
}

/// Why a window does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("window `{0}` is not `DAYS HH:MM-HH:MM ZONE` (e.g. `Mon-Fri 08:00-18:00 America/New_York`)")]
    Shape(String),
    #[error("`{0}` is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)")]
    Day(String),
    #[error("`{0}` is not a time HH:MM (00:00 to 23:59, or 24:00 as an end)")]
    Time(String),
    #[error("`{0}` is not a time range HH:MM-HH:MM")]
    Range(String),
    #[error("`{0}` is empty: start and end are the same")]
    Empty(String),
    #[error("`{0}` is not a time zone (an IANA name like `Europe/Zurich` or `UTC`)")]
    Zone(String),
}

fn day(s: &str) -> Result<usize, WindowError> {
    DAYS.iter()
        .position(|d| d.eq_ignore_ascii_case(s))
        .ok_or_else(|| WindowError::Day(s.into()))
}

fn minutes(s: &str, end: bool) -> Result<u16, WindowError> {
    let bad = || WindowError::Time(s.into());
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m > 59 || h > 24 || (h == 24 && (m != 0 || !end)) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl Window {
    pub fn parse(s: &str) -> Result<Window, WindowError> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        let [days_s, times, zone] = parts[..] else {
            return Err(WindowError::Shape(s.into()));
        };
        let mut days = [false; 7];
        if days_s.eq_ignore_ascii_case("daily") {
            days = [true; 7];
        } else {
            for item in days_s.split(',') {
                match item.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (day(a)?, day(b)?);
                        let mut d = a;
                        loop {
                            days[d] = true;
                            if d == b {
                                break;
                            }
                            d = (d + 1) % 7;
                        }
                    }
                    None => days[day(item)?] = true,
                }
            }
        }
        let (a, b) = times.split_once('-').ok_or_else(|| WindowError::Range(times.into()))?;
        let (start, end) = (minutes(a, false)?, minutes(b, true)?);
        if start == end {
            return Err(WindowError::Empty(times.into()));
        }
        let tz = TimeZone::get(zone).map_err(|_| WindowError::Zone(zone.into()))?;
        Ok(Window { days, start, end, tz })
    }

    /// Whether the instant `ms` (Unix milliseconds) is inside the window.
    pub fn contains(&self, ms: i64) -> bool {
        let Ok(ts) = Timestamp::from_millisecond(ms) else {
            return false;
        };
        let local = self.tz.to_datetime(ts);
        let wd = local.weekday().to_monday_zero_offset() as usize;
        let m = local.hour() as u16 * 60 + local.minute() as u16;
        if self.start < self.end {
            self.days[wd] && (self.start..self.end).contains(&m)
        } else {
            (self.days[wd] && m >= self.start) || (self.days[(wd + 6) % 7] && m < self.end)
        }
    }
}

/// Whether `ms` is inside any of `windows` (each already validated by the loader; one
/// that no longer parses counts as closed).
pub fn any_open(windows: &[String], ms: i64) -> bool {
    windows.iter().any(|w| Window::parse(w).is_ok_and(|w| w.contains(ms)))
}

/// The first whole minute at or after `ms` inside any of `windows`, looking 8 days ahead.
pub fn next_open(windows: &[String], ms: i64) -> Option<i64> {
    let parsed: Vec<Window> = windows.iter().filter_map(|w| Window::parse(w).ok()).collect();
    if parsed.iter().any(|w| w.contains(ms)) {
        return Some(ms);
    }
    let first = ms.div_euclid(60_000) * 60_000 + 60_000;
    (0..8 * 24 * 60)
        .map(|i| first + i * 60_000)
        .find(|t| parsed.iter().any(|w| w.contains(*t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a civil time in a zone (earlier of two in a repeated hour).
    fn at(zone: &str, y: i16, mo: i8, d: i8, h: i8, mi: i8) -> i64 {
        jiff::civil::date(y, mo, d)
            .at(h, mi, 0, 0)
            .in_tz(zone)
            .unwrap()
            .timestamp()
            .as_millisecond()
    }

    #[test]
    fn weekdays_office_hours_new_york() {
        let w = Window::parse("Mon-Fri 08:00-18:00 America/New_York").unwrap();
        // 2026-06-01 is a Monday.
        let ny = |d, h, m| at("America/New_York", 2026, 6, d, h, m);
        assert!(!w.contains(ny(1, 7, 59)));
        assert!(w.contains(ny(1, 8, 0)));
        assert!(w.contains(ny(1, 17, 59)));
        assert!(!w.contains(ny(1, 18, 0)));
        assert!(w.contains(ny(5, 12, 0))); // Friday
        assert!(!w.contains(ny(6, 12, 0))); // Saturday
        assert!(!w.contains(ny(7, 12, 0))); // Sunday
        // The zone matters: 13:00 UTC is 09:00 in New York (EDT), 12:00 UTC is 08:00.
        assert!(w.contains(at("UTC", 2026, 6, 1, 12, 0)));
        assert!(!w.contains(at("UTC", 2026, 6, 1, 11, 59)));
        assert!(!w.contains(at("UTC", 2026, 6, 1, 22, 0)));
    }

    #[test]
    fn day_lists_ranges_and_wrapping() {
        let mon = |d| at("UTC", 2026, 6, d, 12, 0); // d = 1 is a Monday
        let check = |spec: &str, want: [bool; 7]| {
            let w = Window::parse(&format!("{spec} 00:00-24:00 UTC")).unwrap();
            let got: Vec<bool> = (1..=7).map(|d| w.contains(mon(d))).collect();
            assert_eq!(got, want, "{spec}");
        };
        check("Mon", [true, false, false, false, false, false, false]);
        check("sun", [false, false, false, false, false, false, true]);
        check("Mon-Fri", [true, true, true, true, true, false, false]);
        check("Fri-Mon", [true, false, false, false, true, true, true]);
        check("Mon,Wed,Fri-Sat", [true, false, true, false, true, true, false]);
        check("daily", [true; 7]);
        check("Tue-Tue", [false, true, false, false, false, false, false]);
    }

    #[test]
    fn overnight_belongs_to_the_start_day() {
        let w = Window::parse("Fri 22:00-02:00 Europe/Zurich").unwrap();
        // 2026-06-05 is a Friday.
        let z = |d, h, m| at("Europe/Zurich", 2026, 6, d, h, m);
        assert!(!w.contains(z(5, 21, 59)));
        assert!(w.contains(z(5, 22, 0)));
        assert!(w.contains(z(5, 23, 59)));
        assert!(w.contains(z(6, 0, 0))); // Saturday morning, still Friday's window
        assert!(w.contains(z(6, 1, 59)));
        assert!(!w.contains(z(6, 2, 0)));
        assert!(!w.contains(z(6, 22, 30))); // Saturday night is not Friday
        assert!(!w.contains(z(5, 1, 0))); // Friday early morning belongs to Thursday
    }

    #[test]
    fn dst_follows_the_wall_clock() {
        // New York springs forward on 2026-03-08 (a Sunday): 02:00 becomes 03:00.
        let w = Window::parse("Sun 01:30-02:30 America/New_York").unwrap();
        let utc = |h, m| at("UTC", 2026, 3, 8, h, m);
        assert!(w.contains(utc(6, 30))); // 01:30 EST
        assert!(w.contains(utc(6, 59))); // 01:59 EST
        assert!(!w.contains(utc(7, 0))); // 03:00 EDT: the clock jumped past the end
        // A window inside the skipped hour never opens that day.
        let skipped = Window::parse("Sun 02:00-03:00 America/New_York").unwrap();
        assert!((0..24 * 60).all(|m| !skipped.contains(at("UTC", 2026, 3, 8, 0, 0) + m * 60_000)));
        // Office hours keep their wall-clock times on both sides of the change.
        let office = Window::parse("daily 08:00-18:00 America/New_York").unwrap();
        assert!(office.contains(at("UTC", 2026, 3, 7, 13, 0))); // 08:00 EST
        assert!(!office.contains(at("UTC", 2026, 3, 9, 11, 30))); // 07:30 EDT
        assert!(office.contains(at("UTC", 2026, 3, 9, 12, 0))); // 08:00 EDT
        // Falling back on 2026-11-01: 01:00-02:00 happens twice and is inside both times.
        let w = Window::parse("Sun 01:00-01:30 America/New_York").unwrap();
        assert!(w.contains(at("UTC", 2026, 11, 1, 5, 10))); // 01:10 EDT
        assert!(w.contains(at("UTC", 2026, 11, 1, 6, 10))); // 01:10 EST
        assert!(!w.contains(at("UTC", 2026, 11, 1, 5, 40))); // 01:40 EDT
    }

    #[test]
    fn any_and_next() {
        let ws = vec!["Mon-Fri 08:00-09:00 UTC".to_string(), "Sat 10:00-11:00 UTC".to_string()];
        assert!(any_open(&ws, at("UTC", 2026, 6, 6, 10, 30)));
        assert!(!any_open(&ws, at("UTC", 2026, 6, 6, 11, 0)));
        assert!(!any_open(&[], 0));
        let fri_noon = at("UTC", 2026, 6, 5, 12, 0) + 1234;
        assert_eq!(next_open(&ws, fri_noon), Some(at("UTC", 2026, 6, 6, 10, 0)));
        let inside = at("UTC", 2026, 6, 1, 8, 5);
        assert_eq!(next_open(&ws, inside), Some(inside));
    }

    #[test]
    fn bad_windows_say_why() {
        for (s, want) in [
            ("Mon-Fri 08:00-18:00", "is not `DAYS HH:MM-HH:MM ZONE`"),
            ("Mon-Fry 08:00-18:00 UTC", "`Fry` is not a day"),
            ("Mon 8:00-18:00 UTC", "`8:00` is not a time"),
            ("Mon 08:00-18:60 UTC", "`18:60` is not a time"),
            ("Mon 24:00-18:00 UTC", "`24:00` is not a time"),
            ("Mon 08:00-08:00 UTC", "is empty"),
            ("Mon 08:00 UTC", "not a time range"),
            ("Mon 08:00-18:00 Mars/Olympus", "`Mars/Olympus` is not a time zone"),
        ] {
            let e = Window::parse(s).unwrap_err();
            assert!(e.to_string().contains(want), "{s}: {e}");
        }
        assert!(Window::parse("Mon 00:00-24:00 UTC").is_ok());
    }
}

//! Range expressions as the spec and `--range` write them (`last_7d`, `this_month`, a `from`/`to`
//! pair, period mode's `{every, delay, backfill}`), parsed and checked; `time` resolves them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// The longest window one ShowStatistics call may cover; longer ones are answered with zeros.
pub const MAX_SEGMENT_MS: i64 = 30 * DAY_MS;
/// How long MaaS keeps statistics.
pub const RETENTION_MS: i64 = 30 * DAY_MS;
/// Keeps `last_<N>d` arithmetic far away from overflow; ten years is beyond any retention.
const MAX_LAST_DAYS: u32 = 3660;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeExpr {
    LastDays(u32),
    LastHours(u32),
    Today,
    Yesterday,
    ThisMonth,
    PreviousMonth,
    Between {
        from: Bound,
        to: Option<Bound>,
    },
    /// Period mode: settled buckets, planned by `period`, not resolved to one window.
    Period(PeriodSpec),
}

/// One end of an explicit range: a calendar day in the range's time zone, or an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Date(NaiveDate),
    Instant(DateTime<Utc>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("`{0}` is not a range; use last_7d, last_14d, last_30d, last_month, last_<N>d, last_<N>h, today, yesterday, this_month or previous_month")]
    UnknownRange(String),
    #[error(
        "`{0}` is not a date; use YYYY-MM-DD or an RFC 3339 instant like 2026-05-08T00:00:00+08:00"
    )]
    BadDate(String),
    #[error("{0} must be at least 1")]
    Zero(String),
    #[error("`{0}` is too long a range; at most last_{MAX_LAST_DAYS}d")]
    TooLong(String),
    #[error("from ({from}) is after to ({to})")]
    FromAfterTo { from: String, to: String },
    #[error("from ({0}) is in the future")]
    FromInFuture(String),
    #[error("to ({0}) is before 1970; MaaS keeps statistics for 30 days, and no metric can be stamped that early")]
    ToBefore1970(String),
    #[error("`{0}` is not an IANA time zone name; use a name like Asia/Shanghai or UTC (abbreviations such as CST are ambiguous)")]
    UnknownZone(String),
    #[error("a period range is planned bucket by bucket, not as one window")]
    NotAWindow,
}

impl FromStr for RangeExpr {
    type Err = RangeError;
    fn from_str(s: &str) -> Result<Self, RangeError> {
        let t = s.trim();
        let expr = match t {
            "today" => Self::Today,
            "yesterday" => Self::Yesterday,
            "this_month" => Self::ThisMonth,
            "previous_month" => Self::PreviousMonth,
            // The seeds' "last 30 days / last month": now-30d ~ now, rolling (the calendar
            // month before this one is previous_month).
            "last_month" => Self::LastDays(30),
            _ => {
                let rest = t
                    .strip_prefix("last_")
                    .ok_or_else(|| RangeError::UnknownRange(s.into()))?;
                // The unit is the last character, which may be more than one byte long.
                let (digits, unit) = match rest.char_indices().next_back() {
                    Some((i, _)) => rest.split_at(i),
                    None => return Err(RangeError::UnknownRange(s.into())),
                };
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(RangeError::UnknownRange(s.into()));
                }
                let n: u32 = digits.parse().map_err(|_| RangeError::TooLong(s.into()))?;
                if n == 0 {
                    return Err(RangeError::Zero(s.into()));
                }
                match unit {
                    "d" if n <= MAX_LAST_DAYS => Self::LastDays(n),
                    "h" if n <= MAX_LAST_DAYS * 24 => Self::LastHours(n),
                    "d" | "h" => return Err(RangeError::TooLong(s.into())),
                    _ => return Err(RangeError::UnknownRange(s.into())),
                }
            }
        };
        Ok(expr)
    }
}

impl fmt::Display for RangeExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LastDays(n) => write!(f, "last_{n}d"),
            Self::LastHours(n) => write!(f, "last_{n}h"),
            Self::Today => f.write_str("today"),
            Self::Yesterday => f.write_str("yesterday"),
            Self::ThisMonth => f.write_str("this_month"),
            Self::PreviousMonth => f.write_str("previous_month"),
            Self::Between { from, to } => {
                write!(f, "{from}..")?;
                if let Some(to) = to {
                    write!(f, "{to}")?;
                }
                Ok(())
            }
            Self::Period(p) => write!(
                f,
                "every {} s, delay {} s, backfill {} s",
                p.every_ms / 1000,
                p.delay_ms / 1000,
                p.backfill_ms / 1000
            ),
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Date(d) => write!(f, "{d}"),
            Bound::Instant(t) => write!(f, "{}", t.to_rfc3339()),
        }
    }
}

impl FromStr for Bound {
    type Err = RangeError;
    fn from_str(s: &str) -> Result<Self, RangeError> {
        let t = s.trim();
        if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
            if t.len() == 10 {
                return Ok(Bound::Date(d));
            }
        }
        DateTime::parse_from_rfc3339(t)
            .map(|d| Bound::Instant(d.with_timezone(&Utc)))
            .map_err(|_| RangeError::BadDate(s.into()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeriodSpec {
    pub every_ms: i64,
    pub delay_ms: i64,
    pub backfill_ms: i64,
}

pub const MIN_EVERY_MS: i64 = 5 * 60_000;
pub const DEFAULT_DELAY: &str = "2h";
pub const DEFAULT_BACKFILL: &str = "1d";

impl PeriodSpec {
    /// Parses and checks the three durations; messages say what is allowed.
    pub fn parse(
        every: &str,
        delay: Option<&str>,
        backfill: Option<&str>,
    ) -> Result<PeriodSpec, PeriodError> {
        let fail = |key: &'static str, message: String| PeriodError { key, message };
        let ms = |key: &'static str, s: &str| {
            parse_duration(s)
                .map(|d| d.as_millis() as i64)
                .map_err(|e| fail(key, e.to_string()))
        };
        let every_ms = ms("every", every)?;
        if !(MIN_EVERY_MS..=DAY_MS).contains(&every_ms) || DAY_MS % every_ms != 0 {
            return Err(fail(
                "every",
                format!("`{every}` must be between 5m and 1d and divide a day (5m, 10m, 15m, 30m, 1h, 2h, 3h, 4h, 6h, 8h, 12h, 1d...)"),
            ));
        }
        let delay_ms = ms("delay", delay.unwrap_or(DEFAULT_DELAY))?;
        if delay_ms >= RETENTION_MS {
            return Err(fail(
                "delay",
                "must be well under the 30-day retention".into(),
            ));
        }
        let backfill_ms = ms("backfill", backfill.unwrap_or(DEFAULT_BACKFILL))?;
        if backfill_ms > RETENTION_MS {
            return Err(fail(
                "backfill",
                "at most 30d: MaaS keeps statistics for 30 days".into(),
            ));
        }
        if backfill_ms < every_ms {
            return Err(fail(
                "backfill",
                format!("must be at least `every` ({every})"),
            ));
        }
        Ok(PeriodSpec {
            every_ms,
            delay_ms,
            backfill_ms,
        })
    }
}

/// Why a period range cannot be used: which of `every`, `delay`, `backfill`, and what is
/// allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct PeriodError {
    pub key: &'static str,
    pub message: String,
}

/// Not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a duration; use a number with ms, s, m, h or d (e.g. 25s)")]
pub struct DurationError(pub String);

/// `500ms`, `25s`, `2m`, `1h`, `1d` -> a duration.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, DurationError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || DurationError(s.to_string());
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: i64 = HOUR_MS;

    #[test]
    fn last_month_is_the_last_30_days_not_the_calendar_month() {
        assert_eq!(
            "last_month".parse::<RangeExpr>().unwrap(),
            RangeExpr::LastDays(30)
        );
        assert_eq!(
            "previous_month".parse::<RangeExpr>().unwrap(),
            RangeExpr::PreviousMonth
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("25s").unwrap().as_secs(), 25);
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("2m").unwrap().as_secs(), 120);
        assert_eq!(parse_duration("1d").unwrap().as_secs(), 86400);
        for bad in ["", "s", "10", "10x", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keywords_parse() {
        assert_eq!(
            "last_7d".parse::<RangeExpr>().unwrap(),
            RangeExpr::LastDays(7)
        );
        assert_eq!(
            "last_36h".parse::<RangeExpr>().unwrap(),
            RangeExpr::LastHours(36)
        );
        assert_eq!(
            "this_month".parse::<RangeExpr>().unwrap(),
            RangeExpr::ThisMonth
        );
        for bad in [
            "last_d",
            "last_0d",
            "last_7w",
            "last_-1d",
            "week",
            "last_99999999999d",
            "",
            "last_7é",
            "last_é",
            "last_7日",
            "last_🦀",
        ] {
            assert!(bad.parse::<RangeExpr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn instants_and_dates_parse() {
        assert!(matches!("2026-05-08".parse::<Bound>(), Ok(Bound::Date(_))));
        assert!(matches!(
            "2026-05-08T10:00:00+08:00".parse::<Bound>(),
            Ok(Bound::Instant(_))
        ));
        for bad in [
            "2026-13-01",
            "2026-5-8",
            "yesterday",
            "2026-05-08T25:00:00Z",
        ] {
            assert!(bad.parse::<Bound>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_checks_every_delay_and_backfill() {
        let p = PeriodSpec::parse("1h", None, None).unwrap();
        assert_eq!((p.every_ms, p.delay_ms, p.backfill_ms), (H, 2 * H, DAY_MS));
        assert!(PeriodSpec::parse("7m", None, None).is_err());
        assert!(PeriodSpec::parse("1m", None, None).is_err());
        assert!(PeriodSpec::parse("2d", None, None).is_err());
        assert!(PeriodSpec::parse("1h", None, Some("31d")).is_err());
        assert!(PeriodSpec::parse("1d", None, Some("1h")).is_err());
        assert!(PeriodSpec::parse("15m", Some("0s"), Some("30d")).is_ok());
    }

    proptest! {
        /// Parsers of user input return an error for anything they do not accept; they never
        /// panic, whatever the bytes and wherever a multi-byte character falls.
        #[test]
        fn parsers_never_panic_on_any_text(s in "\\PC*", t in ".{0,40}", tail in "\\PC{0,3}") {
            for text in [s.as_str(), t.as_str(), &format!("last_{s}"), &format!("last_7{tail}"), &format!("{t}{tail}")] {
                let _ = text.parse::<RangeExpr>();
                let _ = text.parse::<Bound>();
                let _ = parse_duration(text);
                let _ = parse_duration(&format!("7{tail}"));
            }
        }
    }
}

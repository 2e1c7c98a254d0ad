//! Time: range expressions resolved to half-open windows `[start, end)` in epoch milliseconds in
//! a time zone, the split of a window into calls of at most 30 days, the retention horizon, and
//! how instants are written for people. Submodules: `zone` (which IANA zone), `period` (period
//! mode's buckets).
//!
//! Everything here is a pure function of the expression, "now" and a time zone, so `plan`, the
//! tests and the property tests need neither a clock nor a network.

pub mod period;
pub mod zone;

use chrono::{DateTime, Datelike, Days, LocalResult, Months, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

pub use crate::domain::range::HOUR_MS;
use crate::domain::range::{Bound, RangeError, RangeExpr, DAY_MS, MAX_SEGMENT_MS, RETENTION_MS};
use crate::domain::{Shape, Window};

/// Parses an IANA zone name. Abbreviations are refused because they are ambiguous
/// (CST is China, Cuba and US Central at once).
pub fn parse_zone(name: &str) -> Result<Tz, RangeError> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| RangeError::UnknownZone(name.into()))
}

/// The first instant of `date` in `tz`. Where midnight falls in a DST gap the day starts at the
/// first local time that exists.
pub fn start_of_day(date: NaiveDate, tz: &Tz) -> DateTime<Utc> {
    let mut local = date.and_time(NaiveTime::MIN);
    // Gaps are at most a few hours; stepping a quarter hour at a time finds the first valid time.
    for _ in 0..96 {
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
            LocalResult::None => local += chrono::Duration::minutes(15),
        }
    }
    Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN))
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Resolves an expression against `now` in `tz`. `now` is truncated to the millisecond because
/// that is the API's resolution.
pub fn resolve(expr: &RangeExpr, now: DateTime<Utc>, tz: &Tz) -> Result<Window, RangeError> {
    let now_ms = ms(now);
    let today = now.with_timezone(tz).date_naive();
    let first_of_month = today.with_day(1).unwrap_or(today);
    let w = |start_ms: i64, end_ms: i64, shape| Window {
        start_ms,
        end_ms,
        shape,
    };
    Ok(match expr {
        RangeExpr::Period(_) => return Err(RangeError::NotAWindow),
        RangeExpr::LastDays(n) => w(now_ms - i64::from(*n) * DAY_MS, now_ms, Shape::Rolling),
        RangeExpr::LastHours(n) => w(now_ms - i64::from(*n) * HOUR_MS, now_ms, Shape::Rolling),
        RangeExpr::Today => w(ms(start_of_day(today, tz)), now_ms, Shape::Anchored),
        RangeExpr::Yesterday => {
            let y = today.checked_sub_days(Days::new(1)).unwrap_or(today);
            w(
                ms(start_of_day(y, tz)),
                ms(start_of_day(today, tz)),
                Shape::Closed,
            )
        }
        RangeExpr::ThisMonth => w(
            ms(start_of_day(first_of_month, tz)),
            now_ms,
            Shape::Anchored,
        ),
        RangeExpr::PreviousMonth => {
            let prev = first_of_month
                .checked_sub_months(Months::new(1))
                .unwrap_or(first_of_month);
            w(
                ms(start_of_day(prev, tz)),
                ms(start_of_day(first_of_month, tz)),
                Shape::Closed,
            )
        }
        RangeExpr::Between { from, to } => {
            let start_ms = match from {
                Bound::Date(d) => ms(start_of_day(*d, tz)),
                Bound::Instant(t) => ms(*t),
            };
            let to_ms = match to {
                None => None,
                // The `to` day is included: the window ends at the next midnight.
                Some(Bound::Date(d)) => {
                    let next = d.checked_add_days(Days::new(1)).unwrap_or(*d);
                    Some(ms(start_of_day(next, tz)))
                }
                Some(Bound::Instant(t)) => Some(ms(*t)),
            };
            if let (Some(to_ms), Some(to)) = (to_ms, to) {
                let from_after_to = match (from, to) {
                    (Bound::Date(a), Bound::Date(b)) => a > b,
                    _ => start_ms > to_ms,
                };
                if from_after_to {
                    return Err(RangeError::FromAfterTo {
                        from: from.to_string(),
                        to: to.to_string(),
                    });
                }
            }
            if start_ms > now_ms {
                return Err(RangeError::FromInFuture(from.to_string()));
            }
            // A window ending before the epoch is only ever an error (and its end, the point's
            // timestamp, would not fit the line protocol's nanoseconds before 1677).
            if let (Some(end), Some(to)) = (to_ms, to) {
                if end <= 0 {
                    return Err(RangeError::ToBefore1970(to.to_string()));
                }
            }
            match to_ms {
                Some(end) if end < now_ms => w(start_ms, end, Shape::Closed),
                _ => w(start_ms, now_ms, Shape::Anchored),
            }
        }
    })
}

/// Splits `[start, end)` into contiguous windows of at most 30 days that cover it exactly.
/// An empty window is still one (empty) call, so every series has at least one answer.
pub fn segments(start_ms: i64, end_ms: i64) -> Vec<(i64, i64)> {
    if end_ms <= start_ms {
        return vec![(start_ms, end_ms)];
    }
    let mut out = Vec::with_capacity(((end_ms - start_ms) / MAX_SEGMENT_MS + 1) as usize);
    let mut s = start_ms;
    while s < end_ms {
        let e = s.saturating_add(MAX_SEGMENT_MS).min(end_ms);
        out.push((s, e));
        s = e;
    }
    out
}

/// A window measured against the 30-day retention horizon (`now - RETENTION_MS`): data older
/// than the horizon no longer exists, so no call should ask for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retained {
    /// Entirely inside the retention (or empty at or after the horizon): queried as is.
    Whole(Window),
    /// Starts before the horizon: queried from the horizon (`window` starts there);
    /// `lost_ms` before it read as zero.
    Clamped {
        window: Window,
        lost_ms: i64,
        horizon_ms: i64,
    },
    /// Ends at or before the horizon: nothing in it exists any more, so no call is made.
    Beyond,
}

/// Clamps `w` to the retention horizon of `now_ms`. Pure, like `resolve`.
pub fn retain(w: Window, now_ms: i64) -> Retained {
    let horizon_ms = now_ms.saturating_sub(RETENTION_MS);
    if w.start_ms >= horizon_ms {
        Retained::Whole(w)
    } else if w.end_ms <= horizon_ms {
        Retained::Beyond
    } else {
        Retained::Clamped {
            window: Window {
                start_ms: horizon_ms,
                ..w
            },
            lost_ms: horizon_ms.saturating_sub(w.start_ms),
            horizon_ms,
        }
    }
}

/// A length in days for people: `15`, `15.5`; one decimal only when it is not whole.
pub fn fmt_days(ms: i64) -> String {
    let tenths = (ms as f64 / DAY_MS as f64 * 10.0).round();
    if tenths == 0.0 && ms > 0 {
        "less than 0.1".to_string()
    } else if tenths % 10.0 == 0.0 {
        format!("{:.0}", tenths / 10.0)
    } else {
        format!("{:.1}", tenths / 10.0)
    }
}

/// `YYYY-MM-DD HH:MM:SS` in `tz`.
pub fn fmt_local(epoch_ms: i64, tz: &Tz) -> String {
    match Utc.timestamp_millis_opt(epoch_ms) {
        LocalResult::Single(t) => t.with_timezone(tz).format("%Y-%m-%d %H:%M:%S").to_string(),
        _ => epoch_ms.to_string(),
    }
}

/// RFC 3339 with the zone's offset, milliseconds only when present.
pub fn fmt_rfc3339(epoch_ms: i64, tz: &Tz) -> String {
    match Utc.timestamp_millis_opt(epoch_ms) {
        LocalResult::Single(t) => t
            .with_timezone(tz)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        _ => epoch_ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }
    const SH: Tz = chrono_tz::Asia::Shanghai;

    #[test]
    fn last_7d_is_rolling_seven_days() {
        let now = at("2026-05-21T10:30:00+08:00");
        let w = resolve(&RangeExpr::LastDays(7), now, &SH).unwrap();
        assert_eq!(w.len_ms(), 7 * DAY_MS);
        assert_eq!(w.end_ms, now.timestamp_millis());
        assert_eq!(w.shape, Shape::Rolling);
    }

    #[test]
    fn calendar_ranges_follow_the_zone() {
        let now = at("2026-05-21T01:30:00+08:00"); // still 2026-05-20 in UTC
        let today = resolve(&RangeExpr::Today, now, &SH).unwrap();
        assert_eq!(
            today.start_ms,
            at("2026-05-21T00:00:00+08:00").timestamp_millis()
        );
        let today_utc = resolve(&RangeExpr::Today, now, &Tz::UTC).unwrap();
        assert_eq!(
            today_utc.start_ms,
            at("2026-05-20T00:00:00Z").timestamp_millis()
        );
        let y = resolve(&RangeExpr::Yesterday, now, &SH).unwrap();
        assert_eq!(
            y.start_ms,
            at("2026-05-20T00:00:00+08:00").timestamp_millis()
        );
        assert_eq!(y.end_ms, at("2026-05-21T00:00:00+08:00").timestamp_millis());
        let m = resolve(&RangeExpr::ThisMonth, now, &SH).unwrap();
        assert_eq!(
            m.start_ms,
            at("2026-05-01T00:00:00+08:00").timestamp_millis()
        );
        assert_eq!(m.shape, Shape::Anchored);
        let p = resolve(&RangeExpr::PreviousMonth, now, &SH).unwrap();
        assert_eq!(
            p.start_ms,
            at("2026-04-01T00:00:00+08:00").timestamp_millis()
        );
        assert_eq!(p.end_ms, at("2026-05-01T00:00:00+08:00").timestamp_millis());
        assert_eq!(p.shape, Shape::Closed);
    }

    #[test]
    fn january_previous_month_is_december() {
        let now = at("2027-01-15T12:00:00Z");
        let p = resolve(&RangeExpr::PreviousMonth, now, &Tz::UTC).unwrap();
        assert_eq!(p.start_ms, at("2026-12-01T00:00:00Z").timestamp_millis());
    }

    #[test]
    fn to_day_is_included_and_capped_at_now() {
        let now = at("2026-05-21T10:00:00+08:00");
        let between = |f: &str, t: &str| RangeExpr::Between {
            from: f.parse().unwrap(),
            to: Some(t.parse().unwrap()),
        };
        let w = resolve(&between("2026-05-08", "2026-05-20"), now, &SH).unwrap();
        assert_eq!(
            w.start_ms,
            at("2026-05-08T00:00:00+08:00").timestamp_millis()
        );
        assert_eq!(w.end_ms, at("2026-05-21T00:00:00+08:00").timestamp_millis());
        assert_eq!(w.shape, Shape::Closed);
        let w = resolve(&between("2026-05-08", "2026-05-21"), now, &SH).unwrap();
        assert_eq!(w.end_ms, now.timestamp_millis());
        assert_eq!(w.shape, Shape::Anchored);
        let e = resolve(&between("2026-05-09", "2026-05-08"), now, &SH).unwrap_err();
        assert!(matches!(e, RangeError::FromAfterTo { .. }));
        let same_day = resolve(&between("2026-05-08", "2026-05-08"), now, &SH).unwrap();
        assert_eq!(same_day.len_ms(), DAY_MS);
        let e = resolve(&between("1600-01-01", "1600-01-02"), now, &SH).unwrap_err();
        assert_eq!(
            e,
            RangeError::ToBefore1970("1600-01-02".into()),
            "an end before the epoch is refused"
        );
        assert!(resolve(&between("0001-01-01", "1970-01-02"), now, &SH).is_ok());
        let future = RangeExpr::Between {
            from: "2026-06-01".parse().unwrap(),
            to: None,
        };
        assert!(matches!(
            resolve(&future, now, &SH),
            Err(RangeError::FromInFuture(_))
        ));
    }

    #[test]
    fn zones_must_be_iana_names() {
        assert!(parse_zone("Asia/Shanghai").is_ok());
        assert!(parse_zone("UTC").is_ok());
        assert!(matches!(parse_zone("CST"), Err(RangeError::UnknownZone(_))));
        assert!(parse_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn dst_gap_midnight_starts_at_first_valid_time() {
        // Santiago skipped 2022-09-11 00:00 -> 01:00.
        let tz: Tz = "America/Santiago".parse().unwrap();
        let d = NaiveDate::from_ymd_opt(2022, 9, 11).unwrap();
        let t = start_of_day(d, &tz).with_timezone(&tz);
        assert_eq!(t.format("%H:%M").to_string(), "01:00");
    }

    #[test]
    fn forty_five_days_make_two_segments() {
        let s = segments(0, 45 * DAY_MS);
        assert_eq!(s, vec![(0, 30 * DAY_MS), (30 * DAY_MS, 45 * DAY_MS)]);
        assert_eq!(segments(0, 30 * DAY_MS).len(), 1);
        assert_eq!(segments(5, 5), vec![(5, 5)]);
    }

    #[test]
    fn windows_are_clamped_to_the_retention_horizon() {
        let now = at("2026-05-21T00:00:00Z");
        let now_ms = now.timestamp_millis();
        let horizon = now_ms - RETENTION_MS;
        let w30 = resolve(&RangeExpr::LastDays(30), now, &Tz::UTC).unwrap();
        assert_eq!(retain(w30, now_ms), Retained::Whole(w30));
        let w45 = resolve(&RangeExpr::LastDays(45), now, &Tz::UTC).unwrap();
        let Retained::Clamped {
            window,
            lost_ms,
            horizon_ms,
        } = retain(w45, now_ms)
        else {
            panic!("45 days reach past the horizon")
        };
        assert_eq!((window.start_ms, window.end_ms), (horizon, now_ms));
        assert_eq!((lost_ms, horizon_ms), (15 * DAY_MS, horizon));
        assert_eq!(window.shape, Shape::Rolling);
        let old = Window {
            start_ms: horizon - 10 * DAY_MS,
            end_ms: horizon,
            shape: Shape::Closed,
        };
        assert_eq!(retain(old, now_ms), Retained::Beyond);
        let empty_old = Window {
            end_ms: old.start_ms,
            ..old
        };
        assert_eq!(retain(empty_old, now_ms), Retained::Beyond);
        let ancient = Window {
            start_ms: i64::MIN,
            end_ms: now_ms,
            shape: Shape::Anchored,
        };
        assert!(matches!(
            retain(ancient, now_ms),
            Retained::Clamped { window, .. } if window.len_ms() == RETENTION_MS
        ));
        assert_eq!(retain(ancient, i64::MIN + 5), Retained::Whole(ancient));
    }

    #[test]
    fn days_have_one_decimal_only_when_not_whole() {
        assert_eq!(fmt_days(15 * DAY_MS), "15");
        assert_eq!(fmt_days(15 * DAY_MS + DAY_MS / 2), "15.5");
        assert_eq!(fmt_days(15 * DAY_MS + 60_000), "15");
        assert_eq!(fmt_days(DAY_MS / 10), "0.1");
        assert_eq!(fmt_days(60_000), "less than 0.1");
        assert_eq!(fmt_days(739_000 * DAY_MS), "739000");
    }

    fn zones() -> impl Strategy<Value = Tz> {
        prop::sample::select(vec![
            Tz::UTC,
            SH,
            chrono_tz::America::New_York,
            chrono_tz::America::Santiago,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Pacific::Chatham,
            chrono_tz::Asia::Kathmandu,
        ])
    }

    fn exprs() -> impl Strategy<Value = RangeExpr> {
        prop_oneof![
            (1u32..400).prop_map(RangeExpr::LastDays),
            (1u32..2000).prop_map(RangeExpr::LastHours),
            Just(RangeExpr::Today),
            Just(RangeExpr::Yesterday),
            Just(RangeExpr::ThisMonth),
            Just(RangeExpr::PreviousMonth),
            (0i64..200, prop::option::of(0i64..200)).prop_map(|(a, b)| {
                let base = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
                let d = |n: i64| Bound::Date(base + chrono::Duration::days(n));
                let (lo, hi) = match b {
                    Some(b) => (a.min(b), Some(a.max(b))),
                    None => (a, None),
                };
                RangeExpr::Between {
                    from: d(lo),
                    to: hi.map(d),
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn segments_cover_exactly(start in -1_000_000_000_000i64..2_000_000_000_000, len in 0i64..400 * DAY_MS) {
            let segs = segments(start, start + len);
            prop_assert_eq!(segs.first().unwrap().0, start);
            prop_assert_eq!(segs.last().unwrap().1, start + len);
            for pair in segs.windows(2) {
                prop_assert_eq!(pair[0].1, pair[1].0, "gap or overlap");
            }
            for (s, e) in &segs {
                prop_assert!(e - s <= MAX_SEGMENT_MS);
                prop_assert!(len == 0 || e > s);
            }
            let expected = if len == 0 { 1 } else { (len + MAX_SEGMENT_MS - 1) / MAX_SEGMENT_MS };
            prop_assert_eq!(segs.len() as i64, expected);
        }

        #[test]
        fn resolved_windows_are_ordered_and_never_pass_now(
            expr in exprs(),
            tz in zones(),
            now_s in 1_767_225_600i64..1_800_000_000,
        ) {
            let now = Utc.timestamp_opt(now_s, 0).unwrap();
            match resolve(&expr, now, &tz) {
                Ok(w) => {
                    prop_assert!(w.start_ms <= w.end_ms);
                    prop_assert!(w.end_ms <= now.timestamp_millis());
                    if w.shape != Shape::Closed {
                        prop_assert_eq!(w.end_ms, now.timestamp_millis());
                    }
                    if let RangeExpr::Between { from: Bound::Date(d), .. } = &expr {
                        prop_assert_eq!(w.start_ms, start_of_day(*d, &tz).timestamp_millis());
                    }
                    if matches!(expr, RangeExpr::Today | RangeExpr::Yesterday) {
                        prop_assert!(w.len_ms() <= 26 * HOUR_MS);
                    }
                    if matches!(expr, RangeExpr::ThisMonth | RangeExpr::PreviousMonth) {
                        let local = Utc.timestamp_millis_opt(w.start_ms).unwrap().with_timezone(&tz);
                        prop_assert_eq!(local.day(), 1);
                    }
                }
                Err(RangeError::FromInFuture(_)) => {
                    let is_future = matches!(&expr, RangeExpr::Between { from: Bound::Date(d), .. }
                        if start_of_day(*d, &tz) > now);
                    prop_assert!(is_future);
                }
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }

        #[test]
        fn to_date_means_through_the_end_of_that_day(a in 0i64..60, extra in 0i64..60, tz in zones()) {
            let base = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
            let from = base + chrono::Duration::days(a);
            let to = from + chrono::Duration::days(extra);
            let now = Utc.with_ymd_and_hms(2026, 12, 31, 0, 0, 0).unwrap();
            let w = resolve(&RangeExpr::Between { from: Bound::Date(from), to: Some(Bound::Date(to)) }, now, &tz).unwrap();
            let next = start_of_day(to + chrono::Duration::days(1), &tz).timestamp_millis();
            prop_assert_eq!(w.end_ms, next);
            prop_assert_eq!(w.shape, Shape::Closed);
        }
    }
}

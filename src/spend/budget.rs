//! Budgets: what a spec's `budgets` say (a scope, a limit in money or tokens, a calendar period)
//! and where one stands: the period in the spec's zone, the exact period-to-date use, its ratio
//! to the limit and the period's projected total at the average rate so far.

use chrono::{Datelike, Months};
use chrono_tz::Tz;

use super::money::{Cost, Currency};
use crate::time::start_of_day;

/// What a budget covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The whole project.
    Project,
    KeyGroup(String),
    /// A model, by its name as emitted or its Cloud Eye id.
    Model(String),
}

impl Scope {
    /// The tag (line protocol) naming the scope, and its value; none for the project.
    pub fn tag(&self) -> Option<(&'static str, &str)> {
        match self {
            Scope::Project => None,
            Scope::KeyGroup(g) => Some(("key_group", g)),
            Scope::Model(m) => Some(("model", m)),
        }
    }
}

/// What a budget limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Money, in the price table's currency.
    Amount(Cost),
    Tokens(u64),
}

/// A use or a limit: money or tokens, whichever the budget counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Amount {
    Money(Cost),
    Tokens(u64),
}

impl Amount {
    /// Exact, as an integer of the smallest unit (femto-units or tokens).
    pub fn units(self) -> u128 {
        match self {
            Amount::Money(c) => c.femto,
            Amount::Tokens(t) => u128::from(t),
        }
    }

    fn of_units(like: Amount, units: u128) -> Amount {
        match like {
            Amount::Money(_) => Amount::Money(Cost { femto: units }),
            Amount::Tokens(_) => Amount::Tokens(u64::try_from(units).unwrap_or(u64::MAX)),
        }
    }

    /// For an emitter: the exact decimal (money) or the count (tokens) as a double.
    pub fn to_f64(self) -> f64 {
        match self {
            Amount::Money(c) => c.to_f64(),
            Amount::Tokens(t) => t as f64,
        }
    }

    /// The exact decimal or count, as text.
    pub fn to_decimal_string(self) -> String {
        match self {
            Amount::Money(c) => c.to_decimal_string(),
            Amount::Tokens(t) => t.to_string(),
        }
    }
}

impl Limit {
    pub fn amount(self) -> Amount {
        match self {
            Limit::Amount(c) => Amount::Money(c),
            Limit::Tokens(t) => Amount::Tokens(t),
        }
    }
}

/// A calendar period in the spec's zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Month,
    Day,
}

impl Period {
    pub fn name(self) -> &'static str {
        match self {
            Period::Month => "month",
            Period::Day => "day",
        }
    }

    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "month" => Some(Period::Month),
            "day" => Some(Period::Day),
            _ => None,
        }
    }

    /// The period holding `now_ms`: `[start, end)` in ms, from local midnight of its first day
    /// to local midnight of the next period's (a DST day is 23 or 25 hours, as it is lived).
    pub fn bounds(self, now_ms: i64, tz: &Tz) -> (i64, i64) {
        let today = chrono::DateTime::from_timestamp_millis(now_ms)
            .unwrap_or_default()
            .with_timezone(tz)
            .date_naive();
        let (first, next) = match self {
            Period::Day => (today, today.succ_opt().unwrap_or(today)),
            Period::Month => {
                let first = today.with_day(1).unwrap_or(today);
                (
                    first,
                    first.checked_add_months(Months::new(1)).unwrap_or(first),
                )
            }
        };
        (
            start_of_day(first, tz).timestamp_millis(),
            start_of_day(next, tz).timestamp_millis(),
        )
    }
}

/// One entry of the spec's `budgets`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    pub name: String,
    pub scope: Scope,
    pub limit: Limit,
    pub period: Period,
}

/// Where a budget stands at an instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Status {
    pub limit: Amount,
    /// The exact period-to-date sum.
    pub used: Amount,
    /// `used / limit`.
    pub used_ratio: f64,
    /// The period's projected total at the average rate so far: `used x period / elapsed`,
    /// rounded down to the smallest unit; `used` once the period is over.
    pub forecast: Amount,
    /// The period's first instant, in Unix seconds.
    pub period_start: i64,
}

/// A budget where it stands, as the outputs carry it (`maas_budget`).
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub budget: Budget,
    pub status: Status,
    /// A money budget's currency (`None`: a token budget, `unit=tokens`).
    pub currency: Option<Currency>,
}

impl Point {
    /// Its tags after `budget`: `currency` or `unit=tokens`, `period`, and the scope's tag.
    pub fn tags(&self) -> Vec<(&'static str, String)> {
        let mut t = vec![("budget", self.budget.name.clone())];
        match self.currency {
            Some(c) => t.push(("currency", c.to_string())),
            None => t.push(("unit", "tokens".to_string())),
        }
        t.push(("period", self.budget.period.name().to_string()));
        if let Some((k, v)) = self.budget.scope.tag() {
            t.push((k, v.to_string()));
        }
        t
    }

    /// Its fields in `maas_budget`'s order: limit, used, used_ratio, forecast (doubles: exact
    /// decimals as text) and period_start (an integer).
    pub fn fields(&self) -> [(&'static str, String); 5] {
        let s = &self.status;
        [
            ("limit", s.limit.to_decimal_string()),
            ("used", s.used.to_decimal_string()),
            ("used_ratio", format!("{}", s.used_ratio)),
            ("forecast", s.forecast.to_decimal_string()),
            ("period_start", s.period_start.to_string()),
        ]
    }
}

/// A budget's status from its exact use `used` over `[start_ms, now_ms)` of the period
/// `[start_ms, end_ms)`.
pub fn status(limit: Limit, used: Amount, (start_ms, end_ms): (i64, i64), now_ms: i64) -> Status {
    let limit = limit.amount();
    let len = u128::try_from(end_ms - start_ms).unwrap_or(0);
    let elapsed = u128::try_from(now_ms.clamp(start_ms, end_ms) - start_ms).unwrap_or(0);
    let forecast = match elapsed {
        0 => used,
        e if e >= len => used,
        e => Amount::of_units(
            used,
            used.units()
                .checked_mul(len)
                .map_or(u128::MAX, |scaled| scaled / e),
        ),
    };
    let used_ratio = match limit.units() {
        0 => 0.0,
        l => used.units() as f64 / l as f64,
    };
    Status {
        limit,
        used,
        used_ratio,
        forecast,
        period_start: start_ms.div_euclid(1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(rfc: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn periods_are_calendar_ones_in_the_zone() {
        let sh: Tz = "Asia/Shanghai".parse().unwrap();
        // 2026-11-30 20:00 UTC is already December 1st in Shanghai.
        let (s, e) = Period::Month.bounds(ms("2026-11-30T20:00:00Z"), &sh);
        assert_eq!(s, ms("2026-12-01T00:00:00+08:00"));
        assert_eq!(e, ms("2027-01-01T00:00:00+08:00"));
        let (s, e) = Period::Day.bounds(ms("2026-11-30T15:59:59Z"), &sh);
        assert_eq!(
            (s, e),
            (
                ms("2026-11-30T00:00:00+08:00"),
                ms("2026-12-01T00:00:00+08:00")
            )
        );
        // A DST day in Paris has 23 hours.
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let (s, e) = Period::Day.bounds(ms("2026-03-29T12:00:00Z"), &paris);
        assert_eq!(e - s, 23 * 3_600_000);
        assert_eq!(Period::parse(Period::Month.name()), Some(Period::Month));
    }

    #[test]
    fn a_third_of_the_month_at_a_third_of_the_limit_forecasts_the_limit() {
        let sh: Tz = "Asia/Shanghai".parse().unwrap();
        let now = ms("2026-11-11T00:00:00+08:00");
        let bounds = Period::Month.bounds(now, &sh);
        let limit = Limit::Amount(Cost {
            femto: 3_000 * super::super::money::FEMTO,
        });
        let used = Amount::Money(Cost {
            femto: 1_000 * super::super::money::FEMTO,
        });
        let s = status(limit, used, bounds, now);
        assert_eq!(
            s.forecast,
            Amount::Money(Cost {
                femto: 3_000 * super::super::money::FEMTO
            })
        );
        assert!((s.used_ratio - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.period_start, ms("2026-11-01T00:00:00+08:00") / 1000);
        let tokens = status(Limit::Tokens(100), Amount::Tokens(0), bounds, now);
        assert_eq!(
            (tokens.forecast, tokens.used_ratio),
            (Amount::Tokens(0), 0.0)
        );
        let at_start = status(Limit::Tokens(100), Amount::Tokens(5), bounds, bounds.0);
        assert_eq!(at_start.forecast, Amount::Tokens(5));
    }

    proptest! {
        /// The forecast is the use scaled from the elapsed part to the whole period, exactly
        /// (to the smallest unit), never below the use, equal to it at the period's end, and
        /// the ratio is use over limit.
        #[test]
        fn forecast_scales_the_rate_so_far(
            used in 0u64..1_000_000_000_000,
            limit in 1u64..1_000_000_000_000,
            len in 1i64..40 * 86_400_000,
            at in 0.0f64..=1.0,
            start in 0i64..2_000_000_000_000,
        ) {
            let end = start + len;
            let now = start + ((len as f64) * at) as i64;
            let s = status(Limit::Tokens(limit), Amount::Tokens(used), (start, end), now);
            prop_assert!(s.forecast >= s.used);
            let elapsed = (now - start) as u128;
            match elapsed {
                0 => prop_assert_eq!(s.forecast, s.used),
                e => {
                    let f = s.forecast.units();
                    // f = floor(used * len / elapsed)
                    prop_assert!(f * e <= u128::from(used) * len as u128);
                    prop_assert!((f + 1) * e > u128::from(used) * len as u128);
                }
            }
            let over = status(Limit::Tokens(limit), Amount::Tokens(used), (start, end), end + 1);
            prop_assert_eq!(over.forecast, Amount::Tokens(used));
            prop_assert!((s.used_ratio - used as f64 / limit as f64).abs() <= 1e-12 * s.used_ratio.max(1.0));
            prop_assert_eq!(s.period_start, start.div_euclid(1000));
        }

        /// Every instant lies in its period, the next period starts where this one ends, and
        /// periods start at local midnight (of the first, for months).
        #[test]
        fn periods_tile_time(t in 0i64..4_000_000_000_000, zone in prop::sample::select(vec!["Asia/Shanghai", "Europe/Paris", "America/St_Johns", "Asia/Kolkata", "UTC"])) {
            let tz: Tz = zone.parse().unwrap();
            for p in [Period::Day, Period::Month] {
                let (s, e) = p.bounds(t, &tz);
                prop_assert!(s <= t && t < e, "{p:?} {s} {t} {e}");
                prop_assert_eq!(p.bounds(e, &tz).0, e);
                let local = chrono::DateTime::from_timestamp_millis(s).unwrap().with_timezone(&tz);
                if p == Period::Month {
                    prop_assert_eq!(local.day(), 1);
                }
            }
        }
    }
}

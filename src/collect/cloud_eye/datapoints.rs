//! The datapoints of Cloud Eye answers, judged: a count must be a whole number from 0 to 10^15
//! (else its series fails, never a rounded or clamped figure), a latency a number of at least
//! 0 (else it is left out); what was left out is said once per query, metric and cause, with a
//! count and one example, however many datapoints it was.

use std::collections::BTreeMap;
use std::fmt;

use crate::domain::cloud_eye::{Dims, Reading, MAX_COUNT};
use crate::domain::failure::DecodeError;
use crate::domain::ApiError;

/// Why a datapoint's value cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Odd {
    /// Not a JSON number (a string, `true`...).
    NotANumber,
    Negative,
    /// A count with a fraction.
    NotWhole,
    /// A count written with a fraction that a double cannot hold (`1e-400`,
    /// `12.00000000000000001`): it reads as a whole number, and is not one.
    Rounded,
    /// A count over 10^15 (no account has that many tokens; beyond, i64 and f64 stop being
    /// safe).
    TooLarge,
    /// Counts each believable whose sum over the window is not.
    SumTooLarge,
}

impl fmt::Display for Odd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Odd::NotANumber => "not a number",
            Odd::Negative => "negative",
            Odd::NotWhole => "not a whole number",
            Odd::Rounded => "not a whole number, though a double rounds it to one",
            Odd::TooLarge => "over 10^15",
            Odd::SumTooLarge => "bringing the window's sum over 10^15",
        })
    }
}

/// A count as Cloud Eye wrote it, if it is one: judged on the number written, not only on the
/// double it reads as.
pub fn count(r: Reading) -> Result<u64, Odd> {
    let v = r.value;
    if v.is_nan() {
        Err(Odd::NotANumber)
    } else if v < 0.0 {
        Err(Odd::Negative)
    } else if v > MAX_COUNT as f64 {
        Err(Odd::TooLarge)
    } else if v.fract() != 0.0 {
        Err(Odd::NotWhole)
    } else if !r.whole {
        Err(Odd::Rounded)
    } else {
        Ok(v as u64)
    }
}

/// `sum + add`, if it stays within 10^15.
pub fn add(sum: u64, add: u64) -> Result<u64, Odd> {
    sum.checked_add(add)
        .filter(|s| *s <= MAX_COUNT)
        .ok_or(Odd::SumTooLarge)
}

/// A latency in milliseconds, if it is one.
pub fn latency(v: f64) -> Result<f64, Odd> {
    if v.is_nan() {
        Err(Odd::NotANumber)
    } else if v < 0.0 {
        Err(Odd::Negative)
    } else {
        Ok(v)
    }
}

/// One datapoint: which metric, when, what value, and why it is not usable.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub metric: &'static str,
    pub at_ms: i64,
    pub value: f64,
    pub why: Odd,
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = crate::time::fmt_rfc3339(self.at_ms, &chrono_tz::UTC);
        match self.why {
            Odd::NotANumber => write!(f, "{} at {at} is not a number", self.metric),
            Odd::Rounded => write!(
                f,
                "{} at {at} is not a whole number, though a double rounds it to {}",
                self.metric, self.value
            ),
            why => write!(f, "{} at {at} is {}, {why}", self.metric, self.value),
        }
    }
}

/// The counts that failed one series in one window: the first, how many, and the answer they
/// came in.
#[derive(Clone, Debug)]
pub struct Refused {
    pub first: Point,
    pub points: usize,
    pub endpoint: String,
    pub request_id: Option<String>,
}

impl Refused {
    /// What the failure line says: the first bad count, and how many there were.
    pub fn reason(&self) -> String {
        match self.points {
            1 => self.first.to_string(),
            n => format!("{} ({n} such datapoints)", self.first),
        }
    }

    /// The series' failure, with `reason` (this one's, or a summary of several).
    pub fn error(&self, reason: String) -> ApiError {
        ApiError::Decode {
            endpoint: self.endpoint.clone(),
            error: DecodeError::BadField {
                field: "datapoints",
                reason,
            },
            request_id: self.request_id.clone(),
        }
    }
}

/// The datapoints left out of a collection, by (query, metric, cause): how many, and the
/// first with its series.
#[derive(Debug, Default)]
pub struct LeftOut(BTreeMap<(String, &'static str, Odd), (usize, Dims, Point)>);

impl LeftOut {
    pub fn add(&mut self, query: &str, dims: &Dims, point: Point) {
        self.0
            .entry((query.to_string(), point.metric, point.why))
            .or_insert_with(|| (0, dims.clone(), point))
            .0 += 1;
    }

    /// One warning per query, metric and cause.
    pub fn warnings(self) -> impl Iterator<Item = String> {
        self.0.into_iter().map(|((query, metric, why), (n, dims, first))| {
            format!(
                "query {query}: Cloud Eye answered {n} `{metric}` datapoint(s) that are {why}; they are left out (the first: {dims}: {first})"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The count of a number that is exactly `v`.
    fn count_of(v: f64) -> Result<u64, Odd> {
        count(Reading::exact(v))
    }

    /// The count of a datapoint's value written as `text`.
    fn written(text: &str) -> Result<u64, Odd> {
        count(Reading::of_json(text))
    }

    #[test]
    fn a_count_is_judged_on_the_number_written_not_the_double_it_reads_as() {
        assert_eq!(written("1e-400"), Err(Odd::Rounded));
        assert_eq!(written("12.00000000000000001"), Err(Odd::Rounded));
        assert_eq!(written("1000000000000000.0000000001"), Err(Odd::Rounded));
        assert_eq!(written("5e-324"), Err(Odd::NotWhole));
        assert_eq!(written("2.5"), Err(Odd::NotWhole));
        assert_eq!(written("1e400"), Err(Odd::TooLarge));
        assert_eq!(written("-1e-400"), Err(Odd::Rounded));
        assert_eq!(written("\"12\""), Err(Odd::NotANumber));
        assert_eq!(written("true"), Err(Odd::NotANumber));
        for (text, n) in [
            ("0", 0),
            ("0e-400", 0),
            ("0.000e5", 0),
            ("-0", 0),
            ("12", 12),
            ("12.0", 12),
            ("1.2e1", 12),
            ("1200E-2", 12),
            ("0.12e+2", 12),
            ("1e15", MAX_COUNT),
        ] {
            assert_eq!(written(text), Ok(n), "{text}");
        }
        let p = Point {
            metric: "total_tokens",
            at_ms: 0,
            value: 0.0,
            why: Odd::Rounded,
        };
        assert_eq!(
            p.to_string(),
            "total_tokens at 1970-01-01T00:00:00Z is not a whole number, though a double rounds it to 0"
        );
    }

    #[test]
    fn counts_are_whole_numbers_from_zero_to_ten_to_the_fifteen() {
        let count = count_of;
        assert_eq!(count(0.0), Ok(0));
        assert_eq!(count(12.0), Ok(12));
        assert_eq!(count(1e15), Ok(MAX_COUNT));
        assert_eq!(count(1e15 + 1.0), Err(Odd::TooLarge));
        assert_eq!(count(u64::MAX as f64), Err(Odd::TooLarge));
        assert_eq!(count(2.5), Err(Odd::NotWhole));
        assert_eq!(count(1.000_000_1), Err(Odd::NotWhole));
        assert_eq!(count(-5.0), Err(Odd::Negative));
        assert_eq!(count(f64::NAN), Err(Odd::NotANumber));
        assert_eq!(add(MAX_COUNT - 1, 1), Ok(MAX_COUNT));
        assert_eq!(add(MAX_COUNT, 1), Err(Odd::SumTooLarge));
        assert_eq!(add(u64::MAX, 1), Err(Odd::SumTooLarge));
        assert_eq!(latency(1.5), Ok(1.5));
        assert_eq!(latency(-0.5), Err(Odd::Negative));
    }

    #[test]
    fn left_out_datapoints_make_one_warning_per_metric_and_cause() {
        let dims = Dims {
            model_id: "m".into(),
            key_id: None,
        };
        let mut l = LeftOut::default();
        for i in 0..1000 {
            let why = if i % 2 == 0 {
                Odd::Negative
            } else {
                Odd::NotANumber
            };
            l.add(
                "q",
                &dims,
                Point {
                    metric: "ttft_p99",
                    at_ms: i * 60_000,
                    value: -1.0,
                    why,
                },
            );
        }
        let w: Vec<String> = l.warnings().collect();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("500 `ttft_p99` datapoint(s) that are not a number"));
        assert!(w[1].contains("500 `ttft_p99` datapoint(s) that are negative"));
        assert!(w[1].contains(
            "the first: maas_api_id=m: ttft_p99 at 1970-01-01T00:00:00Z is -1, negative"
        ));
    }

    proptest! {
        /// A count is accepted exactly when it is a whole number from 0 to 10^15, and then
        /// read without rounding.
        #[test]
        fn a_count_is_accepted_exactly_when_it_is_one(v in prop::num::f64::ANY) {
            match count_of(v) {
                Ok(n) => prop_assert!(n as f64 == v && n <= MAX_COUNT),
                Err(_) => prop_assert!(
                    v.is_nan() || v < 0.0 || v.fract() != 0.0 || v > MAX_COUNT as f64
                ),
            }
        }

        /// However a whole number is written (a fraction of zeros, an exponent that moves its
        /// digits), it is read exactly; with a non-zero digit anywhere after the point once the
        /// exponent is applied, it is refused, whether or not a double can tell.
        #[test]
        fn a_written_count_is_accepted_exactly_when_its_digits_make_a_whole_number(
            n in 0u64..=MAX_COUNT,
            zeros in 0usize..30,
            shift in 0u32..20,
            fraction in "[0-9]{0,25}[1-9]",
            exponent in -500i32..500,
        ) {
            let z = "0".repeat(zeros);
            prop_assert_eq!(written(&format!("{n}.{z}")), Ok(n));
            prop_assert_eq!(written(&format!("{n}{z}e-{zeros}")), Ok(n));
            // n / 10^shift, written with the point moved back by the exponent.
            let digits = format!("{n:0>width$}", width = shift as usize + 1);
            let (int, frac) = digits.split_at(digits.len() - shift as usize);
            prop_assert_eq!(written(&format!("{int}.{frac}e{shift}")), Ok(n));
            // A fraction that survives its exponent is never a count.
            let places = fraction.len() as i32;
            let kept = exponent.min(places - 1);
            let r = written(&format!("{n}.{fraction}e{kept}"));
            prop_assert!(r.is_err(), "{n}.{fraction}e{kept}: {r:?}");
        }
    }
}

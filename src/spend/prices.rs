//! Price tables and the price in force at an instant: a model's entries, each from its `since`
//! (00:00 of that date in the spec's zone) until the next one, and the exact cost of Cloud Eye
//! datapoints priced one by one. A datapoint that straddles a price change cannot be priced
//! exactly, so it is refused: the plan splits a window there (`Schedule::changes`).

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::money::{Cost, Currency, Decimal, Overflow, FEMTO};

/// What the prices of a table are per.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Per {
    Thousand,
    Million,
}

impl Per {
    pub fn tokens(self) -> u64 {
        match self {
            Per::Thousand => 1_000,
            Per::Million => 1_000_000,
        }
    }

    /// As the spec writes it.
    pub fn name(self) -> &'static str {
        match self {
            Per::Thousand => "1K",
            Per::Million => "1M",
        }
    }

    pub fn parse(s: &str) -> Option<Per> {
        match s {
            "1K" => Some(Per::Thousand),
            "1M" => Some(Per::Million),
            _ => None,
        }
    }
}

/// One entry of `prices.models`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelPrice {
    /// The model's name as emitted, or its Cloud Eye id.
    pub model: String,
    /// From 00:00 of this date in the spec's zone; `None`: from the beginning.
    pub since: Option<NaiveDate>,
    pub input: Decimal,
    pub output: Decimal,
}

/// The spec's `prices`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceTable {
    pub currency: Currency,
    pub per: Per,
    /// In the spec's order; each model's entries by `since`, the one without first.
    pub models: Vec<ModelPrice>,
}

/// Input and output prices of one token, in femto-units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub input: u128,
    pub output: u128,
}

/// A table made into instants: for each model (name or id), its rates from each change on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub currency: Currency,
    /// model -> (from ms, `i64::MIN` for no `since`; rate), ordered by `from`.
    by_model: BTreeMap<String, Vec<(i64, Rate)>>,
}

/// One Cloud Eye datapoint of a model: the period `[start_ms, end_ms)` and its token counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    pub start_ms: i64,
    pub end_ms: i64,
    pub input: u64,
    pub output: u64,
}

/// The cost of some points: input and output apart, both exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Priced {
    pub input: Cost,
    pub output: Cost,
}

impl Priced {
    pub fn total(&self) -> Cost {
        self.input + self.output
    }

    pub fn checked_add(self, o: Priced) -> Result<Priced, Overflow> {
        Ok(Priced {
            input: self.input.checked_add(o.input)?,
            output: self.output.checked_add(o.output)?,
        })
    }
}

/// Why points could not be priced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("a datapoint [{start_ms}, {end_ms}) spans the price change at {change_ms}; split the window there")]
    Straddles {
        start_ms: i64,
        end_ms: i64,
        change_ms: i64,
    },
    #[error("no price is in force at {at_ms} (the first entry has a since after it)")]
    NotYetPriced { at_ms: i64 },
    #[error(transparent)]
    Overflow(#[from] Overflow),
}

impl PriceTable {
    /// The price of one token at `price` (per the table's 1K or 1M), in femto-units: exact,
    /// since a price has at most 9 decimals.
    pub fn per_token(&self, price: Decimal) -> u128 {
        u128::from(price.nanos) * (FEMTO / 1_000_000_000) / u128::from(self.per.tokens())
    }

    /// The table in instants: `start_of` gives the instant (ms) a date's 00:00 is in the spec's
    /// zone (`time::start_of_day`).
    pub fn schedule(&self, start_of: impl Fn(NaiveDate) -> i64) -> Schedule {
        let mut by_model: BTreeMap<String, Vec<(i64, Rate)>> = BTreeMap::new();
        for m in &self.models {
            let from = m.since.map(&start_of).unwrap_or(i64::MIN);
            let rate = Rate {
                input: self.per_token(m.input),
                output: self.per_token(m.output),
            };
            by_model
                .entry(m.model.clone())
                .or_default()
                .push((from, rate));
        }
        for entries in by_model.values_mut() {
            entries.sort_by_key(|(from, _)| *from);
        }
        Schedule {
            currency: self.currency,
            by_model,
        }
    }
}

impl Schedule {
    /// The entries of the first of `names` (a model's name, then its id) the table prices.
    fn entries(&self, names: &[&str]) -> Option<&[(i64, Rate)]> {
        names
            .iter()
            .find_map(|n| self.by_model.get(*n))
            .map(Vec::as_slice)
    }

    /// Whether the table prices the model known by `names` at all.
    pub fn prices(&self, names: &[&str]) -> bool {
        self.entries(names).is_some()
    }

    /// The rate in force at `t_ms`.
    pub fn rate_at(&self, names: &[&str], t_ms: i64) -> Option<Rate> {
        let entries = self.entries(names)?;
        entries
            .iter()
            .take_while(|(from, _)| *from <= t_ms)
            .last()
            .map(|(_, r)| *r)
    }

    /// The instants inside `(start_ms, end_ms)` where the model's price changes: where a window
    /// must be split so that no datapoint straddles one.
    pub fn changes(&self, names: &[&str], start_ms: i64, end_ms: i64) -> Vec<i64> {
        self.entries(names)
            .into_iter()
            .flatten()
            .map(|(from, _)| *from)
            .filter(|&t| t > start_ms && t < end_ms)
            .collect()
    }

    /// The instants inside `(start_ms, end_ms)` where any model's price changes, in order:
    /// where a window is cut before its models are known.
    pub fn all_changes(&self, start_ms: i64, end_ms: i64) -> Vec<i64> {
        let mut out: Vec<i64> = self
            .by_model
            .values()
            .flatten()
            .map(|(from, _)| *from)
            .filter(|&t| t > start_ms && t < end_ms)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The exact cost of a model's datapoints, each at the rate in force at its start. `None`
    /// when the table does not price the model.
    pub fn cost(&self, names: &[&str], points: &[Point]) -> Result<Option<Priced>, PriceError> {
        if !self.prices(names) {
            return Ok(None);
        }
        let mut sum = Priced::default();
        for p in points {
            if let Some(&change_ms) = self.changes(names, p.start_ms, p.end_ms).first() {
                return Err(PriceError::Straddles {
                    start_ms: p.start_ms,
                    end_ms: p.end_ms,
                    change_ms,
                });
            }
            let rate = self
                .rate_at(names, p.start_ms)
                .ok_or(PriceError::NotYetPriced { at_ms: p.start_ms })?;
            sum = sum.checked_add(Priced {
                input: Cost::tokens(p.input, rate.input)?,
                output: Cost::tokens(p.output, rate.output)?,
            })?;
        }
        Ok(Some(sum))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: i64 = 86_400_000;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// DeepSeek-V3 at 2/8 per 1M tokens, then 1/4 from 2026-12-01; dates at UTC midnight.
    fn table() -> PriceTable {
        PriceTable {
            currency: Currency::parse("CNY").unwrap(),
            per: Per::Million,
            models: vec![
                ModelPrice {
                    model: "DeepSeek-V3".into(),
                    since: None,
                    input: d("2.0"),
                    output: d("8.0"),
                },
                ModelPrice {
                    model: "DeepSeek-V3".into(),
                    since: Some(date("2026-12-01")),
                    input: d("1.0"),
                    output: d("4.0"),
                },
            ],
        }
    }

    fn utc_midnight(d: NaiveDate) -> i64 {
        d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis()
    }

    fn change() -> i64 {
        utc_midnight(date("2026-12-01"))
    }

    #[test]
    fn the_price_in_force_is_the_latest_since_before_the_point() {
        let s = table().schedule(utc_midnight);
        let names = ["DeepSeek-V3"];
        assert_eq!(
            s.rate_at(&names, change() - 1).unwrap().input,
            2_000_000_000
        );
        assert_eq!(s.rate_at(&names, change()).unwrap().input, 1_000_000_000);
        assert_eq!(s.rate_at(&["nope"], change()), None);
        assert!(s.prices(&["id-1", "DeepSeek-V3"]), "by name or id");
        assert_eq!(
            s.changes(&names, change() - DAY, change() + DAY),
            vec![change()]
        );
        assert!(s.changes(&names, change(), change() + DAY).is_empty());
    }

    #[test]
    fn a_point_across_a_change_is_refused_and_one_per_side_priced_exactly() {
        let s = table().schedule(utc_midnight);
        let names = ["DeepSeek-V3"];
        let across = Point {
            start_ms: change() - 1_800_000,
            end_ms: change() + 1_800_000,
            input: 1,
            output: 1,
        };
        assert!(matches!(
            s.cost(&names, &[across]),
            Err(PriceError::Straddles { .. })
        ));
        let before = Point {
            start_ms: change() - 3_600_000,
            end_ms: change(),
            input: 1_000_000,
            output: 500_000,
        };
        let after = Point {
            start_ms: change(),
            end_ms: change() + 3_600_000,
            ..before
        };
        let c = s.cost(&names, &[before, after]).unwrap().unwrap();
        // 1M in at 2 + 1M in at 1; 0.5M out at 8 + 0.5M out at 4.
        assert_eq!(c.input.to_decimal_string(), "3");
        assert_eq!(c.output.to_decimal_string(), "6");
        assert_eq!(c.total().to_decimal_string(), "9");
        assert_eq!(s.cost(&["other"], &[before]), Ok(None));
    }

    #[test]
    fn a_point_before_the_first_since_has_no_price() {
        let mut t = table();
        t.models.remove(0);
        let s = t.schedule(utc_midnight);
        let p = Point {
            start_ms: change() - 3_600_000,
            end_ms: change(),
            input: 1,
            output: 1,
        };
        assert!(matches!(
            s.cost(&["DeepSeek-V3"], &[p]),
            Err(PriceError::NotYetPriced { .. })
        ));
    }

    #[test]
    fn per_1k_prices_a_token_a_thousand_times_higher() {
        let mut t = table();
        t.per = Per::Thousand;
        assert_eq!(t.per_token(d("0.002")), 2_000_000_000);
        assert_eq!(Per::parse("1K"), Some(Per::Thousand));
        assert_eq!(Per::parse(Per::Million.name()), Some(Per::Million));
        assert_eq!(Per::parse("1k"), None);
    }

    /// Hourly points over a few days around the change, with any token counts.
    fn points() -> impl Strategy<Value = Vec<Point>> {
        prop::collection::vec((0u64..10_000_000_000, 0u64..10_000_000_000), 1..96).prop_map(
            |counts| {
                let first = change() - 48 * 3_600_000;
                counts
                    .into_iter()
                    .enumerate()
                    .map(|(i, (input, output))| {
                        let start_ms = first + i as i64 * 3_600_000;
                        Point {
                            start_ms,
                            end_ms: start_ms + 3_600_000,
                            input,
                            output,
                        }
                    })
                    .collect()
            },
        )
    }

    proptest! {
        /// A window cut at the change and priced in two parts costs what its points cost one by
        /// one, and what any other cut gives: exact and associative.
        #[test]
        fn splitting_at_since_matches_pricing_each_point(points in points(), cut in 0usize..96) {
            let s = table().schedule(utc_midnight);
            let names = ["DeepSeek-V3"];
            let whole = s.cost(&names, &points).unwrap().unwrap();
            let at = points.partition_point(|p| p.start_ms < change());
            let (a, b) = points.split_at(at);
            let split = s.cost(&names, a).unwrap().unwrap()
                .checked_add(s.cost(&names, b).unwrap().unwrap()).unwrap();
            prop_assert_eq!(split, whole);
            let (c, e) = points.split_at(cut.min(points.len()));
            let other = s.cost(&names, c).unwrap().unwrap()
                .checked_add(s.cost(&names, e).unwrap().unwrap()).unwrap();
            prop_assert_eq!(other, whole);
            let by_hand: u128 = points.iter().map(|p| {
                let (i, o) = if p.start_ms < change() { (2u128, 8u128) } else { (1, 4) };
                (u128::from(p.input) * i + u128::from(p.output) * o) * 1_000_000_000
            }).sum();
            prop_assert_eq!(whole.total().femto, by_hand);
        }
    }
}

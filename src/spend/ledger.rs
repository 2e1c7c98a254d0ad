//! A month's usage as Cloud Eye counted it, day by day (per model, and per model and API key),
//! and what it sums to: tokens and cost per day and model, per model, per team (key group) and
//! per key, budgets against their limits. Each row is a local day (or today's part of one), so
//! it never spans a price change (`since` is a local midnight) and is priced exactly.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::budget::{Amount, Budget, Limit, Period, Scope};
use super::groups::Groups;
use super::money::Cost;
use super::prices::{Point, Priced, Schedule};

/// Counts of one row, exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub total: u64,
    pub requests: u64,
    pub errors: u64,
}

impl Usage {
    pub fn add(&mut self, o: &Usage) {
        self.input = self.input.saturating_add(o.input);
        self.output = self.output.saturating_add(o.output);
        self.total = self.total.saturating_add(o.total);
        self.requests = self.requests.saturating_add(o.requests);
        self.errors = self.errors.saturating_add(o.errors);
    }

    pub fn tokens(&self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

/// One local day (or its part up to now) of a model, or of a key under a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub day: NaiveDate,
    pub start_ms: i64,
    pub end_ms: i64,
    pub model: String,
    pub model_id: String,
    /// The key's name (`None`: the model's row).
    pub api_key: Option<String>,
    pub usage: Usage,
}

/// A figure with its cost, when the model is priced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Line {
    pub usage: Usage,
    pub cost: Option<Cost>,
}

impl Line {
    fn add(&mut self, usage: &Usage, cost: Option<Priced>) {
        self.usage.add(usage);
        if let Some(c) = cost {
            self.cost = Some(self.cost.unwrap_or(Cost::ZERO) + c.total());
        }
    }
}

/// A budget over the month.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetLine {
    pub budget: Budget,
    /// Month budgets: the month's use; day budgets: the highest day's.
    pub used: Amount,
    pub limit: Amount,
    pub ratio: f64,
    /// Day budgets: the days over the limit.
    pub days_over: usize,
}

/// What the month sums to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// The days of the month with rows, in order.
    pub days: Vec<NaiveDate>,
    /// model -> day -> line.
    pub per_day: BTreeMap<String, BTreeMap<NaiveDate, Line>>,
    pub models: BTreeMap<String, Line>,
    pub teams: BTreeMap<String, Line>,
    /// Keys by cost (else tokens), highest first.
    pub top_keys: Vec<(String, Line)>,
    pub budgets: Vec<BudgetLine>,
    pub total: Line,
    /// Models without a price (no cost, never a guessed one).
    pub unpriced: Vec<String>,
}

/// The cost of a row, when its model is priced (`Err`: a price is not in force at its start).
fn priced(s: Option<&Schedule>, r: &Row) -> Option<Priced> {
    let s = s?;
    let point = Point {
        start_ms: r.start_ms,
        end_ms: r.end_ms,
        input: r.usage.input,
        output: r.usage.output,
    };
    s.cost(&[&r.model, &r.model_id], &[point]).ok().flatten()
}

/// Sums the month's rows; `key_groups` as the spec defines them.
pub fn summarize(
    model_rows: &[Row],
    key_rows: &[Row],
    schedule: Option<&Schedule>,
    key_groups: &BTreeMap<String, Vec<String>>,
    budgets: &[Budget],
) -> Summary {
    let mut out = Summary::default();
    for r in model_rows {
        let c = priced(schedule, r);
        if c.is_none() && !out.unpriced.contains(&r.model) {
            out.unpriced.push(r.model.clone());
        }
        out.per_day
            .entry(r.model.clone())
            .or_default()
            .entry(r.day)
            .or_default()
            .add(&r.usage, c);
        out.models
            .entry(r.model.clone())
            .or_default()
            .add(&r.usage, c);
        out.total.add(&r.usage, c);
        if !out.days.contains(&r.day) {
            out.days.push(r.day);
        }
    }
    out.days.sort();
    out.unpriced.sort();
    let groups = Groups::new(key_groups);
    let mut keys: BTreeMap<String, Line> = BTreeMap::new();
    for r in key_rows {
        let c = priced(schedule, r);
        let key = r.api_key.clone().unwrap_or_default();
        for g in groups.of(&key) {
            out.teams.entry(g.to_string()).or_default().add(&r.usage, c);
        }
        keys.entry(key).or_default().add(&r.usage, c);
    }
    let mut top: Vec<(String, Line)> = keys.into_iter().collect();
    top.sort_by(|a, b| {
        (b.1.cost, b.1.usage.tokens(), &a.0).cmp(&(a.1.cost, a.1.usage.tokens(), &b.0))
    });
    top.truncate(10);
    out.top_keys = top;
    out.budgets = budgets
        .iter()
        .map(|b| budget_line(b, model_rows, key_rows, schedule, &groups))
        .collect();
    out
}

fn budget_line(
    b: &Budget,
    model_rows: &[Row],
    key_rows: &[Row],
    schedule: Option<&Schedule>,
    groups: &Groups,
) -> BudgetLine {
    let rows: Vec<&Row> = match &b.scope {
        Scope::Project => model_rows.iter().collect(),
        Scope::Model(m) => model_rows
            .iter()
            .filter(|r| r.model == *m || r.model_id == *m)
            .collect(),
        Scope::KeyGroup(g) => key_rows
            .iter()
            .filter(|r| {
                groups
                    .of(r.api_key.as_deref().unwrap_or(""))
                    .contains(&g.as_str())
            })
            .collect(),
    };
    let mut per_day: BTreeMap<NaiveDate, u128> = BTreeMap::new();
    for r in &rows {
        let units = match b.limit {
            Limit::Amount(_) => priced(schedule, r).map_or(0, |c| c.total().femto),
            Limit::Tokens(_) => u128::from(r.usage.tokens()),
        };
        *per_day.entry(r.day).or_default() += units;
    }
    let limit = b.limit.amount();
    let used_units = match b.period {
        Period::Month => per_day.values().sum(),
        Period::Day => per_day.values().copied().max().unwrap_or(0),
    };
    let as_amount = |u: u128| match b.limit {
        Limit::Amount(_) => Amount::Money(Cost { femto: u }),
        Limit::Tokens(_) => Amount::Tokens(u64::try_from(u).unwrap_or(u64::MAX)),
    };
    BudgetLine {
        budget: b.clone(),
        used: as_amount(used_units),
        limit,
        ratio: match limit.units() {
            0 => 0.0,
            l => used_units as f64 / l as f64,
        },
        days_over: match b.period {
            Period::Day => per_day.values().filter(|u| **u > limit.units()).count(),
            Period::Month => 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spend::money::{Currency, Decimal};
    use crate::spend::prices::{ModelPrice, Per, PriceTable};

    fn row(day: &str, model: &str, key: Option<&str>, input: u64, output: u64) -> Row {
        let day: NaiveDate = day.parse().unwrap();
        let start_ms = day
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis();
        Row {
            day,
            start_ms,
            end_ms: start_ms + 86_400_000,
            model: model.into(),
            model_id: format!("id-{model}"),
            api_key: key.map(Into::into),
            usage: Usage {
                input,
                output,
                total: input + output,
                requests: 1,
                errors: 0,
            },
        }
    }

    #[test]
    fn a_month_sums_per_model_team_and_key_and_prices_each_day_at_its_price() {
        let table = PriceTable {
            currency: Currency::parse("CNY").unwrap(),
            per: Per::Million,
            models: vec![
                ModelPrice {
                    model: "ds".into(),
                    since: None,
                    input: Decimal::parse("2").unwrap(),
                    output: Decimal::parse("8").unwrap(),
                },
                ModelPrice {
                    model: "ds".into(),
                    since: Some("2026-11-02".parse().unwrap()),
                    input: Decimal::parse("1").unwrap(),
                    output: Decimal::parse("4").unwrap(),
                },
            ],
        };
        let s = table.schedule(|d| d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis());
        let models = [
            row("2026-11-01", "ds", None, 1_000_000, 1_000_000),
            row("2026-11-02", "ds", None, 1_000_000, 1_000_000),
            row("2026-11-01", "free", None, 5, 5),
        ];
        let keys = [
            row("2026-11-01", "ds", Some("key-a1"), 1_000_000, 0),
            row("2026-11-02", "ds", Some("key-ci"), 0, 1_000_000),
        ];
        let groups: BTreeMap<String, Vec<String>> =
            [("team-a".to_string(), vec!["key-a1".to_string()])].into();
        let budgets = [
            Budget {
                name: "all".into(),
                scope: Scope::Project,
                limit: Limit::Amount(Cost::of(Decimal::parse("30").unwrap())),
                period: Period::Month,
            },
            Budget {
                name: "a-daily".into(),
                scope: Scope::KeyGroup("team-a".into()),
                limit: Limit::Tokens(500_000),
                period: Period::Day,
            },
        ];
        let sum = summarize(&models, &keys, Some(&s), &groups, &budgets);
        // Day 1 at 2/8 = 10, day 2 at 1/4 = 5.
        assert_eq!(sum.models["ds"].cost.unwrap().to_decimal_string(), "15");
        assert_eq!(sum.models["free"].cost, None);
        assert_eq!(sum.unpriced, ["free"]);
        assert_eq!(sum.total.usage.tokens(), 4_000_010);
        assert_eq!(sum.teams["team-a"].cost.unwrap().to_decimal_string(), "2");
        assert_eq!(
            sum.teams["ungrouped"].cost.unwrap().to_decimal_string(),
            "4"
        );
        assert_eq!(sum.top_keys[0].0, "key-ci");
        assert_eq!(
            sum.budgets[0].used,
            Amount::Money(Cost::of(Decimal::parse("15").unwrap()))
        );
        assert!((sum.budgets[0].ratio - 0.5).abs() < 1e-12);
        assert_eq!(sum.budgets[1].used, Amount::Tokens(1_000_000));
        assert_eq!(sum.budgets[1].days_over, 1);
        assert_eq!(sum.days.len(), 2);
    }
}

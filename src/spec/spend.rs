//! The spec's `prices`, `budgets` and `alerts`: read from one file with located errors (unknown
//! currency, a price that is not an exact decimal, two entries for one model and date, dates out
//! of order), and the checks that need every file (a budget's key group, model and currency).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::Value;

use super::convert::FileSpec;
use super::errors::SpecError;
use super::{Alerts, Grouped, Spec};
use crate::domain::range;
use crate::spend::budget::{Budget, Limit, Period, Scope};
use crate::spend::money::{Cost, Currency, Decimal};
use crate::spend::prices::{ModelPrice, Per, PriceTable};

#[derive(Deserialize, Clone, PartialEq)]
pub(super) struct RawPrices {
    currency: String,
    per: Option<String>,
    models: Vec<RawModelPrice>,
}

#[derive(Deserialize, Clone, PartialEq)]
struct RawModelPrice {
    model: String,
    since: Option<String>,
    input: Value,
    output: Value,
}

#[derive(Deserialize, Clone, PartialEq)]
pub(super) struct RawBudget {
    name: String,
    key_group: Option<String>,
    model: Option<String>,
    amount: Option<Value>,
    tokens: Option<u64>,
    period: String,
}

#[derive(Deserialize, Clone, Default, PartialEq)]
pub(super) struct RawAlerts {
    error_ratio: Option<f64>,
    ttft_p99: Option<String>,
    budget_warning: Option<f64>,
    #[serde(rename = "for")]
    hold: Option<String>,
}

/// A Cloud Eye query's `breakdown`: `Some` for the key group breakdowns (per model or not),
/// `None` for [model] and [model, api_key]; `Err` for any other list.
pub(super) fn grouping(breakdown: &[String]) -> Result<Option<Grouped>, ()> {
    let shape: Vec<&str> = breakdown.iter().map(String::as_str).collect();
    match shape.as_slice() {
        ["model"] | ["model", "api_key"] => Ok(None),
        ["model", "key_group"] => Ok(Some(Grouped { per_model: true })),
        ["key_group"] => Ok(Some(Grouped { per_model: false })),
        _ => Err(()),
    }
}

/// A price or an amount: a number (its shortest form) or a decimal string, exactly.
fn decimal_of(f: &FileSpec, pointer: &str, v: &Value, errors: &mut Vec<SpecError>) -> Decimal {
    let parsed = match v {
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => Decimal::parse(&u.to_string()),
            (None, Some(x)) => Decimal::from_f64(x),
            (None, None) => Decimal::parse(&n.to_string()),
        },
        Value::String(s) => Decimal::parse(s),
        other => Decimal::parse(&other.to_string()),
    };
    parsed.unwrap_or_else(|e| {
        errors.push(f.err(pointer, e.to_string()));
        Decimal::default()
    })
}

/// `prices:` of one file.
pub(super) fn prices_of(f: &FileSpec, raw: &RawPrices, errors: &mut Vec<SpecError>) -> PriceTable {
    let currency = Currency::parse(&raw.currency).unwrap_or_else(|| {
        errors.push(f.err(
            "/prices/currency",
            format!(
                "`{}` is not an ISO 4217 currency code (such as CNY, USD, EUR)",
                raw.currency
            ),
        ));
        Currency {
            code: "XXX",
            minor_units: 2,
        }
    });
    let per = raw
        .per
        .as_deref()
        .and_then(Per::parse)
        .unwrap_or(Per::Million);
    // Each model's latest entry so far: its `since` and where it was written.
    let mut last: BTreeMap<&str, (Option<NaiveDate>, String)> = BTreeMap::new();
    let mut models = Vec::new();
    for (i, m) in raw.models.iter().enumerate() {
        let p = format!("/prices/models/{i}");
        let since = m
            .since
            .as_deref()
            .and_then(|s| match s.parse::<NaiveDate>() {
                Ok(d) => Some(d),
                Err(_) => {
                    errors.push(f.err(&format!("{p}/since"), format!("`{s}` is not a date")));
                    None
                }
            });
        let at = if m.since.is_some() {
            format!("{p}/since")
        } else {
            format!("{p}/model")
        };
        let shown =
            |d: Option<NaiveDate>| d.map_or("without since".to_string(), |d| format!("since {d}"));
        if let Some((prev, where_)) = last.get(m.model.as_str()) {
            if *prev == since {
                errors.push(f.err(
                    &at,
                    format!(
                        "`{}` has two entries {} (the other at {where_}); keep one",
                        m.model,
                        shown(since)
                    ),
                ));
            } else if since < *prev {
                errors.push(f.err(
                    &at,
                    format!(
                        "`{}`: this entry ({}) comes after the one {} at {where_}; list a model's entries in date order, the one without since first",
                        m.model,
                        shown(since),
                        shown(*prev)
                    ),
                ));
            }
        }
        last.insert(&m.model, (since, f.here(&at)));
        models.push(ModelPrice {
            model: m.model.clone(),
            since,
            input: decimal_of(f, &format!("{p}/input"), &m.input, errors),
            output: decimal_of(f, &format!("{p}/output"), &m.output, errors),
        });
    }
    PriceTable {
        currency,
        per,
        models,
    }
}

/// `budgets:` of one file, each with its pointer (for the checks across files).
pub(super) fn budgets_of(
    f: &FileSpec,
    raw: &[RawBudget],
    errors: &mut Vec<SpecError>,
) -> Vec<(Budget, String)> {
    let mut out = Vec::new();
    for (i, b) in raw.iter().enumerate() {
        let p = format!("/budgets/{i}");
        let scope = match (&b.key_group, &b.model) {
            (Some(_), Some(_)) => {
                errors.push(f.key_err(
                    &format!("{p}/model"),
                    "a budget covers a key group or a model (or, with neither, the whole project), not both".into(),
                ));
                Scope::Project
            }
            (Some(g), None) => Scope::KeyGroup(g.clone()),
            (None, Some(m)) => Scope::Model(m.clone()),
            (None, None) => Scope::Project,
        };
        let limit = match (&b.amount, b.tokens) {
            (Some(a), None) => {
                Limit::Amount(Cost::of(decimal_of(f, &format!("{p}/amount"), a, errors)))
            }
            (None, Some(t)) => Limit::Tokens(t),
            (Some(_), Some(_)) => {
                errors.push(f.key_err(
                    &format!("{p}/tokens"),
                    "a budget limits money (amount) or tokens, not both".into(),
                ));
                Limit::Tokens(1)
            }
            (None, None) => {
                errors.push(f.err(
                    &p,
                    "a budget needs a limit: amount (money, in prices.currency) or tokens",
                ));
                Limit::Tokens(1)
            }
        };
        if limit == Limit::Amount(Cost::ZERO) {
            errors.push(f.err(
                &format!("{p}/amount"),
                "a limit of 0 is always exceeded; set one above 0",
            ));
        }
        let period = Period::parse(&b.period).unwrap_or(Period::Month);
        out.push((
            Budget {
                name: b.name.clone(),
                scope,
                limit,
                period,
            },
            p,
        ));
    }
    out
}

/// `alerts:` of one file.
pub(super) fn alerts_of(f: &FileSpec, raw: &RawAlerts, errors: &mut Vec<SpecError>) -> Alerts {
    let mut out = Alerts::default();
    let mut duration = |key: &str, v: &Option<String>, into: &mut Duration| {
        if let Some(s) = v {
            match range::parse_duration(s) {
                Ok(d) if !d.is_zero() => *into = d,
                Ok(_) => errors.push(f.err(&format!("/alerts/{key}"), "must be more than zero")),
                Err(e) => errors.push(f.err(&format!("/alerts/{key}"), e)),
            }
        }
    };
    duration("ttft_p99", &raw.ttft_p99, &mut out.ttft_p99);
    duration("for", &raw.hold, &mut out.hold);
    if let Some(r) = raw.error_ratio {
        out.error_ratio = r;
    }
    if let Some(r) = raw.budget_warning {
        out.budget_warning = r;
    }
    out
}

/// The budgets of every file: names unique, each key group defined, each model one the spec
/// names somewhere, and a money budget only with prices.
pub(super) fn check_budgets(
    files: &[FileSpec],
    budgets: &[(usize, Budget, String)],
    spec: &Spec,
    errors: &mut Vec<SpecError>,
) {
    let mut known_models: BTreeSet<&str> = BTreeSet::new();
    for m in spec.prices.iter().flat_map(|p| &p.models) {
        known_models.insert(&m.model);
    }
    for (id, name) in &spec.names.models {
        known_models.insert(id);
        known_models.insert(name);
    }
    for q in &spec.queries {
        for m in q
            .cloud_eye()
            .and_then(|c| c.models.as_ref())
            .into_iter()
            .flatten()
        {
            known_models.insert(m);
        }
    }
    let mut seen: BTreeMap<&str, String> = BTreeMap::new();
    for (fi, b, p) in budgets {
        let f = &files[*fi];
        if let Some(first) = seen.get(b.name.as_str()) {
            errors.push(f.err(
                &format!("{p}/name"),
                format!("budget name `{}` is already used at {first}; names must be unique across all spec files", b.name),
            ));
        } else {
            seen.insert(&b.name, f.here(&format!("{p}/name")));
        }
        match &b.scope {
            Scope::KeyGroup(g) if !spec.key_groups.contains_key(g) => {
                let defined = spec.key_groups.keys().cloned().collect::<Vec<_>>().join(", ");
                errors.push(f.err(
                    &format!("{p}/key_group"),
                    match defined.is_empty() {
                        true => format!("unknown key group `{g}`; no key_groups are defined"),
                        false => format!("unknown key group `{g}`; defined: {defined}"),
                    },
                ));
            }
            Scope::Model(m) if !known_models.contains(m.as_str()) => errors.push(f.err(
                &format!("{p}/model"),
                format!("unknown model `{m}`: no entry of prices.models, names.models or a query's models: names it"),
            )),
            _ => {}
        }
        if let (Scope::Model(m), Limit::Amount(_), Some(prices)) =
            (&b.scope, &b.limit, &spec.prices)
        {
            // Its price, under the model's name or under an id names.models gives that name.
            let priced = prices.models.iter().any(|e| {
                e.model == *m
                    || spec.names.models.get(&e.model) == Some(m)
                    || spec.names.models.get(m) == Some(&e.model)
            });
            if !priced && known_models.contains(m.as_str()) {
                errors.push(f.err(
                    &format!("{p}/model"),
                    format!("a money budget needs its model's price, and no entry of prices.models prices `{m}`: its use would read 0 for ever; add its price, or limit tokens instead"),
                ));
            }
        }
        if matches!(b.limit, Limit::Amount(_)) && spec.prices.is_none() {
            errors.push(f.key_err(
                &format!("{p}/amount"),
                "an amount is money in prices.currency, and the spec has no prices; add them, or limit tokens instead".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::spec::load::load_str;
    use crate::spend::{Limit, Scope};

    const HEAD: &str = "apiVersion: maas-usage/v1\nkey_groups:\n  team-a: [key-a1]\nqueries:\n  - name: m\n    source: cloud_eye\n";

    fn errs(tail: &str) -> Vec<String> {
        match load_str("spec.yaml", &format!("{HEAD}{tail}")) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    const PRICES: &str = "prices:\n  currency: CNY\n  models:\n    - model: DeepSeek-V3\n      input: 2.0\n      output: 8\n    - model: DeepSeek-V3\n      since: 2026-12-01\n      input: \"0.1\"\n      output: 4\n";

    #[test]
    fn prices_and_budgets_are_read_exactly() {
        let spec = load_str(
            "spec.yaml",
            &format!("{HEAD}{PRICES}budgets:\n  - name: team-a-monthly\n    key_group: team-a\n    amount: 5000.5\n    period: month\n  - name: all-daily\n    tokens: 2000000000\n    period: day\nalerts:\n  error_ratio: 0.1\n  for: 5m\n"),
        )
        .unwrap();
        let p = spec.prices.unwrap();
        assert_eq!(p.currency.code, "CNY");
        assert_eq!(p.models[1].input.nanos, 100_000_000, "0.1 exactly");
        assert_eq!(p.models[0].output.nanos, 8_000_000_000);
        assert_eq!(spec.budgets[0].scope, Scope::KeyGroup("team-a".into()));
        assert!(
            matches!(spec.budgets[0].limit, Limit::Amount(c) if c.to_decimal_string() == "5000.5")
        );
        assert_eq!(spec.budgets[1].scope, Scope::Project);
        assert_eq!(spec.budgets[1].limit, Limit::Tokens(2_000_000_000));
        assert_eq!(spec.alerts.error_ratio, 0.1);
        assert_eq!(spec.alerts.hold, std::time::Duration::from_secs(300));
        assert_eq!(spec.alerts.budget_warning, 0.8, "the default");
    }

    #[test]
    fn price_errors_are_located() {
        let e =
            errs("prices:\n  currency: USD\n  models:\n    - {model: a, input: -1, output: 1}\n");
        assert_eq!(
            e,
            ["spec.yaml:10:25: prices.models[0].input: -1 is below the minimum 0"]
        );
        let e = errs("prices:\n  currency: RMB\n  models:\n    - model: a\n      input: 1\n      output: 0.0000000001\n    - model: b\n      since: 2026-12-01\n      input: 1\n      output: 1\n    - model: b\n      since: 2026-12-01\n      input: 1\n      output: 1\n    - model: b\n      since: 2026-11-01\n      input: 1\n      output: 1\n    - model: c\n      since: 2026-02-30\n      input: 1\n      output: 1\n");
        assert!(
            e.iter().any(|m| m.starts_with(
                "spec.yaml:8:13: prices.currency: `RMB` is not an ISO 4217 currency code"
            )),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.starts_with("spec.yaml:12:15: prices.models[0].output: `0.0000000001` has more than 9 decimals") || m.starts_with("spec.yaml:12:15: prices.models[0].output: `0.0000000001`")), "{e:?}");
        assert!(e.iter().any(|m| m.starts_with("spec.yaml:18:14: prices.models[2].since: `b` has two entries since 2026-12-01 (the other at spec.yaml:14:7)")), "{e:?}");
        assert!(e.iter().any(|m| m.starts_with("spec.yaml:22:14: prices.models[3].since: `b`: this entry (since 2026-11-01) comes after the one since 2026-12-01")), "{e:?}");
        assert!(
            e.iter().any(|m| m.starts_with(
                "spec.yaml:26:14: prices.models[4].since: `2026-02-30` is not a date"
            )),
            "{e:?}"
        );
    }

    #[test]
    fn two_entries_without_since_are_one_too_many() {
        let e = errs("prices:\n  currency: USD\n  models:\n    - {model: a, input: 1, output: 1}\n    - {model: a, input: 2, output: 2}\n");
        assert!(
            e.iter().any(|m| m.starts_with(
                "spec.yaml:11:15: prices.models[1].model: `a` has two entries without since"
            )),
            "{e:?}"
        );
    }

    #[test]
    fn budget_errors_are_located() {
        let e = errs("budgets:\n  - {name: a, key_group: ghost, tokens: 5, period: day}\n  - {name: a, model: nowhere, tokens: 5, period: day}\n  - {name: c, amount: 5, period: month}\n  - {name: d, amount: 5, tokens: 5, period: month}\n  - {name: e, period: month}\n  - {name: f, key_group: team-a, model: x, tokens: 1, period: day}\n");
        let want = [
            "spec.yaml:8:26: budgets[0].key_group: unknown key group `ghost`; defined: team-a",
            "spec.yaml:9:12: budgets[1].name: budget name `a` is already used at spec.yaml:8:6",
            "spec.yaml:9:22: budgets[1].model: unknown model `nowhere`",
            "spec.yaml:10:15: budgets[2].amount: an amount is money in prices.currency, and the spec has no prices",
            "spec.yaml:11:26: budgets[3].tokens: a budget limits money (amount) or tokens, not both",
            "spec.yaml:12:5: budgets[4]: a budget needs a limit",
            "spec.yaml:13:34: budgets[5].model: a budget covers a key group or a model",
        ];
        for w in want {
            assert!(e.iter().any(|m| m.starts_with(w)), "{w}\n{e:?}");
        }
    }

    #[test]
    fn a_money_budget_of_an_unpriced_model_is_refused() {
        // `b` is known (names.models) but has no price: its money would read 0 for ever.
        let e = errs("names:\n  models:\n    id-b: b\n    id-a: a\nprices:\n  currency: USD\n  models:\n    - {model: id-a, input: 1, output: 1}\nbudgets:\n  - {name: nb, model: b, amount: 5, period: month}\n  - {name: na, model: a, amount: 5, period: month}\n  - {name: tb, model: b, tokens: 5, period: month}\n");
        assert!(
            e.iter().any(|m| m.contains("budgets[0].model: a money budget needs its model's price, and no entry of prices.models prices `b`")),
            "{e:?}"
        );
        assert_eq!(
            e.iter().filter(|m| m.contains("budgets[")).count(),
            1,
            "`a` is priced under its id, and a token budget needs no price: {e:?}"
        );
    }

    #[test]
    fn key_group_breakdowns_are_accepted_and_others_refused() {
        for (b, per_model) in [("[model, key_group]", true), ("[key_group]", false)] {
            let spec = load_str(
                "spec.yaml",
                &format!("{HEAD}    breakdown: {b}\n    api_keys: [key-a1]\n"),
            )
            .unwrap();
            assert_eq!(
                spec.grouped.get("m").map(|g| g.per_model),
                Some(per_model),
                "{b}"
            );
            assert!(
                spec.queries[0].cloud_eye().unwrap().by_key,
                "grouping sums the per-key series"
            );
        }
        let spec = load_str("spec.yaml", HEAD).unwrap();
        assert!(spec.grouped.is_empty());
        for b in ["[api_key]", "[key_group, model]", "[api_key, key_group]"] {
            let e = errs(&format!("    breakdown: {b}\n"));
            assert!(e.iter().any(|m| m.contains("queries[0].breakdown: a breakdown is [model], [model, api_key], [model, key_group] or [key_group]")), "{b}: {e:?}");
        }
    }

    #[test]
    fn prices_set_in_two_files_must_agree() {
        let a = crate::spec::convert::parse_file("a.yaml", &format!("{HEAD}{PRICES}"))
            .ok()
            .unwrap();
        let b = crate::spec::convert::parse_file(
            "b.yaml",
            &format!(
                "apiVersion: maas-usage/v1\n{}",
                PRICES.replace("CNY", "USD")
            ),
        )
        .ok()
        .unwrap();
        let e = crate::spec::merge::merge(&[a, b]).unwrap_err();
        assert!(
            e.0[0].to_string().contains("prices is also set in a.yaml"),
            "{e:?}"
        );
    }
}

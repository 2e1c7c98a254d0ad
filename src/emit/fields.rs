//! The values and tags of a collected series, by the names of `domain::names`.

use std::collections::BTreeMap;

use crate::collect::{CloudEyeSeries, Figure, RunStats, Spent, StatisticsSeries};
use crate::domain::cloud_eye::CloudEyeKey;
pub use crate::domain::names::*;
use crate::domain::Usage;
use crate::spend::Cost;

/// `query`, `service_type`, `infer_type`, `key_group` of a series.
pub fn key_tags(s: &StatisticsSeries) -> [(&'static str, &str); 4] {
    [
        (BUILTIN_TAGS[0], s.key.query.as_str()),
        (BUILTIN_TAGS[1], s.key.service_type.name()),
        (BUILTIN_TAGS[2], s.key.infer_type.name()),
        (BUILTIN_TAGS[3], s.key.key_group.as_str()),
    ]
}

/// `query`, `model`, `model_id`, and with the key breakdown `api_key`, `api_key_id`.
pub fn cloud_eye_tags(s: &CloudEyeSeries) -> Vec<(&'static str, &str)> {
    cloud_eye_key_tags(&s.key)
}

/// The tags of a Cloud Eye series' key: `query`, its model's, its key's or its key group.
pub fn cloud_eye_key_tags(key: &CloudEyeKey) -> Vec<(&'static str, &str)> {
    let mut t = vec![(MODEL_TAGS[0], key.query.as_str())];
    if key.has_model() {
        t.push((MODEL_TAGS[1], key.model.name.as_str()));
        t.push((MODEL_TAGS[2], key.model.id.as_str()));
    }
    if let Some(k) = &key.api_key {
        t.push((MODEL_TAGS[3], k.name.as_str()));
        t.push((MODEL_TAGS[4], k.id.as_str()));
    }
    if let Some(g) = &key.key_group {
        t.push((MODEL_TAGS[5], g.as_str()));
    }
    t
}

/// The `currency` tag of `maas_model_cost` and `maas_budget`.
pub const CURRENCY_TAG: &str = "currency";

/// A priced series' cost fields, in `COST`'s order: `cost` (input and output), `input_cost`,
/// `output_cost`, each exact.
pub fn cost_values(c: &Spent) -> impl Iterator<Item = (&'static SpendField, Cost)> + '_ {
    let parts = [c.priced.input.femto, c.priced.output.femto];
    COST.fields.iter().map(move |f| (f, cost_field(f, parts)))
}

/// What the cost field `f` reads from input and output costs (femto-units): one of them, or
/// both (`cost`).
pub fn cost_field(f: &SpendField, [input, output]: [u128; 2]) -> Cost {
    let femto = match f.name {
        "input_cost" => input,
        "output_cost" => output,
        _ => input.saturating_add(output),
    };
    Cost { femto }
}

/// A budget's fields in `BUDGET`'s order, as text (doubles as exact decimals) with their
/// manifest entry.
pub fn budget_values(
    p: &crate::spend::budget::Point,
) -> impl Iterator<Item = (&'static SpendField, String)> {
    let values = p.fields();
    BUDGET.fields.iter().filter_map(move |f| {
        values
            .iter()
            .find(|(n, _)| *n == f.name)
            .map(|(_, v)| (f, v.clone()))
    })
}

/// A Cloud Eye figure as a value: counts as integers, latency in milliseconds.
pub fn figure(f: Figure) -> Value {
    match f {
        Figure::Count(c) => Value::Int(c),
        Figure::Millis(m) => Value::Float(m),
    }
}

/// `project_id` and `region`.
pub fn source_tags<'a>(project_id: &'a str, region: &'a str) -> [(&'static str, &'a str); 2] {
    [(BUILTIN_TAGS[4], project_id), (BUILTIN_TAGS[5], region)]
}

/// Static tags plus `extra`, sorted by key (line protocol and Prometheus both want that order).
pub fn tag_map<'a>(
    static_tags: &'a BTreeMap<String, String>,
    extra: impl IntoIterator<Item = (&'static str, &'a str)>,
) -> BTreeMap<&'a str, &'a str> {
    let mut m: BTreeMap<&'a str, &'a str> = static_tags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    m.extend(extra.into_iter().map(|(k, v)| (k as &'a str, v)));
    m
}

/// The collector values in `COLLECTOR_FIELDS` order.
pub fn collector_values(s: &RunStats) -> [u64; 11] {
    [
        s.series_ok,
        s.series_failed,
        s.api_calls,
        s.api_retries,
        s.throttled,
        s.duration_ms,
        s.last_success_ms,
        s.consecutive_failures,
        s.leader,
        s.engine_round_trip_us,
        s.failovers,
    ]
}

/// A collector value in seconds, when its OTLP and Prometheus unit is the second (the field
/// counts milliseconds, or microseconds for `us`).
pub fn in_seconds(f: &CollectorField, v: u64) -> Option<f64> {
    (f.otlp_unit == "s").then(|| match f.unit {
        "us" => v as f64 / 1_000_000.0,
        _ => v as f64 / 1000.0,
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

/// The value of `field` in `u`.
pub fn value(u: &Usage, field: &Field) -> Value {
    match field.name {
        "total_tokens" => Value::Int(u.total_tokens),
        "prompt_tokens" => Value::Int(u.prompt_tokens),
        "completion_tokens" => Value::Int(u.completion_tokens),
        "requests" => Value::Int(u.requests),
        "errors" => Value::Int(u.errors),
        "completed_tasks" => Value::Int(u.completed_tasks),
        "infer_count" => Value::Int(u.infer_count),
        _ => Value::Float(u.error_ratio()),
    }
}

/// The fields a series of this inference type carries, with values.
pub fn values(u: &Usage, batch: bool) -> impl Iterator<Item = (&'static Field, Value)> + '_ {
    FIELDS
        .iter()
        .filter(move |f| batch || !f.batch_only)
        .map(move |f| (f, value(u, f)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_field_reads_a_figure_of_its_own() {
        // Each figure a different value: a field that plugin.yaml declares and `value` does not
        // know falls through to the error ratio, and is caught here.
        let u = Usage {
            total_tokens: 2,
            prompt_tokens: 3,
            completion_tokens: 5,
            requests: 7,
            errors: 1,
            completed_tasks: 11,
            infer_count: 13,
        };
        let mut counts = Vec::new();
        for f in FIELDS {
            match (f.kind, value(&u, f)) {
                (Kind::Count, Value::Int(n)) => counts.push(n),
                (Kind::Ratio, Value::Float(_)) => {}
                (kind, v) => panic!(
                    "`{}` ({kind:?}) reads {v:?}: add it to emit::fields::value and its figure to domain::Usage",
                    f.name
                ),
            }
        }
        let distinct: std::collections::BTreeSet<u64> = counts.iter().copied().collect();
        assert_eq!(distinct.len(), counts.len(), "two fields read one figure");
    }
}

//! InfluxDB line protocol, the contract Telegraf (`data_format = "influx"`) and InfluxDB rely on.
//!
//! One line per series: measurement, sorted tags, integer fields with `i`, the ratio as a float,
//! the window end in nanoseconds as timestamp; Cloud Eye series as `maas_model_usage` lines. One
//! more line, `<measurement>_collector`, with the run's own health.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::fields::{self, Value};
use super::Report;
use crate::collect::{CloudEyeSeries, Series, Spent, StatisticsSeries};
use crate::domain::InferType;
use crate::domain::Shape;

pub struct InfluxOptions<'a> {
    pub measurement: &'a str,
    /// Static tags from the spec.
    pub tags: &'a BTreeMap<String, String>,
}

/// Line protocol cannot carry line breaks (or, for some parsers, tabs) anywhere, and its dialects disagree on backslashes
/// (InfluxDB 2 reads `\\` as one backslash, 1.x as two, and a trailing one escapes the
/// separator). The spec's patterns keep both out of names and tags; this is the last line of
/// defence for values from elsewhere (an environment-supplied project id).
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|&c| c != '\\')
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Measurement: commas and spaces are escaped.
pub fn escape_measurement(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in sanitize(s).chars() {
        if matches!(c, ',' | ' ') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Tag keys, tag values and field keys: commas, equals signs and spaces are escaped.
pub fn escape_key(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in sanitize(s).chars() {
        if matches!(c, ',' | '=' | ' ') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `,k=v` for every non-empty tag, keys in byte order (BTreeMap order).
fn tag_set(tags: &BTreeMap<&str, &str>) -> String {
    let mut s = String::new();
    for (k, v) in tags {
        let v = escape_key(v);
        if !v.is_empty() {
            let _ = write!(s, ",{}={v}", escape_key(k));
        }
    }
    s
}

fn ns(ms: i64) -> i128 {
    i128::from(ms) * 1_000_000
}

fn statistics_line(
    out: &mut String,
    s: &StatisticsSeries,
    r: &Report<'_>,
    opts: &InfluxOptions<'_>,
) {
    let tags = fields::tag_map(
        opts.tags,
        fields::key_tags(s).into_iter().chain(r.source_tags()),
    );
    let _ = write!(
        out,
        "{}{} ",
        escape_measurement(opts.measurement),
        tag_set(&tags)
    );
    let mut first = true;
    let mut field = |out: &mut String, name: &str, value: String| {
        let _ = write!(
            out,
            "{}{}={value}",
            if first { "" } else { "," },
            escape_key(name)
        );
        first = false;
    };
    for (f, v) in fields::values(&s.usage, s.key.infer_type == InferType::Batch) {
        field(out, f.name, fmt_value(v));
    }
    let length_field = if s.window.shape == Shape::Bucket {
        fields::PERIOD_FIELD.name
    } else {
        fields::WINDOW_SECONDS
    };
    field(out, length_field, format!("{}i", s.window.len_ms() / 1000));
    let _ = writeln!(out, " {}", ns(s.window.end_ms));
}

fn fmt_value(v: Value) -> String {
    match v {
        Value::Int(i) => format!("{i}i"),
        // Always finite: it is a ratio of two integers with a non-zero denominator, or 0.
        Value::Float(x) => format!("{x}"),
    }
}

fn collector_line(out: &mut String, r: &Report<'_>, opts: &InfluxOptions<'_>) {
    let tags = fields::tag_map(opts.tags, r.source_tags());
    let fields = fields::COLLECTOR_FIELDS
        .iter()
        .zip(fields::collector_values(&r.stats))
        .map(|(f, v)| format!("{}={v}i", f.name))
        .collect::<Vec<_>>()
        .join(",");
    let _ = writeln!(
        out,
        "{}_collector{} {fields} {}",
        escape_measurement(opts.measurement),
        tag_set(&tags),
        ns(r.now.timestamp_millis())
    );
}

/// A Cloud Eye series: `maas_model_usage`, its model (and key) tags, counts as integers and
/// latency in milliseconds as floats, the window (or bucket) end as timestamp.
fn cloud_eye_line(out: &mut String, s: &CloudEyeSeries, r: &Report<'_>, opts: &InfluxOptions<'_>) {
    let tags = fields::tag_map(
        opts.tags,
        fields::cloud_eye_tags(s).into_iter().chain(r.source_tags()),
    );
    let length = if s.window.shape == Shape::Bucket {
        fields::PERIOD_FIELD.name
    } else {
        fields::WINDOW_SECONDS
    };
    // Written straight into the output (thousands of lines a run: no string per field).
    let _ = write!(out, "{}{} ", fields::MODEL_MEASUREMENT, tag_set(&tags));
    for (m, f) in &s.values {
        let _ = write!(
            out,
            "{}={},",
            escape_key(m.field),
            fmt_value(fields::figure(*f))
        );
    }
    let _ = writeln!(
        out,
        "{length}={}i {}",
        s.window.len_ms() / 1000,
        ns(s.window.end_ms)
    );
    if let Some(c) = &s.cost {
        cost_line(out, s, c, r, opts);
    }
}

/// A priced series' `maas_model_cost`: its tags and `currency`, the exact costs as floats
/// (written as the exact decimals they are), the same timestamp.
fn cost_line(
    out: &mut String,
    s: &CloudEyeSeries,
    c: &Spent,
    r: &Report<'_>,
    opts: &InfluxOptions<'_>,
) {
    let currency = c.currency.to_string();
    let tags = fields::tag_map(
        opts.tags,
        fields::cloud_eye_tags(s)
            .into_iter()
            .chain(r.source_tags())
            .chain([(fields::CURRENCY_TAG, currency.as_str())]),
    );
    let set: Vec<String> = fields::cost_values(c)
        .map(|(f, v)| format!("{}={}", f.name, v.to_decimal_string()))
        .collect();
    let _ = writeln!(
        out,
        "{}{} {} {}",
        fields::COST.name,
        tag_set(&tags),
        set.join(","),
        ns(s.window.end_ms)
    );
}

pub fn render(r: &Report<'_>, opts: &InfluxOptions<'_>) -> String {
    let mut out = render_series(r, opts);
    collector_line(&mut out, r, opts);
    out
}

/// The lines of the collected series alone (output written as it is produced: a round at a
/// time, the collector's line once at the end).
pub fn render_series(r: &Report<'_>, opts: &InfluxOptions<'_>) -> String {
    let mut out = String::new();
    for s in &r.collection.series {
        match s {
            Series::Statistics(s) => statistics_line(&mut out, s, r, opts),
            Series::CloudEye(s) => cloud_eye_line(&mut out, s, r, opts),
        }
    }
    for p in &r.collection.budgets {
        budget_line(&mut out, p, r, opts);
    }
    out
}

/// `maas_budget`: a budget's tags and where it stands, at the collection's now.
fn budget_line(
    out: &mut String,
    p: &crate::spend::budget::Point,
    r: &Report<'_>,
    opts: &InfluxOptions<'_>,
) {
    let own = p.tags();
    let tags = fields::tag_map(
        opts.tags,
        own.iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(r.source_tags()),
    );
    let set: Vec<String> = fields::budget_values(p)
        .map(|(f, v)| format!("{}={v}{}", f.name, if f.int { "i" } else { "" }))
        .collect();
    let _ = writeln!(
        out,
        "{}{} {} {}",
        fields::BUDGET.name,
        tag_set(&tags),
        set.join(","),
        ns(r.now.timestamp_millis())
    );
}

/// The series lines of several clouds' reports, without their self-metrics lines.
pub fn render_all_series(reports: &[Report<'_>], opts: &InfluxOptions<'_>) -> String {
    reports.iter().map(|r| render_series(r, opts)).collect()
}

/// The self-metrics lines of several clouds' reports, alone (a follower of a coordination
/// group writes them after the group's stored series).
pub fn render_collectors(reports: &[Report<'_>], opts: &InfluxOptions<'_>) -> String {
    let mut out = String::new();
    for r in reports {
        collector_line(&mut out, r, opts);
    }
    out
}

/// The reports of several clouds, one after the other (each with its self-metrics line).
pub fn render_all(reports: &[Report<'_>], opts: &InfluxOptions<'_>) -> String {
    reports.iter().map(|r| render(r, opts)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use influxdb_line_protocol::{parse_lines, FieldValue};
    use proptest::prelude::*;

    #[test]
    fn escaping_follows_the_spec() {
        assert_eq!(escape_measurement("a b,c=d"), "a\\ b\\,c=d");
        assert_eq!(escape_key("a b,c=d"), "a\\ b\\,c\\=d");
        assert_eq!(escape_key("line\nbreak\\"), "line\\ break");
    }

    fn line_with(tag_value: &str, measurement: &str) -> String {
        let tags = BTreeMap::from([("t", tag_value)]);
        format!(
            "{}{} f=1i 1",
            escape_measurement(measurement),
            tag_set(&tags)
        )
    }

    proptest! {
        /// Whatever the text, the escaped line parses, and the tag value survives unless it
        /// carried what line protocol cannot encode (line breaks, a trailing backslash).
        #[test]
        fn escaped_tags_round_trip(value in "[^\\n\\r]{1,40}", measurement in "[a-zA-Z][ -~]{0,20}") {
            let line = line_with(&value, &measurement);
            let parsed: Vec<_> = parse_lines(&line).collect();
            prop_assert_eq!(parsed.len(), 1);
            let p = parsed.into_iter().next().unwrap();
            let p = match p { Ok(p) => p, Err(e) => return Err(TestCaseError::fail(format!("{line}: {e}"))) };
            let expected_value = sanitize(&value);
            if !expected_value.is_empty() {
                let tags = p.series.tag_set.as_ref().unwrap();
                prop_assert_eq!(tags[0].1.to_string(), expected_value);
            }
            prop_assert_eq!(p.series.measurement.to_string(), sanitize(&measurement));
            prop_assert!(matches!(p.field_set[0].1, FieldValue::I64(1)));
        }

        #[test]
        fn escaping_never_emits_a_line_break(s in "(?s).{0,40}") {
            prop_assert!(!escape_key(&s).contains('\n'));
            prop_assert!(!escape_measurement(&s).contains('\n'));
        }
    }
}

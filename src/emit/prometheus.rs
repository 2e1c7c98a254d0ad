//! Prometheus text exposition for node_exporter's textfile collector: HELP and TYPE lines, no
//! timestamps (the collector refuses them), names `<measurement>_<field>`.
//!
//! Every value is a gauge here: a window total can go down (a rolling window moves, a calendar
//! period starts over), and the textfile collector has no notion of a reset.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::fields::{self, Value};
use super::Report;
use crate::domain::InferType;

pub struct PromOptions<'a> {
    pub measurement: &'a str,
    pub tags: &'a BTreeMap<String, String>,
}

/// Label values: backslash, double quote and line feed are escaped.
pub fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn labels(pairs: &BTreeMap<&str, &str>) -> String {
    let inner = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect::<Vec<_>>()
        .join(",");
    format!("{{{inner}}}")
}

fn fmt_value(v: Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f}"),
    }
}

pub fn render(r: &Report<'_>, opts: &PromOptions<'_>) -> String {
    let mut out = String::new();
    for f in fields::FIELDS
        .iter()
        .chain(std::iter::once(&fields::WINDOW_FIELD))
    {
        let name = format!("{}_{}", opts.measurement, fields::prometheus_name(f.name));
        let mut samples = String::new();
        for s in &r.collected.series {
            let batch = s.key.infer_type == InferType::Batch;
            if f.batch_only && !batch {
                continue;
            }
            let l = fields::tag_map(
                opts.tags,
                fields::key_tags(s)
                    .into_iter()
                    .chain(fields::source_tags(r.project_id, r.region)),
            );
            let v = if f.name == fields::WINDOW_SECONDS {
                Value::Int(u64::try_from(s.window.len_ms() / 1000).unwrap_or(0))
            } else {
                fields::value(&s.usage, f)
            };
            let _ = writeln!(samples, "{name}{} {}", labels(&l), fmt_value(v));
        }
        if !samples.is_empty() {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(f.description));
            let _ = writeln!(out, "# TYPE {name} gauge");
            out.push_str(&samples);
        }
    }
    let l = fields::tag_map(opts.tags, fields::source_tags(r.project_id, r.region));
    for ((field, unit, description), v) in fields::COLLECTOR_FIELDS
        .iter()
        .zip(fields::collector_values(&r.stats))
    {
        let name = format!(
            "{}_collector_{}",
            opts.measurement,
            fields::prometheus_name(field)
        );
        // Base units: milliseconds become seconds.
        let value = if *unit == "ms" {
            format!("{}", v as f64 / 1000.0)
        } else {
            v.to_string()
        };
        let _ = writeln!(out, "# HELP {name} {}", escape_help(description));
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(out, "{name}{} {value}", labels(&l));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_escaping() {
        assert_eq!(super::escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

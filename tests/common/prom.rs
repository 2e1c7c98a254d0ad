//! The OpenTelemetry Collector's Prometheus translation (prometheus exporter, default settings,
//! `resource_to_telemetry_conversion` on), written from its documented rule, and a parser for
//! the text format: what lets the tests say the textfile, `serve` and translated OTLP agree.
#![allow(dead_code)]

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point, NumberDataPoint};

/// One sample: metric name, labels, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// An exposition: its samples and each metric's `# TYPE`.
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    pub types: BTreeMap<String, String>,
}

/// The collector's unit words (the part of its table this plugin's units touch).
fn unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "seconds",
        "ms" => "milliseconds",
        "By" => "bytes",
        "%" => "percent",
        "1" => return None,
        _ => return None,
    })
}

/// A metric's Prometheus name: the name split on every character that is not a letter or a
/// digit; the unit's word appended unless already there (annotations in braces and `1` add
/// none); `total` moved to the end of a monotonic Sum, `ratio` to the end of a Gauge of unit 1.
pub fn metric_name(name: &str, unit: &str, monotonic_sum: bool, gauge: bool) -> String {
    let mut tokens: Vec<String> = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let main = unit.split('/').next().unwrap_or("").trim();
    if !main.is_empty() && !main.contains(['{', '}']) {
        if let Some(w) = unit_word(main) {
            if !tokens.iter().any(|t| t == w) {
                tokens.push(w.to_string());
            }
        }
    }
    if monotonic_sum {
        tokens.retain(|t| t != "total");
        tokens.push("total".into());
    }
    if unit == "1" && gauge {
        tokens.retain(|t| t != "ratio");
        tokens.push("ratio".into());
    }
    tokens.join("_")
}

/// A label's name: every character outside `[A-Za-z0-9_]` becomes `_`.
pub fn label_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn string_value(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        other => panic!("{}: not a string: {other:?}", kv.key),
    }
}

fn number(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        Some(number_data_point::Value::AsDouble(d)) => d,
        None => panic!("a point without a value"),
    }
}

/// What the collector's Prometheus exporter would serve for `reqs` (the last point of each
/// series wins, as it keeps the latest), without its own `job`, `instance` and `target_info`.
pub fn translate(reqs: &[ExportMetricsServiceRequest]) -> Exposition {
    let mut out = Exposition::default();
    let mut latest: BTreeMap<(String, Vec<(String, String)>), f64> = BTreeMap::new();
    for req in reqs {
        for rm in &req.resource_metrics {
            let resource: Vec<(String, String)> = rm
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .map(|kv| (label_name(&kv.key), string_value(kv)))
                .collect();
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    let (points, monotonic_sum, gauge) = match m.data.as_ref() {
                        Some(Data::Gauge(g)) => (&g.data_points, false, true),
                        Some(Data::Sum(s)) => (&s.data_points, s.is_monotonic, false),
                        other => panic!("{}: unexpected {other:?}", m.name),
                    };
                    let name = metric_name(&m.name, &m.unit, monotonic_sum, gauge);
                    let kind = if monotonic_sum { "counter" } else { "gauge" };
                    if let Some(before) = out.types.insert(name.clone(), kind.into()) {
                        assert_eq!(before, kind, "{name}: two types");
                    }
                    for p in points {
                        let mut labels: BTreeMap<String, String> =
                            resource.iter().cloned().collect();
                        for kv in &p.attributes {
                            labels.insert(label_name(&kv.key), string_value(kv));
                        }
                        latest.insert((name.clone(), labels.into_iter().collect()), number(p));
                    }
                }
            }
        }
    }
    out.samples = latest
        .into_iter()
        .map(|((name, labels), value)| Sample {
            name,
            labels: labels.into_iter().collect(),
            value,
        })
        .collect();
    out
}

/// Parses the Prometheus text format (and OpenMetrics' `# EOF`): escaped label values, no
/// timestamps expected.
pub fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, rest) = match line.find('{') {
            Some(i) => (&line[..i], &line[i..]),
            None => line.split_at(line.find(' ').unwrap()),
        };
        let mut labels = BTreeMap::new();
        let mut chars = rest.chars().peekable();
        if rest.starts_with('{') {
            chars.next();
            loop {
                let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
                assert_eq!(chars.next(), Some('"'), "{line}");
                let mut value = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some('n') => value.push('\n'),
                            Some(c) => value.push(c),
                            None => panic!("{line}"),
                        },
                        '"' => break,
                        c => value.push(c),
                    }
                }
                labels.insert(key.trim_start_matches(',').to_string(), value);
                match chars.next() {
                    Some(',') if chars.peek() == Some(&'}') => {
                        chars.next();
                        break;
                    }
                    Some(',') => continue,
                    Some('}') => break,
                    other => panic!("{line}: {other:?}"),
                }
            }
        }
        let rest: String = chars.collect();
        let mut fields = rest.split_whitespace();
        let value: f64 = fields.next().unwrap().parse().unwrap();
        assert!(fields.next().is_none(), "no timestamps: {line}");
        out.samples.push(Sample {
            name: name.trim().to_string(),
            labels,
            value,
        });
    }
    out
}

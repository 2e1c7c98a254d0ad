//! The OpenTelemetry Collector's Prometheus translation (prometheus exporter, default settings:
//! `resource_to_telemetry_conversion` off), written from its source (otlptranslator's
//! `LabelNamer` as `configureLabelNamer` sets it up, the exporter's `getMetricMetadata` for the
//! data series and `createTargetInfoMetrics` for the resource) and from the
//! OpenTelemetry/Prometheus compatibility spec ("Resource Attributes"), and a parser for the
//! text format: what lets the tests say the textfile, `serve` and translated OTLP agree.
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

/// A label's name, as otlptranslator's `LabelNamer.Build` makes it with the collector's default
/// configuration (UTF-8 not allowed; the `pkg.translator.prometheus.PermissiveLabelSanitization`
/// gate off, so `PreserveMultipleUnderscores` off and `UnderscoreLabelSanitization` on): every
/// character outside `[A-Za-z0-9]` becomes `_` and a run of them a single `_`, except that a key
/// wrapped in `__` keeps that wrapper; then a leading digit gets `key_`, a leading single `_` gets
/// `key`. `Err` where `Build` fails (empty, or underscores only) or where client_golang refuses
/// the name (a reserved `__` prefix): the collector then drops the whole metric.
pub fn label_name(key: &str) -> Result<String, String> {
    if key.is_empty() {
        return Err("label name is empty".into());
    }
    let reserved = key.len() >= 4 && key.starts_with("__") && key.ends_with("__");
    let inner = if reserved {
        &key[2..key.len() - 2]
    } else {
        key
    };
    let mut out = String::new();
    if reserved {
        out.push_str("__");
    }
    let mut after_underscore = false;
    for c in inner.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            after_underscore = false;
        } else if !after_underscore {
            out.push('_');
            after_underscore = true;
        }
    }
    if reserved {
        out.push_str("__");
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') && !out.starts_with("__") {
        out.insert_str(0, "key");
    }
    if out.chars().all(|c| c == '_') {
        return Err(format!("{key:?} normalizes to {out:?}, underscores only"));
    }
    if out.starts_with("__") {
        return Err(format!("{key:?} normalizes to the reserved {out:?}"));
    }
    Ok(out)
}

/// The labels the collector adds to every series itself: the instrumentation scope
/// (`getMetricMetadata`, unless `without_scope_info`), and `job` and `instance` from
/// `service.namespace`/`service.name` and `service.instance.id`.
pub const COLLECTOR_OWN_LABELS: [&str; 5] = [
    "otel_scope_name",
    "otel_scope_version",
    "otel_scope_schema_url",
    "job",
    "instance",
];

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

/// Adds `name` to `labels`, or fails as the collector would on a duplicate label name.
fn put(labels: &mut BTreeMap<String, String>, name: String, value: String, metric: &str) {
    if let Some(before) = labels.insert(name.clone(), value) {
        panic!("{metric}: two values for label {name} (first {before:?}): the collector refuses the metric");
    }
}

/// `target_info` of one resource, as `createTargetInfoMetrics` makes it: `None` without a
/// `job` or an `instance` to name the target (`resourceSignature`) or when a key makes no valid
/// label (the exporter then fails the whole `target_info`); else every attribute but
/// `service.name`, `service.namespace` and `service.instance.id` as a label, the values of keys
/// that make one label joined with `;` in the resource's order, then `job` and `instance`
/// (replacing any attribute that made them).
fn target_info(
    resource: &[(String, String)],
    job: Option<&String>,
    instance: Option<&String>,
) -> Option<BTreeMap<String, String>> {
    let (job, instance) = (job?, instance?);
    if job.is_empty() || instance.is_empty() {
        return None;
    }
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in resource {
        if ["service.name", "service.namespace", "service.instance.id"].contains(&k.as_str()) {
            continue;
        }
        let label = label_name(k).ok()?;
        match labels.get_mut(&label) {
            Some(before) => *before = format!("{before};{v}"),
            None => {
                labels.insert(label, v.clone());
            }
        }
    }
    labels.insert("job".into(), job.clone());
    labels.insert("instance".into(), instance.clone());
    Some(labels)
}

/// What the collector's Prometheus exporter would serve for `reqs` (the last point of each
/// series wins, as it keeps the latest), without the labels it adds itself
/// (`COLLECTOR_OWN_LABELS`): the data series with their point attributes only, and one
/// `target_info` (gauge, value 1) per target.
pub fn translate(reqs: &[ExportMetricsServiceRequest]) -> Exposition {
    let mut out = Exposition::default();
    let mut latest: BTreeMap<(String, Vec<(String, String)>), f64> = BTreeMap::new();
    let mut keep = |name: &str, mut labels: BTreeMap<String, String>, value: f64| {
        // Stripped: the collector's own labels, which the textfile and `serve` do not carry
        // (a scrape of them gets job and instance from its target; they have no
        // instrumentation scope). The rest must be equal. `target_info` has no scope: an
        // `otel_scope_*` label there is a resource attribute's.
        let own = if name == "target_info" {
            &COLLECTOR_OWN_LABELS[3..]
        } else {
            &COLLECTOR_OWN_LABELS[..]
        };
        for k in own {
            labels.remove(*k);
        }
        assert!(
            name == "target_info" || !labels.keys().any(|k| k.starts_with("otel_scope_")),
            "{name}: a scope attribute: {labels:?}"
        );
        latest.insert((name.to_string(), labels.into_iter().collect()), value);
    };
    for req in reqs {
        for rm in &req.resource_metrics {
            let resource: Vec<(String, String)> = rm
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .map(|kv| (kv.key.clone(), string_value(kv)))
                .collect();
            let get = |k: &str| resource.iter().find(|(key, _)| key == k).map(|(_, v)| v);
            // extractJob / extractInstance.
            let job = get("service.name").map(|name| match get("service.namespace") {
                Some(ns) => format!("{ns}/{name}"),
                None => name.clone(),
            });
            let instance = get("service.instance.id").cloned();
            if let Some(labels) = target_info(&resource, job.as_ref(), instance.as_ref()) {
                if let Some(before) = out.types.insert("target_info".into(), "gauge".into()) {
                    assert_eq!(before, "gauge", "target_info: two types");
                }
                keep("target_info", labels, 1.0);
            }
            for sm in &rm.scope_metrics {
                let scope = sm.scope.clone().unwrap_or_default();
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
                        // The point's own attributes only: the resource is not copied onto
                        // it (resource_to_telemetry_conversion is off by default).
                        let mut labels = BTreeMap::new();
                        for kv in &p.attributes {
                            let label = label_name(&kv.key)
                                .unwrap_or_else(|e| panic!("{name}: {e}: the collector drops it"));
                            put(&mut labels, label, string_value(kv), &name);
                        }
                        for kv in &scope.attributes {
                            let label = label_name(&format!("otel_scope_{}", kv.key))
                                .unwrap_or_else(|e| panic!("{name}: {e}"));
                            put(&mut labels, label, string_value(kv), &name);
                        }
                        // getMetricMetadata: the scope, then job and instance.
                        for (k, v) in [
                            ("otel_scope_name", Some(scope.name.clone())),
                            ("otel_scope_version", Some(scope.version.clone())),
                            ("otel_scope_schema_url", Some(sm.schema_url.clone())),
                            ("job", job.clone()),
                            ("instance", instance.clone()),
                        ] {
                            if let Some(v) = v {
                                put(&mut labels, k.to_string(), v, &name);
                            }
                        }
                        keep(&name, labels, number(p));
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

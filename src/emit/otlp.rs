//! OTLP metrics: the collected series as an `ExportMetricsServiceRequest`.
//!
//! One identity per metric name (`domain::names`): window totals are Gauges (`maas.usage.*`),
//! period buckets are monotonic Sums (`maas.usage.period.*`), cumulative by default (each point
//! counts from the series' first bucket, so a resend is harmless) or delta when
//! `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` asks for it. Every point carries the
//! window's (or counter's) start and the window's end, which is why this is built from the
//! proto types and not through the SDK, whose exporter stamps points with its own times.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::fields::{self, CollectorField, Field, Value, COLLECTOR_FIELDS, EXPORT_REJECTED};
use super::{Report, ResourceEnv, SCOPE, VERSION};
use crate::collect::{CloudEyeSeries, Figure, StatisticsSeries as Series};
use crate::domain::cloud_eye::METRICS;
use crate::domain::{InferType, Shape};

/// How period buckets are summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Temporality {
    /// From the series' first bucket (the SDKs' default; what Prometheus wants).
    #[default]
    Cumulative,
    /// Each bucket on its own.
    Delta,
}

pub struct OtlpOptions<'a> {
    /// Static tags from the spec, as data point attributes.
    pub tags: &'a BTreeMap<String, String>,
    pub resource: &'a ResourceEnv,
    pub temporality: Temporality,
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn kv_str(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.to_string()))
}

fn resource(r: &Report<'_>, env: &ResourceEnv) -> Resource {
    Resource {
        attributes: r.resource(env).iter().map(|(k, v)| kv_str(k, v)).collect(),
        ..Default::default()
    }
}

fn ns(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

fn number(v: Value) -> number_data_point::Value {
    match v {
        // Counts are far below 2^63; saturate rather than wrap if one ever is not.
        Value::Int(i) => number_data_point::Value::AsInt(i64::try_from(i).unwrap_or(i64::MAX)),
        Value::Float(f) => number_data_point::Value::AsDouble(f),
    }
}

/// A data point's attributes: its key's tags as `maas.*`, its source (`huaweicloud.project.id`,
/// `cloud.region`: on the resource too, but on the point so that a Prometheus series keeps them
/// with the collector's default settings), the spec's static tags.
fn attributes<'a>(
    key: impl IntoIterator<Item = (&'static str, &'a str)>,
    r: &Report<'_>,
    tags: &BTreeMap<String, String>,
) -> Vec<KeyValue> {
    let source = r.source_tags();
    let mut attributes: Vec<KeyValue> = key
        .into_iter()
        .map(|(k, v)| kv_str(&fields::otlp_attribute(k), v))
        .chain(
            source
                .into_iter()
                .map(|(k, v)| kv_str(&fields::otlp_attribute(k), v)),
        )
        .collect();
    attributes.extend(tags.iter().map(|(k, v)| kv_str(k, v)));
    attributes
}

fn series_attributes(s: &Series, r: &Report<'_>, tags: &BTreeMap<String, String>) -> Vec<KeyValue> {
    attributes(fields::key_tags(s), r, tags)
}

fn point(attributes: Vec<KeyValue>, start_ms: i64, end_ms: i64, v: Value) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: ns(start_ms),
        time_unix_nano: ns(end_ms),
        value: Some(number(v)),
        ..Default::default()
    }
}

fn gauge(name: &str, unit: &str, description: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

fn counter(
    name: &str,
    unit: &str,
    description: &str,
    temporality: Temporality,
    points: Vec<NumberDataPoint>,
) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: match temporality {
                Temporality::Cumulative => AggregationTemporality::Cumulative as i32,
                Temporality::Delta => AggregationTemporality::Delta as i32,
            },
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn carries(s: &Series, f: &Field) -> bool {
    !f.batch_only || s.key.infer_type == InferType::Batch
}

/// The data: window totals as Gauges, period buckets as monotonic Sums, points in series (and
/// so in time) order.
pub fn data_metrics(r: &Report<'_>, opts: &OtlpOptions<'_>) -> Vec<Metric> {
    let series: Vec<&Series> = r.collection.statistics().collect();
    let is_bucket = |s: &Series| s.window.shape == Shape::Bucket;
    let mut out = Vec::new();
    for f in fields::FIELDS.iter().chain([&fields::WINDOW_FIELD]) {
        let points: Vec<NumberDataPoint> = series
            .iter()
            .copied()
            .filter(|s| !is_bucket(s) && carries(s, f))
            .map(|s| {
                let v = if f.name == fields::WINDOW_SECONDS {
                    Value::Int(u64::try_from(s.window.len_ms() / 1000).unwrap_or(0))
                } else {
                    fields::value(&s.usage, f)
                };
                point(
                    series_attributes(s, r, opts.tags),
                    s.window.start_ms,
                    s.window.end_ms,
                    v,
                )
            })
            .collect();
        if !points.is_empty() {
            out.push(gauge(f.otlp, f.unit, f.description, points));
        }
        let Some(name) = f.otlp_period else {
            continue;
        };
        let points: Vec<NumberDataPoint> = series
            .iter()
            .copied()
            .filter(|s| is_bucket(s) && carries(s, f))
            .map(|s| {
                let attrs = series_attributes(s, r, opts.tags);
                match (opts.temporality, s.running.as_ref()) {
                    (Temporality::Cumulative, Some(total)) => point(
                        attrs,
                        total.start_ms,
                        s.window.end_ms,
                        fields::value(&total.usage, f),
                    ),
                    _ => point(
                        attrs,
                        s.window.start_ms,
                        s.window.end_ms,
                        fields::value(&s.usage, f),
                    ),
                }
            })
            .collect();
        if !points.is_empty() {
            out.push(counter(
                name,
                f.unit,
                f.description,
                opts.temporality,
                points,
            ));
        }
    }
    out.extend(cloud_eye_metrics(r, opts));
    out
}

fn cloud_eye_attributes(
    s: &CloudEyeSeries,
    r: &Report<'_>,
    tags: &BTreeMap<String, String>,
) -> Vec<KeyValue> {
    attributes(fields::cloud_eye_tags(s), r, tags)
}

/// The Cloud Eye series: every figure of a window, and the latency of a bucket, as Gauges
/// (`maas.model.*`, latency in seconds); the counts of period buckets as monotonic Sums
/// (`maas.model.period.*`).
fn cloud_eye_metrics(r: &Report<'_>, opts: &OtlpOptions<'_>) -> Vec<Metric> {
    let series: Vec<&CloudEyeSeries> = r.collection.cloud_eye().collect();
    let mut out = Vec::new();
    for m in METRICS {
        let mut gauges = Vec::new();
        let mut sums = Vec::new();
        for s in &series {
            let Some(f) = s.figure(m.ces) else {
                continue;
            };
            let attrs = cloud_eye_attributes(s, r, opts.tags);
            let (start, end) = (s.window.start_ms, s.window.end_ms);
            match f {
                Figure::Millis(ms) => {
                    gauges.push(point(attrs, start, end, Value::Float(ms / 1000.0)))
                }
                Figure::Count(c) if s.window.shape != Shape::Bucket => {
                    gauges.push(point(attrs, start, end, Value::Int(c)))
                }
                Figure::Count(c) => sums.push(match (opts.temporality, s.running.as_ref()) {
                    (Temporality::Cumulative, Some(t)) => point(
                        attrs,
                        t.start_ms,
                        end,
                        Value::Int(t.counts.get(m.ces).copied().unwrap_or(c)),
                    ),
                    _ => point(attrs, start, end, Value::Int(c)),
                }),
            }
        }
        if !gauges.is_empty() {
            out.push(gauge(m.otlp_name(), m.unit, m.description, gauges));
        }
        if let (Some(name), false) = (m.otlp_period_name(), sums.is_empty()) {
            out.push(counter(name, m.unit, m.description, opts.temporality, sums));
        }
    }
    out.extend(cost_metrics(&series, r, opts));
    out.extend(budget_metrics(r, opts));
    out
}

/// `maas_budget` as Gauges (`maas.budget.*`) at the collection's now.
fn budget_metrics(r: &Report<'_>, opts: &OtlpOptions<'_>) -> Vec<Metric> {
    let t = r.now.timestamp_millis();
    fields::BUDGET
        .fields
        .iter()
        .filter_map(|f| {
            let points: Vec<NumberDataPoint> = r
                .collection
                .budgets
                .iter()
                .filter_map(|p| {
                    let (_, v) = fields::budget_values(p).find(|(g, _)| g.name == f.name)?;
                    let value = match f.int {
                        true => Value::Int(u64::try_from(v.parse::<i64>().ok()?).ok()?),
                        false => Value::Float(v.parse().ok()?),
                    };
                    let own = p.tags();
                    let attrs = attributes(own.iter().map(|(k, v)| (*k, v.as_str())), r, opts.tags);
                    Some(point(attrs, t, t, value))
                })
                .collect();
            (!points.is_empty()).then(|| gauge(f.otlp, f.unit, f.description, points))
        })
        .collect()
}

/// `maas_model_cost` of the priced series: a window's as Gauges (`maas.model.cost`...), a
/// bucket's as monotonic Sums (`maas.model.period.cost`...), with `maas.currency`.
fn cost_metrics(series: &[&CloudEyeSeries], r: &Report<'_>, opts: &OtlpOptions<'_>) -> Vec<Metric> {
    let mut out = Vec::new();
    for (i, f) in fields::COST.fields.iter().enumerate() {
        let mut gauges = Vec::new();
        let mut sums = Vec::new();
        for s in series {
            let Some(c) = &s.cost else {
                continue;
            };
            let mut attrs = cloud_eye_attributes(s, r, opts.tags);
            if let Some(t) = fields::COST.tag(fields::CURRENCY_TAG) {
                attrs.push(kv_str(t.otlp, &c.currency.to_string()));
            }
            let (start, end) = (s.window.start_ms, s.window.end_ms);
            let Some((_, v)) = fields::cost_values(c).nth(i) else {
                continue;
            };
            if s.window.shape != Shape::Bucket {
                gauges.push(point(attrs, start, end, Value::Float(v.to_f64())));
                continue;
            }
            let running = s
                .running
                .as_ref()
                .and_then(|t| Some((t.start_ms, t.cost.clone()?.1)));
            sums.push(match (opts.temporality, running) {
                (Temporality::Cumulative, Some((from, parts))) => {
                    let total = fields::cost_field(f, parts);
                    point(attrs, from, end, Value::Float(total.to_f64()))
                }
                _ => point(attrs, start, end, Value::Float(v.to_f64())),
            });
        }
        if !gauges.is_empty() {
            out.push(gauge(f.otlp, f.unit, f.description, gauges));
        }
        if let (Some(name), false) = (f.otlp_period, sums.is_empty()) {
            out.push(counter(name, f.unit, f.description, opts.temporality, sums));
        }
    }
    out
}

/// The collection's self-metrics: Gauges at the run's now; with `rejected`, the points the
/// collector rejected from the data export.
pub fn collector_metrics(
    r: &Report<'_>,
    opts: &OtlpOptions<'_>,
    rejected: Option<i64>,
) -> Vec<Metric> {
    let t = r.now.timestamp_millis();
    let static_attrs = || -> Vec<KeyValue> {
        let cloud = r
            .cloud
            .map(|c| kv_str(&fields::otlp_attribute(fields::CLOUD_TAG), c));
        opts.tags
            .iter()
            .map(|(k, v)| kv_str(k, v))
            .chain(cloud)
            .collect()
    };
    let mut by_name: Vec<(&CollectorField, Vec<NumberDataPoint>)> = Vec::new();
    for (f, v) in COLLECTOR_FIELDS
        .iter()
        .zip(fields::collector_values(&r.stats))
    {
        let mut attrs = static_attrs();
        if let Some(outcome) = f.outcome {
            attrs.push(kv_str(fields::OUTCOME_ATTRIBUTE, outcome));
        }
        let value = match fields::in_seconds(f, v) {
            Some(s) => Value::Float(s),
            None => Value::Int(v),
        };
        let p = point(attrs, t, t, value);
        match by_name.iter_mut().find(|(g, _)| g.otlp == f.otlp) {
            Some((_, points)) => points.push(p),
            None => by_name.push((f, vec![p])),
        }
    }
    if let Some(n) = rejected {
        let v = Value::Int(u64::try_from(n).unwrap_or(0));
        by_name.push((&EXPORT_REJECTED, vec![point(static_attrs(), t, t, v)]));
    }
    by_name
        .into_iter()
        .map(|(f, points)| gauge(f.otlp, f.otlp_unit, f.description, points))
        .collect()
}

/// Wraps metrics in a request with this run's resource and scope.
pub fn request(
    r: &Report<'_>,
    opts: &OtlpOptions<'_>,
    metrics: Vec<Metric>,
) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(r, opts.resource)),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE.into(),
                    version: VERSION.into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Data and self-metrics in one request (OTLP/JSON files, which no receiver answers; a push
/// sends the self-metrics after the data, with what the collector said of it).
pub fn build(r: &Report<'_>, opts: &OtlpOptions<'_>) -> ExportMetricsServiceRequest {
    let mut metrics = data_metrics(r, opts);
    metrics.extend(collector_metrics(r, opts, None));
    request(r, opts, metrics)
}

/// The metrics of several clouds' reports as one list: the points of a metric every report
/// has are the points of one metric (its first report's, in order), as a collector would
/// merge them.
pub fn merge(each: impl IntoIterator<Item = Vec<Metric>>) -> Vec<Metric> {
    let mut out: Vec<Metric> = Vec::new();
    for m in each.into_iter().flatten() {
        let Some(into) = out.iter_mut().find(|o| o.name == m.name) else {
            out.push(m);
            continue;
        };
        match (&mut into.data, m.data) {
            (Some(metric::Data::Gauge(a)), Some(metric::Data::Gauge(b))) => {
                a.data_points.extend(b.data_points)
            }
            (Some(metric::Data::Sum(a)), Some(metric::Data::Sum(b))) => {
                a.data_points.extend(b.data_points)
            }
            // One name, one type (`domain::names`): never met.
            _ => {}
        }
    }
    out
}

/// [`build`] for the reports of several clouds: one request, their metrics merged.
pub fn build_all(reports: &[Report<'_>], opts: &OtlpOptions<'_>) -> ExportMetricsServiceRequest {
    let data = merge(reports.iter().map(|r| data_metrics(r, opts)));
    let own = merge(reports.iter().map(|r| collector_metrics(r, opts, None)));
    request_all(reports, opts, data.into_iter().chain(own).collect())
}

/// [`request`] for the reports of several clouds, which share one resource.
pub fn request_all(
    reports: &[Report<'_>],
    opts: &OtlpOptions<'_>,
    metrics: Vec<Metric>,
) -> ExportMetricsServiceRequest {
    match reports.first() {
        Some(r) => request(r, opts, metrics),
        None => ExportMetricsServiceRequest::default(),
    }
}

/// OTLP/JSON, one request per line (what the collector's `otlpjsonfile` receiver reads).
pub fn to_json_line(req: &ExportMetricsServiceRequest) -> String {
    let mut s = serde_json::to_string(req).unwrap_or_default();
    s.push('\n');
    s
}

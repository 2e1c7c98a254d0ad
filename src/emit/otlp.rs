//! OTLP metrics: the collected series as one `ExportMetricsServiceRequest`.
//!
//! One rule for names: `maas.usage.` + the line-protocol field name. A window with a fixed
//! start whose end is now (`today`, `this_month`, an open `from`) is a cumulative, monotonic Sum:
//! a counter that resets at the period boundary. Rolling and closed windows are Gauges. The
//! ratio is always a Gauge. Every point carries start = window start and time = window end,
//! which is why this is built from the proto types and not through the SDK, whose exporter
//! stamps points with its own collection times.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::fields::{self, Kind, Value};
use super::Report;
use crate::collect::Series;
use crate::domain::InferType;
use crate::domain::Shape;
use crate::text::parse_kv_list;

pub const SCOPE: &str = "maas-usage";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How the points of a series are typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PointKind {
    Gauge,
    /// Counts since a fixed start (resets at the period boundary).
    CumulativeSum,
    /// Counts of exactly `[start, time)` (period mode's settled buckets).
    DeltaSum,
}

/// The kind a window shape calls for.
pub fn kind_for(shape: Shape) -> PointKind {
    match shape {
        Shape::Anchored => PointKind::CumulativeSum,
        Shape::Bucket => PointKind::DeltaSum,
        Shape::Rolling | Shape::Closed => PointKind::Gauge,
    }
}

/// Resource attributes from the environment, as the SDKs read them.
#[derive(Clone, Debug, Default)]
pub struct ResourceEnv {
    /// `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k2=v2`, values percent-encoded).
    pub attributes: Option<String>,
    /// `OTEL_SERVICE_NAME`, which wins over `service.name` in the attributes.
    pub service_name: Option<String>,
}

impl ResourceEnv {
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Self {
        ResourceEnv {
            attributes: env("OTEL_RESOURCE_ATTRIBUTES"),
            service_name: env("OTEL_SERVICE_NAME"),
        }
    }
}

pub struct OtlpOptions<'a> {
    /// Static tags from the spec, as data point attributes.
    pub tags: &'a BTreeMap<String, String>,
    pub resource: &'a ResourceEnv,
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
    let mut attrs: BTreeMap<String, String> = BTreeMap::new();
    attrs.insert("service.name".into(), SCOPE.into());
    for (k, v) in env
        .attributes
        .as_deref()
        .map(parse_kv_list)
        .unwrap_or_default()
    {
        attrs.insert(k, v);
    }
    if let Some(name) = env.service_name.as_deref().filter(|s| !s.is_empty()) {
        attrs.insert("service.name".into(), name.into());
    }
    // Facts of this run win over whatever the environment claims.
    attrs.insert("service.version".into(), VERSION.into());
    attrs.insert("cloud.provider".into(), "huawei_cloud".into());
    attrs.insert("cloud.region".into(), r.region.into());
    attrs.insert("huaweicloud.project.id".into(), r.project_id.into());
    Resource {
        attributes: attrs.iter().map(|(k, v)| kv_str(k, v)).collect(),
        ..Default::default()
    }
}

fn ns(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

fn point(s: &Series, tags: &BTreeMap<String, String>, v: Value) -> NumberDataPoint {
    let mut attributes: Vec<KeyValue> = fields::key_tags(s)
        .iter()
        .map(|(k, v)| kv_str(&fields::otlp_attribute(k), v))
        .collect();
    attributes.extend(tags.iter().map(|(k, v)| kv_str(k, v)));
    NumberDataPoint {
        attributes,
        start_time_unix_nano: ns(s.window.start_ms),
        time_unix_nano: ns(s.window.end_ms),
        value: Some(match v {
            // Counts are far below 2^63; saturate rather than wrap if one ever is not.
            Value::Int(i) => number_data_point::Value::AsInt(i64::try_from(i).unwrap_or(i64::MAX)),
            Value::Float(f) => number_data_point::Value::AsDouble(f),
        }),
        ..Default::default()
    }
}

fn metric(
    name: String,
    unit: &str,
    description: &str,
    kind: PointKind,
    points: Vec<NumberDataPoint>,
) -> Metric {
    let data = match kind {
        PointKind::Gauge => metric::Data::Gauge(Gauge {
            data_points: points,
        }),
        PointKind::CumulativeSum | PointKind::DeltaSum => metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: if kind == PointKind::DeltaSum {
                AggregationTemporality::Delta as i32
            } else {
                AggregationTemporality::Cumulative as i32
            },
            is_monotonic: true,
        }),
    };
    Metric {
        name,
        description: description.into(),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

/// The series' metrics, grouped by name and kind (a name may appear once as a Gauge and once
/// as a Sum when the spec mixes rolling and anchored windows), points in series order.
pub fn series_metrics(
    series: &[(&Series, PointKind)],
    tags: &BTreeMap<String, String>,
) -> Vec<Metric> {
    let mut out = Vec::new();
    for f in fields::FIELDS {
        let mut by_kind: BTreeMap<PointKind, Vec<NumberDataPoint>> = BTreeMap::new();
        for (s, kind) in series {
            let batch = s.key.infer_type == InferType::Batch;
            if f.batch_only && !batch {
                continue;
            }
            let kind = if f.kind == Kind::Ratio {
                PointKind::Gauge
            } else {
                *kind
            };
            by_kind
                .entry(kind)
                .or_default()
                .push(point(s, tags, fields::value(&s.usage, f)));
        }
        for (kind, points) in by_kind {
            out.push(metric(
                fields::otlp_name(f.name),
                f.unit,
                f.description,
                kind,
                points,
            ));
        }
    }
    out
}

fn collector_metrics(r: &Report<'_>, tags: &BTreeMap<String, String>) -> Vec<Metric> {
    let t = ns(r.now.timestamp_millis());
    fields::COLLECTOR_FIELDS
        .iter()
        .zip(fields::collector_values(&r.stats))
        .map(|((name, unit, description), v)| {
            let p = NumberDataPoint {
                attributes: tags.iter().map(|(k, v)| kv_str(k, v)).collect(),
                start_time_unix_nano: t,
                time_unix_nano: t,
                value: Some(number_data_point::Value::AsInt(
                    i64::try_from(v).unwrap_or(i64::MAX),
                )),
                ..Default::default()
            };
            metric(
                fields::otlp_collector_name(name),
                unit,
                description,
                PointKind::Gauge,
                vec![p],
            )
        })
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

/// The request for a rolling-totals run: every series, typed by its window, plus the collector.
pub fn build(r: &Report<'_>, opts: &OtlpOptions<'_>) -> ExportMetricsServiceRequest {
    let series: Vec<(&Series, PointKind)> = r
        .collected
        .series
        .iter()
        .map(|s| (s, kind_for(s.window.shape)))
        .collect();
    let mut metrics = series_metrics(&series, opts.tags);
    metrics.extend(collector_metrics(r, opts.tags));
    request(r, opts, metrics)
}

/// OTLP/JSON, one request per line (what the collector's `otlpjsonfile` receiver reads).
pub fn to_json_line(req: &ExportMetricsServiceRequest) -> String {
    let mut s = serde_json::to_string(req).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_lists_parse_like_the_sdks() {
        assert_eq!(
            parse_kv_list("a=1, b = x%20y ,broken,=v,c="),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "".into())
            ]
        );
    }
}

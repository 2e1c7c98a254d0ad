//! Throughput of the hot pure code: signing a call, and encoding a run's series in each format.
//! `cargo bench` runs it; the numbers are in BENCHMARKS.md.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use maas_usage::cloud::sign::{self, SignInput};
use maas_usage::collect::{Collection, RunStats, Series, StatisticsSeries};
use maas_usage::domain::range::DAY_MS;
use maas_usage::domain::SeriesKey;
use maas_usage::domain::StatsRequest;
use maas_usage::domain::{InferType, ServiceType, Usage};
use maas_usage::domain::{Shape, Window};
use maas_usage::emit::influx::InfluxOptions;
use maas_usage::emit::otlp::{OtlpOptions, Temporality};
use maas_usage::emit::prometheus::PromOptions;
use maas_usage::emit::{Origin, Report, ResourceEnv};
use maas_usage::time::period::Totals;
use maas_usage::time::zone::Zone;
use prost::Message;

fn main() {
    divan::main();
}

#[divan::bench]
fn sign_show_statistics(bencher: divan::Bencher) {
    let body = StatsRequest::new(
        ServiceType::Preset,
        InferType::RealTime,
        1_778_724_000_000,
        1_779_328_800_000,
    )
    .to_bytes();
    let headers = vec![
        (
            "Host".to_string(),
            "modelarts.cn-southwest-2.myhuaweicloud.com".to_string(),
        ),
        ("X-Sdk-Date".to_string(), "20261122T125421Z".to_string()),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    bencher.bench(|| {
        let input = SignInput {
            method: "POST",
            path: "/v1/0123456789abcdef0123456789abcdef/maas/monitoring/show-statistics",
            query: &[],
            headers: &headers,
            body: divan::black_box(&body),
        };
        sign::authorization(&input, "20261122T125421Z", "AKEXAMPLE", b"SKEXAMPLE")
    });
}

fn series(n: usize) -> Vec<Series> {
    let end = 1_779_328_800_000;
    (0..n)
        .map(|i| {
            Series::Statistics(StatisticsSeries {
                key: SeriesKey {
                    query: format!("query-{}", i / 3),
                    service_type: ServiceType::ALL[i % 3],
                    infer_type: if i % 5 == 0 {
                        InferType::Batch
                    } else {
                        InferType::RealTime
                    },
                    key_group: format!("team-{}", i % 7),
                },
                window: Window {
                    start_ms: end - 7 * DAY_MS,
                    end_ms: end,
                    shape: if i % 2 == 0 {
                        Shape::Rolling
                    } else {
                        Shape::Anchored
                    },
                },
                usage: Usage {
                    total_tokens: 2_482_084_980 + i as u64,
                    prompt_tokens: 2_456_500_000,
                    completion_tokens: 24_870_000,
                    requests: 67_188,
                    errors: 8_002,
                    completed_tasks: 17,
                    infer_count: 67_188,
                },
                segments: Vec::new(),
                checkpoint: None,
                running: None,
            })
        })
        .collect()
}

const N: usize = 120;

fn with_report<R>(f: impl FnOnce(&Report<'_>) -> R) -> R {
    let collection = Collection {
        series: series(N),
        ..Collection::default()
    };
    let zone = Zone::utc();
    let origin = Origin::default();
    let totals = Totals::default();
    let report = Report {
        cloud: None,
        collection: &collection,
        stats: RunStats::default(),
        region: "cn-southwest-2",
        project_id: "0123456789abcdef0123456789abcdef",
        zone: &zone,
        now: Utc.timestamp_millis_opt(1_779_328_800_000).unwrap(),
        origin: &origin,
        totals: &totals,
    };
    f(&report)
}

#[divan::bench]
fn influx_120_series(bencher: divan::Bencher) {
    let tags = BTreeMap::from([("env".to_string(), "prod".to_string())]);
    with_report(|r| {
        bencher.bench(|| {
            maas_usage::emit::influx::render(
                r,
                &InfluxOptions {
                    measurement: "maas_usage",
                    tags: &tags,
                },
            )
        })
    });
}

#[divan::bench]
fn otlp_protobuf_120_series(bencher: divan::Bencher) {
    let tags = BTreeMap::from([("env".to_string(), "prod".to_string())]);
    let resource = ResourceEnv::default();
    with_report(|r| {
        bencher.bench(|| {
            maas_usage::emit::otlp::build(
                r,
                &OtlpOptions {
                    tags: &tags,
                    resource: &resource,
                    temporality: Temporality::Cumulative,
                },
            )
            .encode_to_vec()
        })
    });
}

#[divan::bench]
fn otlp_json_120_series(bencher: divan::Bencher) {
    let tags = BTreeMap::from([("env".to_string(), "prod".to_string())]);
    let resource = ResourceEnv::default();
    with_report(|r| {
        bencher.bench(|| {
            maas_usage::emit::otlp::to_json_line(&maas_usage::emit::otlp::build(
                r,
                &OtlpOptions {
                    tags: &tags,
                    resource: &resource,
                    temporality: Temporality::Cumulative,
                },
            ))
        })
    });
}

#[divan::bench]
fn prometheus_120_series(bencher: divan::Bencher) {
    let tags = BTreeMap::from([("env".to_string(), "prod".to_string())]);
    let resource = ResourceEnv::default();
    with_report(|r| {
        bencher.bench(|| {
            maas_usage::emit::prometheus::render(
                r,
                &PromOptions {
                    tags: &tags,
                    resource: &resource,
                    openmetrics: false,
                },
            )
        })
    });
}

#[divan::bench]
fn parse_statistics_answer() -> maas_usage::domain::Usage {
    let body = r#"{"total_request_count":67188,"total_error_count":8002,"total_token":2482084.98,"total_prompt_token":2456500.123,"total_completion_token":24870.5}"#;
    maas_usage::cloud::api::parse_statistics(divan::black_box(body), false).unwrap_or_default()
}

/// A Cloud Eye batch of 500 objects (25 series of two dimensions x 20 metrics), as a run at
/// 100 x 20 makes them.
fn cloud_eye_request() -> maas_usage::domain::cloud_eye::BatchRequest {
    use maas_usage::domain::cloud_eye::{Aggregate, BatchRequest, Dims, METRICS};
    let metrics: Vec<_> = METRICS
        .iter()
        .filter(|m| m.aggregate == Aggregate::Sum)
        .collect();
    let mut objects = Vec::new();
    for s in 0..500 / metrics.len().max(1) {
        for m in &metrics {
            let dims = Dims {
                model_id: format!("{:032x}", s / 20),
                key_id: Some(format!("{:016x}", s)),
            };
            objects.push((*m, dims));
        }
    }
    BatchRequest {
        metrics: objects,
        from_ms: 1_779_242_400_000,
        to_ms: 1_779_328_800_000,
        period_s: 3600,
        aggregate: Aggregate::Sum,
    }
}

#[divan::bench]
fn encode_cloud_eye_batch_request(bencher: divan::Bencher) {
    let req = cloud_eye_request();
    bencher.bench(|| divan::black_box(&req).to_bytes().len());
}

/// The answer to [`cloud_eye_request`]: 24 hourly datapoints per object.
#[divan::bench]
fn parse_cloud_eye_batch_answer(bencher: divan::Bencher) {
    let req = cloud_eye_request();
    let mut body = String::from(r#"{"metrics":["#);
    for (i, (m, d)) in req.metrics.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"namespace":"SYS.MaaS","metric_name":"{}","unit":"count","dimensions":[{{"name":"maas_api_id","value":"{}"}},{{"name":"maas_key_id","value":"{}"}}],"datapoints":["#,
            m.ces,
            d.model_id,
            d.key_id.as_deref().unwrap_or_default()
        ));
        for h in 0..24i64 {
            if h > 0 {
                body.push(',');
            }
            body.push_str(&format!(
                r#"{{"timestamp":{},"sum":{}}}"#,
                req.from_ms + h * 3_600_000,
                (h * 7919 + i as i64) % 100_000
            ));
        }
        body.push_str("]}");
    }
    body.push_str("]}");
    bencher
        .counter(divan::counter::BytesCount::new(body.len()))
        .bench(|| {
            maas_usage::cloud::cloud_eye::parse_batch(divan::black_box(&body), "sum")
                .map(|a| a.series.len())
                .unwrap_or_default()
        });
}

//! OTLP push (HTTP protobuf/JSON, gRPC), OTLP/JSON lines, Prometheus textfile and JSON output
//! of `run`, checked against in-process receivers and the simulator's exact totals.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[cfg(feature = "grpc")]
use common::otlp::grpc::GrpcReceiver;
use common::otlp::{Answer, HttpReceiver};
use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, NumberDataPoint,
};

/// The example spec with `output.format: otlp` and an otlp block pointing at `endpoint`.
fn otlp_spec(sim: &maas_usage::sim::Simulator, otlp_block: &str) -> String {
    example_spec_for(sim).replace(
        "  format: influx          # influx (Telegraf) | otlp | otlp-json | prometheus | table | json\n",
        &format!("  format: otlp\n  otlp:\n{otlp_block}"),
    )
}

fn attr<'a>(p: &'a NumberDataPoint, key: &str) -> Option<&'a str> {
    p.attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

fn int(p: &NumberDataPoint) -> i64 {
    match p.value {
        Some(number_data_point::Value::AsInt(i)) => i,
        other => panic!("expected an integer point, got {other:?}"),
    }
}

fn ns(rfc3339: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap() as u64
}

/// Checks a request against the simulator's exact values for the example spec.
fn check_request(
    req: &ExportMetricsServiceRequest,
    sim: &maas_usage::sim::Simulator,
    spec_text: &str,
    service_name: &str,
) {
    let rm = &req.resource_metrics[0];
    let res: BTreeMap<&str, String> = rm
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| {
            (
                kv.key.as_str(),
                format!("{:?}", kv.value.as_ref().unwrap().value.as_ref().unwrap()),
            )
        })
        .collect();
    assert!(res["service.name"].contains(service_name), "{res:?}");
    assert!(res["cloud.provider"].contains("huawei_cloud"));
    assert!(res["cloud.region"].contains("cn-southwest-2"));
    assert!(res["huaweicloud.project.id"].contains(PROJECT));
    assert!(res.contains_key("service.version"));
    let scope = &rm.scope_metrics[0];
    assert_eq!(scope.scope.as_ref().unwrap().name, "maas-usage");
    assert_eq!(
        scope.scope.as_ref().unwrap().version,
        env!("CARGO_PKG_VERSION")
    );

    let expected = expected_series(sim, spec_text);
    let metrics = &scope.metrics;
    for name in [
        "total_tokens",
        "prompt_tokens",
        "completion_tokens",
        "requests",
        "errors",
        "infer_count",
        "completed_tasks",
    ] {
        let full = format!("maas.usage.{name}");
        let unit = match name {
            "requests" => "{request}",
            "errors" => "{error}",
            "infer_count" => "{inference}",
            "completed_tasks" => "{task}",
            _ => "{token}",
        };
        let mut seen = 0;
        for m in metrics.iter().filter(|m| m.name == full) {
            assert_eq!(m.unit, unit, "{full}");
            assert!(!m.description.is_empty());
            let (points, is_sum) = match m.data.as_ref().unwrap() {
                Data::Gauge(g) => (&g.data_points, false),
                Data::Sum(s) => {
                    assert_eq!(
                        s.aggregation_temporality,
                        AggregationTemporality::Cumulative as i32
                    );
                    assert!(s.is_monotonic);
                    (&s.data_points, true)
                }
                other => panic!("{full}: unexpected {other:?}"),
            };
            for p in points {
                let q = attr(p, "maas.query").unwrap();
                let (key, usage) = expected
                    .iter()
                    .find(|(k, _)| {
                        k.query == q
                            && Some(k.service_type.name()) == attr(p, "maas.service_type")
                            && Some(k.key_group.as_str()) == attr(p, "maas.key_group")
                            && Some(k.infer_type.name()) == attr(p, "maas.infer_type")
                    })
                    .unwrap_or_else(|| panic!("unexpected point {p:?}"));
                assert_eq!(attr(p, "env"), Some("demo"));
                let anchored = matches!(q, "all-today" | "preset-today" | "batch-month");
                assert_eq!(is_sum, anchored, "{q}: Sum exactly for anchored windows");
                let v = match name {
                    "total_tokens" => usage.total_tokens,
                    "prompt_tokens" => usage.prompt_tokens,
                    "completion_tokens" => usage.completion_tokens,
                    "requests" => usage.requests,
                    "errors" => usage.errors,
                    "infer_count" => usage.infer_count,
                    _ => usage.completed_tasks,
                };
                assert_eq!(int(p), v as i64, "{full} {key}");
                let end = if q == "preset-yesterday" {
                    ns("2026-05-21T00:00:00+08:00")
                } else {
                    ns(NOW)
                };
                assert_eq!(p.time_unix_nano, end, "{q}");
                let start = match q {
                    "preset-7d" => ns("2026-05-14T10:00:00+08:00"),
                    "all-today" | "preset-today" => ns("2026-05-21T00:00:00+08:00"),
                    "batch-month" => ns("2026-05-01T00:00:00+08:00"),
                    "preset-yesterday" => ns("2026-05-20T00:00:00+08:00"),
                    _ => ns("2026-05-20T10:00:00+08:00"),
                };
                assert_eq!(p.start_time_unix_nano, start, "{q}");
                seen += 1;
            }
        }
        let batch_only = matches!(name, "infer_count" | "completed_tasks");
        let want = expected
            .iter()
            .filter(|(k, _)| !batch_only || k.infer_type.name() == "batch")
            .count();
        assert_eq!(seen, want, "{full}: one point per series");
    }
    let ratio = metrics
        .iter()
        .filter(|m| m.name == "maas.usage.error_ratio")
        .collect::<Vec<_>>();
    assert_eq!(ratio.len(), 1, "the ratio is always one Gauge");
    match ratio[0].data.as_ref().unwrap() {
        Data::Gauge(g) => assert!(g
            .data_points
            .iter()
            .all(|p| matches!(p.value, Some(number_data_point::Value::AsDouble(_))))),
        other => panic!("error_ratio must be a Gauge: {other:?}"),
    }
    assert_eq!(ratio[0].unit, "1");
    let ok = metrics
        .iter()
        .find(|m| m.name == "maas.collector.series_ok")
        .expect("self-metrics");
    match ok.data.as_ref().unwrap() {
        Data::Gauge(g) => assert_eq!(int(&g.data_points[0]), expected.len() as i64),
        other => panic!("{other:?}"),
    }
}

#[test]
fn http_protobuf_push_carries_exact_values_types_and_times() {
    let sim = sim();
    let rx = HttpReceiver::start();
    let text = otlp_spec(&sim, &format!("    endpoint: {}\n", rx.url));
    let out = run(&spec_file(&text), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "a push writes nothing on stdout");
    let got = rx.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/v1/metrics");
    assert_eq!(got[0].content_type, "application/x-protobuf");
    check_request(&got[0].request, &sim, &text, "maas-usage");
}

#[test]
fn http_json_push_with_gzip_and_headers_from_the_environment() {
    let sim = sim();
    let rx = HttpReceiver::start();
    let text = otlp_spec(
        &sim,
        "    protocol: http/json\n    headers: {x-scope-orgid: finops}\n",
    );
    let out = authed()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &rx.url)
        .env("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20tok,x-scope-orgid=overridden",
        )
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=prod,service.name=ignored",
        )
        .env("OTEL_SERVICE_NAME", "finops-maas")
        .arg("run")
        .arg("--spec")
        .arg(spec_file(&text))
        .args(["--now", NOW])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = rx.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].content_type, "application/json");
    assert!(got[0].gzip);
    let h: BTreeMap<_, _> = got[0].headers.iter().cloned().collect();
    assert_eq!(
        h.get("authorization").map(String::as_str),
        Some("Bearer tok")
    );
    assert_eq!(
        h.get("x-scope-orgid").map(String::as_str),
        Some("finops"),
        "the spec wins over the environment"
    );
    check_request(&got[0].request, &sim, &text, "finops-maas");
    let res = format!("{:?}", got[0].request.resource_metrics[0].resource);
    assert!(
        res.contains("finops-maas")
            && res.contains("deployment.environment")
            && !res.contains("ignored"),
        "{res}"
    );
    assert!(!stderr(&out).contains("Bearer"), "headers are never logged");
}

#[cfg(feature = "grpc")]
#[test]
fn grpc_push_retries_unavailable() {
    let sim = sim();
    let rx = GrpcReceiver::start();
    rx.unavailable_first
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let text = otlp_spec(&sim, &format!("    endpoint: {}\n    protocol: grpc\n    compression: gzip\n    headers: {{x-scope-orgid: finops}}\n", rx.url));
    let out = run(&spec_file(&text), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = rx.received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "one accepted export after one UNAVAILABLE");
    assert!(got[0]
        .0
        .iter()
        .any(|(k, v)| k == "x-scope-orgid" && v == "finops"));
    check_request(&got[0].1, &sim, &text, "maas-usage");
}

#[test]
fn collector_503_then_200_succeeds() {
    let sim = sim();
    let rx = HttpReceiver::start();
    rx.push(Answer::Status(503, "busy"));
    let out = run(
        &spec_file(&otlp_spec(&sim, &format!("    endpoint: {}\n", rx.url))),
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(*rx.hits.lock().unwrap(), 2);
    assert_eq!(rx.requests().len(), 1);
}

#[test]
fn collector_400_fails_without_retry_and_says_why() {
    let sim = sim();
    let rx = HttpReceiver::start();
    rx.push(Answer::Status(400, "metric name invalid"));
    let out = run(
        &spec_file(&otlp_spec(&sim, &format!("    endpoint: {}\n", rx.url))),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(*rx.hits.lock().unwrap(), 1, "400 is not retried");
    let err = stderr(&out);
    assert!(err.starts_with("E! OTLP export to"), "{err}");
    assert!(err.contains("HTTP 400: metric name invalid"), "{err}");
    assert!(stdout(&out).is_empty());
}

#[test]
fn collector_down_is_exit_1_within_the_timeout() {
    let sim = sim();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = otlp_spec(&sim, &format!("    endpoint: http://127.0.0.1:{port}\n"))
        .replace("timeout: 25s", "timeout: 4s");
    let started = Instant::now();
    let out = run(&spec_file(&text), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stderr(&out).contains("cannot reach the collector"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn partial_success_is_a_warning() {
    let sim = sim();
    let rx = HttpReceiver::start();
    rx.push(Answer::Partial(3, "3 points too old"));
    let out = run(
        &spec_file(&otlp_spec(&sim, &format!("    endpoint: {}\n", rx.url))),
        &[],
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("W! the collector rejected 3 data point(s): 3 points too old"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn otlp_json_lines_snapshot_and_append() {
    let sim = sim();
    let path = spec_file(&example_spec_for(&sim));
    let out = run(&path, &["--format", "otlp-json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "one request per line");
    let req: ExportMetricsServiceRequest = serde_json::from_str(text.trim()).unwrap();
    check_request(&req, &sim, &example_spec_for(&sim), "maas-usage");
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    let p = &v["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["gauge"]["dataPoints"][0];
    assert!(
        p["asInt"].is_string() && p["timeUnixNano"].is_string(),
        "64-bit integers as strings: {p}"
    );
    assert!(
        text.contains("\"aggregationTemporality\":2"),
        "enums as integers"
    );
    insta::with_settings!({filters => vec![(r#""asInt":"\d+"\}\]\},"name":"maas.collector.duration_ms"#, "[duration]"), (r#"("name":"maas.collector.duration_ms".*?"asInt":")\d+"#, "${1}[ms]")]}, {
        insta::assert_snapshot!(text);
    });

    let file = tempdir().join("metrics.jsonl");
    for _ in 0..2 {
        let out = run(
            &path,
            &["--format", "otlp-json", "--output", file.to_str().unwrap()],
        );
        assert!(out.status.success());
    }
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written.lines().count(), 2, "--output appends");
}

#[test]
fn prometheus_textfile_snapshot_promtool_and_atomic_write() {
    let sim = sim();
    let path = spec_file(&example_spec_for(&sim));
    let out = run(&path, &["--format", "prometheus"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("# TYPE maas_usage_total_tokens gauge"));
    assert!(
        !text
            .lines()
            .any(|l| !l.starts_with('#') && l.split(' ').count() > 2),
        "no timestamps"
    );
    insta::with_settings!({filters => vec![(r"(maas_usage_collector_duration_seconds\{[^}]*\}) [0-9.]+", "$1 [s]")]}, {
        insta::assert_snapshot!(text);
    });

    let file = tempdir().join("maas.prom");
    let out = run(
        &path,
        &["--format", "prometheus", "--output", file.to_str().unwrap()],
    );
    assert!(out.status.success());
    let dir = file.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != "maas.prom")
        .collect();
    assert!(
        leftovers.is_empty(),
        "the temporary file was renamed away: {leftovers:?}"
    );

    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
    {
        Ok(o) => assert!(
            o.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => {
            assert!(
                std::env::var("MAAS_USAGE_REQUIRE_PROMTOOL").is_err(),
                "promtool is required but not on PATH"
            );
            eprintln!("skipped promtool: not on PATH");
        }
    }
}

#[test]
fn json_snapshot_of_run() {
    let sim = sim();
    let out = run(&spec_file(&example_spec_for(&sim)), &["--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    insta::with_settings!({filters => vec![
        (r#""duration_ms": \d+"#, r#""duration_ms": "[ms]""#),
        (r#""request_id": "[0-9a-f]{32}""#, r#""request_id": "[id]""#),
    ]}, {
        insta::assert_snapshot!(stdout(&out));
    });
}

//! OTLP push (HTTP protobuf/JSON, gRPC), OTLP/JSON lines, Prometheus textfile and JSON output
//! of `run`, checked against in-process receivers and the simulator's exact totals.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[cfg(feature = "grpc")]
use common::otlp::grpc::GrpcReceiver;
use common::otlp::{Answer, HttpReceiver};
use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point, NumberDataPoint};

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

/// The Gauge `name`'s points in `req`.
fn gauge_points<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> Vec<&'a NumberDataPoint> {
    req.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .filter(|m| m.name == name)
        .flat_map(|m| match m.data.as_ref().unwrap() {
            Data::Gauge(g) => g.data_points.iter(),
            other => panic!("{name} must be a Gauge: {other:?}"),
        })
        .collect()
}

/// Checks a push (the data, then the self-metrics) against the simulator's exact values for
/// the example spec.
fn check_push(
    reqs: &[ExportMetricsServiceRequest],
    sim: &maas_usage::sim::Simulator,
    spec_text: &str,
    service_name: &str,
) {
    assert_eq!(reqs.len(), 2, "the data, then the self-metrics");
    let (data, own) = (&reqs[0], &reqs[1]);
    assert_eq!(
        data.resource_metrics[0].resource, own.resource_metrics[0].resource,
        "one resource for both"
    );
    let names = |r: &ExportMetricsServiceRequest| -> Vec<String> {
        r.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .map(|m| m.name.clone())
            .collect()
    };
    assert!(names(data)
        .iter()
        .all(|n| n.starts_with("maas.usage.") || n.starts_with("maas.model.")));
    assert!(names(own).iter().all(|n| n.starts_with("maas.collector.")));
    check_data(data, sim, spec_text, service_name);
    let expected = expected_series(sim, spec_text);
    let series = gauge_points(own, "maas.collector.series");
    let ok: Vec<_> = series
        .iter()
        .filter(|p| attr(p, "maas.outcome") == Some("ok"))
        .collect();
    assert_eq!(ok.len(), 1);
    assert_eq!(int(ok[0]), (expected.len() + EXAMPLE_MODELS) as i64);
    let failed: Vec<_> = series
        .iter()
        .filter(|p| attr(p, "maas.outcome") == Some("failed"))
        .collect();
    assert_eq!(int(failed[0]), 0);
    let rejected = gauge_points(own, "maas.collector.export.rejected");
    assert_eq!(rejected.len(), 1);
    assert_eq!(int(rejected[0]), 0, "the collector took every point");
    let duration = gauge_points(own, "maas.collector.duration");
    assert!(matches!(
        duration[0].value,
        Some(number_data_point::Value::AsDouble(_))
    ));
}

/// Checks the data request against the simulator's exact values for the example spec.
fn check_data(
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
    assert!(res.contains_key("service.instance.id"));
    assert!(res.contains_key("host.name"));
    let scope = &rm.scope_metrics[0];
    assert_eq!(scope.scope.as_ref().unwrap().name, "maas-usage");
    assert_eq!(
        scope.scope.as_ref().unwrap().version,
        env!("CARGO_PKG_VERSION")
    );

    let expected = expected_series(sim, spec_text);
    let metrics = &scope.metrics;
    for (name, full, unit) in [
        ("total_tokens", "maas.usage.total_tokens", "{token}"),
        ("prompt_tokens", "maas.usage.input_tokens", "{token}"),
        ("completion_tokens", "maas.usage.output_tokens", "{token}"),
        ("requests", "maas.usage.requests", "{request}"),
        ("errors", "maas.usage.errors", "{error}"),
        ("infer_count", "maas.usage.inferences", "{inference}"),
        ("completed_tasks", "maas.usage.completed_tasks", "{task}"),
    ] {
        let ms: Vec<_> = metrics.iter().filter(|m| m.name == full).collect();
        assert_eq!(ms.len(), 1, "{full}: one metric, one identity");
        assert_eq!(ms[0].unit, unit, "{full}");
        assert!(!ms[0].description.is_empty());
        let mut seen = 0;
        for p in gauge_points(req, full) {
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
        let batch_only = matches!(name, "infer_count" | "completed_tasks");
        let want = expected
            .iter()
            .filter(|(k, _)| !batch_only || k.infer_type.name() == "batch")
            .count();
        assert_eq!(seen, want, "{full}: one point per series");
    }
    let ratio = gauge_points(req, "maas.usage.error_ratio");
    assert!(ratio
        .iter()
        .all(|p| matches!(p.value, Some(number_data_point::Value::AsDouble(_)))));
    let window = gauge_points(req, "maas.usage.window");
    assert_eq!(window.len(), expected.len());
    assert!(
        window
            .iter()
            .all(|p| int(p) as u64 == (p.time_unix_nano - p.start_time_unix_nano) / 1_000_000_000),
        "the window in seconds, from its own start and end"
    );
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
    assert!(got
        .iter()
        .all(|r| r.path == "/v1/metrics" && r.content_type == "application/x-protobuf"));
    let reqs: Vec<_> = got.into_iter().map(|r| r.request).collect();
    check_push(&reqs, &sim, &text, "maas-usage");
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
    assert!(got
        .iter()
        .all(|r| r.content_type == "application/json" && r.gzip));
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
    let reqs: Vec<_> = got.iter().map(|r| r.request.clone()).collect();
    check_push(&reqs, &sim, &text, "finops-maas");
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
    assert_eq!(
        got.len(),
        2,
        "the data accepted after one UNAVAILABLE, then the self-metrics"
    );
    assert!(got.iter().all(|r| r
        .0
        .iter()
        .any(|(k, v)| k == "x-scope-orgid" && v == "finops")));
    let reqs: Vec<_> = got.into_iter().map(|r| r.1).collect();
    check_push(&reqs, &sim, &text, "maas-usage");
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
    assert_eq!(
        *rx.hits.lock().unwrap(),
        3,
        "the data twice, the self-metrics once"
    );
    assert_eq!(rx.requests().len(), 2);
}

#[test]
fn the_signal_path_goes_into_the_endpoint_path_never_after_its_query() {
    let sim = sim();
    let rx = HttpReceiver::start();
    let spec = |block: &str| spec_file(&otlp_spec(&sim, block));
    let via_env = spec("    protocol: http/protobuf\n");
    for (var, endpoint, path, query) in [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("{}/?tenant=a", rx.url),
            "/v1/metrics",
            "tenant=a",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("{}/base?tenant=b", rx.url),
            "/base/v1/metrics",
            "tenant=b",
        ),
        // The signal's own variable is used as it is.
        (
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            format!("{}/custom?tenant=c", rx.url),
            "/custom",
            "tenant=c",
        ),
    ] {
        rx.received.lock().unwrap().clear();
        let out = authed()
            .env(var, &endpoint)
            .arg("run")
            .arg("--spec")
            .arg(&via_env)
            .args(["--now", NOW])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{endpoint}: {}", stderr(&out));
        let got = rx.requests();
        assert!(!got.is_empty());
        for r in got {
            assert_eq!(
                (r.path.as_str(), r.query.as_str()),
                (path, query),
                "{endpoint}"
            );
        }
    }
    // The spec's endpoint is a base (a query is refused there).
    rx.received.lock().unwrap().clear();
    let in_spec = spec(&format!("    endpoint: {}/base/\n", rx.url));
    let out = run(&in_spec, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for r in rx.requests() {
        assert_eq!(r.path, "/base/v1/metrics");
    }
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
fn partial_success_is_a_warning_and_a_self_metric() {
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
    // The self-metrics that follow the data say so too, where a dashboard can alert on it.
    let got = rx.requests();
    assert_eq!(got.len(), 2);
    let rejected = gauge_points(&got[1].request, "maas.collector.export.rejected");
    assert_eq!(rejected.len(), 1);
    assert_eq!(int(rejected[0]), 3);
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
    check_data(&req, &sim, &example_spec_for(&sim), "maas-usage");
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    let p = &v["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["gauge"]["dataPoints"][0];
    assert!(
        p["asInt"].is_string() && p["timeUnixNano"].is_string(),
        "64-bit integers as strings: {p}"
    );
    insta::with_settings!({filters => origin_filters()}, {
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
    insta::with_settings!({filters => origin_filters()}, {
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

    promtool_check(&std::fs::read_to_string(&file).unwrap());
}

#[test]
fn json_snapshot_of_run() {
    let sim = sim();
    let out = run(&spec_file(&example_spec_for(&sim)), &["--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut filters = vec![
        (r#""duration_ms": \d+"#, r#""duration_ms": "[ms]""#),
        (r#""request_id": "[0-9a-f]{32}""#, r#""request_id": "[id]""#),
    ];
    filters.extend(last_success_filters());
    insta::with_settings!({filters => filters}, {
        insta::assert_snapshot!(stdout(&out));
    });
}

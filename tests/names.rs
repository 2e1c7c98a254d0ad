//! One vocabulary: every OTLP metric name has one type, temporality and unit whatever the mix
//! of windows in the spec, and the Prometheus names and labels of the textfile are exactly the
//! collector's translation of the OTLP export.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::otlp::HttpReceiver;
use common::prom::{self, Exposition};
use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

fn mixed(sim: &maas_usage::sim::Simulator) -> std::path::PathBuf {
    fixture(
        "names/mixed.yaml",
        &[("url", &sim.url()), ("project", PROJECT)],
    )
}

fn run_with(spec: &Path, state: &Path, now: &str, env: &[(&str, &str)], args: &[&str]) -> String {
    let mut c = authed();
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c
        .arg("run")
        .arg("--spec")
        .arg(spec)
        .arg("--state-dir")
        .arg(state)
        .args(["--now", now])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout(&out)
}

/// name -> the distinct (type, temporality, monotonic, unit) it was sent with.
fn identities(reqs: &[ExportMetricsServiceRequest]) -> BTreeMap<String, BTreeSet<String>> {
    let mut ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in reqs {
        let metrics = &r.resource_metrics[0].scope_metrics[0].metrics;
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(names.len(), unique.len(), "one metric per name per request");
        for m in metrics {
            let id = match m.data.as_ref().unwrap() {
                Data::Gauge(_) => format!("gauge {}", m.unit),
                Data::Sum(s) => format!(
                    "sum temporality={} monotonic={} {}",
                    s.aggregation_temporality, s.is_monotonic, m.unit
                ),
                other => panic!("{}: {other:?}", m.name),
            };
            ids.entry(m.name.clone()).or_default().insert(id);
        }
    }
    ids
}

#[test]
fn every_otlp_name_has_one_type_and_temporality_in_a_mixed_spec() {
    let sim = sim();
    let spec = mixed(&sim);
    for preference in ["cumulative", "delta", "lowmemory"] {
        let rx = HttpReceiver::start();
        let state = tempdir().join("state");
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", rx.url.as_str()),
            (
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                preference,
            ),
        ];
        // Two collections an hour apart: window totals and new period buckets in both.
        for now in [NOW, "2026-05-21T11:00:00+08:00"] {
            run_with(&spec, &state, now, &env, &["--format", "otlp"]);
        }
        let reqs: Vec<_> = rx.requests().into_iter().map(|r| r.request).collect();
        assert_eq!(reqs.len(), 4);
        let ids = identities(&reqs);
        for (name, kinds) in &ids {
            assert_eq!(kinds.len(), 1, "{preference}: {name} sent as {kinds:?}");
        }
        let kind = |name: &str| ids[name].iter().next().unwrap().clone();
        assert_eq!(ids["maas.usage.total_tokens"].len(), 1);
        assert!(kind("maas.usage.total_tokens").starts_with("gauge"));
        // Cumulative = 2, delta = 1 (AggregationTemporality).
        let want = if preference == "cumulative" { 2 } else { 1 };
        assert_eq!(
            kind("maas.usage.period.total_tokens"),
            format!("sum temporality={want} monotonic=true {{token}}"),
            "{preference}"
        );
    }
}

#[test]
fn an_unknown_temporality_preference_warns_and_keeps_cumulative() {
    let sim = sim();
    let rx = HttpReceiver::start();
    let state = tempdir().join("state");
    let out = authed()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &rx.url)
        .env(
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            "sometimes",
        )
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")
        .args(["run", "--format", "otlp", "--now", NOW, "--spec"])
        .arg(mixed(&sim))
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("W! OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"),
        "{err}"
    );
    assert!(err.contains("W! OTEL_EXPORTER_OTLP_TIMEOUT"), "{err}");
    let reqs: Vec<_> = rx.requests().into_iter().map(|r| r.request).collect();
    let ids = identities(&reqs);
    assert_eq!(
        ids["maas.usage.period.total_tokens"].iter().next().unwrap(),
        "sum temporality=2 monotonic=true {token}"
    );
}

/// Names, types, labels and values, with the collection's own duration and start (which differ
/// between two collections) left out of the values.
fn comparable(e: &Exposition) -> (BTreeMap<String, String>, BTreeMap<String, f64>) {
    let samples = e
        .samples
        .iter()
        .map(|s| {
            let key = format!("{}{:?}", s.name, s.labels);
            let v = if [
                "maas_collector_duration_seconds",
                "maas_collector_last_success_timestamp_seconds",
            ]
            .contains(&s.name.as_str())
            {
                0.0
            } else {
                s.value
            };
            (key, v)
        })
        .collect();
    (e.types.clone(), samples)
}

#[test]
fn the_textfile_is_the_collectors_translation_of_the_otlp_export() {
    let sim = sim();
    let spec = mixed(&sim);
    let otlp = run_with(
        &spec,
        &tempdir().join("a"),
        NOW,
        &[],
        &["--format", "otlp-json"],
    );
    let req: ExportMetricsServiceRequest = serde_json::from_str(otlp.trim()).unwrap();
    let translated = prom::translate(&[req]);
    let text = run_with(
        &spec,
        &tempdir().join("b"),
        NOW,
        &[],
        &["--format", "prometheus"],
    );
    let textfile = prom::parse(&text);
    let (t_types, t_samples) = comparable(&translated);
    let (f_types, f_samples) = comparable(&textfile);
    assert_eq!(f_types, t_types, "names and types");
    let t_keys: BTreeSet<&String> = t_samples.keys().collect();
    let f_keys: BTreeSet<&String> = f_samples.keys().collect();
    assert_eq!(f_keys, t_keys, "names and labels");
    assert_eq!(f_samples, t_samples, "values");
    // Every kind is in there: gauges, counters, a ratio and seconds.
    for name in [
        "maas_usage_total_tokens",
        "maas_usage_period_tokens_total",
        "maas_usage_error_ratio",
        "maas_usage_window_seconds",
        "maas_collector_duration_seconds",
        "maas_collector_last_success_timestamp_seconds",
        "maas_collector_consecutive_failures",
    ] {
        assert!(f_types.contains_key(name), "{name}");
    }
}

#[test]
fn the_translation_rule_does_what_the_collector_documents() {
    // The helper itself, on the collector's own examples and this plugin's corner cases.
    assert_eq!(
        prom::metric_name("system.cpu.time", "s", true, false),
        "system_cpu_time_seconds_total"
    );
    assert_eq!(
        prom::metric_name("maas.usage.total_tokens", "{token}", false, true),
        "maas_usage_total_tokens"
    );
    assert_eq!(
        prom::metric_name("maas.usage.period.total_tokens", "{token}", true, false),
        "maas_usage_period_tokens_total"
    );
    assert_eq!(
        prom::metric_name("maas.collector.duration", "s", false, true),
        "maas_collector_duration_seconds"
    );
    assert_eq!(
        prom::metric_name("maas.collector.duration_ms", "ms", false, true),
        "maas_collector_duration_ms_milliseconds"
    );
    assert_eq!(
        prom::metric_name("maas.usage.error_ratio", "1", false, true),
        "maas_usage_error_ratio"
    );
    // Labels: otlptranslator's LabelNamer as the collector configures it by default.
    for (key, label) in [
        ("cloud.region", "cloud_region"),
        ("9lives", "key_9lives"),
        ("x.__y", "x_y"),
        ("a__b", "a_b"),
        ("a_", "a_"),
        ("_foo", "key_foo"),
        ("__foo", "key_foo"),
        (".foo", "key_foo"),
        ("...", "key_"),
        ("é.x", "key_x"),
    ] {
        assert_eq!(prom::label_name(key).as_deref(), Ok(label), "{key}");
    }
    for refused in ["", "____", "__name__", "__x.y__"] {
        assert!(prom::label_name(refused).is_err(), "{refused:?}");
    }
}

#[test]
fn odd_attribute_keys_become_the_collectors_labels_and_the_resource_wins_over_a_tag() {
    let sim = sim();
    let spec = fixture(
        "names/odd-labels.yaml",
        &[("url", &sim.url()), ("project", PROJECT)],
    );
    // A leading digit, a dot followed by underscores, and a key the spec's tags set too.
    let env = [("OTEL_RESOURCE_ATTRIBUTES", "9lives=a,x.__y=b,env=prod")];
    let otlp = run_with(
        &spec,
        &tempdir().join("a"),
        NOW,
        &env,
        &["--format", "otlp-json"],
    );
    let req: ExportMetricsServiceRequest = serde_json::from_str(otlp.trim()).unwrap();
    let translated = prom::translate(&[req]);
    let text = run_with(
        &spec,
        &tempdir().join("b"),
        NOW,
        &env,
        &["--format", "prometheus"],
    );
    let textfile = prom::parse(&text);
    let (t_types, t_samples) = comparable(&translated);
    let (f_types, f_samples) = comparable(&textfile);
    assert_eq!(f_types, t_types, "names and types");
    let t_keys: BTreeSet<&String> = t_samples.keys().collect();
    let f_keys: BTreeSet<&String> = f_samples.keys().collect();
    assert_eq!(f_keys, t_keys, "names and labels");
    assert_eq!(f_samples, t_samples, "values");
    assert!(f_types.contains_key("maas_model_total_tokens"), "{text}");
    for s in &textfile.samples {
        let l = &s.labels;
        assert_eq!(l.get("key_9lives").map(String::as_str), Some("a"), "{s:?}");
        assert_eq!(l.get("x_y").map(String::as_str), Some("b"), "{s:?}");
        assert_eq!(l.get("a_b").map(String::as_str), Some("x"), "{s:?}");
        // The resource's env replaces the tag's, as resource_to_telemetry_conversion does.
        assert_eq!(l.get("env").map(String::as_str), Some("prod"), "{s:?}");
    }
    promtool_check(&text);
}

#[test]
fn resource_attributes_the_collector_would_drop_metrics_for_are_refused_before_any_call() {
    let sim = sim();
    let spec = fixture(
        "names/odd-labels.yaml",
        &[("url", &sim.url()), ("project", PROJECT)],
    );
    let state = tempdir().join("state");
    let cases = [
        ("c.d=1,c_d=2", "`c_d` makes the Prometheus label `c_d`, which `c.d` (also in OTEL_RESOURCE_ATTRIBUTES) makes too"),
        ("maas.query=x", "`maas.query` makes the Prometheus label `maas_query`, which the point attribute `maas.query` makes too"),
        ("cloud_region=x", "which the resource attribute `cloud.region` makes too"),
        ("job=x", "which the collector itself (`job`) makes too"),
        ("a.b=x", "`a.b` makes the Prometheus label `a_b`, which the spec's tag `a__b` makes too"),
        ("____=x", "`____` makes the Prometheus label `____`, which the collector's prometheus exporter refuses"),
    ];
    for (attrs, says) in cases {
        for command in [
            &["run", "--format", "prometheus"][..],
            &["serve", "--listen", "127.0.0.1:0"],
        ] {
            let out = authed()
                .env("OTEL_RESOURCE_ATTRIBUTES", attrs)
                .args(command)
                .arg("--spec")
                .arg(&spec)
                .arg("--state-dir")
                .arg(&state)
                .args(["--now", NOW])
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(2),
                "{attrs} {command:?}: {}",
                stderr(&out)
            );
            assert!(
                stderr(&out).contains("E! OTEL_RESOURCE_ATTRIBUTES: `")
                    && stderr(&out).contains(says),
                "{attrs}: {}",
                stderr(&out)
            );
        }
    }
    assert!(sim.requests().is_empty(), "no call");
    // Formats without Prometheus labels do not mind.
    run_with(
        &spec,
        &state,
        NOW,
        &[("OTEL_RESOURCE_ATTRIBUTES", "c.d=1,c_d=2")],
        &["--format", "otlp-json"],
    );
}

//! One vocabulary: every OTLP metric name has one type, temporality and unit whatever the mix
//! of windows in the spec, and the Prometheus names and labels of the textfile are exactly the
//! collector's translation of the OTLP export (its prometheus exporter with default settings:
//! the resource on one `target_info` series, never on the data series).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::otlp::HttpReceiver;
use common::prom::{self, Exposition};
use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

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
    let spec = fixture_for(&sim, "names/mixed.yaml", &[]);
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
        // Each run: the ShowStatistics buckets and the Cloud Eye buckets pushed as they come
        // (a round each), then the window totals, then the self-metrics.
        assert_eq!(reqs.len(), 8);
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
        .arg(fixture_for(&sim, "names/mixed.yaml", &[]))
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

/// The textfile of `spec` (with `env`) equals the collector's translation of its OTLP export;
/// returns the textfile.
fn textfile_equals_translation(spec: &Path, env: &[(&str, &str)]) -> (String, Exposition) {
    let otlp = run_with(
        spec,
        &tempdir().join("a"),
        NOW,
        env,
        &["--format", "otlp-json"],
    );
    // In period mode the buckets come a few to a line, the last line with the rest.
    let reqs: Vec<ExportMetricsServiceRequest> = otlp
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let translated = prom::translate(&reqs);
    let text = run_with(
        spec,
        &tempdir().join("b"),
        NOW,
        env,
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
    (text, textfile)
}

/// The resource's labels (`target_info`'s), which no data series may carry.
const RESOURCE_LABELS: [&str; 6] = [
    "service_name",
    "service_version",
    "service_instance_id",
    "host_name",
    "cloud_provider",
    "cloud_account_id",
];

#[test]
fn the_textfile_is_the_collectors_translation_of_the_otlp_export() {
    let sim = sim();
    let (_, textfile) =
        textfile_equals_translation(&fixture_for(&sim, "names/mixed.yaml", &[]), &[]);
    // Every kind is in there: gauges, counters, a ratio, seconds, and the resource.
    for name in [
        "maas_usage_total_tokens",
        "maas_usage_period_tokens_total",
        "maas_usage_error_ratio",
        "maas_usage_window_seconds",
        "maas_collector_duration_seconds",
        "maas_collector_last_success_timestamp_seconds",
        "maas_collector_consecutive_failures",
        "target_info",
    ] {
        assert!(textfile.types.contains_key(name), "{name}");
    }
    // One target_info of value 1 carries the resource; the data series carry their own
    // labels (and the source's region and project), nothing of the process that made them.
    let info: Vec<_> = textfile
        .samples
        .iter()
        .filter(|s| s.name == "target_info")
        .collect();
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0].value, 1.0);
    let l = &info[0].labels;
    assert_eq!(l["service_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(l["cloud_provider"], "huawei_cloud");
    assert_eq!(l["cloud_region"], "cn-southwest-2");
    assert!(l.contains_key("host_name"), "{l:?}");
    for own in ["job", "instance", "service_name", "service_instance_id"] {
        assert!(!l.contains_key(own), "{own}: {l:?}");
    }
    for s in textfile.samples.iter().filter(|s| s.name != "target_info") {
        for label in RESOURCE_LABELS {
            assert!(!s.labels.contains_key(label), "{label} on {s:?}");
        }
        if !s.name.starts_with("maas_collector_") {
            assert_eq!(s.labels["cloud_region"], "cn-southwest-2", "{s:?}");
            assert_eq!(s.labels["huaweicloud_project_id"], PROJECT, "{s:?}");
            assert_eq!(s.labels["env"], "demo", "{s:?}");
        }
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
fn odd_attribute_keys_become_the_collectors_labels_and_a_tag_and_the_resource_keep_their_own() {
    let sim = sim();
    let spec = fixture_for(&sim, "names/odd-labels.yaml", &[]);
    // A leading digit, a dot followed by underscores, a key the spec's tags set too, keys the
    // data points carry, and two keys that make one label.
    let env = [(
        "OTEL_RESOURCE_ATTRIBUTES",
        "9lives=a,x.__y=b,env=prod,maas.query=r,otel_scope_name=s,c.d=1,c_d=2",
    )];
    let (text, textfile) = textfile_equals_translation(&spec, &env);
    assert!(
        textfile.types.contains_key("maas_model_total_tokens"),
        "{text}"
    );
    for s in &textfile.samples {
        let l = &s.labels;
        let get = |k: &str| l.get(k).map(String::as_str);
        if s.name == "target_info" {
            assert_eq!(get("key_9lives"), Some("a"), "{s:?}");
            assert_eq!(get("x_y"), Some("b"), "{s:?}");
            assert_eq!(get("env"), Some("prod"), "{s:?}");
            assert_eq!(get("maas_query"), Some("r"), "{s:?}");
            assert_eq!(get("otel_scope_name"), Some("s"), "{s:?}");
            // Joined in key order, as the collector does.
            assert_eq!(get("c_d"), Some("1;2"), "{s:?}");
            assert_eq!(get("a_b"), None, "{s:?}");
            continue;
        }
        assert_eq!(get("a_b"), Some("x"), "{s:?}");
        // The data series keep the spec's tag: the resource is not on them.
        assert_eq!(get("env"), Some("demo"), "{s:?}");
        for resource in ["key_9lives", "x_y", "c_d"] {
            assert_eq!(get(resource), None, "{s:?}");
        }
        if s.name.starts_with("maas_collector_") {
            assert_eq!(get("maas_query"), None, "{s:?}");
        } else {
            assert_ne!(get("maas_query"), Some("r"), "{s:?}");
        }
    }
    promtool_check(&text);
}

#[test]
fn a_tag_set_by_the_resource_too_is_no_conflict_and_a_shared_label_is_warned_of() {
    let sim = sim();
    let spec = fixture_for(&sim, "names/odd-labels.yaml", &[]);
    let run = |attrs: &str| {
        authed()
            .env("OTEL_RESOURCE_ATTRIBUTES", attrs)
            .args(["run", "--format", "prometheus", "--now", NOW, "--spec"])
            .arg(&spec)
            .arg("--state-dir")
            .arg(tempdir().join("state"))
            .output()
            .unwrap()
    };
    // `env` is the spec's tag too: each keeps its own value, nothing to warn of.
    let out = run("env=prod");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("W!"), "{}", stderr(&out));
    // Two keys of one label: the collector joins them, and the run says so.
    let out = run("c.d=1,c_d=2");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "W! OTEL_RESOURCE_ATTRIBUTES: `c.d` and `c_d` make one target_info label `c_d`: its value is theirs joined with `;`"
        ),
        "{}",
        stderr(&out)
    );
    let out = run("cloud_region=x");
    assert!(
        stderr(&out).contains("`cloud.region` and `cloud_region` make one target_info label"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains(r#"cloud_region="cn-southwest-2;x""#),
        "{}",
        stdout(&out)
    );
}

#[test]
fn resource_attributes_the_collector_would_lose_are_refused_before_any_call() {
    let sim = sim();
    let spec = fixture_for(&sim, "names/odd-labels.yaml", &[]);
    let state = tempdir().join("state");
    let cases = [
        ("job=x", "`job` makes the Prometheus label `job`, which the collector sets itself"),
        ("a.instance=1,instance=x", "`instance` makes the Prometheus label `instance`, which the collector sets itself"),
        ("____=x", "`____` makes the Prometheus label `____`, which the collector's prometheus exporter refuses (dropping target_info)"),
        ("__x.y__=x", "`__x.y__` makes the Prometheus label `__x_y__`, which the collector's prometheus exporter refuses"),
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
        &[("OTEL_RESOURCE_ATTRIBUTES", "job=x")],
        &["--format", "otlp-json"],
    );
}

//! plugin.yaml is the single source of truth: it validates against its schema, matches the
//! crate version and the code's tables, declares exactly what the outputs emit, and
//! docs/metrics.md is generated from it.

use crate::common;

use std::collections::BTreeSet;

use common::*;
use maas_usage::domain::cloud_eye::METRICS;
use maas_usage::emit::fields;
use maas_usage::manifest;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn manifest_validates_against_its_schema_and_the_crate_version() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/plugin.schema.json")).unwrap(),
    )
    .unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(manifest::PLUGIN_YAML).unwrap();
    let v = jsonschema::draft202012::new(&schema).unwrap();
    let errors: Vec<String> = v
        .iter_errors(&doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let m = manifest::load().unwrap();
    assert_eq!(m.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(m.license, env!("CARGO_PKG_LICENSE"));
    assert_eq!(m.homepage, env!("CARGO_PKG_HOMEPAGE"));
    assert_eq!(m.spec.schema, "schemas/maas-usage.schema.json");
    assert_eq!(m.spec.api_version, maas_usage::spec::load::API_VERSION);
}

#[test]
fn every_path_it_names_exists_and_every_example_spec_validates() {
    let m = manifest::load().unwrap();
    assert!(root().join(&m.spec.schema).is_file());
    for e in &m.spec.examples {
        let out = bin().arg("validate").arg(root().join(e)).output().unwrap();
        assert!(out.status.success(), "{e}: {}", stderr(&out));
    }
    for a in &m.agents {
        if let Some(ex) = &a.example {
            assert!(root().join(ex).is_file(), "{ex}");
        }
        assert_eq!(a.command[0], "maas-usage");
        // The command line parses (with --help appended, so nothing runs).
        let out = bin().args(&a.command[1..]).arg("--help").output().unwrap();
        assert!(out.status.success(), "{}: {}", a.name, stderr(&out));
    }
}

#[test]
fn the_code_tables_match_the_manifest() {
    let m = manifest::load().unwrap();
    let code: Vec<&fields::Field> = fields::FIELDS
        .iter()
        .chain([&fields::WINDOW_FIELD, &fields::PERIOD_FIELD])
        .collect();
    assert_eq!(m.metrics.len(), code.len());
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    for (decl, f) in m.metrics.iter().zip(code) {
        assert_eq!(decl.field, f.name);
        assert_eq!(decl.unit, f.unit, "{}", f.name);
        assert_eq!(decl.title, f.title, "{}", f.name);
        assert_eq!(decl.description, f.description, "{}", f.name);
        assert_eq!(decl.batch_only, f.batch_only, "{}", f.name);
        assert_eq!(decl.otlp, some(f.otlp), "{}", f.name);
        assert_eq!(decl.prometheus, some(f.prometheus), "{}", f.name);
        assert_eq!(decl.otlp_period.as_deref(), f.otlp_period, "{}", f.name);
        assert_eq!(
            decl.prometheus_period.as_deref(),
            f.prometheus_period,
            "{}",
            f.name
        );
        assert_eq!(
            decl.value == "double",
            f.kind == fields::Kind::Ratio,
            "{}",
            f.name
        );
    }
    let code_c: Vec<&fields::CollectorField> = fields::COLLECTOR_FIELDS
        .iter()
        .chain([&fields::EXPORT_REJECTED])
        .collect();
    assert_eq!(m.collector_metrics.len(), code_c.len());
    for (decl, f) in m.collector_metrics.iter().zip(code_c) {
        assert_eq!(
            (
                decl.field.as_str(),
                decl.unit.as_str(),
                decl.description.as_str()
            ),
            (f.name, f.unit, f.description)
        );
        assert_eq!(
            (decl.otlp.as_str(), decl.otlp_unit.as_str()),
            (f.otlp, f.otlp_unit)
        );
        assert_eq!(decl.outcome.as_deref(), f.outcome);
        assert_eq!(decl.otlp_only, f.name == fields::EXPORT_REJECTED.name);
        assert_eq!(
            decl.prometheus.as_deref(),
            (!decl.otlp_only).then_some(f.prometheus)
        );
    }
    assert_eq!(m.model_metrics.len(), METRICS.len());
    for (decl, c) in m.model_metrics.iter().zip(METRICS) {
        assert_eq!(
            (decl.ces.as_str(), decl.field.as_str(), decl.unit.as_str()),
            (c.ces, c.field, c.unit)
        );
        assert_eq!(
            (decl.title.as_str(), decl.description.as_str()),
            (c.title, c.description)
        );
        assert_eq!(decl.value == "int", c.is_count(), "{}", c.ces);
        assert_eq!(decl.aggregate == "sum", c.is_count(), "{}", c.ces);
        assert_eq!(decl.otlp, c.otlp_name());
        assert_eq!(decl.prometheus, c.prometheus_name());
        assert_eq!(decl.otlp_period.as_deref(), c.otlp_period_name());
        assert_eq!(
            decl.prometheus_period.as_deref(),
            c.prometheus_period_name()
        );
    }
    let model_tags: Vec<&str> = m.model_attributes.iter().map(|a| a.tag.as_str()).collect();
    assert_eq!(model_tags, fields::MODEL_TAGS);
    for a in &m.model_attributes {
        assert_eq!(a.otlp, fields::otlp_attribute(&a.tag));
        assert_eq!(a.prometheus, fields::prometheus_label(&a.otlp));
    }
    let tags: BTreeSet<&str> = m.attributes.iter().map(|a| a.tag.as_str()).collect();
    let builtin: BTreeSet<&str> = fields::BUILTIN_TAGS
        .iter()
        .copied()
        .chain([fields::CLOUD_TAG])
        .collect();
    assert_eq!(tags, builtin);
    let clouds_only: Vec<&str> = m
        .attributes
        .iter()
        .filter(|a| a.clouds_only)
        .map(|a| a.tag.as_str())
        .collect();
    assert_eq!(clouds_only, [fields::CLOUD_TAG]);
    for a in &m.attributes {
        assert_eq!(a.otlp, fields::otlp_attribute(&a.tag), "{}", a.tag);
        assert_eq!(a.prometheus, fields::prometheus_label(&a.otlp), "{}", a.tag);
    }
    for r in &m.resource {
        // service.name and service.instance.id make the collector's job and instance.
        let label = match r.otlp.as_str() {
            "service.name" => "job".to_string(),
            "service.instance.id" => "instance".to_string(),
            other => fields::prometheus_label(other),
        };
        assert_eq!(r.prometheus, label, "{}", r.otlp);
    }
    let declared_resource: BTreeSet<&str> = m.resource.iter().map(|r| r.otlp.as_str()).collect();
    let code_resource: BTreeSet<&str> = fields::RESOURCE_ATTRIBUTES.iter().copied().collect();
    assert_eq!(declared_resource, code_resource);
}

#[test]
fn declared_equals_emitted_in_every_format() {
    let m = manifest::load().unwrap();
    let sim = sim();
    let spec = spec_file(&example_spec_for(&sim));
    let static_tags = ["env"];

    // Line protocol: fields and tags.
    let mut lp = parse_lp(&stdout(&run(&spec, &[])));
    // Period mode's field comes from a period run.
    let period = fixture_for(&sim, "plugin/period.yaml", &[]);
    let state = tempdir().join("state");
    lp.extend(parse_lp(&stdout(&run(
        &period,
        &["--state-dir", state.to_str().unwrap()],
    ))));
    let series: Vec<_> = lp
        .iter()
        .filter(|l| l.measurement == "maas_usage")
        .collect();
    let emitted_fields: BTreeSet<String> = series
        .iter()
        .flat_map(|l| l.ints.keys().chain(l.floats.keys()).cloned())
        .collect();
    let declared_fields: BTreeSet<String> = m.metrics.iter().map(|x| x.field.clone()).collect();
    assert_eq!(emitted_fields, declared_fields);
    let emitted_tags: BTreeSet<String> = series
        .iter()
        .flat_map(|l| l.tags.keys().cloned())
        .filter(|t| !static_tags.contains(&t.as_str()))
        .collect();
    // The example has one `cloud:` block: its series carry no cloud tag (tests/it/clouds.rs sees
    // it with `clouds:`).
    let one_cloud = || m.attributes.iter().filter(|a| !a.clouds_only);
    let declared_tags: BTreeSet<String> = one_cloud().map(|a| a.tag.clone()).collect();
    assert_eq!(emitted_tags, declared_tags);
    let collector = lp
        .iter()
        .find(|l| l.measurement == "maas_usage_collector")
        .unwrap();
    let emitted_c: BTreeSet<String> = collector.ints.keys().cloned().collect();
    let declared_c: BTreeSet<String> = m
        .collector_metrics
        .iter()
        .filter(|x| !x.otlp_only)
        .map(|x| x.field.clone())
        .collect();
    assert_eq!(emitted_c, declared_c);

    // OTLP: metric names (window totals from the example, period counters from the period
    // run), data point attributes, resource attributes. The collector's answer to a push
    // (otlp_only) is not in a file: tests/it/run_otlp.rs sees it.
    let otlp_of = |spec: &std::path::Path, extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["--format", "otlp-json"];
        args.extend_from_slice(extra);
        common::otlp::merged_lines(&stdout(&run(spec, &args)))
    };
    let json = otlp_of(&spec, &[]);
    let state2 = tempdir().join("state");
    let period_json = otlp_of(&period, &["--state-dir", state2.to_str().unwrap()]);
    let metrics_of = |j: &serde_json::Value| -> Vec<serde_json::Value> {
        j["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
            .as_array()
            .unwrap()
            .clone()
    };
    let rm = &json["resourceMetrics"][0];
    let metrics: Vec<serde_json::Value> = metrics_of(&json)
        .into_iter()
        .chain(metrics_of(&period_json))
        .collect();
    // Cloud Eye's names are checked in declared_model_metrics_equal_emitted.
    let emitted_otlp: BTreeSet<String> = metrics
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_string())
        .filter(|n| !n.starts_with("maas.model."))
        .collect();
    let declared_otlp: BTreeSet<String> = m
        .metrics
        .iter()
        .flat_map(|x| [x.otlp.clone(), x.otlp_period.clone()])
        .flatten()
        .chain(
            m.collector_metrics
                .iter()
                .filter(|x| !x.otlp_only)
                .map(|x| x.otlp.clone()),
        )
        .collect();
    assert_eq!(emitted_otlp, declared_otlp);
    let mut emitted_attrs = BTreeSet::new();
    for metric in metrics
        .iter()
        .filter(|x| x["name"].as_str().unwrap().starts_with("maas.usage."))
    {
        let data = metric.get("gauge").or_else(|| metric.get("sum")).unwrap();
        for p in data["dataPoints"].as_array().unwrap() {
            for a in p["attributes"].as_array().unwrap() {
                emitted_attrs.insert(a["key"].as_str().unwrap().to_string());
            }
        }
    }
    emitted_attrs.retain(|a| !static_tags.contains(&a.as_str()));
    let declared_attrs: BTreeSet<String> = one_cloud().map(|a| a.otlp.clone()).collect();
    assert_eq!(emitted_attrs, declared_attrs);
    let resource: BTreeSet<String> = rm["resource"]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap().to_string())
        .collect();
    let declared_resource: BTreeSet<String> = m.resource.iter().map(|r| r.otlp.clone()).collect();
    assert!(
        resource.is_subset(&declared_resource),
        "undeclared resource attributes: {:?}",
        resource.difference(&declared_resource).collect::<Vec<_>>()
    );

    // Prometheus: metric names, from the same two runs.
    let state3 = tempdir().join("state");
    let prom = stdout(&run(&spec, &["--format", "prometheus"]))
        + &stdout(&run(
            &period,
            &[
                "--format",
                "prometheus",
                "--state-dir",
                state3.to_str().unwrap(),
            ],
        ));
    let emitted_prom: BTreeSet<String> = prom
        .lines()
        .filter(|l| l.starts_with("# TYPE "))
        .map(|l| l.split(' ').nth(2).unwrap().to_string())
        .filter(|n| !n.starts_with("maas_model_"))
        .collect();
    let declared_prom: BTreeSet<String> = m
        .metrics
        .iter()
        .flat_map(|x| [x.prometheus.clone(), x.prometheus_period.clone()])
        .flatten()
        .chain(
            m.collector_metrics
                .iter()
                .filter_map(|x| x.prometheus.clone()),
        )
        .chain(["target_info".to_string()])
        .collect();
    assert_eq!(emitted_prom, declared_prom);
    // Labels: the data series carry the declared attributes (and the spec's tags and the
    // self-metrics' outcome), target_info the declared resource's, less job and instance.
    let parsed = common::prom::parse(&prom);
    let label_set = |pick: &dyn Fn(&str) -> bool| -> BTreeSet<String> {
        parsed
            .samples
            .iter()
            .filter(|x| pick(&x.name))
            .flat_map(|x| x.labels.keys().cloned())
            .collect()
    };
    let data = label_set(&|n| n.starts_with("maas_usage_"));
    let declared_labels: BTreeSet<String> = one_cloud()
        .map(|a| a.prometheus.clone())
        .chain(static_tags.iter().map(|t| t.to_string()))
        .collect();
    assert_eq!(data, declared_labels);
    let target = label_set(&|n| n == "target_info");
    let declared_target: BTreeSet<String> = m
        .resource
        .iter()
        .map(|r| r.prometheus.clone())
        .filter(|l| l != "job" && l != "instance")
        .collect();
    assert!(
        !target.is_empty() && target.is_subset(&declared_target),
        "undeclared target_info labels: {:?}",
        target.difference(&declared_target).collect::<Vec<_>>()
    );
}

/// Every Cloud Eye metric the simulator has, in every format: emitted == declared, restricted
/// to those (the rest of the catalog has no source to come from in a test).
#[test]
fn declared_model_metrics_equal_emitted() {
    let m = manifest::load().unwrap();
    let sim = sim();
    let available: BTreeSet<&str> = maas_usage::sim::cloud_eye::METRICS
        .iter()
        .map(|(n, _)| *n)
        .collect();
    let metrics = available.iter().copied().collect::<Vec<_>>().join(", ");
    let spec = fixture_for(&sim, "plugin/models.yaml", &[("metrics", &metrics)]);
    let declared: Vec<&manifest::ModelMetric> = m
        .model_metrics
        .iter()
        .filter(|x| available.contains(x.ces.as_str()))
        .collect();
    assert_eq!(
        declared.len(),
        available.len(),
        "the catalog knows every simulated metric"
    );
    let state = || tempdir().join("state");
    let run_as = |format: &str| {
        let out = run(
            &spec,
            &["--format", format, "--state-dir", state().to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out)
    };

    // Line protocol: fields and tags of maas_model_usage.
    let lp = parse_lp(&run_as("influx"));
    let lines: Vec<_> = lp
        .iter()
        .filter(|l| l.measurement == "maas_model_usage")
        .collect();
    assert!(!lines.is_empty());
    let fields: BTreeSet<String> = lines
        .iter()
        .flat_map(|l| l.ints.keys().chain(l.floats.keys()).cloned())
        .filter(|f| f != "window_seconds" && f != "period_seconds")
        .collect();
    let declared_fields: BTreeSet<String> = declared.iter().map(|x| x.field.clone()).collect();
    assert_eq!(fields, declared_fields);
    for l in &lines {
        for x in &declared {
            let is_int = l.ints.contains_key(&x.field);
            let is_float = l.floats.contains_key(&x.field);
            if is_int || is_float {
                assert_eq!(is_int, x.value == "int", "{}", x.field);
            }
        }
    }
    let tags: BTreeSet<String> = lines
        .iter()
        .flat_map(|l| l.tags.keys().cloned())
        .filter(|t| !["env", "project_id", "region"].contains(&t.as_str()))
        .collect();
    let declared_tags: BTreeSet<String> =
        m.model_attributes.iter().map(|a| a.tag.clone()).collect();
    assert_eq!(tags, declared_tags);
    // maas_model_cost: the declared fields (doubles), the usage tags plus its own.
    let cost = m
        .spend_metrics
        .iter()
        .find(|s| s.measurement == "maas_model_cost")
        .unwrap();
    let cost_lines: Vec<_> = lp
        .iter()
        .filter(|l| l.measurement == cost.measurement)
        .collect();
    assert!(!cost_lines.is_empty());
    for l in &cost_lines {
        let fields: BTreeSet<&String> = l.floats.keys().collect();
        assert!(l.ints.is_empty(), "{l:?}");
        assert_eq!(fields, cost.fields.iter().map(|f| &f.field).collect());
        let own: BTreeSet<&str> = cost.attributes.iter().map(|a| a.tag.as_str()).collect();
        for t in l.tags.keys() {
            assert!(
                own.contains(t.as_str())
                    || declared_tags.contains(t)
                    || ["env", "project_id", "region"].contains(&t.as_str()),
                "{t}"
            );
        }
        assert!(own.iter().all(|t| l.tags.contains_key(*t)));
    }
    // maas_budget: the declared fields and kinds; tags among the declared ones.
    let budget = m
        .spend_metrics
        .iter()
        .find(|s| s.measurement == "maas_budget")
        .unwrap();
    let budget_lines: Vec<_> = lp
        .iter()
        .filter(|l| l.measurement == budget.measurement)
        .collect();
    assert_eq!(budget_lines.len(), 2);
    for l in &budget_lines {
        for f in &budget.fields {
            let is_int = l.ints.contains_key(&f.field);
            assert!(is_int || l.floats.contains_key(&f.field), "{}", f.field);
            assert_eq!(is_int, f.value == "int", "{}", f.field);
        }
        assert_eq!(l.ints.len() + l.floats.len(), budget.fields.len());
        for t in l.tags.keys() {
            assert!(
                budget.attributes.iter().any(|a| &a.tag == t)
                    || ["env", "project_id", "region"].contains(&t.as_str()),
                "{t}"
            );
        }
    }

    // OTLP: Gauges for every metric, Sums for the counts of buckets; attributes.
    let json = common::otlp::merged_lines(&run_as("otlp-json"));
    let otlp = &json["resourceMetrics"][0]["scopeMetrics"][0]["metrics"];
    let mut names = BTreeSet::new();
    let mut attrs = BTreeSet::new();
    let mut cost_names = BTreeSet::new();
    for x in otlp.as_array().unwrap() {
        let name = x["name"].as_str().unwrap();
        if let Some(f) = cost
            .fields
            .iter()
            .find(|f| f.otlp == name || f.otlp_period.as_deref() == Some(name))
        {
            assert_eq!(x["unit"], f.unit.as_str(), "{name}");
            let kind = if f.otlp == name { "gauge" } else { "sum" };
            for p in x[kind]["dataPoints"].as_array().unwrap() {
                let keys: Vec<&str> = p["attributes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["key"].as_str().unwrap())
                    .collect();
                assert!(keys.contains(&cost.attributes[0].otlp.as_str()), "{name}");
            }
            cost_names.insert(name.to_string());
            continue;
        }
        if let Some(f) = budget.fields.iter().find(|f| f.otlp == name) {
            assert_eq!(x["unit"], f.unit.as_str(), "{name}");
            assert!(x.get("gauge").is_some(), "{name}");
            cost_names.insert(name.to_string());
            continue;
        }
        if !name.starts_with("maas.model.") {
            continue;
        }
        let kind = if x.get("sum").is_some() {
            "sum"
        } else {
            "gauge"
        };
        names.insert(name.to_string());
        let decl = declared
            .iter()
            .find(|d| d.otlp == name || d.otlp_period.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{name} is not declared"));
        assert_eq!(x["unit"], decl.unit.as_str(), "{name}");
        assert_eq!(
            kind == "sum",
            decl.otlp_period.as_deref() == Some(name),
            "{name}"
        );
        for p in x[kind]["dataPoints"].as_array().unwrap() {
            for a in p["attributes"].as_array().unwrap() {
                attrs.insert(a["key"].as_str().unwrap().to_string());
            }
        }
    }
    let declared_otlp: BTreeSet<String> = declared
        .iter()
        .flat_map(|d| [Some(d.otlp.clone()), d.otlp_period.clone()])
        .flatten()
        .collect();
    assert_eq!(names, declared_otlp);
    attrs.remove("env");
    // Plus the source's project and region, as on every data point.
    let declared_attrs: BTreeSet<String> = m
        .model_attributes
        .iter()
        .map(|a| a.otlp.clone())
        .chain(
            m.attributes
                .iter()
                .filter(|a| ["project_id", "region"].contains(&a.tag.as_str()))
                .map(|a| a.otlp.clone()),
        )
        .collect();
    assert_eq!(attrs, declared_attrs);
    let declared_cost: BTreeSet<String> = cost
        .fields
        .iter()
        .flat_map(|f| [Some(f.otlp.clone()), f.otlp_period.clone()])
        .flatten()
        .chain(budget.fields.iter().map(|f| f.otlp.clone()))
        .collect();
    assert_eq!(cost_names, declared_cost);

    // Prometheus: gauges and counters, and the labels.
    let text = run_as("prometheus");
    promtool_check(&text);
    let types: BTreeSet<(String, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter(|l| l.starts_with("maas_model_"))
        .map(|l| {
            let (n, k) = l.split_once(' ').unwrap();
            (n.to_string(), k.to_string())
        })
        .collect();
    let declared_cost_types: BTreeSet<(String, String)> = cost
        .fields
        .iter()
        .flat_map(|f| {
            [
                Some((f.prometheus.clone(), "gauge".to_string())),
                f.prometheus_period
                    .clone()
                    .map(|p| (p, "counter".to_string())),
            ]
        })
        .flatten()
        .collect();
    assert!(
        declared_cost_types.is_subset(&types),
        "{declared_cost_types:?}"
    );
    let types: BTreeSet<(String, String)> =
        types.difference(&declared_cost_types).cloned().collect();
    assert!(text.contains(&format!("{}=\"", cost.attributes[0].prometheus)));
    for f in &budget.fields {
        assert!(
            text.contains(&format!("# TYPE {} gauge", f.prometheus)),
            "{}",
            f.prometheus
        );
    }
    let declared_types: BTreeSet<(String, String)> = declared
        .iter()
        .flat_map(|d| {
            [
                Some((d.prometheus.clone(), "gauge".to_string())),
                d.prometheus_period
                    .clone()
                    .map(|p| (p, "counter".to_string())),
            ]
        })
        .flatten()
        .collect();
    assert_eq!(types, declared_types);
    for a in &m.model_attributes {
        assert!(
            text.contains(&format!("{}=\"", a.prometheus)),
            "{}",
            a.prometheus
        );
    }
}

#[test]
fn the_environment_variables_the_code_reads_are_declared() {
    let m = manifest::load().unwrap();
    let declared: BTreeSet<String> = m
        .requires
        .environment
        .iter()
        .map(|e| e.name.clone())
        .collect();
    let mut read = BTreeSet::new();
    let mut stack = vec![root().join("src")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            // Test hooks exist only in test builds (feature test-hooks): not the plugin's contract.
            if p.ends_with("cmd/hooks.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for chunk in text.split('"').skip(1).step_by(2) {
                let is_var = chunk.len() > 3
                    && chunk
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
                if is_var
                    && ["HW_", "HUAWEICLOUD_", "OTEL_", "XDG_", "MAAS_USAGE_"]
                        .iter()
                        .any(|p| chunk.starts_with(p))
                {
                    read.insert(chunk.to_string());
                }
            }
        }
    }
    // Variables with a declared family stand for it (OTEL_EXPORTER_OTLP_* and the SDK aliases).
    let covered = |v: &str| {
        declared.contains(v)
            || v.starts_with("OTEL_EXPORTER_OTLP_")
            || v == "OTEL_SERVICE_NAME"
            || [
                "HUAWEICLOUD_SDK_AK",
                "HUAWEICLOUD_SDK_SK",
                "HUAWEICLOUD_SDK_SECURITY_TOKEN",
                "HUAWEICLOUD_SDK_PROJECT_ID",
                "HW_REGION",
            ]
            .contains(&v)
    };
    let missing: Vec<_> = read.iter().filter(|v| !covered(v)).collect();
    assert!(
        missing.is_empty(),
        "read but not declared in plugin.yaml: {missing:?}"
    );
    assert!(
        read.contains("HW_ACCESS_KEY") && read.contains("OTEL_RESOURCE_ATTRIBUTES"),
        "the scan works: {read:?}"
    );
}

/// How to rewrite the generated parts of files from plugin.yaml (see `generated`).
const REGENERATE: &str = "UPDATE_GENERATED=1 cargo test --locked generated_from_the_manifest";

/// `path` (relative to the crate) must read `want`, the file with its generated parts made
/// from plugin.yaml now. When it does not, the test fails with the diff and how to regenerate;
/// with `UPDATE_GENERATED=1` the file is rewritten instead (review the diff, then commit it).
fn generated(path: &str, want: &str) {
    let have = std::fs::read_to_string(root().join(path)).unwrap();
    if have == want {
        return;
    }
    if std::env::var_os("UPDATE_GENERATED").is_some_and(|v| v == "1") {
        std::fs::write(root().join(path), want).unwrap();
        eprintln!("rewrote {path} from plugin.yaml");
        return;
    }
    let diff = similar::TextDiff::from_lines(have.as_str(), want)
        .unified_diff()
        .context_radius(1)
        .header(path, "generated from plugin.yaml")
        .to_string();
    panic!("{path} drifted from plugin.yaml; regenerate it with `{REGENERATE}`:\n{diff}");
}

/// `text` with what lies between `begin` and the first `end` after it replaced by `with`.
fn between(text: &str, begin: &str, end: &str, with: &str) -> String {
    assert_eq!(text.matches(begin).count(), 1, "one `{begin}`");
    let start = text.find(begin).unwrap() + begin.len();
    let stop = start + text[start..].find(end).expect(end);
    format!("{}{with}{}", &text[..start], &text[stop..])
}

#[test]
fn the_metrics_doc_is_generated_from_the_manifest() {
    let doc = std::fs::read_to_string(root().join("docs/metrics.md")).unwrap();
    let out = bin().args(["describe", "--markdown"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let tables = stdout(&out);
    let want = between(
        &doc,
        "<!-- metrics:begin -->\n",
        "<!-- metrics:end -->",
        &tables,
    );
    generated("docs/metrics.md", &want);
}

/// The spec's schema names the Cloud Eye metrics a query may ask for (`metrics:`): exactly the
/// manifest's `model_metrics`, in its order, as mdatagen generates them from metadata.yaml.
#[test]
fn the_schemas_cloud_eye_metrics_are_generated_from_the_manifest() {
    const SCHEMA: &str = "schemas/maas-usage.schema.json";
    let m = manifest::load().unwrap();
    let names: Vec<String> = m
        .model_metrics
        .iter()
        .map(|x| format!("{:?}", x.ces))
        .collect();
    let text = std::fs::read_to_string(root().join(SCHEMA)).unwrap();
    let want = between(
        &text,
        "\"description\": \"A SYS.MaaS metric name.\", \"enum\": [",
        "]",
        &names.join(", "),
    );
    // The text replaced is the enum of the query's `metrics` (and the schema stays JSON).
    let schema: serde_json::Value = serde_json::from_str(&want).unwrap();
    let listed = &schema["$defs"]["query"]["properties"]["metrics"]["items"]["enum"];
    let listed: Vec<String> = listed
        .as_array()
        .expect("$defs.query.properties.metrics.items.enum")
        .iter()
        .map(|v| format!("{v}"))
        .collect();
    assert_eq!(listed, names);
    generated(SCHEMA, &want);
}

/// docs/*.md, in order.
fn docs_pages() -> Vec<std::path::PathBuf> {
    let mut docs: Vec<_> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    docs
}

/// Every relative Markdown link in README.md, CONTRIBUTING.md and docs/*.md points at a file or
/// directory that exists (anchors are not checked). Fenced code blocks are skipped.
#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut files = vec![root().join("README.md"), root().join("CONTRIBUTING.md")];
    let docs = docs_pages();
    assert!(!docs.is_empty(), "no docs/*.md");
    files.extend(docs);
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let dir = file.parent().unwrap();
        let mut in_code = false;
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                continue;
            }
            if in_code {
                continue;
            }
            let mut rest = line;
            while let Some(i) = rest.find("](") {
                rest = &rest[i + 2..];
                let Some(end) = rest.find(')') else { break };
                let target = rest[..end].split_whitespace().next().unwrap_or("");
                rest = &rest[end..];
                if target.is_empty() || target.starts_with('#') || target.contains("://") {
                    continue;
                }
                if target.starts_with("mailto:") {
                    continue;
                }
                let path = target.split('#').next().unwrap();
                checked += 1;
                if !dir.join(path).exists() {
                    broken.push(format!(
                        "{}:{}: {target}",
                        file.strip_prefix(root()).unwrap().display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(checked > 20, "the scan works: {checked} links");
    assert!(broken.is_empty(), "links to nothing: {broken:#?}");
}

/// The `tests/...` paths a text names in code spans (`tests/it/auth.rs`,
/// `tests/it/state.rs::a_test`), without a test's name after `::`; templates (`<name>`, `*`)
/// left out.
fn test_paths_named(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| span.starts_with("tests/"))
        .map(|span| span.split("::").next().unwrap_or(span).to_string())
        .filter(|path| !path.contains(['<', '*', ' ']))
        .collect()
}

/// Every test file or directory the docs, the benchmarks and Cargo.toml name exists: a test
/// moved (as into tests/it/) or renamed leaves no stale name behind.
#[test]
fn every_test_path_the_docs_name_exists() {
    let mut files: Vec<std::path::PathBuf> = [
        "README.md",
        "CONTRIBUTING.md",
        "BENCHMARKS.md",
        "Cargo.toml",
    ]
    .iter()
    .map(|f| root().join(f))
    .collect();
    files.extend(docs_pages());
    let mut missing = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for path in test_paths_named(&text) {
            checked += 1;
            if !root().join(&path).exists() {
                let name = file.strip_prefix(root()).unwrap().display().to_string();
                missing.push(format!("{name}: {path}"));
            }
        }
    }
    assert!(checked > 20, "the scan works: {checked} paths");
    assert!(missing.is_empty(), "no such test file: {missing:#?}");
    assert_eq!(
        test_paths_named(
            "`tests/auth.rs` (`a_test`), `tests/it/state.rs::b`, `tests/testdata/<file>/`"
        ),
        ["tests/auth.rs", "tests/it/state.rs"]
    );
}

#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert!(out.status.success());
        assert!(
            stdout(&out).contains("maas-usage") && stdout(&out).contains("validate"),
            "{shell}"
        );
    }
    let out = bin().arg("man").output().unwrap();
    assert!(
        stdout(&out).starts_with(".ie") || stdout(&out).contains(".TH maas-usage"),
        "{}",
        &stdout(&out)[..200.min(stdout(&out).len())]
    );
    let out = bin().arg("describe").output().unwrap();
    assert_eq!(stdout(&out), manifest::PLUGIN_YAML);
}
